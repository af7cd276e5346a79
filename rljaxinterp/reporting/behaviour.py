"""Behaviour under interventions, drawn: one panel per metric, the edits beside their random
controls and the unedited agent, so an effect is read against its control at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rljaxinterp.reporting import pyplot, save_figure

SKIPPED = ("agent_moves", "finished")  # bookkeeping, not behaviour


def plot_behaviour(summary: dict, path: Path, title: str, xlabel: str = "intervention",
                   metrics: Sequence[str] | None = None) -> Path:
    """``summary`` is ``Behaviour.summary()``; members along x (labels). Error bars: one
    standard error of the edit, and the spread (standard deviation) of the random-control draws,
    each draw drawn as a dot."""
    plt = pyplot()
    names = [m for m in (metrics or summary) if m in summary and m not in SKIPPED]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        s = summary[name]
        x = np.arange(len(s["labels"]))
        for key, spread, colour, text in (("edited", "edited_se", "C0", "edit"),
                                          ("control", "control_spread", "C7", "random control")):
            ax.errorbar(x, _floats(s[key]), yerr=np.nan_to_num(_floats(s[spread])), color=colour, marker="o",
                        capsize=3, label=text)
        draws = _floats(s["control_draws"])
        if draws.shape[1] > 1:
            ax.plot(np.repeat(x, draws.shape[1]), draws.reshape(-1), ".", color="C7", alpha=0.4, ms=3)
        ax.axhline(s["baseline"], color="k", lw=1, ls="--", label="unedited")
        ax.set_xticks(x, s["labels"], fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def _floats(values) -> np.ndarray:
    return np.array(values, dtype=np.float64)  # None (JSON's NaN) -> nan


def behaviour_lines(summary: dict, metrics: Sequence[str] | None = None) -> list[str]:
    """A Markdown table: per metric and member, edit, control mean (and p with several draws)."""
    names = [m for m in (metrics or summary) if m in summary and m not in SKIPPED]
    labels = summary[names[0]]["labels"] if names else []
    lines = ["| metric | unedited | " + " | ".join(f"{lab}: edit / control (p)" for lab in labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for name in names:
        s = summary[name]
        cells = [f"{e:.3f} / {c:.3f}" + ("" if p is None else f" (p {p:.2f})")
                 for e, c, p in zip(_floats(s["edited"]), _floats(s["control"]), s["p"])]
        lines.append(f"| {name} | {s['baseline']:.3f} | " + " | ".join(cells) + " |")
    return lines
