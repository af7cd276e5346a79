"""Agent kinds a run folder can hold, and the one small protocol each implements.

A kind is a config class (JSON round-trippable, with ``to_dict``/``from_dict``), per-env
presets, and a ``Trainer`` built from a config: ``init()``, ``advance(state, n)`` (``n``
steps of training, jitted, returning the metric rows to log), ``step(state)``, plus the
sizes ``total``, ``every`` (steps between checkpoints) and ``chunk`` (steps per call). The
run layer (``runs.train``) does everything else: folders, checkpoints, resume, metrics,
curves and progress output. A new agent registers with :func:`register_kind`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np

from rljaxinterp.runs.presets import resolve as resolve_preset


class Trainer(Protocol):
    """One config's compiled training, as the run layer drives it."""

    agent: Any  # has .env, .model, .policy_value(params, obs), .init(key)
    total: int  # steps in the whole run (iterations, updates)
    every: int  # steps between checkpoints
    chunk: int  # steps per advance() call (a divisor of ``every``)
    shardings: Any  # target shardings of the state, or None for one device

    def init(self) -> Any: ...
    def step(self, state: Any) -> int: ...
    def advance(self, state: Any, n: int) -> tuple[Any, list[dict]]: ...
    def summary(self, rows: list[dict]) -> dict: ...
    def describe(self, rows: list[dict]) -> str: ...


@dataclasses.dataclass(frozen=True)
class RunKind:
    """``curves``: (panel title, x field, metric fields) of learning_curve.png.
    ``extendable``: config fields that may change when a run is resumed, to lengthen it or
    end it early (only kinds whose training does not depend on its length have any).
    ``presets``/``fallback_preset`` are the "cpu" preset; ``accelerator_presets`` (and
    ``accelerator_fallback``) the "accelerator" one, or None when the CPU values serve every
    backend (see :mod:`rljaxinterp.runs.presets`)."""

    name: str
    config_cls: type
    make_trainer: Callable[..., Trainer]
    step_name: str
    presets: Mapping[str, Mapping[str, Any]]
    curves: Sequence[tuple[str, str, Sequence[str]]]
    fallback_preset: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    evaluate: Callable[..., Any] | None = None
    make_agent: Callable[[Any], Any] | None = None  # reading a run needs only the agent
    extendable: Sequence[str] = ()
    accelerator_presets: Mapping[str, Mapping[str, Any]] | None = None
    accelerator_fallback: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def agent(self, config: Any) -> Any:
        """The agent of ``config``, without building (or sharding) its training step."""
        return self.make_trainer(config).agent if self.make_agent is None else self.make_agent(config)

    def preset_table(self, preset: str = "auto") -> tuple[Mapping[str, Mapping[str, Any]], Mapping[str, Any]]:
        """``(per-env values, fallback)`` of ``preset`` ("cpu", "accelerator" or "auto")."""
        if resolve_preset(preset) == "accelerator" and self.accelerator_presets is not None:
            return self.accelerator_presets, self.accelerator_fallback
        return self.presets, self.fallback_preset

    def default_config(self, env: str, preset: str = "auto", **changes: Any) -> Any:
        """The ``preset`` of ``env`` (or the kind's fallback), updated with ``changes``. A config
        class with a ``preset`` field (AlphaZero's) records the preset's name there."""
        name = resolve_preset(preset)
        table, fallback = self.preset_table(name)
        values = {**table.get(env, fallback), **changes}
        if any(f.name == "preset" for f in dataclasses.fields(self.config_cls)):
            values["preset"] = name
        return self.config_cls(env=env, **values)


def abstract_state(agent: Any) -> Any:
    """Shapes and dtypes of an agent's training state (no FLOPs)."""
    return jax.eval_shape(agent.init, jax.random.PRNGKey(agent.config.seed))


