"""Print the README's preset tables (XCiT, CrossViT), parameter counts from the built models.

    python tools/analysis_tools/param_table.py              # both tables
    python tools/analysis_tools/param_table.py crossvit     # one of them

Each table goes under its README heading (printed above it); tests/test_param_counts.py
fails when the README's tables differ from these. The tables and counts are made by
:mod:`xcit_dense.models.summary`.
"""
import argparse

from xcit_dense.models.summary import FAMILIES, README_HEADINGS, markdown_table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('families', nargs='*', metavar='FAMILY',
                        help=f'tables to print, of {", ".join(FAMILIES)} (default: all)')
    args = parser.parse_args()
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:  # not argparse's choices: with nargs='*' they reject the empty default
        parser.error(f'unknown FAMILY {", ".join(unknown)}; choose from {", ".join(FAMILIES)}')
    for i, family in enumerate(args.families or FAMILIES):
        print(('\n' if i else '') + f'README section {README_HEADINGS[family]!r}:\n')
        print(markdown_table(family))


if __name__ == '__main__':
    main()
