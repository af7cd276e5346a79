"""PPO and DQN run folders on the shared layer of ``runs.py``.

Same folder as AlphaZero: config.json (plus ``"agent": "ppo"|"dqn"``), orbax checkpoints
(all kept), metrics.jsonl and learning_curve.png. Training runs in jitted *segments* of
``config.checkpoint_every`` updates (the last one shorter); a checkpoint and the metrics are
written between segments. The whole training state, PRNG key included, is checkpointed, and
segment boundaries depend only on the config, so a resumed run ends bit-identical to an
uninterrupted one. ``rljaxinterp.load_run`` opens these folders through ``run_kinds``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from rljaxinterp.agents.dqn import DQN, DQNConfig, make_dqn
from rljaxinterp.agents.ppo import PPO, PPOConfig, make_ppo
from rljaxinterp.agents.rl_common import evaluate
from rljaxinterp.agents.run_kinds import AGENT_FIELD, agent_kind
from rljaxinterp.agents.runs import (
    CHECKPOINTS,
    CONFIG_FILE,
    CURVE_FILE,
    METRICS_FILE,
    CheckpointError,
    Run,
    RunFolderError,
    _atomic_write,
    _manager,
    _read_metrics,
    restore,
    save_figure,
)

RLConfig = PPOConfig | DQNConfig
KINDS: dict[str, tuple[type, Callable[[Any], Any]]] = {"ppo": (PPOConfig, make_ppo), "dqn": (DQNConfig, make_dqn)}
# DQN takes one gradient step per update, so its metrics are averaged over more updates.
LOG_EVERY = {"ppo": 1, "dqn": 100}

# Per-environment starting points (CartPole ones measured to solve it; see benchmarks/ppo_dqn.py).
_MINATAR_PPO = dict(num_envs=64, num_steps=128, num_minibatches=8, lr=5e-4, total_timesteps=2_000_000,
                    model_kwargs={"channels": 16, "blocks": 1}, checkpoint_every=10)
PPO_PRESETS: dict[str, dict] = {
    "CartPole-v1": dict(num_envs=8, num_steps=128, lr=1e-3, total_timesteps=500_000),
    **{f"{g}-MinAtar": _MINATAR_PPO for g in ("Breakout", "Asterix", "Freeway", "Seaquest", "SpaceInvaders")},
}
DQN_PRESETS: dict[str, dict] = {
    "CartPole-v1": {},
}


def kind_of(config: RLConfig) -> str:
    for kind, (cls, _) in KINDS.items():
        if isinstance(config, cls):
            return kind
    raise TypeError(f"expected a PPOConfig or DQNConfig; got {type(config).__name__}")


def default_config(kind: str, env: str, **changes: Any) -> RLConfig:
    """The preset of ``env`` for ``kind`` ("ppo"/"dqn"), updated with ``changes``."""
    cls = KINDS[kind][0]
    presets = PPO_PRESETS if kind == "ppo" else DQN_PRESETS
    return cls(env=env, **{**presets.get(env, {}), **changes})


_AGENTS: dict[str, tuple[Any, Callable, Callable]] = {}


def compiled(config: RLConfig) -> tuple[PPO | DQN, Callable, Callable]:
    """``(agent, jitted init, jitted segment)``, cached per config so that training, resuming
    and reading a run in one process compile once."""
    key = json.dumps({AGENT_FIELD: kind_of(config), **config.to_dict()}, sort_keys=True)
    if key not in _AGENTS:
        agent = KINDS[kind_of(config)][1](config)
        _AGENTS[key] = (agent, jax.jit(agent.init), jax.jit(agent.segment, static_argnums=1))
    return _AGENTS[key]


def read_config(folder: str | os.PathLike) -> RLConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        raise RunFolderError(f"{path} does not exist; is {folder} a run folder?")
    try:
        data = json.loads(path.read_text())
        kind = data.pop(AGENT_FIELD)
        return KINDS[kind][0].from_dict(data)
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as e:
        raise RunFolderError(f"{path} is not a valid PPO/DQN config: {e}") from None


def _claim_folder(config: RLConfig, folder: Path) -> None:
    """Write config.json, or check that the one present is the same config."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    wanted = {AGENT_FIELD: kind_of(config), **config.to_dict()}
    if path.exists():
        if agent_kind(folder) != wanted[AGENT_FIELD]:
            raise RunFolderError(f"{folder} holds a {agent_kind(folder) or 'alphazero'} run, not a "
                                 f"{wanted[AGENT_FIELD]} run; use another folder")
        existing = {AGENT_FIELD: wanted[AGENT_FIELD], **read_config(folder).to_dict()}
        if existing != wanted:
            text = ", ".join(f"{k}: folder has {existing.get(k)!r}, asked {v!r}"
                             for k, v in wanted.items() if existing.get(k) != v)
            raise RunFolderError(f"{folder} holds a run with a different config ({text}); "
                                 "use another folder or the same config to resume")
    else:
        if (folder / CHECKPOINTS).exists():
            raise RunFolderError(f"{folder} has checkpoints but no {CONFIG_FILE}; refusing to mix runs")
        _atomic_write(path, json.dumps(wanted, indent=2) + "\n")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN


