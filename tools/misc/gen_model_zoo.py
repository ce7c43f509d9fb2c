"""Write the model tables of the docs from the metafiles (configs/*/metafile.yml).

    python tools/misc/gen_model_zoo.py            # rewrite the stale tables
    python tools/misc/gen_model_zoo.py --check    # exit 1 naming the stale files

The tables: each metafile folder's README.md (its results), the README's model-zoo summary
and docs/model_zoo.md (every model), each between its marker comments, made by
:mod:`xcit_dense.docs`.
"""
import argparse
import sys

from xcit_dense import docs
from xcit_dense.docs import ROOT


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 if a generated table is out of date')
    parser.add_argument('--root', default=ROOT, help='the repository (default: this one)')
    args = parser.parse_args()
    try:
        if args.check:
            stale = docs.check(args.root)
            for path in stale:
                print(f'{path}: generated table out of date; '
                      'run python tools/misc/gen_model_zoo.py')
            return 1 if stale else 0
        for path in docs.write(args.root):
            print(f'wrote {path}')
    except (OSError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
