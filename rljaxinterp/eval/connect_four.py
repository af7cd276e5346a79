"""Exact connect four: the game-theoretic value and optimal moves of given positions.

The solver's truth for comparing a network's raw moves and values with its search on
positions from self-play. Boards follow :mod:`rljaxinterp.envs.boards`: flat, row-major,
6 rows x 7 columns, row 0 the top row, pieces stacking up from row 5; -1 empty, 0 the
first mover's piece, 1 the second mover's; the side to move is 0 when the piece counts
are equal, else 1; action ``a`` drops a piece in column ``a``. As in
:mod:`rljaxinterp.eval.minimax`, values are from the view of the player to move: +1 win,
0 draw, -1 loss under perfect play; a board with four in a row is lost for the mover (the
opponent made the last move) and a full board without one is a draw. Values are weak:
a win in 3 and a win in 13 are both +1, so every move that keeps the win is optimal.

Written here rather than taken from PyPI: ``bitbully`` (a maintained C++ solver with
Python bindings) was the one candidate found, but the project adds no dependency for
this; it served only as an outside check while writing this module (see below). The
search is pure Python: bitboards as Python ints, negamax with alpha-beta on null
windows, forced moves and immediate wins/losses detected by shifts before recursing,
threat-first move ordering and a transposition table of bounds.

What depth is practical, measured on this machine (one core, ~130k nodes/s), 10
positions per piece count, a budget of 300,000 nodes each, value and optimal moves
(root and every child searched). Random play that takes wins and otherwise avoids moves
that let the opponent win at once (closer to self-play than uniform play): 28 and 24
pieces all solved in at most 0.05 s (median 0.004 s at 24); 20 pieces all solved,
median 0.02 s, max 0.09 s; 16 pieces all solved, median 0.18 s, max 1.8 s (242k nodes);
12 pieces only 4/10 solved (those in 0.8-1.7 s; the others hit the budget at ~2.2 s).
Uniform random play is easier (16 pieces: median 0.05 s, max 0.25 s; 12 pieces: 6/10).
So mid and late game (16+ pieces) is cheap at the default budget of 2,000,000 nodes
(~15 s at ~130k nodes/s); openings need far more, and come back ``solved=False``
rather than stall a batch. All positions solved in these runs agreed with ``bitbully``
on the value and on the set of optimal moves.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

ROWS, COLS = 6, 7
SQUARES = ROWS * COLS
_H1 = ROWS + 1  # bits per column: the extra top bit keeps shifted lines from wrapping
_BOTTOM = sum(1 << (c * _H1) for c in range(COLS))
_BOARD = _BOTTOM * ((1 << ROWS) - 1)
_COLUMN = tuple(((1 << ROWS) - 1) << (c * _H1) for c in range(COLS))
_CENTRE_FIRST = (3, 2, 4, 1, 5, 0, 6)  # central columns take part in more lines
_TT_CAP = 1 << 20  # entries (~75 MB); the table is cleared when it fills
# Bounds (lo, hi) packed into one small int so the table stores no tuples.
_LO = tuple(c // 3 - 1 for c in range(9))
_HI = tuple(c % 3 - 1 for c in range(9))
_VALUES = "-1 (empty), 0 (first mover's piece), 1 (second mover's piece)"


@dataclasses.dataclass(frozen=True)
class Solution:
    """Per position; unsolved rows (budget ran out) have value 0 and no optimal moves."""

    value: np.ndarray  # (N,) int32 in {-1, 0, 1}, mover's view
    optimal: np.ndarray  # (N, 7) bool: moves achieving the value
    solved: np.ndarray  # (N,) bool
    terminal: np.ndarray  # (N,) bool: someone has four in a row, or the board is full
    # (N,) int64: search nodes spent on the position and its children; the transposition
    # table is shared within a call, so a position after a related one costs less.
    nodes: np.ndarray


class _OutOfNodes(Exception):
    pass


def _won(stones: int) -> bool:
    """Four in a row among ``stones``: pairs at distance ``s``, then pairs of pairs."""
    for s in (1, _H1, ROWS, ROWS + 2):  # vertical, horizontal, both diagonals
        m = stones & (stones >> s)
        if m & (m >> (2 * s)):
            return True
    return False


def _threats(stones: int, mask: int) -> int:
    """Empty squares (playable or not) where one more stone of ``stones`` makes four."""
    r = (stones << 1) & (stones << 2) & (stones << 3)  # vertical: only from below
    for s in (_H1, ROWS, ROWS + 2):
        pair = (stones << s) & (stones << (2 * s))
        r |= pair & (stones << (3 * s))
        r |= pair & (stones >> s)
        pair = (stones >> s) & (stones >> (2 * s))
        r |= pair & (stones << s)
        r |= pair & (stones >> (3 * s))
    return r & (_BOARD ^ mask)


class _Solver:
    """One search budget at a time over a transposition table shared across positions,
    since positions sampled from the same games share most of their subtrees."""

    def __init__(self) -> None:
        self.tt: dict[int, int] = {}
        self.nodes = 0
        self.limit = 0

    def search(self, pos: int, mask: int, moves: int, alpha: int, beta: int) -> int:
        """Fail-soft negamax: a result <= alpha is an upper bound, >= beta a lower bound,
        otherwise exact. ``pos`` holds the mover's stones, ``mask`` all stones. Callers
        guarantee the mover cannot win at once and the board is not full, which lets
        each node see one move ahead without expanding children."""
        self.nodes += 1
        if self.nodes > self.limit:
            raise _OutOfNodes
        possible = (mask + _BOTTOM) & _BOARD
        opp_threats = _threats(pos ^ mask, mask)
        forced = possible & opp_threats
        if forced:
            if forced & (forced - 1):
                return -1  # two squares to block at once
            possible = forced
        # Never fill the square under an opponent's threat: that hands over the win.
        possible &= ~(opp_threats >> 1)
        if not possible:
            return -1
        if moves >= SQUARES - 2:
            return 0  # neither side can complete a line in the last two squares
        key = pos + mask  # unique: pos is a subset of mask, and mask fixes each column's top
        code = self.tt.get(key)
        if code is not None:
            lo, hi = _LO[code], _HI[code]
            if lo >= beta:
                return lo
            if hi <= alpha:
                return hi
            alpha, beta = max(alpha, lo), min(beta, hi)
            if alpha >= beta:
                return alpha
        else:
            lo, hi = -1, 1
        # Moves that create the most new threats first, ties broken towards the centre.
        order = []
        for i, c in enumerate(_CENTRE_FIRST):
            m = possible & _COLUMN[c]
            if m:
                order.append((-_threats(pos | m, mask | m).bit_count(), i, m))
        order.sort()
        best, alpha0 = -1, alpha
        opp = pos ^ mask
        for _, _, m in order:
            r = -self.search(opp, mask | m, moves + 1, -beta, -alpha)
            if r >= beta:
                best = r
                break
            if r > best:
                best = r
                alpha = max(alpha, r)
        if best >= beta:
            lo = max(lo, best)
        elif best <= alpha0:
            hi = min(hi, best)
        else:
            lo = hi = best
        if len(self.tt) >= _TT_CAP:
            self.tt.clear()
        self.tt[key] = (lo + 1) * 3 + hi + 1
        return best

    def at_least(self, pos: int, mask: int, moves: int, v: int) -> bool:
        """Is the non-terminal position's value >= ``v`` (0 or 1)? One null-window search."""
        if _threats(pos, mask) & (mask + _BOTTOM):
            return True
        if moves == SQUARES - 1:
            return v <= 0  # the last square cannot win (checked above), so a draw
        return self.search(pos, mask, moves, v - 1, v) >= v

    def value(self, pos: int, mask: int, moves: int) -> int:
        if not self.at_least(pos, mask, moves, 0):
            return -1
        return 1 if self.at_least(pos, mask, moves, 1) else 0

    def solve(self, pos: int, mask: int, moves: int, max_nodes: int) -> tuple[int, list[int]]:
        """(value, optimal columns) of a non-terminal position, or raise ``_OutOfNodes``."""
        self.nodes, self.limit = 0, max_nodes
        v = self.value(pos, mask, moves)
        legal = [c for c in range(COLS) if not mask & (1 << (c * _H1 + ROWS - 1))]
        if v == -1:
            return v, legal  # every move loses
        optimal = []
        for c in legal:
            m = (mask + (1 << (c * _H1))) & _COLUMN[c]
            if _won(pos | m):
                optimal.append(c)  # only possible when v == 1
                continue
            if moves + 1 == SQUARES:
                child = 0
            else:
                # The child's value is >= -v (no move beats v); the move is optimal iff
                # the child gets no more than -v, one null-window search.
                opp, cm = pos ^ mask, mask | m
                child = -v if not self.at_least(opp, cm, moves + 1, 1 - v) else 1 - v
            if -child == v:
                optimal.append(c)
        return v, optimal


