"""Sequence-model agent kinds: ``dt`` (decision transformer on GraphPaths-v0).

Offline training has no environments to step: one ``advance`` call is ``every`` updates, in
jitted scans of ``log_every`` updates; after each scan the greedy, best-return-conditioned
policy plays from every reachable (start, goal) pair (a fraction of a second), so every metric
row, checkpoint and the curve carry the bar (success rate, path length over the BFS optimum).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from rljaxinterp.runs.kinds import RunKind, _finite, compiled_segments, register_kind

# Measured by benchmarks/sequence_agents.py on a 2-core CPU.
DT_PRESETS: dict[str, dict] = {"GraphPaths-v0": {}}  # the DTConfig defaults


class DTTrainer:
    """``every`` updates per call, evaluated every ``log_every``."""

    shardings = None

    def __init__(self, config, devices: Sequence[jax.Device] | None = None):
        from rljaxinterp.agents.decision_transformer import make_dt

        if devices is not None and len(devices) > 1:
            raise ValueError(f"dt runs on one device; got devices={list(devices)}")
        self.config = config
        self.agent, self._init, self._segment = compiled_segments("dt", config, make_dt)
        self.total, self.every = config.num_updates, config.checkpoint_every
        self.chunk = self.every

    def init(self):
        return self._init(jax.random.PRNGKey(self.config.seed))

    def step(self, state) -> int:
        return int(state.update)

    def advance(self, state, n: int):
        from rljaxinterp.agents.decision_transformer import evaluate

        rows, log = [], self.config.log_every
        for size in [log] * (n // log) + ([n % log] if n % log else []):
            state, metrics = self._segment(state, size)
            row = {"update": self.step(state), "env_steps": 0}
            row.update({k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()})
            row.update({k: _finite(v) for k, v in evaluate(self.agent, state.params).items()})
            rows.append(row)
        return state, rows

    def summary(self, rows: list[dict]) -> dict:
        return {k: v for k, v in rows[-1].items() if k not in ("update", "env_steps", "wall_time")}

    def describe(self, rows: list[dict]) -> str:
        r = rows[-1]
        ratio = "-" if r["path_ratio"] is None else f"{r['path_ratio']:.3f}"
        return f"loss={r['loss']:.4f} success={r['success_rate']:.3f} path/optimum={ratio}"


def _evaluate_dt(run, step: int | None = None, num_episodes: int | None = None) -> np.ndarray:
    """Returns of greedy episodes from every reachable (start, goal) pair (the first
    ``num_episodes`` pairs if given), conditioned on the best return; ``-length`` each, or
    ``-max_steps`` for a pair the agent fails."""
    from rljaxinterp.agents.decision_transformer import _rollouts

    pairs = run.agent.env.reachable_pairs()[:num_episodes]
    out = _rollouts(run.agent, run.params(step), pairs[:, 0], pairs[:, 1], None)
    return -np.asarray(out["length"], np.float64)


def _register() -> None:
    from rljaxinterp.agents.decision_transformer import DTConfig, make_dt

    register_kind(RunKind(
        "dt", DTConfig, DTTrainer, "update", DT_PRESETS,
        curves=(("training loss", "update", ("loss",)),
                ("greedy, best-return-conditioned episodes on every reachable pair", "update",
                 ("success_rate", "path_ratio", "optimal_share"))),
        evaluate=_evaluate_dt, make_agent=make_dt))


_register()