# -- AlphaZero -------------------------------------------------------------------------------
class AlphaZeroTrainer:
    """One jitted self-play + training iteration per call, games sharded over devices."""

    chunk = 1

    def __init__(self, config, devices: Sequence[jax.Device] | None = None):
        from rljaxinterp.agents.alphazero import make_agent
        from rljaxinterp.agents.parallel import (
            make_mesh,
            make_sharded_iteration,
            state_shardings,
            usable_devices,
        )

        self.config = config
        self.agent = make_agent(config)
        self.devices = usable_devices(config, devices)
        self.place, self.iteration = make_sharded_iteration(config, self.devices)
        self.shardings = (None if len(self.devices) == 1
                          else state_shardings(abstract_state(self.agent), make_mesh(self.devices)))
        self.total, self.every = config.iterations, config.checkpoint_every

    def init(self):
        from rljaxinterp.agents.alphazero import init_state

        return self.place(init_state(self.config))

    def step(self, state) -> int:
        return int(state.iteration)

    def advance(self, state, n: int):
        from rljaxinterp.agents.alphazero import iteration_key

        rows = []
        for i in range(self.step(state), self.step(state) + n):
            state, metrics = self.iteration(state, iteration_key(self.config, i))
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            rows.append({"iteration": i + 1, "env_steps": int(state.env_steps), **metrics})
        return state, rows

    def summary(self, rows: list[dict]) -> dict:
        return {k: v for k, v in rows[-1].items() if k not in ("iteration", "env_steps", "wall_time")}

    def describe(self, rows: list[dict]) -> str:
        return " ".join(f"{k}={v:.4g}" for k, v in self.summary(rows).items())


# -- PPO and DQN -----------------------------------------------------------------------------
def compiled_segments(kind: str, config, make_agent: Callable) -> tuple[Any, Callable, Callable]:
    """``(agent, jitted init, jitted segment)``, compiled once per config in a process."""
    from rljaxinterp.agents.common import compiled

    def build():
        agent = make_agent(config)
        return agent, jax.jit(agent.init), jax.jit(agent.segment, static_argnums=1)
    return compiled(kind, config, build)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN


def summarise(metrics: dict[str, np.ndarray], first_update: int, log_every: int) -> list[dict]:
    """One row per ``log_every`` updates: means, with episode returns weighted by episodes."""
    n = len(next(iter(metrics.values())))
    rows = []
    for lo in range(0, n, log_every):
        chunk = {k: np.asarray(v[lo:lo + log_every], np.float64) for k, v in metrics.items()}
        episodes = chunk["episodes"]
        row = {k: _finite(float(np.mean(v))) for k, v in chunk.items() if k not in ("episode_return", "episodes")}
        total = np.nansum(chunk["episode_return"] * episodes)
        row["episodes"] = int(episodes.sum())
        row["episode_return"] = _finite(float(total / episodes.sum())) if episodes.sum() else None
        rows.append({"update": first_update + min(lo + log_every, n), **row})
    return rows


class SegmentTrainer:
    """PPO/DQN: ``every`` updates as one jitted ``lax.scan`` per call (the last one shorter),
    so checkpoint boundaries depend only on the config and resuming is bit-identical."""

    shardings = None

    def __init__(self, kind: str, make_agent: Callable, log_every: int, config,
                 devices: Sequence[jax.Device] | None = None):
        if devices is not None and len(devices) > 1:
            raise ValueError(f"{kind} runs on one device; got devices={list(devices)}")
        self.kind, self.log_every, self.config = kind, log_every, config
        self.agent, self._init, self._segment = compiled_segments(kind, config, make_agent)
        self.total, self.every = config.num_updates, config.checkpoint_every
        self.chunk = self.every
        self.last: dict = {}

    def init(self):
        return self._init(jax.random.PRNGKey(self.config.seed))

    def step(self, state) -> int:
        return int(state.update)

    def advance(self, state, n: int):
        done, steps_before = self.step(state), int(state.env_steps)
        state, metrics = self._segment(state, n)
        metrics = jax.device_get(metrics)
        rows = summarise(metrics, done, self.log_every)
        per_update = (int(state.env_steps) - steps_before) // n
        for r in rows:
            r["env_steps"] = steps_before + (r["update"] - done) * per_update
        self.last = summarise(metrics, done, n)[0]  # the whole chunk, for checkpoints and logs
        return state, rows

    def summary(self, rows: list[dict]) -> dict:
        return self.last

    def describe(self, rows: list[dict]) -> str:
        ret, loss = self.last.get("episode_return"), self.last.get("loss")
        return f"return={'-' if ret is None else f'{ret:.2f}'} loss={'-' if loss is None else f'{loss:.4g}'}"


def _evaluate_episodes(run, step: int | None = None, num_episodes: int = 64, seed: int = 0) -> np.ndarray:
    """Returns of ``num_episodes`` full episodes of the checkpoint's policy (PPO samples, DQN is greedy)."""
    from rljaxinterp.agents.rl_common import evaluate

    params = run.params(step)
    play = jax.jit(lambda p, k: evaluate(run.agent.env, run.agent.act, p, k, num_episodes))
    return np.asarray(play(params, jax.random.PRNGKey(seed)))


