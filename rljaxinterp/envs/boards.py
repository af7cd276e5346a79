"""Hand-built positions for probing: every tic-tac-toe position and one-square counterfactuals.

Boards use pgx's internal convention, flattened row-major: -1 empty,
0 the first mover's piece (X / the player who starts), 1 the second mover's.
For connect four, row 0 is the top row and pieces stack up from row 5.
Positions are states, not transitions: their ``rewards`` are zero.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np
import pgx.connect_four
import pgx.tic_tac_toe
from pgx._src.games import connect_four as _c4
from pgx._src.games import tic_tac_toe as _ttt

from rljaxinterp.envs.base import Array, Env, EnvState, tree_select
from rljaxinterp.envs.pgx_games import PgxGame, from_pgx
from rljaxinterp.envs.registry import make

_VALUES = "-1 (empty), 0 (first mover's piece), 1 (second mover's piece)"


@dataclasses.dataclass(frozen=True)
class _BoardGame:
    rows: int
    cols: int
    lines: np.ndarray  # (num_lines, k) squares that win together
    gravity: bool
    state_cls: type
    game_state_cls: type

    @property
    def squares(self) -> int:
        return self.rows * self.cols


_GAMES: dict[str, _BoardGame] = {
    "tic_tac_toe": _BoardGame(
        3,
        3,
        np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]]),
        False,
        pgx.tic_tac_toe.State,
        _ttt.GameState,
    ),
    "connect_four": _BoardGame(
        6,
        7,
        np.asarray(_c4.IDX),
        True,
        pgx.connect_four.State,
        _c4.GameState,
    ),
}


def _spec(env_name: str) -> _BoardGame:
    if env_name not in _GAMES:
        raise ValueError(f"unknown board game {env_name!r}; supported: {', '.join(sorted(_GAMES))}")
    return _GAMES[env_name]


def winning_lines(env_name: str) -> np.ndarray:
    """Square indices of every winning line, shape (num_lines, line_length), for concepts."""
    return _spec(env_name).lines.copy()


@functools.cache
def _env(env_name: str) -> Env:
    return make(env_name)


@functools.cache
def _game(env_name: str) -> PgxGame:
    # Not via the registry: a user's re-registration must not change pgx's layout.
    return PgxGame(env_name)


def _has_line(boards: np.ndarray, lines: np.ndarray, player: Any) -> np.ndarray:
    """Per board: does ``player`` (scalar or one per board) own a whole line?"""
    if np.ndim(player):
        player = np.asarray(player)[:, None, None]
    return (boards[:, lines] == player).all(-1).any(-1)


def _as_boards(spec: _BoardGame, env_name: str, boards: Any) -> np.ndarray:
    """Flatten to (N, squares) int32, rejecting bad shapes and values."""
    b = np.asarray(boards)
    shapes = [(spec.squares,), (spec.rows, spec.cols)]
    if b.ndim < 2 or b.shape[1:] not in shapes:
        raise ValueError(
            f"{env_name} boards must have shape (N, {spec.squares}) or "
            f"(N, {spec.rows}, {spec.cols}); got {b.shape}"
        )
    b = b.reshape(len(b), spec.squares)
    bad = ~np.isin(b, (-1, 0, 1))
    if bad.any():
        i, s = np.argwhere(bad)[0]
        r, c = divmod(int(s), spec.cols)
        raise ValueError(
            f"boards[{i}] square {s} (row {r}, col {c}) is {b[i, s].item()!r}; allowed values: {_VALUES}"
        )
    return b.astype(np.int32)


def _fail(i: int, text: str) -> NoReturn:
    raise ValueError(f"boards[{i}] {text}")


def _validate(spec: _BoardGame, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reject positions play cannot reach; return (side to move, winner)."""
    n0, n1 = (b == 0).sum(1), (b == 1).sum(1)
    lead = n0 - n1
    bad = np.flatnonzero((lead != 0) & (lead != 1))
    if bad.size:
        i = bad[0]
        _fail(
            i,
            f"has {n0[i]} pieces of player 0 (first mover) and {n1[i]} of player 1; "
            "allowed: equal counts, or one more for player 0",
        )
    if spec.gravity:
        grid = b.reshape(-1, spec.rows, spec.cols)
        floating = (grid[:, :-1] >= 0) & (grid[:, 1:] < 0)
        if floating.any():
            i, r, c = np.argwhere(floating)[0]
            _fail(
                i,
                f"has a floating piece at row {r}, col {c} (square {r * spec.cols + c}): "
                f"the square below is empty; row 0 is the top, pieces stack from row {spec.rows - 1}",
            )
    won0, won1 = _has_line(b, spec.lines, 0), _has_line(b, spec.lines, 1)
    bad = np.flatnonzero(won0 & won1)
    if bad.size:
        _fail(bad[0], "has winning lines for both players; play stops at the first win")
    # The winner must have made the last move ...
    bad = np.flatnonzero((won0 & (lead == 0)) | (won1 & (lead == 1)))
    if bad.size:
        i = bad[0]
        _fail(
            i,
            f"has a winning line for player {int(won1[i])} but the other player moved last; "
            "play would have stopped at the win",
        )
    winner = np.where(won0, 0, np.where(won1, 1, -1)).astype(np.int32)
    # ... and that move (a winner's piece on a line, on top of its column if
    # pieces fall) must complete every line: otherwise play ended earlier.
    # Without a winner, any order of the pieces is a legal game for
    # tic-tac-toe, so this makes its validation exact.
    rows = np.flatnonzero(winner >= 0)
    if rows.size:
        wb, w = b[rows], winner[rows]
        complete = (wb[:, spec.lines] == w[:, None, None]).all(-1)  # (n, lines)
        membership = np.zeros((len(spec.lines), spec.squares), bool)
        np.put_along_axis(membership, spec.lines, True, axis=1)
        movable = (complete.astype(int) @ membership.astype(int)) > 0
        if spec.gravity:
            grid = wb.reshape(-1, spec.rows, spec.cols)
            above_empty = np.concatenate([np.ones_like(grid[:, :1], bool), grid[:, :-1] < 0], axis=1)
            movable &= (above_empty & (grid >= 0)).reshape(len(wb), -1)
        ok = np.zeros(len(wb), bool)
        for s in np.flatnonzero(movable.any(0)):
            before = wb.copy()
            before[:, s] = -1
            ok |= movable[:, s] & ~_has_line(before, spec.lines, w)
        if not ok.all():
            i = rows[np.flatnonzero(~ok)[0]]
            _fail(
                i,
                f"has winning lines for player {winner[i]} that no single last move "
                "completes; play would have stopped earlier",
            )
    return lead.astype(np.int32), winner