def summarise(metrics: dict[str, np.ndarray], first_update: int, log_every: int) -> list[dict]:
    """One row per ``log_every`` updates: means, with episode returns weighted by episodes."""
    n = len(next(iter(metrics.values())))
    rows = []
    for lo in range(0, n, log_every):
        chunk = {k: np.asarray(v[lo:lo + log_every], np.float64) for k, v in metrics.items()}
        episodes = chunk["episodes"]
        row = {k: _finite(float(np.mean(v))) for k, v in chunk.items()
               if k not in ("episode_return", "episodes")}
        total = np.nansum(chunk["episode_return"] * episodes)
        row["episodes"] = int(episodes.sum())
        row["episode_return"] = _finite(float(total / episodes.sum())) if episodes.sum() else None
        rows.append({"update": first_update + min(lo + log_every, n), **row})
    return rows


def plot_learning_curve(folder: str | os.PathLike) -> Path:
    """Episode return and loss against environment steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    rows = _read_metrics(folder)
    steps = [r["env_steps"] for r in rows]
    nan = float("nan")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax.plot(steps, [nan if r.get("episode_return") is None else r["episode_return"] for r in rows])
    ax.set_xlabel("environment steps"), ax.set_title("mean episode return (training policy)")
    ax2.plot(steps, [nan if r.get("loss") is None else r["loss"] for r in rows])
    ax2.set_xlabel("environment steps"), ax2.set_title("loss")
    return save_figure(fig, folder / CURVE_FILE)


def train(config: RLConfig, out_dir: str | os.PathLike, *, progress: bool = True,
          log: Callable[[str], None] | None = None, stop_after: int | None = None):
    """Train (or resume) the PPO/DQN run in ``out_dir``; returns the final state.

    ``stop_after`` ends this call after that many segments (for tests), leaving a resumable
    folder. Checkpoint steps are update counts; step 0 is the initial state.
    """
    from tqdm.auto import tqdm

    folder = Path(out_dir)
    kind = kind_of(config)
    _claim_folder(config, folder)
    agent, init, segment = compiled(config)
    manager = _manager(folder)
    latest = manager.latest_step()
    if latest is None:
        state, meta = init(jax.random.PRNGKey(config.seed)), {"wall_time": 0.0}
        rows = []
    else:
        state, meta = restore(manager, agent, latest)
        rows = [r for r in _read_metrics(folder) if r["update"] <= latest]
    # Rows after the last checkpoint are recomputed identically: drop them.
    _atomic_write(folder / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))

    wall0 = time.perf_counter() - float(meta["wall_time"])
    say = log or (lambda s: tqdm.write(s, file=sys.stdout))

    def save(state, row: dict) -> None:
        step = int(state.update)
        if step in manager.all_steps():
            return  # never overwrite
        meta = {"update": step, "env_steps": int(state.env_steps),
                "wall_time": time.perf_counter() - wall0, "metrics": row}
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()

    if latest is None:
        save(state, {})
    total, every = config.num_updates, config.checkpoint_every
    done = int(state.update)
    bar = tqdm(total=total, initial=done, disable=not progress, desc=f"{kind} {config.env}", file=sys.stderr)
    segments = 0
    with open(folder / METRICS_FILE, "a") as metrics_file:
        while done < total and (stop_after is None or segments < stop_after):
            n = min(every - done % every, total - done)  # boundaries at multiples of `every`
            steps_before = int(state.env_steps)
            state, metrics = segment(state, n)
            metrics = jax.device_get(metrics)
            seg_rows = summarise(metrics, done, LOG_EVERY[kind])
            per_update = (int(state.env_steps) - steps_before) // n
            wall = round(time.perf_counter() - wall0, 3)
            for r in seg_rows:
                r.update(env_steps=steps_before + (r["update"] - done) * per_update, wall_time=wall)
                metrics_file.write(json.dumps(r) + "\n")
            metrics_file.flush()
            done = int(state.update)
            segments += 1
            last = summarise(metrics, done - n, n)[0]
            bar.update(n)
            ret = last["episode_return"]
            bar.set_postfix(ret="-" if ret is None else f"{ret:.1f}")
            if progress or log:
                say(f"{kind} update={done}/{total} env_steps={int(state.env_steps)} wall={wall:.1f}s "
                    f"return={'-' if ret is None else f'{ret:.2f}'} loss={last['loss']:.4g}")
            save(state, {**last, "update": done})
            plot_learning_curve(folder)
    bar.close()
    manager.close()
    return state


@dataclasses.dataclass
class RLRun(Run):
    """A PPO/DQN run folder; the same reading API as an AlphaZero ``Run``.

    ``agent`` is the ``PPO``/``DQN`` object (``policy_value``, ``act``, ``env``, ``model``).
    """

    config: RLConfig
    agent: PPO | DQN

    @property
    def kind(self) -> str:
        return kind_of(self.config)

    def evaluate(self, step: int | None = None, num_episodes: int = 64, seed: int = 0) -> np.ndarray:
        """Returns of ``num_episodes`` full episodes of the checkpoint's policy (PPO samples,
        DQN is greedy)."""
        params = self.params(step)
        run = jax.jit(lambda p, k: evaluate(self.agent.env, self.agent.act, p, k, num_episodes))
        return np.asarray(run(params, jax.random.PRNGKey(seed)))


def load_rl_run(folder: str | os.PathLike) -> RLRun:
    """Open a PPO/DQN run folder written by :func:`train`."""
    folder = Path(folder)
    config = read_config(folder)
    return RLRun(folder=folder, config=config, agent=compiled(config)[0])


__all__ = ["DQN_PRESETS", "PPO_PRESETS", "CheckpointError", "RLRun", "RunFolderError", "default_config",
           "load_rl_run", "plot_learning_curve", "read_config", "train"]
