"""Command-line mistakes caught before a run prints anything: ``--cfg-options`` keys that the
config does not have, a model that does not build, a checkpoint that does not exist, cannot be
read safely or does not fit the model; each reported as one short message naming the
culprit."""
import contextlib
import difflib
import os
import sys
from typing import Iterator, Optional

from ..checkpoint import CheckpointMismatchError, CheckpointReadError
from ..datasets.validate import AnnotationError
from .data_check import DatasetNotFoundError


class UsageError(Exception):
    """A mistake on the command line or in a config, reported without a traceback."""


def check_cfg_options(cfg, options: Optional[dict], allow_new_keys: bool = False) -> None:
    """Refuse ``--cfg-options`` keys that the config does not have (a typo would otherwise
    add a key nobody reads), naming the closest existing one; ``allow_new_keys`` lets users
    add keys on purpose."""
    tree = cfg.to_dict()
    for key in options or {}:
        node, path = tree, []
        for part in key.split('.'):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node, path = node[int(part)], path + [part]
            elif isinstance(node, dict) and part in node:
                node, path = node[part], path + [part]
            elif allow_new_keys:
                break
            else:
                here = '.'.join(path) or 'the top level'
                siblings = list(node) if isinstance(node, dict) else []
                close = difflib.get_close_matches(part, siblings, n=1)
                if close:
                    hint = f"did you mean {'.'.join(path + close)}?"
                elif isinstance(node, (list, tuple)):
                    hint = f'{here} has {len(node)} items'
                elif not isinstance(node, dict):
                    hint = f'{here} is {node!r}'
                else:
                    hint = f'keys at {here}: {", ".join(sorted(siblings))}'
                raise UsageError(f'--cfg-options {key}: the config has no key '
                                 f"{'.'.join(path + [part])}; {hint} (--allow-new-keys adds "
                                 'keys on purpose)')


def check_model_builds(cfg):
    """Build the config's model once (no weights loaded) so that an unknown arch, type or
    keyword is reported before the run starts; returns the model, against which the tools
    check checkpoints before the run (``cfg`` is left as it was, see
    :func:`~xcit_dense.engine.build.build_model`)."""
    from .build import build_model  # build imports launch, which imports this module
    try:
        return build_model(cfg)
    except UsageError:
        raise
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise UsageError(f'the model of the config does not build: {message}') from e


def check_backbone_weights(model) -> None:
    """Load the pretrained weights that the model's XCiT or CrossViT backbone names in its
    ``init_cfg`` (as the runner will), so that a checkpoint that cannot be read or does not
    fit the backbone is reported before the run starts, in the first process of a job only
    (see :func:`~xcit_dense.engine.data_check.job_rank`: its error ends the job). Other
    backbones are left to the runner.

    Raises:
        CheckpointReadError, CheckpointMismatchError: The reader's or the backbone's error,
            with a last line saying where the backbone's weights are set.
    """
    from ..models.base import DenseBackbone
    from .data_check import job_rank
    backbone = getattr(model, 'backbone', None)
    if not (isinstance(backbone, DenseBackbone) and backbone.init_cfg) or job_rank() != 0:
        return
    try:
        backbone.init_weights()
    except (CheckpointMismatchError, CheckpointReadError) as e:
        raise type(e)(
            f"{e}\nThe backbone's weights are model.backbone.init_cfg's (model.pretrained goes "
            'there too); if a base config set them for another backbone, set '
            'model.pretrained=None.') from e


def check_checkpoint_exists(checkpoint: str) -> None:
    """A local checkpoint path must exist (URLs are checked when downloaded)."""
    if not checkpoint.startswith(('http://', 'https://')) and not os.path.isfile(
            os.path.expanduser(checkpoint)):
        raise UsageError(f'checkpoint {checkpoint} does not exist')


@contextlib.contextmanager
def short_errors(prog: str) -> Iterator[None]:
    """Report mistakes (:class:`UsageError`, missing or broken data, a checkpoint that does not
    fit the model) as ``prog: error: message`` and exit with status 2, like argparse; other
    errors keep their traceback."""
    try:
        yield
    except UsageError as e:
        sys.stderr.write(f'{prog}: error: {e}\n')
        sys.exit(2)
    except (DatasetNotFoundError, AnnotationError, CheckpointMismatchError,
            CheckpointReadError) as e:
        sys.stderr.write(f'{prog}: error: {type(e).__name__}: {e}\n')
        sys.exit(2)
