"""Print a config with its bases resolved and --cfg-options applied, as tools/train.py runs it.

    python tools/analysis_tools/print_config.py configs/maskrcnn_xcit_s12_p8_coco.py
"""
import argparse
import os

from mmengine.config import DictAction

from xcit_dense.engine import load_run_config, make_resumable, short_errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--cfg-options', '--options', nargs='+', action=DictAction,
                        dest='cfg_options', help='override settings, key=value')
    parser.add_argument('--allow-new-keys', action='store_true',
                        help='let --cfg-options add keys the config does not have')
    args = parser.parse_args()
    cfg = load_run_config(args.config, args.cfg_options, allow_new_keys=args.allow_new_keys)
    make_resumable(cfg)
    print(cfg.pretty_text)


if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
