"""``rljaxinterp train ppo|dqn --env ENV --out FOLDER [--field value ...]``.

Every config field is a flag (``--num-envs 16``, ``--anneal-lr false``,
``--model-kwargs '{"hidden": [64, 64]}'``); unset flags keep the environment's preset
(``rl_runs.PPO_PRESETS``/``DQN_PRESETS``). Running again on the same folder resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing

from rljaxinterp.agents.dqn import DQNConfig
from rljaxinterp.agents.ppo import PPOConfig

_HELP = {"ppo": "PPO (PureJaxRL style) on a single-agent task",
         "dqn": "DQN with an on-device replay buffer on a single-agent task"}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false; got {text!r}")


def _flag_type(cls: type, field: dataclasses.Field):
    hint = typing.get_type_hints(cls)[field.name]
    if hint is bool:
        return _bool
    if hint in (int, float, str):
        return hint
    return json.loads  # mappings


def add_train_parsers(train_subparsers: argparse._SubParsersAction) -> None:
    """Register ``ppo`` and ``dqn`` under ``rljaxinterp train``."""
    for kind, cls in (("ppo", PPOConfig), ("dqn", DQNConfig)):
        p = train_subparsers.add_parser(kind, help=_HELP[kind], description=cls.__doc__)
        p.add_argument("--env", default="CartPole-v1", help="single-agent task (default: CartPole-v1)")
        p.add_argument("--out", required=True, help="run folder (resumed if it exists)")
        for field in dataclasses.fields(cls):
            if field.name == "env":
                continue
            p.add_argument("--" + field.name.replace("_", "-"), dest=field.name,
                           type=_flag_type(cls, field), help=f"default: preset or {_default(field)!r}")
        p.add_argument("--quiet", action="store_true", help="no progress bar or per-segment lines")
        p.set_defaults(run=run_train, rl_kind=kind, rl_config_cls=cls)


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


def config_from_args(args: argparse.Namespace):
    from rljaxinterp.agents.rl_runs import default_config

    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(args.rl_config_cls)
               if f.name != "env" and getattr(args, f.name) is not None}
    return default_config(args.rl_kind, args.env, **changes)


def run_train(args: argparse.Namespace) -> int:
    from rljaxinterp.agents.rl_runs import train

    config = config_from_args(args)
    train(config, args.out, progress=not args.quiet)
    print(f"run written to {args.out}")
    return 0
