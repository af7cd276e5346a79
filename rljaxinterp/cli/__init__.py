"""Command line: ``rljaxinterp <command> ...``; one module per command group registers its
sub-parsers here.

Only the invoked command's module is imported (JAX, pgx and the concept libraries take
seconds to import), so ``rljaxinterp --help`` and a command's ``--help`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import MutableMapping

from rljaxinterp import user_cache

# command -> (module under rljaxinterp.cli, one-line help shown by ``rljaxinterp --help``)
COMMANDS = {
    "quickstart": ("quickstart", "train and interpret a tic-tac-toe agent"),
    "report": ("report", "the interpretability report of a run (tic-tac-toe: the full report over training)"),
    "sweep": ("interp", "patching / attribution patching / ablation sweep of a run"),
    "probe": ("interp", "probe every site of a run for its env's concepts, with controls"),
    "attribute": ("interp", "gradients / integrated gradients / occlusion of a metric"),
    "factorise": ("interp", "NMF or PCA of a site's activations, factors drawn on the board"),
    "steer": ("interp", "add a concept's direction at a site: one-step effect and whole-episode behaviour"),
    "ablate": ("interp", "ablate units of a site while the agent plays: behaviour against random units"),
    "sae": ("sae", "train a grid of sparse autoencoders on a run and draw a dashboard"),
    "search": ("search", "an AlphaZero run's search trees, summarised and drawn"),
    "train": ("train", "train an agent into a run folder (resumes if present)"),
    "eval": ("train", "evaluate a run folder's latest (or given) checkpoint"),
    "bench": ("bench", "benchmarks of interpretability methods against known truth"),
    "launch": ("launch", "run a command as N local processes of one JAX program (jax.distributed)"),
}
GROUP_HOOKS = ("add_parser", "add_parsers")


class ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, unless it is None or the help already says."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, argparse.SUPPRESS, False) or "default" in text:
            return text
        return super()._get_help_string(action) if text else "(default: %(default)s)"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` only that command's module is imported and the others
    are listed by name and help."""
    parser = argparse.ArgumentParser(prog="rljaxinterp", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = None if command is None else COMMANDS.get(command, (None,))[0]
    loaded = set()
    for name, (module, help_text) in COMMANDS.items():
        if command is not None and module != wanted:
            commands.add_parser(name, help=help_text, add_help=False)
        elif module not in loaded:
            loaded.add(module)
            mod = importlib.import_module(f"{__name__}.{module}")
            next(getattr(mod, h) for h in GROUP_HOOKS if hasattr(mod, h))(commands)
    return parser


def help_of(command: str) -> str:
    return COMMANDS[command][1]


def use_compile_cache(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Turn on JAX's persistent compilation cache for this run: a second run of the same config
    loads its compiled programs instead of compiling them again (the same programs, so the same
    results). JAX reads ``JAX_COMPILATION_CACHE_DIR`` when it is imported, so this runs first.
    The folder is ``$RLJAXINTERP_CACHE/jax`` (default ``~/.cache/rljaxinterp/jax``);
    ``RLJAXINTERP_COMPILE_CACHE`` names another folder or is ``off``; an explicit
    ``JAX_COMPILATION_CACHE_DIR`` wins. Returns the folder in use, or None."""
    choice = environ.get("RLJAXINTERP_COMPILE_CACHE", "")
    if choice.lower() in ("off", "0", "false", "no"):
        return None
    return environ.setdefault("JAX_COMPILATION_CACHE_DIR", choice or str(user_cache(environ) / "jax"))


def main(argv: list[str] | None = None) -> int:
    use_compile_cache()
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command != "launch":
        join_processes()  # before the parser: building it may ask JAX for its backend
    args = build_parser(command or "").parse_args(argv)
    return int(args.run(args) or 0)


def join_processes() -> None:
    """Join a multi-process program when the environment asks (``rljaxinterp launch``, or
    ``RLJAXINTERP_DISTRIBUTED=auto`` under a cluster launcher); before any JAX work."""
    from rljaxinterp.distributed import DistributedError, initialize_from_env

    try:
        initialize_from_env()
    except DistributedError as err:
        raise SystemExit(f"rljaxinterp: {err}") from None


if __name__ == "__main__":
    sys.exit(main())
