"""The documentation's generated tables and its checks; yaml and the standard library only.

The model tables are made from the metafiles (``configs/*/metafile.yml``), the one place that
holds the trained checkpoints and the paper's numbers:

- each metafile folder's ``README.md``: its results table, between ``<!-- results:start -->``
  and ``<!-- results:end -->``;
- the repository's ``README.md``: a summary, one row per metafile collection, between
  ``<!-- model-zoo:start -->`` and ``<!-- model-zoo:end -->``;
- ``docs/model_zoo.md``: every model, between the same markers.

A benchmark's result table (``tools/analysis_tools/results/*.md``, written by the benchmark)
is copied into any page between ``<!-- include: PATH -->`` and ``<!-- include:end -->``, so the
page shows the numbers the benchmark last wrote.

``tools/misc/gen_model_zoo.py`` rewrites them (:func:`write`) or names the stale files
(:func:`check`). :func:`broken_links` and :func:`unexplained_numbers` are the documentation
checks of ``tests/test_docs.py``.
"""
import glob
import os
import re
from typing import Callable, Dict, List, Sequence, Tuple

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKERS = {'results': ('<!-- results:start -->', '<!-- results:end -->'),
           'model-zoo': ('<!-- model-zoo:start -->', '<!-- model-zoo:end -->')}
NOTE = ('<!-- generated from configs/*/metafile.yml by tools/misc/gen_model_zoo.py: '
        'edit the metafile, then run the tool -->')
INCLUDE = re.compile(r'(<!-- include: (\S+) -->\n)(.*?)(<!-- include:end -->)', re.S)
# the metric columns, in this order; others follow in the order the metafiles give them
METRIC_ORDER = ('box AP', 'mask AP', 'mIoU')


def metafiles(root: str = ROOT) -> List[Tuple[str, dict]]:
    """``(folder, metafile)`` for every ``configs/*/metafile.yml``, folders relative to root."""
    found = []
    for path in sorted(glob.glob(os.path.join(root, 'configs', '*', 'metafile.yml'))):
        with open(path, encoding='utf-8') as f:
            found.append((os.path.relpath(os.path.dirname(path), root).replace(os.sep, '/'),
                          yaml.safe_load(f)))
    return found


def metrics(model: dict) -> Dict[str, float]:
    """``{metric: value}`` over the model's Results (a list of results, or one)."""
    results = model.get('Results') or []
    results = results if isinstance(results, list) else [results]
    return {k: v for r in results for k, v in (r.get('Metrics') or {}).items()}


def metric_names(models: Sequence[dict]) -> List[str]:
    names = []
    for model in models:
        names += [n for n in metrics(model) if n not in names]
    return sorted(names, key=lambda n: (METRIC_ORDER.index(n) if n in METRIC_ORDER
                                        else len(METRIC_ORDER), names.index(n)))


def backbone_and_patch(model: dict) -> Tuple[str, str]:
    """``'XCiT-S12/8'`` -> ``('XCiT-S12', '8')``."""
    name = str(model['Metadata']['Backbone'])
    backbone, _, patch = name.partition('/')
    return backbone, patch


def schedule(model: dict) -> str:
    """mmdet's and mmseg's way: 36 epochs are '3x', 80000 iterations '80k'."""
    meta = model['Metadata']
    if 'Epochs' in meta:
        epochs = int(meta['Epochs'])
        return f'{epochs // 12}x' if epochs % 12 == 0 else f'{epochs}e'
    if 'Iterations' in meta:
        iters = int(meta['Iterations'])
        return f'{iters // 1000}k' if iters % 1000 == 0 else str(iters)
    return ''


def crop_size(model: dict) -> str:
    """``'(512, 512)'`` -> ``'512x512'``; '' when the metafile gives none."""
    numbers = re.findall(r'\d+', str(model['Metadata'].get('Crop Size', '')))
    return 'x'.join(numbers)


def number(value) -> str:
    return f'{value:.1f}' if isinstance(value, float) else str(value)


