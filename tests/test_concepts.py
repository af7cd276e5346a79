"""Concept functions against hand-written boards and the exact solver."""

import numpy as np
import pytest

from rljaxinterp.envs import from_boards, tic_tac_toe_reachable
from rljaxinterp.interp import concepts

E, X, O = -1, 0, 1


def ttt(*rows):
    return [{"x": X, "o": O, ".": E}[c] for row in rows for c in row]


def test_tic_tac_toe_concepts_on_hand_written_boards():
    boards = np.array([
        ttt("...", "...", "..."),  # empty, X to move
        ttt("xx.", "oo.", "..."),  # X to move: wins at 2; O threatens 5
        ttt("x..", ".o.", ".ox"),  # X to move: fork at 2 (rows 0 and column 2); O threatens 1
        ttt("xo.", ".x.", "..o"),  # X to move: no win, no threat, forks at 3 and 6
    ])
    c = concepts.compute("tic_tac_toe", from_boards("tic_tac_toe", boards))
    np.testing.assert_array_equal(c["can_win_now"], [False, True, False, False])
    np.testing.assert_array_equal(c["opponent_threatens_win"], [False, True, True, False])
    np.testing.assert_array_equal(c["fork_available"], [False, False, True, True])
    np.testing.assert_array_equal(c["centre_empty"], [True, False, False, False])
    np.testing.assert_array_equal(c["centre_opponent"], [False, True, True, False])
    np.testing.assert_array_equal(c["centre_own"], [False, False, False, True])
    np.testing.assert_array_equal(c["own_in_row0"], [0, 2, 1, 1])
    np.testing.assert_array_equal(c["game_value"], [0, 1, 0, 1])  # board 2: the fork loses to O's win at 1


def test_game_value_concept_agrees_with_immediate_wins_and_the_solver_everywhere():
    from rljaxinterp.eval import minimax

    states, boards = tic_tac_toe_reachable()
    c = concepts.compute("tic_tac_toe", states, ["can_win_now", "game_value", "winning", "losing"])
    can_win = np.asarray(c["can_win_now"])
    assert can_win.sum() > 0
    assert np.all(np.asarray(c["game_value"])[can_win] == 1)
    solved = np.array([minimax.value(tuple(b)) for b in boards])
    np.testing.assert_array_equal(c["game_value"], solved)
    np.testing.assert_array_equal(c["winning"], solved == 1)
    np.testing.assert_array_equal(c["losing"], solved == -1)


def test_connect_four_concepts_on_a_hand_written_board():
    board = np.full((6, 7), E)
    board[5, 0:3] = X  # three in the bottom row: X wins by dropping in column 3
    board[5, 4:6] = O
    board[4, 4] = O  # O has a vertical pair and a bottom-row pair
    c = concepts.compute("connect_four", from_boards("connect_four", board[None]))
    assert bool(c["immediate_win"][0]) and not bool(c["opponent_immediate_win"][0])
    assert int(c["open_threes_own"][0]) == 1
    np.testing.assert_array_equal([int(c[f"height_col{i}"][0]) for i in range(7)], [1, 1, 1, 0, 2, 1, 0])
    assert int(c["centre_control"][0]) == 0


def test_unknown_concepts_and_libraries_are_named():
    states, _ = tic_tac_toe_reachable()
    with pytest.raises(KeyError, match="unknown concept"):
        concepts.compute("tic_tac_toe", states, ["nope"])
    with pytest.raises(ValueError, match="no concept library for 'pong'"):
        concepts.available("pong")


def test_chess_concepts_at_the_initial_position():
    import jax

    from rljaxinterp.envs import make

    state = jax.tree.map(lambda x: x[None], make("chess").init(jax.random.key(0)))
    c = concepts.compute("chess", state)
    assert int(c["material_balance"][0]) == 0 and int(c["mobility"][0]) == 20
    assert not bool(c["in_check"][0]) and int(c["king_zone_attacked"][0]) == 0
    assert int(c["own_pawns"][0]) == 8 and int(c["opponent_queens"][0]) == 1


def test_gridworld_concepts_on_a_hand_written_layout():
    import jax

    from rljaxinterp.envs import make

    env = make("CheeseMaze", distribution="test")
    rows = ["#" * 13] + ["#" + "." * 11 + "#" for _ in range(11)] + ["#" * 13]
    rows[2] = "#.A.........#"
    rows[9] = "#.......C...#"
    state = jax.tree.map(lambda x: x[None], env.from_layout(rows))
    c = concepts.compute("CheeseMaze", state)
    assert (int(c["agent_row"][0]), int(c["agent_col"][0])) == (2, 2)
    assert (int(c["goal_row"][0]), int(c["goal_col"][0])) == (9, 8)
    assert int(c["goal_distance"][0]) == 13
    assert bool(c["goal_is_right"][0]) and not bool(c["goal_is_up"][0])


def test_tic_tac_toe_square_concepts_on_a_hand_written_board():
    """X on 0, 1, 8 and O on 4, 6, so O moves."""
    from rljaxinterp.envs.boards import from_boards
    from rljaxinterp.interp.concepts.tic_tac_toe import square_concepts

    board = [0, 0, -1, -1, 1, -1, 1, -1, 0]  # X X . / . O . / O . X ; O to move
    sq = {k: np.flatnonzero(np.asarray(v[0])).tolist() for k, v in square_concepts(from_boards("tic_tac_toe", [board])).items()}
    assert sq["own_piece"] == [4, 6] and sq["opponent_piece"] == [0, 1, 8]
    assert sq["empty"] == [2, 3, 5, 7]
    assert sq["winning_move"] == [2]  # O: 6-4-2 diagonal
    assert sq["blocking_move"] == [2]  # X threatens 0-1-2 only (0-4-8 is blocked by O)
    # O at 3 or 5 adds a threat on row 3-4-5 beside the open diagonal 2-4-6: two threats.
    assert sq["fork_move"] == [3, 5]
