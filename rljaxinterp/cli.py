"""Command line: ``rljaxinterp <command> ...``; each command lives in its own module and
registers a sub-parser here."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from rljaxinterp import quickstart
    from rljaxinterp.interp import commands as interp_commands
    from rljaxinterp.interp import report

    parser = argparse.ArgumentParser(prog="rljaxinterp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    quickstart.add_parser(commands)
    report.add_parser(commands)
    interp_commands.add_parsers(commands)
    try:  # agents register `train` and `eval` once they exist
        from rljaxinterp.agents import commands as agent_commands
    except ImportError:
        agent_commands = None
    if agent_commands is not None:
        agent_commands.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
