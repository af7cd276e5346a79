"""Command line: ``rljaxinterp <command> ...``; one module per command group registers its
sub-parsers here."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from rljaxinterp.cli import bench, interp, quickstart, report, sae, search, train

    parser = argparse.ArgumentParser(prog="rljaxinterp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    quickstart.add_parser(commands)
    report.add_parser(commands)
    interp.add_parsers(commands)
    sae.add_parsers(commands)
    search.add_parsers(commands)
    train.add_parsers(commands)
    bench.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
