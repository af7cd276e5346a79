"""Sequence-model agent kinds: ``dt`` (decision transformer on GraphPaths-v0) and ``ad``
(algorithm distillation, or expert distillation with ``data="expert"``, on Dark Room).

Offline training has no environments to step: one ``advance`` call is ``every`` updates, in
jitted scans of ``log_every`` updates; after each scan the policy is evaluated (dt: greedy,
best-return-conditioned, from every reachable (start, goal) pair; ad: in-context trials on
the held-out goals), so every metric row, checkpoint and the curve carry the bar.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from rljaxinterp.runs.kinds import RunKind, _finite, compiled_segments, register_kind

# Measured by benchmarks/sequence_agents.py on a 2-core CPU.
DT_PRESETS: dict[str, dict] = {"GraphPaths-v0": {}}  # the DTConfig defaults
AD_PRESETS: dict[str, dict] = {"DarkRoom-v0": {}, "DarkRoomHard-v0": {}}  # the ADConfig defaults


class DTTrainer:
    """``every`` updates per call, evaluated every ``log_every``."""

    shardings = None
    kind = "dt"

    def __init__(self, config, devices: Sequence[jax.Device] | None = None):
        if devices is not None and len(devices) > 1:
            raise ValueError(f"{self.kind} runs on one device; got devices={list(devices)}")
        self.config = config
        self.agent, self._init, self._segment = compiled_segments(self.kind, config, self._make())
        self.total, self.every = config.num_updates, config.checkpoint_every
        self.chunk = self.every

    def _make(self):
        from rljaxinterp.agents.decision_transformer import make_dt

        return make_dt

    def _evaluate(self, params) -> dict:
        from rljaxinterp.agents.decision_transformer import evaluate

        return evaluate(self.agent, params)

    def init(self):
        return self._init(jax.random.PRNGKey(self.config.seed))

    def step(self, state) -> int:
        return int(state.update)

    def advance(self, state, n: int):
        rows, log = [], self.config.log_every
        for size in [log] * (n // log) + ([n % log] if n % log else []):
            state, metrics = self._segment(state, size)
            row = {"update": self.step(state), "env_steps": 0}
            row.update({k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()})
            row.update({k: _finite(v) for k, v in self._evaluate(state.params).items()})
            rows.append(row)
        return state, rows

    def summary(self, rows: list[dict]) -> dict:
        return {k: v for k, v in rows[-1].items() if k not in ("update", "env_steps", "wall_time")}

    def describe(self, rows: list[dict]) -> str:
        r = rows[-1]
        ratio = "-" if r["path_ratio"] is None else f"{r['path_ratio']:.3f}"
        return f"loss={r['loss']:.4f} success={r['success_rate']:.3f} path/optimum={ratio}"


class ADTrainer(DTTrainer):
    """As ``DTTrainer``; each row carries the in-context curve's first and last episode
    (mean return over the mean optimal return on the held-out goals)."""

    kind = "ad"

    def _make(self):
        from rljaxinterp.agents.algorithm_distillation import make_ad

        return make_ad

    def _evaluate(self, params) -> dict:
        from rljaxinterp.agents.algorithm_distillation import evaluate

        result = evaluate(self.agent, params)
        return {"first_ratio": result["first_ratio"], "last_ratio": result["last_ratio"],
                "last_return": result["returns"][-1], "optimal_return": result["optimal"]}

    def describe(self, rows: list[dict]) -> str:
        r = rows[-1]
        return (f"loss={r['loss']:.4f} in-context return/optimum: first episode {r['first_ratio']:.3f}, "
                f"last {r['last_ratio']:.3f}")


def _evaluate_dt(run, step: int | None = None, num_episodes: int | None = None) -> np.ndarray:
    """Returns of greedy episodes from every reachable (start, goal) pair (the first
    ``num_episodes`` pairs if given), conditioned on the best return; ``-length`` each, or
    ``-max_steps`` for a pair the agent fails."""
    from rljaxinterp.agents.decision_transformer import _rollouts

    pairs = run.agent.env.reachable_pairs()[:num_episodes]
    out = _rollouts(run.agent, run.params(step), pairs[:, 0], pairs[:, 1], None)
    return -np.asarray(out["length"], np.float64)


def _evaluate_ad(run, step: int | None = None, seed: int = 0, samples: int | None = None) -> np.ndarray:
    """``(held-out goals x trials, episodes)`` returns of in-context trials (the model's own
    episodes accumulating in its context, no weight update); greedy unless ``samples``."""
    from rljaxinterp.agents.algorithm_distillation import _rollouts, episode_returns

    agent = run.agent
    samples = agent.config.eval_samples if samples is None else samples
    out = _rollouts(agent, None, samples)(run.params(step), jax.numpy.asarray(agent.goals()[1]),
                                          jax.random.PRNGKey(seed))
    return episode_returns(out["reward"], agent.room.episode_steps)


def _register() -> None:
    from rljaxinterp.agents.algorithm_distillation import ADConfig, make_ad
    from rljaxinterp.agents.decision_transformer import DTConfig, make_dt

    register_kind(RunKind(
        "dt", DTConfig, DTTrainer, "update", DT_PRESETS,
        curves=(("training loss", "update", ("loss",)),
                ("greedy, best-return-conditioned episodes on every reachable pair", "update",
                 ("success_rate", "path_ratio", "optimal_share"))),
        evaluate=_evaluate_dt, make_agent=make_dt))
    register_kind(RunKind(
        "ad", ADConfig, ADTrainer, "update", AD_PRESETS,
        curves=(("training loss", "update", ("loss",)),
                ("in-context trials on held-out goals: return / optimal return", "update",
                 ("first_ratio", "last_ratio"))),
        evaluate=_evaluate_ad, make_agent=make_ad))


_register()
