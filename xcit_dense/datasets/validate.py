"""Checking a COCO-format annotation file before training, so that a broken one stops the run
at once with the culprits named, not deep inside a data loader worker.

Two readers give the same verdicts and messages:

* :func:`load_coco_annotations` loads the file as it is (``json.load``) and returns it;
* :func:`check_coco_annotations`, what the pre-flight check uses, only checks it and returns
  the image file names. It is lean enough for COCO train2017 (450 MB of JSON, 45 million
  polygon coordinates): every non-integer number becomes one shared object instead of a
  Python float, the cyclic garbage collector is paused while the millions of containers are
  built (its repeated full passes over a growing heap cost more than the parse itself), and
  nothing is kept. In the rare case it finds a fault, or a float where an id belongs, it
  re-reads the file with :func:`load_coco_annotations`, so the error raised is the same.
"""
import gc
import json
import time
from typing import Dict, List


class AnnotationError(ValueError):
    """An annotation file is not valid JSON or is inconsistent."""


# The lean reading's ``parse_float``: every non-integer number becomes ``type(numeral)``,
# i.e. the ``str`` class. A C-level call that creates nothing (no float object, no parsing of
# the digits) and an object equal to no id. The JSON syntax is checked by the same C scanner.
_LEAN_FLOAT = type
_FLOAT_PLACEHOLDER = str


def _sample(items: List, limit: int = 10) -> str:
    return ', '.join(map(str, items[:limit])) + (f' (and {len(items) - limit} more)'
                                                 if len(items) > limit else '')


def _read_json(path: str, lean: bool = False):
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()  # as json.load does: universal newlines, so the same lines
        return json.loads(text, parse_float=_LEAN_FLOAT) if lean else json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f'Annotation file {path} is not valid JSON: {e.msg} at line '
                              f'{e.lineno}, column {e.colno}') from e
    except UnicodeDecodeError as e:
        raise AnnotationError(f'Annotation file {path} is not UTF-8 text (binary or '
                              f'corrupt?): {e}') from e


def _check_layout(data, path: str) -> None:
    if not isinstance(data, dict):
        raise AnnotationError(f'Annotation file {path} holds a JSON {type(data).__name__}, '
                              'not a COCO object')
    missing = [k for k in ('images', 'annotations', 'categories') if k not in data]
    if missing:
        raise AnnotationError(f'Annotation file {path} has no {missing} (a COCO instance '
                              'file has images, annotations and categories)')


def _check_references(data: Dict, path: str, category_ids: set, image_ids: set) -> None:
    unknown_cat = [(a.get('id'), a.get('category_id')) for a in data['annotations']
                   if a.get('category_id') not in category_ids]
    if unknown_cat:
        raise AnnotationError(
            f'Annotation file {path}: {len(unknown_cat)} annotations refer to unknown '
            f'categories (annotation id, category_id): {_sample(unknown_cat)}; the file '
            f'defines categories {sorted(category_ids)}')
    unknown_img = [(a.get('id'), a.get('image_id')) for a in data['annotations']
                   if a.get('image_id') not in image_ids]
    if unknown_img:
        raise AnnotationError(
            f'Annotation file {path}: {len(unknown_img)} annotations refer to unknown images '
            f'(annotation id, image_id): {_sample(unknown_img)}')


def load_coco_annotations(path: str) -> Dict:
    """Read and check a COCO instance annotation file.

    Raises:
        AnnotationError: The file is not JSON (the message gives the line and column), lacks
            ``images``/``annotations``/``categories``, or annotations refer to categories or
            images that the file does not define (the message names them).
    """
    data = _read_json(path)
    _check_layout(data, path)
    _check_references(data, path, {c['id'] for c in data['categories']},
                      {i['id'] for i in data['images']})
    return data


def check_coco_annotations(path: str, profile: Dict = None) -> List[str]:
    """Check a COCO instance annotation file as :func:`load_coco_annotations` does (same
    errors), keeping nothing but the ``file_name`` of each image, which it returns.

    ``profile``, a dict, receives the seconds spent reading and parsing (``'parse'``),
    checking (``'validate'``) and freeing the parsed file (``'free'``), and those of the
    exact re-reading (``'exact'``) where there was one.
    """
    profile = {} if profile is None else profile
    start = time.perf_counter()
    gc_enabled = gc.isenabled()
    gc.disable()  # only containers of plain values are built: no cycles to collect
    try:
        data = _read_json(path, lean=True)  # a JSON error raises here, as it would below
        profile['parse'] = time.perf_counter() - start
        start = time.perf_counter()
        try:
            _check_layout(data, path)
            category_ids = {c['id'] for c in data['categories']}
            image_ids = {i['id'] for i in data['images']}
            # A float id (the lean reading's placeholder) could match another one: decide
            # such files on their real values.
            exact = _FLOAT_PLACEHOLDER in category_ids or _FLOAT_PLACEHOLDER in image_ids
            if not exact:
                _check_references(data, path, category_ids, image_ids)
                names = [i['file_name'] for i in data['images']]
                exact = not all(type(n) is str for n in names)
        except Exception:  # a fault: raise it as the exact reading words it
            exact = True
        profile['validate'] = time.perf_counter() - start
        start = time.perf_counter()
        del data
        profile['free'] = time.perf_counter() - start
        if exact:
            start = time.perf_counter()
            data = load_coco_annotations(path)
            names = [i['file_name'] for i in data['images']]
            del data
            profile['exact'] = time.perf_counter() - start
        return names
    finally:
        if gc_enabled:
            gc.enable()
