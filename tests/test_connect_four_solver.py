"""Exact connect-four solver: agreement with plain minimax, hand-built positions, bad input."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rljaxinterp.eval import connect_four as c4

LINES = [
    [(r + i * dr) * 7 + c + i * dc for i in range(4)]
    for r in range(6) for c in range(7) for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1))
    if 0 <= r + 3 * dr < 6 and 0 <= c + 3 * dc < 7
]


def board(text: str) -> np.ndarray:
    """Six rows of seven, top row first: X first mover (0), O second (1), . empty."""
    rows = text.split()
    assert len(rows) == 6 and all(len(r) == 7 for r in rows)
    return np.array([{"X": 0, "O": 1, ".": -1}[ch] for ch in "".join(rows)], np.int32)


def mover(b: list[int]) -> int:
    return int(b.count(0) != b.count(1))


def won(b: list[int]) -> bool:
    return any(b[s[0]] >= 0 and b[s[0]] == b[s[1]] == b[s[2]] == b[s[3]] for s in LINES)


def drop(b: list[int], col: int) -> list[int]:
    row = max(r for r in range(6) if b[r * 7 + col] < 0)
    out = list(b)
    out[row * 7 + col] = mover(b)
    return out


def legal(b: list[int]) -> list[int]:
    return [] if won(b) else [c for c in range(7) if b[c] < 0]


def brute(b: list[int]) -> int:
    """Full minimax, no pruning, no table."""
    if won(b):
        return -1
    moves = legal(b)
    return max(-brute(drop(b, c)) for c in moves) if moves else 0


def late_positions(count: int, pieces: int, seed: int) -> list[list[int]]:
    """Random play to ``pieces`` pieces that neither wins nor lets the opponent win at once
    while it can avoid both, so games get that far with threats left on the board."""
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        b = [-1] * 42
        while b.count(-1) > 42 - pieces and not won(b) and legal(b):
            moves = legal(b)
            quiet = [c for c in moves if not won(drop(b, c))]
            safe = [c for c in quiet if not any(won(drop(drop(b, c), d)) for d in legal(drop(b, c)))]
            b = drop(b, rng.choice(safe or quiet or moves))
        out.append(b)
    return out


def test_agrees_with_brute_force_minimax():
    positions = [p for k in (33, 34, 35, 36, 38) for p in late_positions(8, k, seed=k)]
    sol = c4.solve(np.array(positions))
    assert sol.solved.all()
    values = []
    for i, b in enumerate(positions):
        v = brute(b)
        values.append(v)
        assert sol.value[i] == v, (i, b)
        assert sol.terminal[i] == (won(b) or -1 not in b)
        best = {c for c in legal(b) if -brute(drop(b, c)) == v}
        assert set(np.flatnonzero(sol.optimal[i]).tolist()) == best, (i, b)
    # The sample must exercise every outcome, real searches and choices between moves.
    assert set(values) == {-1, 0, 1}
    assert (sol.nodes > 20).sum() >= 5
    assert sum(0 < sol.optimal[i].sum() < len(legal(b)) for i, b in enumerate(positions)) >= 5


def test_immediate_win():
    b = board("""
        X..XXOX
        OO.XXXO
        XO.OOOX
        OX.XXOO
        OO.OXXX
        OOOXOXX
    """)  # X to move: column 2 completes the diagonal (2,0)-(3,1)-(4,2)-(5,3)
    sol = c4.solve(b[None])
    assert sol.value[0] == 1 and sol.optimal[0, 2] and sol.solved[0] and not sol.terminal[0]
    assert c4.value_of(b) == 1 and 2 in c4.optimal_moves(b)
    assert brute(list(b)) == 1
    grid = c4.solve(b.reshape(1, 6, 7))
    assert np.array_equal(grid.value, sol.value) and np.array_equal(grid.optimal, sol.optimal)


def test_must_block_the_single_threat():
    # O to move. X threatens (row 1, col 3) on the diagonal (4,0)-(3,1)-(2,2), so any
    # other column loses at once. After O blocks there, none of the four empty squares
    # (0,1), (1,1), (0,3), (0,4) completes a line for either side: a draw.
    b = board("""
        X.O..XO
        X.X.OOX
        OOXXXOO
        XXOOOXX
        XOOXXXO
        OXXOOXO
    """)
    sol = c4.solve(b[None])
    assert sol.value[0] == 0 and np.flatnonzero(sol.optimal[0]).tolist() == [3]
    assert brute(list(b)) == 0


def test_two_threats_lose():
    b = board("""
        .......
        .......
        .......
        .......
        ...OO..
        ..XXX..
    """)  # O to move; X completes the bottom row at column 1 or 5
    sol = c4.solve(b[None])
    assert sol.value[0] == -1 and sol.optimal[0].all() and sol.solved[0] and not sol.terminal[0]


def test_terminal_positions():
    won_board = board("""
        .......
        .......
        .......
        .......
        .OOO...
        .XXXX..
    """)  # X has just won; O to move has lost
    full_draw = board("""
        XOOOXOX
        XOXOXXO
        OOXXOOX
        XXXOOXO
        OOOXXOX
        OXOOXXX
    """)
    sol = c4.solve(np.stack([won_board, full_draw]))
    assert sol.value.tolist() == [-1, 0]
    assert sol.terminal.all() and sol.solved.all() and not sol.optimal.any()
    assert c4.optimal_moves(won_board) == frozenset()


def test_budget_runs_out_on_the_empty_board():
    sol = c4.solve(np.full((1, 42), -1), max_nodes=100)
    assert not sol.solved[0] and sol.value[0] == 0 and not sol.optimal[0].any() and sol.nodes[0] == 100
    with pytest.raises(RuntimeError, match="max_nodes=100"):
        c4.value_of(np.full(42, -1), max_nodes=100)


@pytest.mark.parametrize("boards,words", [
    (np.full((2, 41), -1), r"shape \(N, 42\) or \(N, 6, 7\); got \(2, 41\)"),
    (np.full(42, -1), r"got \(42,\)"),
    (np.where(np.arange(42) == 38, 2, -1)[None], r"square 38 \(row 5, col 3\) is 2; allowed values"),
    (np.where(np.arange(42) == 31, 0, -1)[None], r"floating piece at row 4, col 3 .*square below is empty"),
    (board("""
        .......
        .......
        .......
        .......
        .......
        OO.....
    """)[None], "0 pieces of player 0 and 2 of player 1"),
    (board("""
        .......
        .......
        X......
        X......
        XO.....
        XOO.O..
    """)[None], "four in a row for the player to move"),
])
def test_bad_boards(boards, words):
    with pytest.raises(ValueError, match=words):
        c4.solve(boards)
