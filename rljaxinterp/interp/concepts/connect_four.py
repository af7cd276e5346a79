"""Connect-four concepts, from the side to move's point of view."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rljaxinterp.envs.base import EnvState
from rljaxinterp.envs.boards import winning_lines
from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.interp import concepts

ENV = "connect_four"
LINES = jnp.asarray(winning_lines(ENV))  # (69, 4)


def planes(state: EnvState):
    board = game_state(state).board
    color = game_state(state).color[..., None]
    return board == color, board == 1 - color, board < 0


def heights(state):
    """Pieces per column, (states, 7)."""
    return (game_state(state).board.reshape(*game_state(state).board.shape[:-1], 6, 7) >= 0).sum(-2)


def wins_after_drop(own, empty, h):
    """Per column: dropping a piece there completes four in a row, (states, 7)."""
    cols = jnp.arange(7)
    landing = (5 - h) * 7 + cols  # (states, 7); invalid where the column is full
    placed = own[..., None, :] | (jax.nn.one_hot(landing, 42, dtype=bool) & (h < 6)[..., None])
    return (placed[..., LINES].all(-1)).any(-1) & (h < 6)


def immediate_win(state):
    own, _, empty = planes(state)
    return wins_after_drop(own, empty, heights(state)).any(-1) & ~state.terminated


def opponent_immediate_win(state):
    _, opp, empty = planes(state)
    return wins_after_drop(opp, empty, heights(state)).any(-1) & ~state.terminated


def open_threes(which: int):
    def count(state):
        mine = planes(state)[which]
        empty = planes(state)[2]
        return ((mine[..., LINES].sum(-1) == 3) & (empty[..., LINES].sum(-1) == 1)).sum(-1)

    return count


def centre_control(state):
    own, opp, _ = planes(state)
    centre = jnp.arange(6) * 7 + 3
    return own[..., centre].sum(-1) - opp[..., centre].sum(-1)


concepts.register(ENV, "immediate_win", immediate_win)
concepts.register(ENV, "opponent_immediate_win", opponent_immediate_win)
concepts.register(ENV, "open_threes_own", open_threes(0))
concepts.register(ENV, "open_threes_opponent", open_threes(1))
concepts.register(ENV, "centre_control", centre_control)
for _c in range(7):
    concepts.register(ENV, f"height_col{_c}", lambda s, c=_c: heights(s)[..., c])
