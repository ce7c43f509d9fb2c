"""Reading XCiT and CrossViT checkpoints in every format users hold and loading them into the
backbones: a family-free loader (:mod:`.load`) and each family's formats (:mod:`.xcit`,
:mod:`.crossvit`)."""
from .crossvit import CROSSVIT_CHECKPOINTS, convert_crossvit_state_dict, load_crossvit_checkpoint
from .io import (CheckpointNotFoundError, CheckpointReadError, download_checkpoint,
                 load_state_dict_file, source_of)
from .load import (CheckpointFamily, CheckpointMismatchError, adapt_loaded_state,
                   describe_checkpoint, load_backbone_checkpoint, load_init_cfg,
                   pretrained_to_init_cfg, unwrap_state_dict)
from .xcit import XCIT_CHECKPOINTS, convert_xcit_state_dict, load_xcit_checkpoint

__all__ = ['CROSSVIT_CHECKPOINTS', 'CheckpointFamily', 'CheckpointMismatchError',
           'CheckpointNotFoundError', 'CheckpointReadError',
           'XCIT_CHECKPOINTS', 'adapt_loaded_state', 'convert_crossvit_state_dict',
           'convert_xcit_state_dict', 'describe_checkpoint', 'download_checkpoint',
           'load_backbone_checkpoint', 'load_crossvit_checkpoint', 'load_init_cfg',
           'load_state_dict_file', 'load_xcit_checkpoint', 'pretrained_to_init_cfg',
           'source_of', 'unwrap_state_dict']
