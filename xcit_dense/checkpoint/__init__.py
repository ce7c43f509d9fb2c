"""Reading XCiT and CrossViT checkpoints in every format users hold and loading them into the
backbones."""
from .convert import convert_xcit_state_dict, detect_format
from .crossvit import convert_crossvit_state_dict, load_crossvit_checkpoint
from .io import load_state_dict_file
from .load import load_backbone_checkpoint, load_init_cfg, load_xcit_checkpoint

__all__ = ['convert_crossvit_state_dict', 'convert_xcit_state_dict', 'detect_format',
           'load_backbone_checkpoint', 'load_crossvit_checkpoint', 'load_init_cfg',
           'load_state_dict_file', 'load_xcit_checkpoint']