def link(target: str, start: str) -> str:
    """``target`` (relative to the root) as a relative link from the folder ``start``."""
    return os.path.relpath(target, start).replace(os.sep, '/')


def head_name(collection: dict) -> str:
    """``'XCiT Mask R-CNN'`` -> ``'Mask R-CNN'``."""
    return re.sub(r'^XCiT\s+', '', collection['Name'])


def row(cells: Sequence[str]) -> str:
    return '| ' + ' | '.join(cells) + ' |'


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return '\n'.join([row(header), row(['---'] * len(header))] + [row(r) for r in rows])


def results_table(folder: str, meta: dict) -> str:
    """The folder README's table, in mmdet's columns: backbone, patch, schedule (crop size),
    metrics, config and download links."""
    models = meta['Models']
    names = metric_names(models)
    crops = any(crop_size(m) for m in models)
    header = (['Backbone', 'Patch', 'Lr schd'] + (['Crop Size'] if crops else []) + names
              + ['Config', 'Download'])
    rows = []
    for m in models:
        backbone, patch = backbone_and_patch(m)
        values = metrics(m)
        rows.append([backbone, patch, schedule(m)] + ([crop_size(m)] if crops else [])
                    + [number(values[n]) if n in values else '-' for n in names]
                    + [f"[config]({link(m['Config'], folder)})",
                       f"[model]({m['Weights']})" if m.get('Weights') else '-'])
    return table(header, rows)


def span(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return number(low) if low == high else f'{number(low)}–{number(high)}'


def summary_table(found: Sequence[Tuple[str, dict]], start: str = '.') -> str:
    """One row per collection: head, dataset, schedule, backbones, the range of each metric,
    and a link to the folder's README."""
    rows = []
    for folder, meta in found:
        for collection in meta['Collections']:
            models = [m for m in meta['Models'] if m['In Collection'] == collection['Name']]
            if not models:
                continue
            backbones, patches = [], []
            for m in models:
                backbone, patch = backbone_and_patch(m)
                backbones += [backbone] if backbone not in backbones else []
                patches += [patch] if patch and patch not in patches else []
            family = os.path.commonprefix(backbones).rpartition('-')[0]
            names = ', '.join(b[len(family) + 1:] if family else b for b in backbones)
            names = f'{family}-{names}' if family else names
            if patches:
                names += ' (patch ' + ', '.join(sorted(patches, key=int)) + ')'
            results = ', '.join(
                f'{n} {span([metrics(m)[n] for m in models if n in metrics(m)])}'
                for n in metric_names(models))
            rows.append([head_name(collection), str(collection['Metadata']['Training Data']),
                         ', '.join(dict.fromkeys(schedule(m) for m in models)),
                         f'{len(models)}: {names}', results,
                         f'[{folder}]({link(folder + "/README.md", start)})'])
    return table(['Head', 'Dataset', 'Schedule', 'Models', 'Paper results', 'Configs and weights'],
                 rows)


def zoo_table(found: Sequence[Tuple[str, dict]], start: str = 'docs') -> str:
    """Every model of every metafile: head, backbone, schedule, dataset, the metrics of all
    metafiles (``-`` where a model has none), config and weights."""
    models = [(meta, m) for _, meta in found for m in meta['Models']]
    names = metric_names([m for _, m in models])
    rows = []
    for meta, m in models:
        collection = next(c for c in meta['Collections'] if c['Name'] == m['In Collection'])
        values = metrics(m)
        rows.append([head_name(collection), str(m['Metadata']['Backbone']), schedule(m),
                     str(m['Metadata'].get('Training Data', '')),
                     *[number(values[n]) if n in values else '-' for n in names],
                     f"[{os.path.basename(m['Config'])[:-len('.py')]}]"
                     f"({link(m['Config'], start)})",
                     f"[weights]({m['Weights']})" if m.get('Weights') else '-'])
    return table(['Head', 'Backbone', 'Schedule', 'Dataset', *names, 'Config', 'Weights'], rows)


def targets(root: str = ROOT) -> Dict[str, Tuple[str, Callable[[], str]]]:
    """``{file relative to root: (marker kind, function making its block)}``."""
    found = metafiles(root)
    out = {}
    for folder, meta in found:
        out[f'{folder}/README.md'] = ('results',
                                      lambda folder=folder, meta=meta: results_table(folder, meta))
    out['README.md'] = ('model-zoo', lambda: summary_table(found, '.'))
    out['docs/model_zoo.md'] = ('model-zoo', lambda: zoo_table(found, 'docs'))
    return out


def replace_block(text: str, kind: str, block: str, path: str = '') -> str:
    """``text`` with what lies between the markers of ``kind`` replaced by ``block``."""
    start, end = MARKERS[kind]
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f'{path or "the text"} needs one {start} and, after it, one {end}')
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f'{head}{start}\n{NOTE}\n\n{block}\n\n{end}{tail}'


