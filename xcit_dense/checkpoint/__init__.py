"""Reading XCiT checkpoints in every format users hold and loading them into the backbone."""
from .convert import convert_xcit_state_dict, detect_format
from .io import load_state_dict_file
from .load import load_xcit_checkpoint

__all__ = ['convert_xcit_state_dict', 'detect_format', 'load_state_dict_file',
           'load_xcit_checkpoint']