def _evaluate_games(run, step: int | None = None, games: int = 64, num_simulations: int | None = None) -> dict:
    from rljaxinterp.eval.matches import evaluate_run

    return evaluate_run(run, step=step, games=games, num_simulations=num_simulations)


# -- the registry ------------------------------------------------------------------------------
KINDS: dict[str, RunKind] = {}


def register_kind(kind: RunKind) -> RunKind:
    """Make ``kind`` trainable and loadable by name (its config.json ``"agent"`` field)."""
    KINDS[kind.name] = kind
    return kind


def kind_named(name: str) -> RunKind:
    if name not in KINDS:
        raise ValueError(f"unknown agent kind {name!r}; registered kinds: {', '.join(KINDS)}")
    return KINDS[name]


def kind_of(config: Any) -> RunKind:
    for kind in KINDS.values():
        if type(config) is kind.config_cls:
            return kind
    raise TypeError(f"no registered agent kind has config class {type(config).__name__}; "
                    f"registered: {', '.join(f'{k.name} ({k.config_cls.__name__})' for k in KINDS.values())}")


def _register_builtin() -> None:
    from rljaxinterp.agents.alphazero import make_agent
    from rljaxinterp.agents.config import AlphaZeroConfig
    from rljaxinterp.runs.distill import DistillConfig, DistillTrainer, make_student
    from rljaxinterp.agents.dqn import DQNConfig, make_dqn
    from rljaxinterp.agents.ppo import PPOConfig, make_ppo
    from rljaxinterp.agents.seeds import DQNSeedsConfig, PPOSeedsConfig, seeds_agent
    from rljaxinterp.agents.tree_ppo import TreePPOConfig
    from rljaxinterp.agents.tree_ppo import make_agent as make_tree_agent
    from rljaxinterp.runs.seeds import SeedsTrainer
    from rljaxinterp.runs.tree_ppo import TreePPOTrainer
    from rljaxinterp.runs import presets

    register_kind(RunKind(
        "alphazero", AlphaZeroConfig, AlphaZeroTrainer, "iteration", presets.ALPHAZERO,
        curves=(("training loss", "iteration", ("loss", "policy_loss", "value_loss")),
                ("self-play", "iteration", ("selfplay_draw_rate", "root_value"))),
        fallback_preset=presets.ALPHAZERO_OTHER_GAMES, evaluate=_evaluate_games, make_agent=make_agent,
        accelerator_presets=presets.ALPHAZERO_ACCELERATOR,
        accelerator_fallback=presets.ALPHAZERO_ACCELERATOR_OTHER_GAMES))
    # DQN takes one gradient step per update, so its metric rows average more updates.
    for name, cls, make, log_every, table in (("ppo", PPOConfig, make_ppo, 1, presets.PPO),
                                              ("dqn", DQNConfig, make_dqn, 100, presets.DQN)):
        register_kind(RunKind(
            name, cls, lambda config, devices=None, name=name, make=make, log_every=log_every:
                SegmentTrainer(name, make, log_every, config, devices),
            "update", table,
            curves=(("mean episode return (training policy)", "env_steps", ("episode_return",)),
                    ("loss", "env_steps", ("loss",))),
            evaluate=_evaluate_episodes))
    for name, cls in (("ppo_seeds", PPOSeedsConfig), ("dqn_seeds", DQNSeedsConfig)):
        register_kind(RunKind(
            name, cls, SeedsTrainer, "update", {},
            curves=(("mean episode return (training policy), per seed", "env_steps", ("episode_return",)),
                    ("loss, per seed", "env_steps", ("loss",))),
            make_agent=seeds_agent))
    register_kind(RunKind(
        "tree_ppo", TreePPOConfig, TreePPOTrainer, "update", {},
        curves=(("training worlds: reward rate (chops per world-step), per seed", "env_steps", ("reward_rate",)),
                ("training worlds: extinct share, per seed", "env_steps", ("extinct",))),
        make_agent=make_tree_agent, extendable=("chunks", "total_timesteps")))
    register_kind(RunKind(
        "distill", DistillConfig, DistillTrainer, "step", {},
        curves=(("student loss (policy KL + value MSE)", "step", ("loss",)),
                ("held-out agreement with the teacher", "step", ("policy_kl", "value_mse", "top1_agreement"))),
        make_agent=make_student))


_register_builtin()
