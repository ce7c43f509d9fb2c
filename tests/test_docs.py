"""The documentation: the README is short, the model tables are those the metafiles give,
every relative link and anchor resolves, and the README's numbers come from somewhere.

The tables and checks are :mod:`xcit_dense.docs`; ``python tools/misc/gen_model_zoo.py``
regenerates the tables."""
import os
import re
import subprocess
import sys

import pytest

from xcit_dense import docs

ROOT = docs.ROOT


def read(path):
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
        return f.read()


def test_readme_is_at_most_200_lines():
    assert len(read('README.md').splitlines()) <= 200


def test_generated_tables_are_up_to_date():
    assert docs.check() == [], 'run python tools/misc/gen_model_zoo.py'


def test_every_metafile_folder_has_a_readme_with_its_results():
    for folder, meta in docs.metafiles():
        text = read(f'{folder}/README.md')
        assert '## Citation' in text and 'arXiv:2106.09681' in text, folder
        for model in meta['Models']:
            assert f"]({os.path.basename(model['Config'])})" in text, model['Name']
            assert f"]({model['Weights']})" in text, model['Name']


def test_every_paper_number_of_the_metafiles_is_in_the_tables():
    zoo = read('docs/model_zoo.md')
    for folder, meta in docs.metafiles():
        rows = [line for line in read(f'{folder}/README.md').splitlines()
                if line.startswith('| XCiT')]
        for model, row in zip(meta['Models'], rows):
            backbone, patch = docs.backbone_and_patch(model)
            assert row.startswith(f'| {backbone} | {patch} |'), row
            for value in docs.metrics(model).values():
                assert f' {value:.1f} ' in row, (model['Name'], value)
        assert len(rows) == len(meta['Models'])
        for model in meta['Models']:
            line = next(x for x in zoo.splitlines() if f"{model['Name']}]" in x)
            assert all(f' {v:.1f} ' in line for v in docs.metrics(model).values()), line


def test_the_tool_checks_and_rewrites(tmp_path):
    """``--check`` names a stale file and exits 1; without it the tool rewrites the table,
    after which ``--check`` passes. Run on a copy of the files it reads and writes."""
    for path in list(docs.targets()) + [f'{f}/metafile.yml' for f, _ in docs.metafiles()]:
        os.makedirs(tmp_path / os.path.dirname(path), exist_ok=True)
        (tmp_path / path).write_text(read(path), encoding='utf-8')
    meta = tmp_path / 'configs/upernet/metafile.yml'
    meta.write_text(meta.read_text().replace('mIoU: 48.4', 'mIoU: 48.9'), encoding='utf-8')
    tool = [sys.executable, os.path.join(ROOT, 'tools/misc/gen_model_zoo.py'),
            '--root', str(tmp_path)]
    proc = subprocess.run(tool + ['--check'], capture_output=True, text=True)
    assert proc.returncode == 1
    # the README's summary shows the range of mIoU, whose top this is
    assert sorted(re.findall(r'^(\S+):', proc.stdout, re.M)) == [
        'README.md', 'configs/upernet/README.md', 'docs/model_zoo.md']
    assert subprocess.run(tool, capture_output=True, text=True).returncode == 0
    assert subprocess.run(tool + ['--check'], capture_output=True, text=True).returncode == 0
    assert '| XCiT-M24 | 8 | 160k | 512x512 | 48.9 |' in (
        tmp_path / 'configs/upernet/README.md').read_text()
    assert 'mIoU 41.5–48.9' in (tmp_path / 'README.md').read_text()


def test_a_table_without_its_markers_is_an_error():
    with pytest.raises(ValueError, match='needs one <!-- results:start -->'):
        docs.replace_block('no markers', 'results', '| a |', 'x.md')


def test_every_relative_link_resolves():
    files = docs.doc_files()
    assert {'README.md', 'CHANGELOG.md', 'docs/faq.md', 'docs/user_guides/inference.md',
            'configs/mask_rcnn/README.md'} <= set(files)
    assert docs.broken_links(files=files) == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {os.path.normpath(target.partition('#')[0])
              for _, target in docs.links(read('README.md'))}
    pages = {p for p in docs.doc_files() if p.startswith('docs/')}
    assert pages <= linked, sorted(pages - linked)


def test_the_link_check_finds_broken_links(tmp_path):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs/a.md').write_text('# A title\n\n## Whole image, or slices?\n\n'
                                        '```\n## not a heading\n```\n', encoding='utf-8')
    (tmp_path / 'README.md').write_text(
        '[ok](docs/a.md#whole-image-or-slices) [ok](docs/a.md#a-title) ![img](docs/a.md)\n'
        '[gone](docs/b.md) [no anchor](docs/a.md#not-a-heading) [self](#nothing)\n'
        '`[in code](nowhere.md)` [url](https://example.com/x.md)\n', encoding='utf-8')
    assert docs.broken_links(str(tmp_path), ['README.md']) == [
        'README.md:2: docs/b.md (no such file)',
        'README.md:2: docs/a.md#not-a-heading (no heading #not-a-heading)',
        'README.md:2: #nothing (no heading #nothing)']


@pytest.mark.parametrize('heading, anchor', [
    ('Whole image or slices?', 'whole-image-or-slices'),
    ('High resolution, whole images', 'high-resolution-whole-images'),
    ('Pyramid levels: `out_strides`', 'pyramid-levels-out_strides'),
    ('In your own mmdet / mmseg config', 'in-your-own-mmdet--mmseg-config'),
    ('CPU (what `make` does)', 'cpu-what-make-does'),
    ('Test-time augmentation and torch.compile', 'test-time-augmentation-and-torchcompile'),
    ('2026-11-24', '2026-11-24'),
])
def test_anchors_follow_githubs_rule(heading, anchor):
    assert docs.slug(heading) == anchor


def test_readme_numbers_come_from_somewhere():
    """A number in the README's prose is in a generated block, in code, in a name or version,
    or on a line that links to where it comes from."""
    assert docs.unexplained_numbers(read('README.md')) == []


def test_the_number_check_flags_a_bare_measurement():
    text = ('XCiT-S12/8 with mmcv 2.1.0 on Python 3.11 (NeurIPS 2021, arXiv:2106.09681).\n'
            'It trains in 5 min 54 s.\n'
            'It reaches 47.0 box AP ([model zoo](docs/model_zoo.md)).\n'
            '`make demo` takes `--epochs 12`.\n'
            '```\nlr = 0.0001\n```\n'
            '<!-- model-zoo:start -->\n| 42.7 |\n<!-- model-zoo:end -->\n'
            'Mask2Former and 3 heads.\n')
    assert docs.unexplained_numbers(text) == ['2: It trains in 5 min 54 s.',
                                              '11: Mask2Former and 3 heads.']


def test_no_dates_in_the_docs_prose():
    """Dated runs go to the CHANGELOG, not into the docs' prose."""
    dated = []
    for path in docs.doc_files():
        if path == 'CHANGELOG.md':
            continue
        for number, line in docs.prose_lines(read(path)):
            prose = re.sub(r'\]\([^)]*\)', ']', docs.CODE_SPAN.sub('', line))  # not targets
            if re.search(r'\b20\d\d-\d\d-\d\d\b', prose):
                dated.append(f'{path}:{number}: {line.strip()}')
    assert dated == []
