"""The repository's configs for tests: grouped by the model they build."""
import json
import os
from typing import List, Sequence

from mmengine.config import Config

from .tool_runs import ROOT


def configs_by_model(paths: Sequence[str], ignore: Sequence[str] = ()) -> List[List[str]]:
    """``paths`` (configs, relative to the repository) grouped by the model they build, the
    model keys in ``ignore`` aside: the 1x and 3x schedules, the AMP and layer-decay variants
    (and, where a test sets its own test_cfg, the slide variants) build the same model, so a
    test of the model builds it once per group. Groups keep the order of ``paths``."""
    groups = {}
    for path in paths:
        model = Config.fromfile(os.path.join(ROOT, path)).model.to_dict()
        for key in ignore:
            model.pop(key, None)
        groups.setdefault(json.dumps(model, sort_keys=True, default=str), []).append(path)
    return list(groups.values())


def group_id(paths: Sequence[str]) -> str:
    """A test id for a group of configs: the first, and how many others build its model."""
    return paths[0] + (f' (+{len(paths) - 1} of the same model)' if len(paths) > 1 else '')
