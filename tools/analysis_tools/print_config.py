"""Print a config with its bases resolved (and --cfg-options applied).

    python tools/analysis_tools/print_config.py configs/maskrcnn_xcit_s12_p8_coco.py
"""
import argparse

from mmengine.config import Config, DictAction


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings, key=value')
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    print(cfg.pretty_text)


if __name__ == '__main__':
    main()
