"""The arguments every findings experiment takes, and opening its agents and output folder."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from rljaxinterp.findings.agents import AgentSet, tic_tac_toe_agents
from rljaxinterp.reporting import fresh_folder


def experiment_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """``--agents`` (seeded agents, default 3), ``--tier`` (quick: smaller agents and fewer
    null draws; full), ``--base`` (agents' folders, ``<base>/seed{k}``; default by tier),
    ``--out`` (never overwritten: ``out-N`` when taken), ``--seed`` (null draws) and
    ``--readme`` (a README whose findings block this run rewrites)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=3, help="independently seeded agents (default 3)")
    parser.add_argument("--tier", choices=["quick", "full"], default="full")
    parser.add_argument("--base", default=None, help="agents' run folders <base>/seed{k} (default runs/ttt_agents_<tier>)")
    parser.add_argument("--out", default=out)
    parser.add_argument("--seed", type=int, default=0, help="seed of the null draws")
    parser.add_argument("--readme", default=None, help="rewrite this README's findings block with the results")
    return parser


def add_play_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--play-games`` (games of the agents' own play whose positions are studied; default by
    tier) and ``--iterations`` (train the agents this long instead of the tier's: smoke runs);
    read back with :func:`training_changes`."""
    parser.add_argument("--play-games", type=int, default=None, help="games of play for positions (default: by tier)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="train the agents this many iterations instead of the tier's (smoke tests)")
    return parser


def training_changes(args: argparse.Namespace) -> dict:
    """Config changes the command line asks of the agents (``--iterations``)."""
    return {"iterations": args.iterations} if getattr(args, "iterations", None) else {}


def output_folder(args: argparse.Namespace) -> Path:
    """A fresh folder for the report: ``--out``, with ``-quick`` added on the quick tier (the
    tiers never share a folder), or ``-N`` after it when taken."""
    if args.agents < 1:
        raise SystemExit(f"--agents {args.agents}: need at least 1 (the rules need 3 for a finding)")
    out = Path(args.out + ("-quick" if args.tier == "quick" and not args.out.endswith("quick") else ""))
    return fresh_folder(out, "report.md")


def open_agents(args: argparse.Namespace, log: Callable[[str], None] = print) -> tuple[AgentSet, Path]:
    """The experiment's tic-tac-toe agents (trained or reused) and a fresh output folder."""
    out = output_folder(args)
    return tic_tac_toe_agents(args.base or f"runs/ttt_agents_{args.tier}", args.agents, args.tier, log=log), out
