"""The ``ppo_seeds`` / ``dqn_seeds`` run kinds: seeds trained as one vmapped program
(:mod:`rljaxinterp.agents.seeds`), one metric row per update with a value per seed, and the
chunk's evaluation on fresh levels on its last row. ``SeedsTrainer`` is also the base of the
``tree_ppo`` trainer."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from rljaxinterp.agents.common import compiled
from rljaxinterp.agents.dqn import DQNConfig
from rljaxinterp.agents.seeds import seeds_agent
from rljaxinterp.eval.levels import greedy, make_evaluator

EVAL_KEY = 1000  # the evaluation after chunk c uses PRNGKey(EVAL_KEY + c)


def first_seed(x: Any) -> int:
    """A per-seed counter (updates, env steps: equal for every seed) as one int."""
    return int(np.asarray(x).reshape(-1)[0])


def listed(x: Any) -> Any:
    """JSON form of a per-seed array: nested lists, NaN as null."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x.tolist()
    if x.ndim == 1:
        return [float(v) if math.isfinite(v) else None for v in x]
    return [listed(row) for row in x]


class SeedsTrainer:
    """All seeds' chunk of updates as one jitted, vmapped scan; one metrics row per update
    with a value per seed, and the chunk's evaluation on its last row."""

    shardings = None

    def __init__(self, config: Any, devices=None):
        if devices is not None and len(devices) > 1:
            raise ValueError(f"seeded runs use one device (the seeds are vmapped); got devices={list(devices)}")
        self.config = config
        self.total = config.num_updates
        self.every = self.chunk = config.checkpoint_every
        self.agent, self._init, self._segment, self._evaluate = compiled(type(self).__name__, config, self._build)

    def _build(self):
        """``(agent, init, segment, evaluate)``, compiled once per config."""
        agent, chunk = seeds_agent(self.config), self.chunk
        evaluate = None
        if self.config.eval_levels:
            from rljaxinterp import envs

            env = envs.make(self.config.env, distribution="train", **self.config.env_kwargs)
            policy = greedy(agent.base) if isinstance(self.config, DQNConfig) else None  # DQN acts greedily
            evaluate = make_evaluator(agent.base, env, self.config.eval_levels, policy)
        return agent, jax.jit(agent.init), jax.jit(jax.vmap(lambda s: agent.base.segment(s, chunk))), evaluate

    def check_chunk(self, n: int) -> None:
        if n != self.chunk:
            raise ValueError(f"seeded runs advance in whole chunks of {self.chunk} updates; asked {n}")

    def init(self):
        return self._init(jax.random.PRNGKey(self.config.seed))

    def step(self, state) -> int:
        return first_seed(state.update)

    def advance(self, state, n: int):
        self.check_chunk(n)
        done, steps_before = self.step(state), first_seed(state.env_steps)
        state, metrics = self._segment(state)
        metrics = jax.device_get(metrics)
        per_update = (first_seed(state.env_steps) - steps_before) // n
        rows = [{"update": done + u + 1, "env_steps": steps_before + (u + 1) * per_update,
                 **{k: listed(np.asarray(v)[:, u]) for k, v in metrics.items()}} for u in range(n)]
        if self._evaluate is not None:
            final, _ = self._evaluate(state.params, jax.random.PRNGKey(EVAL_KEY + (done + n) // n - 1))
            rows[-1]["eval"] = {k: listed(np.asarray(v, np.float64).mean(axis=1)) for k, v in final.items()}
        return state, rows

    def summary(self, rows: list[dict]) -> dict:
        return {k: v for k, v in rows[-1].items() if k not in ("update", "env_steps", "wall_time")}

    def describe(self, rows: list[dict]) -> str:
        returns = per_seed(rows, "episode_return")
        means = [f"{r[np.isfinite(r)].mean():.2f}" if np.isfinite(r).any() else "-" for r in returns]
        return f"return/seed=[{', '.join(means)}]"


def per_seed(rows: list[dict], field: str) -> np.ndarray:
    """A per-update field of the run's rows as a (seeds, updates) array (NaN where missing)."""
    return np.array([[np.nan if v is None else v for v in r[field]] for r in rows if field in r], np.float64).T