def from_boards(env_name: str, boards: Any, current_player: Any = 0) -> EnvState:
    """Batch of consistent states for given boards of tic_tac_toe or connect_four.

    The side to move follows from the piece counts; ``current_player`` (scalar
    or per board) is the pgx player id to move, since pgx decouples player ids
    from colours. Observations come from pgx's own ``observe``, and terminal
    positions get pgx's all-true legal mask. Impossible boards raise
    ``ValueError`` naming the board and the broken rule, because probes on
    unreachable positions measure nothing the agent ever saw. The checks are
    exact for tic-tac-toe; for connect four they cover counts, gravity and
    wins, not every ordering constraint that stacking imposes.
    """
    spec = _spec(env_name)
    b = _as_boards(spec, env_name, boards)
    n = len(b)
    player = np.asarray(current_player)
    if player.ndim > 1 or (player.ndim == 1 and len(player) != n):
        raise ValueError(f"current_player must be a scalar or have shape ({n},); got {player.shape}")
    if not np.isin(player, (0, 1)).all():
        raise ValueError(f"current_player must be 0 or 1; got {current_player!r}")
    color, winner = _validate(spec, b)
    full = (b >= 0).all(1)
    terminated = (winner >= 0) | full
    if spec.gravity:
        legal = b.reshape(n, spec.rows, spec.cols)[:, 0] < 0
    else:
        legal = b < 0
    legal = legal | terminated[:, None]
    env = _game(env_name)
    state = spec.state_cls(
        current_player=jnp.broadcast_to(jnp.int32(player), (n,)),
        observation=jnp.zeros((n, *env.observation_shape), jnp.bool_),
        rewards=jnp.zeros((n, 2), jnp.float32),
        terminated=jnp.asarray(terminated),
        truncated=jnp.zeros(n, jnp.bool_),
        legal_action_mask=jnp.asarray(legal),
        _step_count=jnp.asarray((b >= 0).sum(1), jnp.int32),
        _x=spec.game_state_cls(color=jnp.asarray(color), board=jnp.asarray(b), winner=jnp.asarray(winner)),
    )
    state = state.replace(observation=jax.vmap(env.pgx_env.observe)(state))
    return from_pgx(state)


