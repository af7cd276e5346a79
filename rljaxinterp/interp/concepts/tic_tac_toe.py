"""Tic-tac-toe concepts, from the side to move's point of view."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.envs.base import EnvState
from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.interp import concepts

ENV = "tic_tac_toe"
LINES = jnp.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]])
CORNERS = jnp.array([0, 2, 6, 8])


def planes(state: EnvState) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(mover's pieces, opponent's pieces, empty squares), each (states, 9) bool."""
    board = game_state(state).board
    color = game_state(state).color[..., None]
    return board == color, board == 1 - color, board < 0


def threats(own: jax.Array, empty: jax.Array) -> jax.Array:
    """Per line: two own pieces and one empty square, (states, 8)."""
    return (own[..., LINES].sum(-1) == 2) & (empty[..., LINES].sum(-1) == 1)


def can_win_now(state):
    own, _, empty = planes(state)
    return threats(own, empty).any(-1) & ~state.terminated


def opponent_threatens_win(state):
    _, opp, empty = planes(state)
    return threats(opp, empty).any(-1) & ~state.terminated


def fork_available(state):
    """Some move leaves the mover with two or more winning threats at once."""
    own, _, empty = planes(state)
    after = own[..., None, :] | jax.nn.one_hot(jnp.arange(9), 9, dtype=bool)  # (states, move, 9)
    n_threats = threats(after, empty[..., None, :] & ~jax.nn.one_hot(jnp.arange(9), 9, dtype=bool)).sum(-1)
    return ((n_threats >= 2) & empty).any(-1) & ~state.terminated


def centre(which: int):
    return lambda state: planes(state)[which][..., 4]


def corners_owned(state):
    own, opp, _ = planes(state)
    return own[..., CORNERS].sum(-1) - opp[..., CORNERS].sum(-1)


@functools.cache
def _value_table() -> np.ndarray:
    """Minimax value (mover's view) of every board, indexed by its base-3 code."""
    from rljaxinterp.eval.minimax import solve

    solution = solve()
    codes = ((solution.boards + 1) * 3 ** np.arange(9)).sum(-1)
    table = np.zeros(3**9, np.float32)
    table[codes] = solution.value
    return table


def game_value(state):
    code = ((game_state(state).board + 1) * 3 ** jnp.arange(9)).sum(-1)
    return jnp.asarray(_value_table())[code]


def _line_count(line: int, which: int):
    return lambda state: planes(state)[which][..., LINES[line]].sum(-1)


concepts.register(ENV, "can_win_now", can_win_now)
concepts.register(ENV, "opponent_threatens_win", opponent_threatens_win)
concepts.register(ENV, "fork_available", fork_available)
concepts.register(ENV, "centre_own", centre(0))
concepts.register(ENV, "centre_opponent", centre(1))
concepts.register(ENV, "centre_empty", centre(2))
concepts.register(ENV, "corner_balance", corners_owned)
concepts.register(ENV, "game_value", game_value)
concepts.register(ENV, "winning", lambda s: game_value(s) > 0)
concepts.register(ENV, "losing", lambda s: game_value(s) < 0)
_LINE_NAMES = ("row0", "row1", "row2", "col0", "col1", "col2", "diag", "anti")
for _i, _name in enumerate(_LINE_NAMES):
    concepts.register(ENV, f"own_in_{_name}", _line_count(_i, 0))
    concepts.register(ENV, f"opponent_in_{_name}", _line_count(_i, 1))


def square_concepts(state: EnvState) -> dict[str, jax.Array]:
    """Per-square readings, each (states, 9) bool in square order: what a spatial factor
    or attribution map is compared with."""
    own, opp, empty = planes(state)
    one_hot = jax.nn.one_hot(jnp.arange(9), 9, dtype=bool)

    def completes(pieces):  # empty squares that finish a line of ``pieces``
        on_line = (pieces[..., LINES].sum(-1) == 2) & (empty[..., LINES].sum(-1) == 1)  # (states, 8)
        return jnp.any(on_line[..., :, None] & (LINES[:, :, None] == jnp.arange(9)).any(1) & empty[..., None, :], -2)

    after = own[..., None, :] | one_hot
    forks = (threats(after, empty[..., None, :] & ~one_hot).sum(-1) >= 2) & empty
    return {"own_piece": own, "opponent_piece": opp, "empty": empty, "winning_move": completes(own),
            "blocking_move": completes(opp), "fork_move": forks}