def _bitboards(boards: Any) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Validated (N, 42) int32 boards and each one's (player 0, player 1) bitboards."""
    b = np.asarray(boards)
    if b.ndim < 2 or b.shape[1:] not in ((SQUARES,), (ROWS, COLS)):
        raise ValueError(f"boards must have shape (N, {SQUARES}) or (N, {ROWS}, {COLS}); got {b.shape}")
    b = b.reshape(len(b), SQUARES)
    bad = ~np.isin(b, (-1, 0, 1))
    if bad.any():
        i, s = np.argwhere(bad)[0]
        r, c = divmod(int(s), COLS)
        raise ValueError(f"boards[{i}] square {s} (row {r}, col {c}) is {b[i, s].item()!r}; "
                         f"allowed values: {_VALUES}")
    b = b.astype(np.int32)
    grid = b.reshape(-1, ROWS, COLS)
    floating = (grid[:, :-1] >= 0) & (grid[:, 1:] < 0)
    if floating.any():
        i, r, c = np.argwhere(floating)[0]
        raise ValueError(f"boards[{i}] has a floating piece at row {r}, col {c} (square {r * COLS + c}): "
                         f"the square below is empty; row 0 is the top, pieces stack from row {ROWS - 1}")
    lead = (b == 0).sum(1) - (b == 1).sum(1)
    bad = np.flatnonzero((lead != 0) & (lead != 1))
    if bad.size:
        i = bad[0]
        raise ValueError(f"boards[{i}] has {(b[i] == 0).sum()} pieces of player 0 and {(b[i] == 1).sum()} "
                         "of player 1; allowed: equal counts, or one more for player 0")
    bit = np.array([1 << (c * _H1 + ROWS - 1 - r) for r in range(ROWS) for c in range(COLS)], object)
    stones = []
    for i, row in enumerate(b):
        p0, p1 = int(bit[row == 0].sum()), int(bit[row == 1].sum())
        mover = (p0, p1)[lead[i]]
        if _won(mover):
            raise ValueError(f"boards[{i}] has four in a row for the player to move, "
                             "who did not make the last move; play stops at the first win")
        stones.append((p0, p1))
    return b, stones


