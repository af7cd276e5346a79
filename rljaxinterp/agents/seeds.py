"""Several seeds of one PPO or DQN config trained as one program, the PureJaxRL way (one
``jax.vmap`` over seeds of a jitted segment of updates), in one run folder.

Seeds are split from ``seed`` exactly as ``jax.vmap(agent.train)(jax.random.split(key,
seeds))`` splits them. The run is cut into ``chunks`` segments, each one checkpoint, so it
ends bit-identical to those segments run in a row (resumed or not); the one-call training,
compiled as one fused program, agrees to float rounding (about 1e-9 at first), which RL
training can amplify over many updates. with ``eval_levels`` every chunk ends with all
seeds' policies sampled on that many fresh levels of the task's training distribution, and
the means of ``env.episode_metrics`` logged per seed (behaviour over training).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from rljaxinterp.agents.common import compiled
from rljaxinterp.agents.dqn import DQNConfig, make_dqn
from rljaxinterp.agents.ppo import PPOConfig, make_ppo
from rljaxinterp.eval.levels import make_evaluator

EVAL_KEY = 1000  # the evaluation after chunk c uses PRNGKey(EVAL_KEY + c)


def _derive(config: Any) -> None:
    for name in ("seeds", "chunks", "eval_levels"):
        v = getattr(config, name)
        lo = 0 if name == "eval_levels" else 1
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= lo):
            raise ValueError(f"{type(config).__name__}.{name}={v!r} is not allowed; need an integer >= {lo}")
    updates = config.num_updates
    if updates < config.chunks or updates % config.chunks:
        raise ValueError(f"{type(config).__name__}.total_timesteps={config.total_timesteps!r} is not allowed: it "
                         f"gives {updates} updates, which {config.chunks} chunks must divide")
    object.__setattr__(config, "checkpoint_every", updates // config.chunks)


@dataclasses.dataclass(frozen=True)
class PPOSeedsConfig(PPOConfig):
    """``seeds`` PPO agents of one config; ``checkpoint_every`` follows from ``chunks``."""

    seeds: int = 3
    chunks: int = 10
    eval_levels: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        _derive(self)


@dataclasses.dataclass(frozen=True)
class DQNSeedsConfig(DQNConfig):
    """``seeds`` DQN agents of one config; ``checkpoint_every`` follows from ``chunks``."""

    seeds: int = 3
    chunks: int = 1
    eval_levels: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _derive(self)


@dataclasses.dataclass(frozen=True)
class SeedsAgent:
    """``config.seeds`` agents as one: state and params carry a leading seeds axis."""

    config: Any
    base: Any  # the one-seed agent (PPO, DQN): its pure functions are vmapped

    @property
    def env(self):
        return self.base.env

    @property
    def model(self):
        return self.base.model

    def init(self, key: jax.Array):
        return jax.vmap(self.base.init)(jax.random.split(key, self.config.seeds))

    def policy_value(self, params, observation):
        """Every seed's network on the same observations: outputs (seeds, batch, ...)."""
        return jax.vmap(self.base.policy_value, in_axes=(0, None))(params, observation)


def listed(x: Any) -> Any:
    """JSON form of a per-seed array: nested lists, NaN as null."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x.tolist()
    if x.ndim == 1:
        return [float(v) if math.isfinite(v) else None for v in x]
    return [listed(row) for row in x]


def seeds_agent(config: Any) -> SeedsAgent:
    return SeedsAgent(config, (make_ppo if isinstance(config, PPOConfig) else make_dqn)(config))


class SeedsTrainer:
    """All seeds' chunk of updates as one jitted, vmapped scan; one metrics row per update
    with a value per seed, and the chunk's evaluation on its last row."""

    shardings = None

    def __init__(self, config: Any, devices=None):
        if devices is not None and len(devices) > 1:
            raise ValueError(f"seeded runs use one device (the seeds are vmapped); got devices={list(devices)}")
        self.config = config
        self.total, self.every = config.num_updates, config.checkpoint_every
        self.chunk = self.every
        self.agent, self._init, self._segment, self._evaluate = compiled("seeds", config, self._build)

    def _build(self):
        agent = seeds_agent(self.config)
        evaluate = None
        if self.config.eval_levels:
            from rljaxinterp import envs

            env = envs.make(self.config.env, distribution="train", **self.config.env_kwargs)
            evaluate = make_evaluator(agent.base, env, self.config.eval_levels)
        chunk = self.chunk
        return (agent, jax.jit(agent.init), jax.jit(jax.vmap(lambda s: agent.base.segment(s, chunk))), evaluate)

    def init(self):
        return self._init(jax.random.PRNGKey(self.config.seed))

    def step(self, state) -> int:
        return int(np.asarray(state.update).reshape(-1)[0])

    def advance(self, state, n: int):
        if n != self.chunk:
            raise ValueError(f"seeded runs advance in whole chunks of {self.chunk} updates; asked {n}")
        done, steps_before = self.step(state), int(np.asarray(state.env_steps).reshape(-1)[0])
        state, metrics = self._segment(state)
        metrics = jax.device_get(metrics)
        per_update = (int(np.asarray(state.env_steps).reshape(-1)[0]) - steps_before) // n
        rows = [{"update": done + u + 1, "env_steps": steps_before + (u + 1) * per_update,
                 **{k: listed(np.asarray(v)[:, u]) for k, v in metrics.items()}} for u in range(n)]
        if self._evaluate is not None:
            final, _ = self._evaluate(state.params, jax.random.PRNGKey(EVAL_KEY + (done + n) // n - 1))
            rows[-1]["eval"] = {k: listed(np.asarray(v, np.float64).mean(axis=1)) for k, v in final.items()}
        return state, rows

    def summary(self, rows: list[dict]) -> dict:
        return {k: v for k, v in rows[-1].items() if k not in ("update", "env_steps")}

    def describe(self, rows: list[dict]) -> str:
        returns = per_seed(rows, "episode_return")
        means = [f"{r[np.isfinite(r)].mean():.2f}" if np.isfinite(r).any() else "-" for r in returns]
        return f"return/seed=[{', '.join(means)}]"


def per_seed(rows: list[dict], field: str) -> np.ndarray:
    """A per-update field of the run's rows as a (seeds, updates) array (NaN where missing)."""
    return np.array([[np.nan if v is None else v for v in r[field]] for r in rows if field in r], np.float64).T