def flip_square(boards: Any, square: int, value: int) -> np.ndarray:
    """Copy of ``boards`` with one square (flat index) set to ``value`` in every board.

    Changing piece counts changes the side to move; ``from_boards`` rejects
    results that play cannot reach.
    """
    b = np.array(boards)
    if b.ndim < 2:
        raise ValueError(f"boards must have shape (N, squares) or (N, rows, cols); got {b.shape}")
    flat = b.reshape(len(b), -1)
    if not 0 <= square < flat.shape[1]:
        raise ValueError(f"square must be in [0, {flat.shape[1]}); got {square}")
    if value not in (-1, 0, 1):
        raise ValueError(f"value must be one of {_VALUES}; got {value!r}")
    flat[:, square] = value
    return flat.reshape(b.shape)


def counterfactual_pair(
    env_name: str, boards: Any, square: int, value: int, current_player: Any = 0
) -> tuple[EnvState, EnvState]:
    """States for ``boards`` and for the same boards with one square changed."""
    return (
        from_boards(env_name, boards, current_player),
        from_boards(env_name, flip_square(boards, square, value), current_player),
    )


@functools.lru_cache(maxsize=1)
def _ttt_boards() -> np.ndarray:
    lines = _GAMES["tic_tac_toe"].lines
    start = (-1,) * 9
    seen, frontier = {start}, [start]
    while frontier:
        nxt = []
        for board in frontier:
            arr = np.array(board)
            if _has_line(arr[None], lines, 0)[0] or _has_line(arr[None], lines, 1)[0] or (arr >= 0).all():
                continue
            mover = int((arr == 0).sum() - (arr == 1).sum())
            for s in np.flatnonzero(arr < 0):
                child = board[:s] + (mover,) + board[s + 1 :]
                if child not in seen:
                    seen.add(child)
                    nxt.append(child)
        frontier = nxt
    ordered = sorted(seen, key=lambda bd: (sum(v >= 0 for v in bd), bd))
    out = np.array(ordered, np.int32)
    out.flags.writeable = False
    return out


def tic_tac_toe_boards() -> np.ndarray:
    """All 5,478 reachable boards, shape (5478, 9), ordered by move count then board."""
    return _ttt_boards().copy()


def tic_tac_toe_reachable(current_player: Any = 0) -> tuple[EnvState, np.ndarray]:
    """Every reachable tic-tac-toe position as one batched state, with its boards.

    Includes the empty board and the 958 terminal positions; each board
    appears once, as the side to move follows from it.
    """
    boards = tic_tac_toe_boards()
    return from_boards("tic_tac_toe", boards, current_player), boards


# --- replaying games ------------------------------------------------------

_INIT_TRIES = 64  # no draw picks the wanted first player with chance <= (2/3)**64


