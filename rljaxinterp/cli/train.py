"""``rljaxinterp train KIND --env ENV --out FOLDER [--field value ...]`` and ``rljaxinterp eval RUN``.

Every registered agent kind (alphazero, ppo, dqn, ...) gets a sub-command whose flags are
its config fields (``--num-envs 16``, ``--anneal-lr false``, ``--model-kwargs '{"hidden":
[64, 64]}'``); unset flags keep the environment's preset. ``--preset cpu|accelerator|auto``
picks the preset table (auto: the accelerator one on a GPU/TPU backend); the choice is
printed when training starts and AlphaZero records it in config.json. Running again on the
same folder resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing

from rljaxinterp.cli import help_of
from rljaxinterp.runs import KINDS, default_config, load_run, train
from rljaxinterp.runs.presets import CHOICES, resolve

DEFAULT_ENV = {"alphazero": "tic_tac_toe"}  # other kinds: the config class's default env


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


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


def presets_text(kind) -> str:
    """Every env's preset per backend, as ``--help`` shows it: the flags a preset sets beyond
    the defaults."""
    def flags(preset) -> str:
        text = ", ".join(f"--{k.replace('_', '-')} {v if isinstance(v, str) else json.dumps(v)}" for k, v in preset.items())
        return text or "the defaults"

    def table(presets, fallback) -> list[str]:
        lines = [f"  {env}: {flags(preset)}" for env, preset in presets.items()]
        return lines + ([f"  any other env: {flags(fallback)}"] if fallback else [])

    cpu = table(kind.presets, kind.fallback_preset)
    if not cpu:
        return ""
    if kind.accelerator_presets is None:
        head = ("presets (unset flags take these for the chosen --env; the same for --preset cpu and "
                "accelerator):")
        return "\n".join([head, *cpu])
    accelerator = table(kind.accelerator_presets, kind.accelerator_fallback)
    head = ("presets (unset flags take these for the chosen --env and --preset; "
            "--preset auto picks accelerator on a GPU/TPU backend, else cpu):")
    return "\n".join([head, "--preset cpu:", *cpu, "--preset accelerator:", *accelerator])


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    train_parser = subparsers.add_parser("train", help=help_of("train"))
    kinds = train_parser.add_subparsers(dest="algorithm", required=True)
    for name, kind in KINDS.items():
        cls = kind.config_cls
        p = kinds.add_parser(name, help=(cls.__doc__ or name).strip().splitlines()[0], description=cls.__doc__,
                             epilog=presets_text(kind), formatter_class=argparse.RawDescriptionHelpFormatter)
        env_field = next((f for f in dataclasses.fields(cls) if f.name == "env"), None)
        if env_field is not None:  # kinds without one (distill) take their env from another run
            env = DEFAULT_ENV.get(name, _default(env_field))
            p.add_argument("--env", default=env, help=f"environment (default: {env})")
            p.add_argument("--preset", choices=CHOICES, default="auto",
                           help="preset table: cpu, accelerator, or auto (accelerator on a GPU/TPU "
                                "backend, else cpu; default: auto)")
        p.add_argument("--out", required=True, help="run folder (resumed if it holds the same config)")
        for field in dataclasses.fields(cls):
            if field.name in ("env", "preset"):
                continue
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            p.add_argument("--" + field.name.replace("_", "-"), dest=field.name, type=_flag_type(cls, field),
                           required=required, help="required" if required else f"default: preset or {_default(field)!r}")
        p.add_argument("--quiet", action="store_true", help="no progress bar or summary lines")
        p.set_defaults(run=run_train, kind=name)

    ev = subparsers.add_parser("eval", help=help_of("eval"))
    ev.add_argument("run_dir")
    ev.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    ev.add_argument("--games", type=int, default=64, help="AlphaZero: games per seat against each opponent")
    ev.add_argument("--simulations", type=int, help="AlphaZero: search simulations (default: the run's)")
    ev.add_argument("--episodes", type=int, default=64, help="PPO/DQN: episodes to play")
    ev.set_defaults(run=run_eval)


def config_from_args(args: argparse.Namespace):
    """The preset of ``args.env`` for ``args.kind`` with every given flag applied."""
    cls = KINDS[args.kind].config_cls
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
               if f.name not in ("env", "preset") and getattr(args, f.name, None) is not None}
    if not hasattr(args, "env"):
        return cls(**changes)
    preset = default_config(args.kind, args.env, getattr(args, "preset", "auto"))
    if "model" in changes and "model_kwargs" not in changes and changes["model"] != getattr(preset, "model", None):
        changes["model_kwargs"] = {}  # the preset's kwargs belong to another model kind
    return preset.replace(**changes) if hasattr(preset, "replace") else dataclasses.replace(preset, **changes)


def preset_line(args: argparse.Namespace) -> str | None:
    """The line printed as training starts: which preset, and why (None for kinds without presets)."""
    if not hasattr(args, "env"):
        return None
    name = resolve(args.preset)
    if args.preset == "auto":
        import jax

        why = f"auto: jax backend is {jax.default_backend()}"
    else:
        why = "chosen by --preset"
    if KINDS[args.kind].accelerator_presets is None:
        why += f"; {args.kind} has one preset table for every backend"
    return f"preset: {name} ({why})"


def run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    line = preset_line(args)
    if line:
        print(line, flush=True)
    train(config, args.out, progress=not args.quiet)
    print(f"run written to {args.out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    run = load_run(args.run_dir)
    if run.kind.name == "alphazero":
        report = run.evaluate(args.step, games=args.games, num_simulations=args.simulations)
    else:
        returns = run.evaluate(args.step, num_episodes=args.episodes)
        report = {"run": args.run_dir, "step": run.steps[-1] if args.step is None else args.step, "episodes": len(returns),
                  "mean_return": float(returns.mean()), "std_return": float(returns.std())}
    print(json.dumps(report, indent=2))
    return 0