def solve(boards: Any, max_nodes: int = 2_000_000) -> Solution:
    """Value and optimal moves of each (N, 42) or (N, 6, 7) board, searching at most
    ``max_nodes`` nodes per position (root and children together); positions that need
    more come back ``solved=False`` rather than stalling a batch on an opening."""
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1; got {max_nodes}")
    b, stones = _bitboards(boards)
    n = len(b)
    value = np.zeros(n, np.int32)
    optimal = np.zeros((n, COLS), bool)
    solved = np.ones(n, bool)
    terminal = np.zeros(n, bool)
    nodes = np.zeros(n, np.int64)
    solver = _Solver()
    for i, (p0, p1) in enumerate(stones):
        mask, moves = p0 | p1, int((b[i] >= 0).sum())
        pos, other = (p0, p1) if moves % 2 == 0 else (p1, p0)
        if _won(other) or moves == SQUARES:
            terminal[i] = True
            value[i] = -1 if _won(other) else 0
            continue
        try:
            v, cols = solver.solve(pos, mask, moves, max_nodes)
        except _OutOfNodes:
            solved[i] = False
            nodes[i] = max_nodes
            continue
        value[i] = v
        optimal[i, cols] = True
        nodes[i] = solver.nodes
    return Solution(value=value, optimal=optimal, solved=solved, terminal=terminal, nodes=nodes)


def _one(board: Any, max_nodes: int) -> Solution:
    sol = solve(np.asarray(board)[None], max_nodes)
    if not sol.solved[0]:
        raise RuntimeError(f"position not solved within max_nodes={max_nodes}; raise the budget")
    return sol


def value_of(board: Any, max_nodes: int = 2_000_000) -> int:
    """The value of one (42,) or (6, 7) board; raises instead of returning an unsolved 0."""
    return int(_one(board, max_nodes).value[0])


def optimal_moves(board: Any, max_nodes: int = 2_000_000) -> frozenset[int]:
    """Columns achieving the value of one board (empty for terminal positions)."""
    return frozenset(np.flatnonzero(_one(board, max_nodes).optimal[0]).tolist())
