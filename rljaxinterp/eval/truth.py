"""The solver's truth for batches of env states: exact minimax for tic-tac-toe (every
position) and connect four (positions a bounded alpha-beta search can finish).

``truth(env_name, states)`` returns ``(value, optimal, solved)``: the mover's game value
(+1 / 0 / -1), the ``(P, actions)`` optimal moves and where the solver finished. Positions
the solver cannot finish (connect four openings) come back unsolved instead of guessed.
"""

from __future__ import annotations

import numpy as np

from rljaxinterp.envs import EnvState
from rljaxinterp.envs.pgx_games import game_state

SOLVED_GAMES = ("tic_tac_toe", "connect_four")


def truth(env_name: str, states: EnvState, max_nodes: int = 200_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boards = np.asarray(game_state(states).board)
    if env_name == "tic_tac_toe":
        from rljaxinterp.eval import minimax

        solution = minimax.solve()
        rows = np.array([solution.row(b) for b in boards], np.int64)
        return solution.value[rows], solution.optimal[rows], np.ones(len(rows), bool)
    if env_name == "connect_four":
        from rljaxinterp.eval import connect_four

        solution = connect_four.solve(boards, max_nodes=max_nodes)
        return solution.value, solution.optimal, solution.solved
    raise ValueError(f"no solver for {env_name!r}; solved games: {', '.join(SOLVED_GAMES)}")


def truth_fn(env_name: str, max_nodes: int = 200_000):
    """``truth`` with the game and budget fixed (for ``lookahead.solver_line``)."""
    if env_name not in SOLVED_GAMES:
        raise ValueError(f"no solver for {env_name!r}; solved games: {', '.join(SOLVED_GAMES)}")
    return lambda states: truth(env_name, states, max_nodes)
