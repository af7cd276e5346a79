"""Figures and tables of online Tree Gridworld runs (see :mod:`rljaxinterp.eval.tree_worlds`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rljaxinterp.reporting import pyplot, save_figure


def plot_training(curves: dict, fresh: dict, fresh_steps: list, steps_per_update: int, out: Path, title: str,
         filename: str) -> Path:
    plt = pyplot()

    seeds, updates = curves["trees"].shape
    x = (np.arange(updates) + 1) * steps_per_update / 1e6
    fig, axes = plt.subplots(2, 3, figsize=(15, 7))
    panels = [("trees", "trees standing (mean over its worlds)"), ("extinct", "extinct share of its worlds"),
              ("reward_rate", "reward rate = chops per world-step"),
              ("alive_chop_rate", "chop rate of worlds still alive")]
    for ax, (key, what) in zip(axes.flat, panels):
        for s in range(seeds):
            ax.plot(x, curves[key][s], lw=1, label=f"seed {s}")
        ax.set_title(f"training worlds: {what}", fontsize=9), ax.set_xlabel("env steps per seed (M)")
    axes[0, 0].legend(fontsize=7)
    fx = np.asarray(fresh_steps) / 1e6
    for ax, key, what in ((axes[1, 1], "extinct", "extinct share at the end"),
                          (axes[1, 2], "reward_rate", "reward rate")):
        for s in range(seeds):
            ax.plot(fx, fresh[key][s], marker="o", ms=3, lw=1, label=f"seed {s}")
        ax.set_title(f"frozen policy on fresh forests: {what}", fontsize=9)
        ax.set_xlabel("env steps per seed (M) when frozen")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out / filename)


def plot_worlds(worlds: dict, num_steps: int, count: int, out: Path, title: str, filename: str,
                smooth: int = 200_000) -> Path:
    """Each of the first ``count`` worlds of every seed over its own life: trees standing at the
    end of every rollout, and its chop rate per step with trees standing (over ``smooth`` steps)."""
    plt = pyplot()

    seeds, updates, envs_ = worlds["world_trees"].shape
    count = min(count, envs_)
    x = (np.arange(updates) + 1) * num_steps / 1e6
    k = min(updates, max(1, smooth // num_steps))
    box = np.ones(k)
    fig, axes = plt.subplots(count, seeds, figsize=(7 * seeds, 1.6 * count + 0.8), squeeze=False, sharex=True)
    for s in range(seeds):
        for w in range(count):
            ax = axes[w, s]
            ax.plot(x, worlds["world_trees"][s, :, w], lw=0.5, color="tab:green")
            ax.set_ylim(-0.5, 10.5), ax.set_ylabel(f"seed {s} world {w}\ntrees", fontsize=7)
            chops = np.convolve(worlds["world_chops"][s, :, w], box, "valid")
            alive = np.convolve(num_steps - worlds["world_extinct_steps"][s, :, w], box, "valid")
            rate = np.where(alive > 0, chops / np.maximum(alive, 1), np.nan)
            twin = ax.twinx()
            twin.plot(x[k - 1:], rate, lw=0.8, color="tab:brown")
            twin.set_ylim(0, 0.4), twin.tick_params(labelsize=6)
            if w == 0:
                twin.set_ylabel("chops per alive step", fontsize=7, color="tab:brown")
            ax.tick_params(labelsize=6)
        axes[-1, s].set_xlabel("env steps of this world (M)")
    fig.suptitle(title + f"\ngreen: trees standing (end of each {num_steps}-step rollout); "
                 f"brown: chop rate per step with trees standing, over {k * num_steps:,} steps", fontsize=9)
    return save_figure(fig, out / filename)


def period_markdown(periods: dict[float, list[dict]]) -> list[str]:
    """:func:`period_table` rows, per discount, as a report paragraph and table."""
    lines = [("Training worlds per period of the run (each world's own steps): share of world-time with no tree, "
              "reward rate (chops per world-step, empty or not), chop rate per step with trees standing, and the "
              "stretches with trees standing that began in the period (at the start or at a regrowth): count (ended "
              "in an extinction), median length, hazard (extinctions per alive step, unended stretches censored at "
              "the end of the run)."), "",
             "| gamma | seed | world-steps | empty share | reward rate | chop rate alive | alive stretches (ended) "
             "| median length | hazard |", "|---|---|---|---|---|---|---|---|---|"]
    for g, rows in periods.items():
        lines += [f"| {g} | {row['seed']} | {row['start']:,}-{row['end']:,} | {row['empty_share']:.2f} | "
                  f"{row['reward_rate']:.3f} | {_rate(row['alive_rate'])} | {row['spells']} ({row['ended']}) | "
                  f"{steps_text(row['median_length'], '-')} | "
                  f"{'-' if row['hazard'] is None else format(row['hazard'], '.1e')} |" for row in rows]
    return lines


def steps_text(n: float | None, none: str = "never") -> str:
    return none if n is None else f"{n:,.0f}"


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def rates_text(v) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in np.asarray(v)) + "]"


def report_tables(results: dict[float, dict], eval_steps: int) -> list[str]:
    """The report's tables, per discount: seeds' phases, the final policy on fresh forests, its
    restraint, the training worlds per period and one row per world. ``results[gamma]`` holds
    ``summary`` (``seed_summary``), ``restraint`` (seeds, counts, 2), ``restraint_random``,
    ``periods`` (``period_table``) and ``phases`` (``all_world_phases``)."""
    from rljaxinterp.eval.tree_worlds import RESTRAINT_COUNTS, RESTRAINT_FORESTS, RESTRAINT_STEPS

    lines = ["| gamma | seed | first extinction (steps) | extinct worlds at end | reward rate: peak (at step) / final "
             "| fresh forests extinct: peak (at step) / final | fresh reward rate final |",
             "|---|---|---|---|---|---|---|"]
    for g, r in results.items():
        lines += [f"| {g} | {row['seed']} | {steps_text(row['first_extinction_step'])} | {row['final_extinct_share']:.2f} | "
                  f"{row['peak_reward_rate']:.3f} ({row['peak_reward_rate_step']:,}) / {row['final_reward_rate']:.3f} | "
                  f"{row['fresh_extinct_peak']:.2f} ({row['fresh_extinct_peak_step']:,}) / "
                  f"{row['fresh_extinct_final']:.2f} | {row['fresh_reward_rate_final']:.3f} |" for row in r["summary"]]
    lines += ["", ("Frozen final policy on fresh forests: hazard = forests emptied per step with trees standing "
                   f"(censored at {eval_steps:,} steps); implied long-run rate = alive rate / "
                   "(1 + hazard * 1e6), an estimate for a horizon of many ~1e6-step empty spells."), "",
              "| gamma | seed | extinct at end | reward rate | chop rate alive | hazard per step | implied long-run rate |",
              "|---|---|---|---|---|---|---|"]
    for g, r in results.items():
        lines += [f"| {g} | {row['seed']} | {row['fresh_extinct_final']:.2f} | {row['fresh_reward_rate_final']:.3f} | "
                  f"{row['fresh_alive_rate_final']:.3f} | {row['fresh_hazard_final']:.1e} | "
                  f"{row['fresh_long_run_final']:.3f} |" for row in r["summary"]]
    lines += ["", (f"Restraint of the final policy: from {RESTRAINT_FORESTS} forests with n trees standing (agent and "
                   "trees on random cells, regrowth as specified), the share it empties before the forest grows back "
                   f"to n + 1 trees (within {RESTRAINT_STEPS} steps; a sustainable policy: 0). The uniformly random "
                   "policy is the reference."), "",
              "| gamma | policy | " + " | ".join(f"n = {n}" for n in RESTRAINT_COUNTS) + " |",
              "|---|---|" + "---|" * len(RESTRAINT_COUNTS)]
    for g, r in results.items():
        rows = [(f"seed {s}", shares[:, 0]) for s, shares in enumerate(r["restraint"])]
        for who, shares in rows + [("random", r["restraint_random"][:, 0])]:
            lines.append(f"| {g} | {who} | " + " | ".join(f"{x:.3f}" for x in shares) + " |")
    lines += ["", *period_markdown({g: r["periods"] for g, r in results.items()})]
    lines += ["", ("Training worlds, one row each (steps are that world's own steps; chop rates per step with "
                   "trees standing: over the 1M steps before its first crash, from its first regrowth to its next "
                   "extinction or the end, and over the last 1M steps):"), "",
              ("| gamma | seed | world | first extinction | first regrowth | emptied again | extinctions | "
               "empty share | rate before crash | rate after regrowth | rate at end | trees at end |"),
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g, r in results.items():
        lines += [f"| {g} | {p['seed']} | {p['world']} | {steps_text(p['first_extinction'])} | "
                  f"{steps_text(p['first_regrowth'])} | {steps_text(p['extinct_again'])} | {p['extinctions']} | "
                  f"{p['empty_share']:.2f} | {_rate(p['rate_before_crash'])} | {_rate(p['rate_after_regrowth'])} | "
                  f"{_rate(p['rate_end'])} | {p['trees_end']} |" for ph in r["phases"] for p in ph]
    return lines
