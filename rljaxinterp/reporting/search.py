"""Pictures of search: one tree drawn on its board, and how search and network compare.

A tree is drawn as the position with the share of root visits on each move's landing
square (shaded), the raw network's prior beside it, and the principal variation numbered
on the squares it plays (1 = the searched move, 2 = the expected reply, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import numpy as np

from rljaxinterp.envs import Env, EnvState
from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.interp.lookahead import follow
from rljaxinterp.interp.search import SearchTree
from rljaxinterp.reporting import pyplot, save_figure

SHAPES = {"tic_tac_toe": (3, 3), "connect_four": (6, 7)}
PIECES = {0: "X", 1: "O"}


def _landing(env: Env, state: EnvState, actions: int) -> np.ndarray:
    """Board square each action's piece lands on (-1 if illegal)."""
    moves = np.arange(actions)[None]
    one = jax.tree.map(lambda x: np.repeat(np.asarray(x), actions, 0), state)
    return np.asarray(follow(env, one, moves.T).squares)[:, 0]


def draw_tree(ax_pair, env: Env, env_name: str, tree: SearchTree, states: EnvState, i: int, title: str = "") -> None:
    """Visits (left) and prior (right) of position ``i`` on its board, PV numbered on both."""
    if env_name not in SHAPES:
        raise ValueError(f"draw_tree draws boards of {', '.join(SHAPES)}; got {env_name!r}")
    rows, cols = SHAPES[env_name]
    state = jax.tree.map(lambda x: x[i:i + 1], states)
    board = np.asarray(game_state(state).board)[0]
    actions = tree.legal.shape[-1]
    landing = _landing(env, state, actions)
    pv_squares = np.asarray(follow(env, state, tree.pv[i:i + 1]).squares)[0]
    visits = np.asarray(tree.root_visits[i], np.float64)
    maps = {"search visits": visits / max(visits.sum(), 1.0), "network prior": np.asarray(tree.prior[i, 0])}
    for ax, (name, share) in zip(ax_pair, maps.items()):
        grid = np.zeros(rows * cols)
        ok = landing >= 0
        grid[landing[ok]] = share[ok]
        ax.imshow(grid.reshape(rows, cols), cmap="Blues", vmin=0, vmax=1)
        for sq in range(rows * cols):
            r, c = divmod(sq, cols)
            if board[sq] >= 0:
                ax.text(c, r, PIECES[int(board[sq])], ha="center", va="center", fontsize=12, weight="bold")
        for k, sq in enumerate(pv_squares):
            if sq >= 0:
                r, c = divmod(int(sq), cols)
                ax.text(c, r, str(k + 1), ha="center", va="center", fontsize=10,
                        color="crimson" if k % 2 == 0 else "darkorange")
        ax.set_xticks(range(cols))
        ax.set_yticks([])
        ax.set_title(f"{title}{name}", fontsize=9)


def plot_trees(env: Env, env_name: str, tree: SearchTree, states: EnvState, picks: Sequence[int],
               captions: Sequence[str], out: Path) -> Path:
    """Several positions' trees, one row each (visits | prior); the caption says why each was picked."""
    plt = pyplot()
    fig, axes = plt.subplots(len(picks), 2, figsize=(7, 2.8 * len(picks)), squeeze=False)
    for row, (i, caption) in enumerate(zip(picks, captions)):
        draw_tree(axes[row], env, env_name, tree, states, int(i))
        axes[row, 0].set_ylabel(caption, fontsize=8)
    fig.suptitle("PV numbered (1 = searched move; red: side to move, orange: opponent)", fontsize=9)
    return save_figure(fig, out)


def plot_bars(groups: Mapping[str, Mapping[str, float]], title: str, ylabel: str, out: Path,
              errors: Mapping[str, Mapping[str, float]] | None = None) -> Path:
    """Grouped bars: ``groups[series][category]`` (e.g. raw / search per game), optional error bars."""
    plt = pyplot()
    series = list(groups)
    cats = list(next(iter(groups.values())))
    x = np.arange(len(cats))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(cats) * len(series)), 3.5))
    for k, s in enumerate(series):
        err = [errors[s][c] for c in cats] if errors else None
        ax.bar(x + k * width, [groups[s][c] for c in cats], width, yerr=err, label=s, capsize=3)
    ax.set_xticks(x + width * (len(series) - 1) / 2)
    ax.set_xticklabels(cats, rotation=20, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, out)
