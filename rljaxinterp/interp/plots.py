"""Figures for patching results: per-unit heatmaps and effects drawn on the board.

Which sites lie on the board comes from the axes the model declares (``interp.site_axes``),
never from shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rljaxinterp.reporting import pyplot


def _by_unit(effect: np.ndarray) -> np.ndarray:
    """Collapse every axis but the last (positions) by summing, keeping units."""
    effect = np.asarray(effect)
    if effect.ndim == 0:
        return effect[None]
    return effect.reshape(-1, effect.shape[-1]).sum(0) if effect.ndim > 1 else effect


def plot_effects_by_unit(effects: Mapping[str, np.ndarray], path: Path, title: str) -> Path:
    """One row per site, one column per neuron/channel (summed over squares)."""
    plt = pyplot()
    rows = {name: _by_unit(e) for name, e in effects.items()}
    width = max(len(r) for r in rows.values())
    grid = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows.values()):
        grid[i, : len(row)] = row
    bound = np.nanmax(np.abs(grid)) or 1.0
    fig, ax = plt.subplots(figsize=(min(18, 2 + 0.18 * width), 1 + 0.35 * len(rows)))
    im = ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_xlabel("unit (neuron / channel), summed over squares")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def on_board(axes: tuple[str, ...] | None, shape: tuple[int, ...], board_shape: tuple[int, int]) -> bool:
    """A site is drawn on the board when its leading axes are the board's rows and columns,
    or one token per square."""
    axes = axes or ()
    if axes[:2] == ("row", "col"):
        return tuple(shape[:2]) == tuple(board_shape)
    return axes[:1] == ("token",) and shape[0] == math.prod(board_shape)


def plot_effects_on_board(
    effects: Mapping[str, np.ndarray], board_shape: tuple[int, int], path: Path, title: str,
    site_axes: Mapping[str, tuple[str, ...] | None],
) -> Path | None:
    """For every site laid out on the board (by ``site_axes``), the effect per square
    (summed over units)."""
    boards = {}
    for name, e in effects.items():
        e = np.asarray(e)
        if on_board(site_axes.get(name), e.shape, board_shape):
            boards[name] = e.reshape(math.prod(board_shape), -1).sum(-1).reshape(board_shape)
    if not boards:
        return None
    plt = pyplot()
    cols = min(6, len(boards))
    rows = math.ceil(len(boards) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.0, 2.4 * cols), 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, board) in zip(axes.flat, boards.items()):
        bound = np.abs(board).max() or 1.0
        ax.imshow(board, cmap="RdBu_r", vmin=-bound, vmax=bound)
        for (r, c), v in np.ndenumerate(board):
            ax.text(c, r, f"{v:.2g}", ha="center", va="center", fontsize=7)
        ax.set_title(name, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_board(ax, heat: np.ndarray, own: np.ndarray | None = None, opponent: np.ndarray | None = None,
               title: str = "", bound: float | None = None, cmap: str = "RdBu_r") -> None:
    """A board-shaped heatmap with the pieces on top: filled dots are the side to move's,
    rings the opponent's (observations are from the mover's point of view)."""
    heat = np.asarray(heat, float)
    bound = bound if bound is not None else (np.abs(heat).max() or 1.0)
    vmin = -bound if cmap == "RdBu_r" else 0.0
    ax.imshow(heat, cmap=cmap, vmin=vmin, vmax=bound)
    for pieces, face in ((own, "black"), (opponent, "none")):
        if pieces is not None:
            r, c = np.nonzero(np.asarray(pieces))
            ax.scatter(c, r, s=160, facecolors=face, edgecolors="black", linewidths=1.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)


def plot_board_rows(rows: list[list[dict]], path: Path, title: str, row_labels: list[str] | None = None,
                    cmap: str = "RdBu_r") -> Path:
    """A grid of boards: ``rows[i][j]`` holds ``draw_board`` arguments (heat, own, opponent, title)."""
    plt = pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.5 * n_cols + 1.0, 1.6 * n_rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, row in enumerate(rows):
        bound = max((np.abs(np.asarray(b["heat"])).max() for b in row), default=1.0) or 1.0
        for j, board in enumerate(row):
            axes[i, j].axis("on")
            draw_board(axes[i, j], bound=bound, cmap=cmap, **board)
        if row_labels:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
