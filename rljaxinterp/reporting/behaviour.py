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
    """``summary`` is ``Behaviour.summary()``; members along x (labels), error bars are one
    standard error over episodes (none for pooled rates)."""
    plt = pyplot()
    names = [m for m in (metrics or summary) if m in summary and m not in SKIPPED]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        s = summary[name]
        x = np.arange(len(s["labels"]))
        for key, colour, text in (("edited", "C0", "edit"), ("control", "C7", "random control")):
            y = np.asarray(s[key], np.float64)
            err = np.nan_to_num(np.asarray(s[f"{key}_se"], np.float64))
            ax.errorbar(x, y, yerr=err, color=colour, marker="o", capsize=3, label=text)
        ax.axhline(s["baseline"], color="k", lw=1, ls="--", label="unedited")
        ax.set_xticks(x, s["labels"], fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def behaviour_lines(summary: dict, metrics: Sequence[str] | None = None) -> list[str]:
    """A Markdown table: per metric and member, unedited -> edited (control)."""
    names = [m for m in (metrics or summary) if m in summary and m not in SKIPPED]
    labels = summary[names[0]]["labels"] if names else []
    lines = ["| metric | unedited | " + " | ".join(f"{lab}: edit (control)" for lab in labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for name in names:
        s = summary[name]
        cells = [f"{e:.3f} ({c:.3f})" for e, c in zip(s["edited"], s["control"])]
        lines.append(f"| {name} | {s['baseline']:.3f} | " + " | ".join(cells) + " |")
    return lines
