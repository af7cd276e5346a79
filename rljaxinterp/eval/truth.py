"""The solver's truth for batches of env states: exact minimax for tic-tac-toe (every
position) and connect four (positions a bounded alpha-beta search can finish).

``truth(env_name, states)`` returns ``(value, optimal, solved)``: the mover's game value
(+1 / 0 / -1), the ``(P, actions)`` optimal moves and where the solver finished. Positions
the solver cannot finish (connect four openings) come back unsolved instead of guessed.
"""

from __future__ import annotations

from typing import NoReturn

import numpy as np

from rljaxinterp.envs import EnvState
from rljaxinterp.envs.pgx_games import game_state

SOLVED_GAMES = ("tic_tac_toe", "connect_four")
# Fewest pieces for which the pure-Python connect-four solver finishes in well under 2 s (its
# module docstring has the measurements); callers that must stay quick skip earlier positions.
QUICK_MIN_PIECES = {"tic_tac_toe": 0, "connect_four": 16}


def truth(env_name: str, states: EnvState, max_nodes: int = 200_000,
          min_pieces: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``min_pieces`` leaves positions with fewer pieces unsolved without searching them (the
    connect-four solver is pure Python: openings cost seconds to minutes each)."""
    boards = np.asarray(game_state(states).board)
    if env_name == "tic_tac_toe":
        from rljaxinterp.eval import minimax

        solution = minimax.solve()
        rows = np.array([solution.row(b) for b in boards], np.int64)
        return solution.value[rows], solution.optimal[rows], np.ones(len(rows), bool)
    if env_name == "connect_four":
        from rljaxinterp.eval import connect_four

        value, solved = np.zeros(len(boards), np.int32), np.zeros(len(boards), bool)
        optimal = np.zeros((len(boards), 7), bool)
        asked = np.flatnonzero((boards >= 0).sum(1) >= min_pieces)
        if asked.size:
            solution = connect_four.solve(boards[asked], max_nodes=max_nodes)
            value[asked], optimal[asked], solved[asked] = solution.value, solution.optimal, solution.solved
        return value, optimal, solved
    _unsolved(env_name)


def _unsolved(env_name: str) -> NoReturn:
    raise ValueError(f"no solver for {env_name!r}; solved games: {', '.join(SOLVED_GAMES)}")


def truth_fn(env_name: str, max_nodes: int = 200_000):
    """``truth`` with the game and budget fixed (for ``lookahead.solver_line``)."""
    if env_name not in SOLVED_GAMES:
        _unsolved(env_name)
    return lambda states: truth(env_name, states, max_nodes)