def render_includes(text: str, root: str = ROOT, path: str = '') -> str:
    """``text`` with each ``<!-- include: PATH -->`` block holding the file PATH (relative to
    root) as it is now."""
    def body(match: re.Match) -> str:
        source = os.path.join(root, match.group(2))
        if not os.path.isfile(source):
            raise FileNotFoundError(f'{path}: includes {match.group(2)}, which does not exist')
        with open(source, encoding='utf-8') as f:
            included = f.read().strip()
        return f'{match.group(1)}{included}\n{match.group(4)}'
    return INCLUDE.sub(body, text)


def render(root: str = ROOT) -> Dict[str, Tuple[str, str]]:
    """``{file: (its text, its text with fresh tables)}`` for every file holding a generated
    table or an included result file."""
    out = {}
    for path, (kind, make) in targets(root).items():
        full = os.path.join(root, path)
        if not os.path.isfile(full):
            raise FileNotFoundError(f'{path}: missing (it holds a generated table; write it '
                                    f'around the markers {" ".join(MARKERS[kind])})')
        with open(full, encoding='utf-8') as f:
            text = f.read()
        out[path] = (text, replace_block(text, kind, make(), path))
    for path in doc_files(root):
        text, new = out.get(path) or (open(os.path.join(root, path), encoding='utf-8').read(),
                                      None)
        new = render_includes(new if new is not None else text, root, path)
        if new != text or path in out:
            out[path] = (text, new)
    return out


def check(root: str = ROOT) -> List[str]:
    """The files whose generated tables are not those the metafiles give."""
    return sorted(path for path, (old, new) in render(root).items() if old != new)


def write(root: str = ROOT) -> List[str]:
    """Rewrite the stale tables; the files rewritten."""
    changed = []
    for path, (old, new) in sorted(render(root).items()):
        if old != new:
            with open(os.path.join(root, path), 'w', encoding='utf-8') as f:
                f.write(new)
            changed.append(path)
    return changed


# -- checks of the markdown ------------------------------------------------------------------

FENCE = re.compile(r'^\s*(```|~~~)')
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
CODE_SPAN = re.compile(r'(`+)(.+?)\1')


