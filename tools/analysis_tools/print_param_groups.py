"""Print the learning rate and weight decay that a config's optimizer gives each part of its
model (pretrained weights are not loaded; SyncBN runs as BN):

    python tools/analysis_tools/print_param_groups.py \\
        configs/mask_rcnn/mask-rcnn_xcit-s12-p8_fpn_lrd-ms-crop-3x_coco.py [--per-parameter]
"""
import argparse
import logging
import os

from mmengine.config import DictAction
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import xcit_dense  # noqa: F401  (registers modules)
from xcit_dense.engine import build_analysis_model, config_scope, load_run_config, short_errors
from xcit_dense.engine.optim import format_param_groups


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--per-parameter', action='store_true',
                        help='one row per parameter instead of per part of the model')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings, key=value')
    args = parser.parse_args(argv)
    cfg = load_run_config(args.config, args.cfg_options)
    model = build_analysis_model(cfg)
    # mmengine logs every parameter's paramwise options at INFO: keep warnings only
    MMLogger.get_instance('print_param_groups', log_level=logging.WARNING)
    with DefaultScope.overwrite_default_scope(config_scope(cfg)):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    print(format_param_groups(model, wrapper.optimizer, args.per_parameter))


if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
