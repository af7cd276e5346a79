"""Exact tic-tac-toe: the game-theoretic value and optimal moves of all 5,478 positions.

Boards follow :mod:`rljaxinterp.envs.boards`: flat, row-major, -1 empty, 0 the first
mover's piece (X), 1 the second mover's (O); action ``a`` marks square ``a``. Values are
from the view of the player to move: +1 win, 0 draw, -1 loss under perfect play.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
EMPTY = (-1,) * 9
Board = tuple[int, ...]


def mover(board: Board) -> int:
    """0 (X) when the piece counts are equal, else 1 (O)."""
    return int(sum(s == 0 for s in board) != sum(s == 1 for s in board))


def winner(board: Board) -> int:
    """0 or 1 if that side owns a line, else -1."""
    for a, b, c in LINES:
        if board[a] >= 0 and board[a] == board[b] == board[c]:
            return board[a]
    return -1


def is_terminal(board: Board) -> bool:
    return winner(board) >= 0 or all(s >= 0 for s in board)


def legal_moves(board: Board) -> list[int]:
    return [] if is_terminal(board) else [i for i, s in enumerate(board) if s < 0]


def play(board: Board, action: int) -> Board:
    if board[action] >= 0 or is_terminal(board):
        raise ValueError(f"action {action} is illegal on board {board}")
    b = list(board)
    b[action] = mover(board)
    return tuple(b)


@functools.cache
def value(board: Board) -> int:
    """Minimax value for the player to move (a finished game is lost by the mover if
    someone won, since the opponent made the last move; a full board is a draw)."""
    board = tuple(int(s) for s in board)
    if winner(board) >= 0:
        return -1
    if all(s >= 0 for s in board):
        return 0
    return max(-value(play(board, a)) for a in legal_moves(board))


def optimal_moves(board: Board) -> frozenset[int]:
    """Moves achieving the minimax value (empty for terminal positions)."""
    board = tuple(int(s) for s in board)
    moves = legal_moves(board)
    if not moves:
        return frozenset()
    best = value(board)
    return frozenset(a for a in moves if -value(play(board, a)) == best)


@dataclasses.dataclass(frozen=True)
class Solution:
    """Every reachable position as arrays, in breadth-first (move count) order."""

    boards: np.ndarray  # (5478, 9) int
    value: np.ndarray  # (5478,) mover's view
    optimal: np.ndarray  # (5478, 9) bool: optimal moves
    terminal: np.ndarray  # (5478,) bool
    index: dict  # board tuple -> row

    def row(self, board: Board) -> int:
        return self.index[tuple(int(s) for s in board)]


@functools.lru_cache(maxsize=1)
def solve() -> Solution:
    """Enumerate all reachable positions from the empty board and solve each."""
    seen, frontier = [EMPTY], [EMPTY]
    index = {EMPTY: 0}
    while frontier:
        nxt = []
        for b in frontier:
            for a in legal_moves(b):
                c = play(b, a)
                if c not in index:
                    index[c] = len(seen)
                    seen.append(c)
                    nxt.append(c)
        frontier = sorted(nxt)
    optimal = np.zeros((len(seen), 9), bool)
    for i, b in enumerate(seen):
        for a in optimal_moves(b):
            optimal[i, a] = True
    return Solution(
        boards=np.array(seen, np.int32),
        value=np.array([value(b) for b in seen], np.int32),
        optimal=optimal,
        terminal=np.array([is_terminal(b) for b in seen]),
        index=index,
    )
