"""Mistakes caught before a run prints anything: a model that does not build, a checkpoint
that does not exist, cannot be read safely or does not fit the backbone; each reported as one
short message naming the culprit (:func:`~xcit_dense.engine.errors.short_errors`).
``--cfg-options`` keys are checked where the config is loaded
(:func:`~xcit_dense.engine.config.check_cfg_options`)."""
import os

from ..checkpoint import CheckpointMismatchError, CheckpointReadError
from ..models.base import DenseBackbone
from .build import build_model
from .data_check import job_rank
from .errors import UsageError


def check_model_builds(cfg):
    """Build the config's model once (no weights loaded) so that an unknown arch, type or
    keyword is reported before the run starts; returns the model, against which the tools
    check checkpoints before the run (``cfg`` is left as it was, see
    :func:`~xcit_dense.engine.build.build_model`)."""
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