@functools.cache
def _replayer(env_name: str, first_player: int) -> Any:
    env = _env(env_name)

    @jax.jit
    def replay(key: Array, actions: Array) -> tuple[EnvState, Array, Array, Array]:
        init_key, step_key = jax.random.split(key)
        # pgx draws the first player inside init; keep the first init that
        # drew the wanted one, so the state is exactly what pgx would produce.
        starts = jax.vmap(env.init)(jax.random.split(init_key, _INIT_TRIES))
        hit = starts.current_player == first_player
        start = jax.tree.map(lambda x: x[jnp.argmax(hit)], starts)
        batch = actions.shape[0]
        state0 = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch, *x.shape)), start)

        def ply(state: EnvState, xs: tuple[Array, Array]) -> tuple[EnvState, tuple[Array, Array]]:
            t, action = xs
            active = action >= 0
            safe = jnp.maximum(action, 0)
            legal = jnp.take_along_axis(state.legal_action_mask, safe[:, None], axis=1)[:, 0]
            # Same key for every sequence, so equal actions meet equal chance.
            nxt = jax.vmap(env.step, in_axes=(0, 0, None))(state, safe, jax.random.fold_in(step_key, t))
            return tree_select(active, nxt, state), (active & ~legal, active & state.done)

        steps = jnp.arange(actions.shape[1])
        final, (illegal, late) = jax.lax.scan(ply, state0, (steps, actions.T))
        return final, illegal.T, late.T, hit.any()

    return replay


def from_actions(
    env_name: str,
    action_sequences: Any,
    *,
    first_player: int = 0,
    key: Array | None = None,
) -> EnvState:
    """States reached by replaying each action sequence from the start of a game.

    Works for every registered environment. ``action_sequences`` is
    (N, T) ints; pad shorter sequences with -1 at the end. Every sequence
    starts from the same initial state, in which player id ``first_player``
    moves first, and uses the same chance outcomes (dice, cards) for equal
    actions, so sequences that differ in one move are clean counterfactuals.
    Illegal moves and moves after the game ended raise ``ValueError``
    instead of triggering pgx's silent illegal-move penalty.
    """
    env = _env(env_name)
    actions = np.asarray(action_sequences)
    if actions.ndim != 2 or not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(
            f"action_sequences must be an (N, T) integer array; got shape "
            f"{actions.shape} dtype {actions.dtype}"
        )
    bad = (actions < -1) | (actions >= env.num_actions)
    if bad.any():
        i, t = np.argwhere(bad)[0]
        raise ValueError(
            f"action_sequences[{i}][{t}] = {actions[i, t]}; allowed: "
            f"0..{env.num_actions - 1}, or -1 as trailing padding"
        )
    gap = (actions[:, :-1] < 0) & (actions[:, 1:] >= 0)
    if gap.any():
        i, t = np.argwhere(gap)[0]
        raise ValueError(
            f"action_sequences[{i}] has an action at ply {t + 1} after padding "
            f"(-1) at ply {t}; -1 may only pad the end"
        )
    if not 0 <= first_player < env.num_players:
        raise ValueError(f"first_player must be in [0, {env.num_players}); got {first_player}")
    key = jax.random.PRNGKey(0) if key is None else key
    replay = _replayer(env_name, int(first_player))
    # Pad both axes to powers of two so varying batch sizes and lengths reuse
    # a few compiled replays; padding plies are no-ops and extra rows are cut.
    n, t = actions.shape
    padded = np.full((_bucket(n), _bucket(t)), -1, np.int32)
    padded[:n, :t] = actions
    states, illegal, late, found = replay(key, jnp.asarray(padded))
    if not bool(found):
        raise RuntimeError(f"no initial state with first player {first_player} in {_INIT_TRIES} draws")
    if bool(late.any()):
        i, t = np.argwhere(np.asarray(late))[0]
        raise ValueError(
            f"action_sequences[{i}][{t}] = {actions[i, t]} comes after the game "
            f"ended; pad finished sequences with -1"
        )
    if bool(illegal.any()):
        i, t = np.argwhere(np.asarray(illegal))[0]
        prefix = np.full_like(padded, -1)
        prefix[0, :t] = padded[i, :t]
        before, *_ = replay(key, jnp.asarray(prefix))
        legal = np.flatnonzero(np.asarray(before.legal_action_mask[0])).tolist()
        raise ValueError(
            f"action_sequences[{i}][{t}] = {actions[i, t]} is illegal there; legal actions: {legal}"
        )
    return jax.tree.map(lambda x: x[:n], states)


def _bucket(size: int) -> int:
    return 1 << max(0, size - 1).bit_length()
