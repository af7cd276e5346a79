"""``rljaxinterp train alphazero ...`` and ``rljaxinterp eval RUN``."""

from __future__ import annotations

import argparse
import dataclasses
import json

from rljaxinterp.agents.config import POLICIES, AlphaZeroConfig

# Flags that override the per-game default config; names follow AlphaZeroConfig fields.
_OVERRIDES = {
    "iterations": int, "num_simulations": int, "games": int, "unroll_length": int,
    "exploration": float, "value_target_mix": float, "learning_rate": float, "final_learning_rate_fraction": float,
    "updates_per_iteration": int, "minibatch_size": int, "replay_size": int, "seed": int,
    "checkpoint_every": int, "max_num_considered_actions": int,
}


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train an agent into a run folder (resumes if present)")
    algos = train.add_subparsers(dest="algorithm", required=True)
    az = algos.add_parser("alphazero", help="AlphaZero with mctx search")
    az.add_argument("--env", default="tic_tac_toe", help="game name (default: tic_tac_toe)")
    az.add_argument("--out", required=True, help="run folder")
    az.add_argument("--model", help="model kind: mlp, conv, transformer")
    az.add_argument("--model-kwargs", type=json.loads, help='JSON, e.g. \'{"hidden": [128, 128]}\'')
    az.add_argument("--policy", choices=POLICIES)
    for name, typ in _OVERRIDES.items():
        az.add_argument("--" + name.replace("_", "-"), dest=name, type=typ)
    az.add_argument("--quiet", action="store_true", help="no progress bar or per-iteration lines")
    az.set_defaults(run=run_train)
    try:  # other agent kinds (ppo, dqn) register themselves under `train` when present
        from rljaxinterp.agents import rl_commands
    except ImportError:
        rl_commands = None
    if rl_commands is not None and hasattr(rl_commands, "add_train_parsers"):
        rl_commands.add_train_parsers(algos)

    ev = subparsers.add_parser("eval", help="evaluate a run folder's latest (or given) checkpoint")
    ev.add_argument("run_dir")
    ev.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    ev.add_argument("--games", type=int, default=64, help="games per seat against each opponent")
    ev.add_argument("--simulations", type=int, help="search simulations (default: the run's)")
    ev.set_defaults(run=run_eval)


def config_from_args(args: argparse.Namespace) -> AlphaZeroConfig:
    from rljaxinterp.agents.configs import default_config

    changes = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    for name in ("model", "policy"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.model_kwargs is not None:
        changes["model_kwargs"] = args.model_kwargs
    elif args.model is not None and args.model != default_config(args.env).model:
        changes["model_kwargs"] = {}  # the default's kwargs belong to another model kind
    return dataclasses.replace(default_config(args.env), **changes)


def run_train(args: argparse.Namespace) -> int:
    from rljaxinterp.agents.runs import train

    config = config_from_args(args)
    train(config, args.out, progress=not args.quiet)
    print(f"run written to {args.out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from rljaxinterp.agents.evaluate import evaluate_run

    report = evaluate_run(args.run_dir, step=args.step, games=args.games, num_simulations=args.simulations)
    print(json.dumps(report, indent=2))
    return 0
