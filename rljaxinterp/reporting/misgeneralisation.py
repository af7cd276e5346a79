"""Figures of the goal-misgeneralisation study: learning, levels of both distributions, and
the behavioural counters on train versus test levels."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from rljaxinterp import envs
from rljaxinterp.reporting import pyplot, save_figure


def plot_learning(name: str, curve: str, res: dict, steps_per_update: int, out: Path) -> Path:
    """Training return per seed (smoothed) and ``curve`` on fresh training levels per chunk."""
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    steps = (np.arange(res["returns"].shape[1]) + 1) * steps_per_update
    for s, r in enumerate(res["returns"]):
        ok = np.isfinite(r)
        window = max(1, len(r) // 50)
        smooth = np.convolve(np.where(ok, r, 0), np.ones(window), "same") / np.maximum(
            np.convolve(ok, np.ones(window), "same"), 1)
        ax.plot(steps[ok], smooth[ok], lw=1, label=f"seed {s}")
    ax.set_xlabel("env steps per seed"), ax.set_title(f"{name}: training episode return")
    ax.legend(fontsize=7)
    for s, v in enumerate(res["during"][curve]):
        ax2.plot(res["curve_steps"], v, marker="o", ms=3, lw=1, label=f"seed {s}")
    ax2.set_xlabel("env steps per seed"), ax2.set_title(f"{curve} on fresh train levels")
    return save_figure(fig, out / f"{name}_learning.png")


def plot_levels(name: str, env: str, env_kwargs: dict, out: Path, k: int = 4) -> Path:
    plt = pyplot()
    env_name = env
    fig, axes = plt.subplots(2, k, figsize=(2.2 * k, 4.6))
    for row, dist in enumerate(("train", "test")):
        env = envs.make(env_name, distribution=dist, **env_kwargs)
        states = jax.vmap(env.init)(jax.random.split(jax.random.PRNGKey(3), k))
        images = env.render(states, scale=12)
        for i in range(k):
            axes[row, i].imshow(images[i]), axes[row, i].set_xticks([]), axes[row, i].set_yticks([])
            axes[row, i].set_title(f"{dist} level {i}", fontsize=8)
    return save_figure(fig, out / f"{name}_levels.png")


def plot_bars(name: str, keys: tuple[str, ...], ev: dict, out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.6 * len(keys) + 2, 3.4))
    x = np.arange(len(keys))
    for j, dist in enumerate(("train", "test")):
        vals = np.array([ev[dist]["per_seed"][k] for k in keys])  # (keys, seeds)
        ax.bar(x + (j - 0.5) * 0.38, vals.mean(1), 0.38, yerr=vals.std(1), capsize=3,
               label=f"{dist} ({ev[dist]['max_steps']} steps)")
        for s in range(vals.shape[1]):
            ax.plot(x + (j - 0.5) * 0.38, vals[:, s], "k.", ms=3)
    ax.set_xticks(x, keys, rotation=20, fontsize=8)
    ax.set_title(f"{name}: per-episode counters, mean over seeds (dots: seeds)")
    ax.legend(fontsize=8)
    return save_figure(fig, out / f"{name}_metrics.png")
