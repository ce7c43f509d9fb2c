"""Checking a COCO-format annotation file before training, so that a broken one stops the run
at once with the culprits named, not deep inside a data loader worker."""
import json
from typing import Dict, List


class AnnotationError(ValueError):
    """An annotation file is not valid JSON or is inconsistent."""


def _sample(items: List, limit: int = 10) -> str:
    return ', '.join(map(str, items[:limit])) + (f' (and {len(items) - limit} more)'
                                                 if len(items) > limit else '')


def load_coco_annotations(path: str) -> Dict:
    """Read and check a COCO instance annotation file.

    Raises:
        AnnotationError: The file is not JSON (the message gives the line and column), lacks
            ``images``/``annotations``/``categories``, or annotations refer to categories or
            images that the file does not define (the message names them).
    """
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f'Annotation file {path} is not valid JSON: {e.msg} at line '
                              f'{e.lineno}, column {e.colno}') from e
    except UnicodeDecodeError as e:
        raise AnnotationError(f'Annotation file {path} is not UTF-8 text (binary or '
                              f'corrupt?): {e}') from e
    if not isinstance(data, dict):
        raise AnnotationError(f'Annotation file {path} holds a JSON {type(data).__name__}, '
                              'not a COCO object')
    missing = [k for k in ('images', 'annotations', 'categories') if k not in data]
    if missing:
        raise AnnotationError(f'Annotation file {path} has no {missing} (a COCO instance '
                              'file has images, annotations and categories)')
    category_ids = {c['id'] for c in data['categories']}
    image_ids = {i['id'] for i in data['images']}
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
    return data