def prose_lines(text: str) -> List[Tuple[int, str]]:
    """``(line number, line)`` outside fenced code blocks and HTML comments (comments within a
    line are removed)."""
    out, fence, comment = [], False, False
    for line_number, line in enumerate(text.split('\n'), 1):
        if comment:
            comment = '-->' not in line
            continue
        if FENCE.match(line):
            fence = not fence
            continue
        if fence:
            continue
        line = re.sub(r'<!--.*?-->', '', line)
        if '<!--' in line:
            comment = True
            line = line[:line.index('<!--')]
        out.append((line_number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the text as shown (no code ticks, link targets or
    emphasis), lower case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = text.replace('`', '').replace('*', '')
    return re.sub(r'[^\w\- ]', '', text.strip().lower()).replace(' ', '-')


def anchors(path: str) -> set:
    """The anchors of a markdown file's headings (repeated headings get -1, -2, ...)."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    seen: Dict[str, int] = {}
    out = set()
    for _, line in prose_lines(text):
        match = re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', line)
        if match:
            base = slug(match.group(1))
            out.add(base if base not in seen else f'{base}-{seen[base]}')
            seen[base] = seen.get(base, 0) + 1
    return out


def links(text: str) -> List[Tuple[int, str]]:
    """``(line number, target)`` of the markdown links and images outside code (a link's text
    may run over lines; its line is the one it starts on)."""
    kept = dict(prose_lines(text))
    prose = '\n'.join(CODE_SPAN.sub('', kept.get(n, ''))
                      for n in range(1, text.count('\n') + 2))
    return [(prose.count('\n', 0, m.start()) + 1, m.group(1)) for m in LINK.finditer(prose)]


def doc_files(root: str = ROOT) -> List[str]:
    """The documentation the checks cover, relative to root."""
    patterns = ['README.md', 'CHANGELOG.md', 'docs/**/*.md', 'configs/**/README.md']
    found = set()
    for pattern in patterns:
        found.update(os.path.relpath(p, root).replace(os.sep, '/')
                     for p in glob.glob(os.path.join(root, pattern), recursive=True))
    return sorted(found)


def broken_links(root: str = ROOT, files: Sequence[str] = ()) -> List[str]:
    """``'file:line: target (why)'`` for each relative link that leads nowhere: no such file,
    or no heading with its anchor. URLs and mail addresses are not followed."""
    problems = []
    cache: Dict[str, set] = {}
    for path in files or doc_files(root):
        with open(os.path.join(root, path), encoding='utf-8') as f:
            text = f.read()
        for line, target in links(text):
            if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):
                continue
            file_part, _, anchor = target.partition('#')
            full = (os.path.normpath(os.path.join(root, os.path.dirname(path), file_part))
                    if file_part else os.path.join(root, path))
            if not os.path.exists(full):
                problems.append(f'{path}:{line}: {target} (no such file)')
            elif anchor and full.endswith('.md'):
                if full not in cache:
                    cache[full] = anchors(full)
                if anchor not in cache[full]:
                    problems.append(f'{path}:{line}: {target} (no heading #{anchor})')
            elif anchor and not full.endswith('.md'):
                problems.append(f'{path}:{line}: {target} (an anchor into a file that is not '
                                f'markdown)')
    return problems


# Numbers that say what a thing is, not what was measured: model names (XCiT-S12/8,
# CrossViT-18†, ViT-S/16, N12, Mask2Former), versions (mmcv 2.1.0, OpenMMLab 3.x, Python 3.11),
# the paper's venue and year, arXiv numbers and the citation's year.
NAMES = [
    r'\b(?:XCiT|CrossViT|ViT|Swin)-[A-Za-z]*\d+(?:/\d+)?†?',
    r'\bMask2Former\b',
    r'\b[NTSML]\d{2}(?:/\d+)?\b',
    r'\b(?:Python|OpenMMLab|mmcv|mmcv-full|mmengine|mmdet|mmsegmentation|mmseg|mmpretrain|torch|'
    r'timm|NeurIPS|ICCV|CVPR)\s+v?\d+(?:\.(?:\d+|x))*\b',
    r'\barXiv[: ]\d{4}\.\d{4,5}\b',
    r'\bet al\.,? \d{4}\b',
]


def unexplained_numbers(text: str, generated: Sequence[str] = ('model-zoo',)) -> List[str]:
    """``'line: text'`` for each line of prose that holds a number which is neither part of a
    name (``NAMES``) nor on a line with a link to where it comes from. Code (fenced and
    inline), HTML comments and the generated blocks are not prose."""
    for kind in generated:
        start, end = MARKERS[kind]
        text = re.sub(re.escape(start) + r'.*?' + re.escape(end),
                      lambda m: '\n' * m.group(0).count('\n'), text, flags=re.S)
    flagged = []
    for line_number, line in prose_lines(text):
        prose = CODE_SPAN.sub(' ', line)
        if LINK.search(prose):
            continue
        for pattern in NAMES:
            prose = re.sub(pattern, ' ', prose)
        if re.search(r'\d', prose):
            flagged.append(f'{line_number}: {line.strip()}')
    return flagged
