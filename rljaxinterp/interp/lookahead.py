"""Look-ahead concepts: does the network represent moves that have not been played yet?

Following Jenner et al. (2024, "Evidence of learned look-ahead in a chess-playing neural
network"), the labels are squares of future moves along a line of play: the agent's own
principal variation (``SearchTree.pv``) or a solver's line (``solver_line``). A linear probe
per site predicts the square of the move ``k`` plies ahead; its held-out top-1 accuracy is
compared with the same probe on a freshly initialised network and on shuffled labels, since
a board often gives its future moves away without any look-ahead (an open three is where the
next piece goes).

The square of a move is read off the board (the one square that changed), so it is right
for games where a move changes exactly one square (tic-tac-toe, connect four: where the piece
lands, not the column), not for games with captures or flips (Go, othello).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rljaxinterp.envs import Env, EnvState, tree_select
from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.interp import concepts
from rljaxinterp.interp.probes import fit_probes, probe_split

# Ply index -> name of the square label (ply 0 is the mover's next move).
PLY_NAMES = ("my_next_move", "opponent_reply", "my_move_two_plies_ahead", "opponent_reply_three_plies_ahead")
# The "threat" concept of each game: the side to move can win at once.
THREAT = {"tic_tac_toe": "can_win_now", "connect_four": "immediate_win"}


@struct.dataclass
class Line:
    """A line of play from each position: the square of every move and the states reached."""

    squares: jax.Array  # (P, plies) board square of the move at each ply; -1 once the line has ended
    moves: jax.Array  # (P, plies) the action at each ply; -1 once the line has ended
    states: EnvState  # (plies + 1, P, ...) the position before each ply, then after the last
    alive: jax.Array  # (plies + 1, P) the position is live (not terminal) and reached by the line

    @property
    def plies(self) -> int:
        return self.squares.shape[1]


def _board(state: EnvState) -> jax.Array:
    return game_state(state).board


def follow(env: Env, states: EnvState, moves: Any, plies: int | None = None) -> Line:
    """Play ``moves`` ``(P, D)`` (-1 pads) from ``states``; a line stops at the first pad,
    illegal move or finished game (a PV may continue past a terminal node, where the
    search's env steps are no-ops)."""
    moves = jnp.asarray(moves, jnp.int32)
    if moves.ndim != 2 or (plies is not None and not 0 < plies <= moves.shape[1]):
        raise ValueError(f"moves must be (positions, plies >= {plies or 1}); got shape {moves.shape}")
    plies = moves.shape[1] if plies is None else plies
    return _follow(env, states, moves[:, :plies])


@functools.partial(jax.jit, static_argnums=0)
def _follow(env: Env, states: EnvState, moves: jax.Array) -> Line:
    def ply(carry, action):
        state, alive = carry
        live = alive & ~state.done & (action >= 0)
        safe = jnp.maximum(action, 0)
        legal = jnp.take_along_axis(state.legal_action_mask, safe[:, None], axis=1)[:, 0]
        live = live & legal
        keys = jax.random.split(jax.random.PRNGKey(0), action.shape[0])  # board games draw no chance
        nxt = jax.vmap(env.step)(state, safe, keys)
        changed = _board(nxt) != _board(state)
        square = jnp.where(live, jnp.argmax(changed, axis=-1), -1)
        nxt = tree_select(live, nxt, state)
        return (nxt, live), (square, jnp.where(live, action, -1), nxt, live & ~nxt.done)

    start_alive = ~states.done
    (_, _), (squares, played, after, alive) = jax.lax.scan(ply, (states, start_alive), moves.T)
    all_states = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), states, after)
    return Line(squares=squares.T, moves=played.T, states=all_states,
                alive=jnp.concatenate([start_alive[None], alive]))


def square_labels(line: Line) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (square, valid)`` for each ply of the line (``PLY_NAMES``)."""
    squares = np.asarray(line.squares)
    return {PLY_NAMES[k]: (squares[:, k], squares[:, k] >= 0) for k in range(min(line.plies, len(PLY_NAMES)))}


def threat_after(env_name: str, line: Line, plies: int = 2, concept: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Whether the root's mover will have an immediate win ``plies`` plies ahead (``plies``
    even, so the same side moves), and where that is defined (the line reached a live position)."""
    if plies % 2 or not 0 < plies <= line.plies:
        raise ValueError(f"plies={plies} must be even and in [2, {line.plies}] so the root's mover moves again")
    name = concept or THREAT.get(env_name)
    if name is None:
        raise ValueError(f"no threat concept known for {env_name!r}; pass concept= (known: {THREAT})")
    state = jax.tree.map(lambda x: x[plies], line.states)
    value = np.asarray(concepts.compute(env_name, state, [name])[name]).astype(bool)
    return value, np.asarray(line.alive[plies])


def solver_line(env: Env, states: EnvState, truth: Callable[[EnvState], tuple[Any, Any, Any]],
                preference: Callable[[EnvState], jax.Array], plies: int) -> tuple[np.ndarray, np.ndarray]:
    """A perfect line of ``plies`` moves: at each ply the optimal move (``truth(states) ->
    (value, optimal (P, A), solved)``) that ``preference`` (e.g. the network's prior) ranks
    highest, since many positions have several optimal moves and a probe can only be asked
    for one. Returns ``(moves (P, plies), solved)``; moves are -1 after the game ends or
    where a position on the line was not solved."""
    n = np.asarray(states.terminated).shape[0]
    moves = np.full((n, plies), -1, np.int32)
    ok = np.ones(n, bool)
    state = states
    for k in range(plies):
        live = ~np.asarray(state.done)
        _, optimal, solved = truth(state)
        optimal = np.asarray(optimal, bool)
        ok &= np.asarray(solved, bool) | ~live
        score = np.where(optimal, np.asarray(preference(state), np.float64), -np.inf)
        move = np.where(live & ok & optimal.any(1), score.argmax(1), -1)
        moves[:, k] = move
        state = jax.tree.map(lambda x: x[1], _follow(env, state, jnp.asarray(move[:, None])).states)
    return moves, ok


# -- probes ------------------------------------------------------------------------------------
@struct.dataclass
class SquareProbes:
    """Held-out top-1 accuracy of predicting a future move's square, per site."""

    accuracy: dict[str, float]  # site -> accuracy of the argmax over per-square probes
    majority: float  # always guessing the most common square
    positions: int  # labelled positions (train + test)
    probes: dict[str, tuple[jax.Array, jax.Array]]  # site -> (weights (squares, width), bias (squares,))
    test: np.ndarray  # held-out rows, indices into the valid positions
    squares: tuple[int, ...] = struct.field(pytree_node=False)  # squares that occur as labels

    def predict(self, site: str, x: Any) -> np.ndarray:
        """The predicted square for feature rows ``x`` of ``site``."""
        return _predict(self.probes[site], self.squares, x)


def square_probes(features: Mapping[str, Any], square: Any, valid: Any, key: jax.Array | None = None,
                  l2: float = 1.0, shuffle_labels: bool = False, min_count: int = 2,
                  kind: str = "logistic") -> SquareProbes:
    """One probe per (site, square) on the valid positions; a position's prediction is the
    square whose probe scores highest (one-vs-rest: ``logistic`` as scikit-learn's
    ``LogisticRegression(multi_class="ovr")``, ``ridge`` as its ``RidgeClassifier``, closed
    form and far cheaper for wide sites or many control networks)."""
    valid = np.asarray(valid, bool)
    square = np.asarray(square)[valid]
    if square.size < 8:
        raise ValueError(f"only {square.size} labelled positions; square probes need at least 8")
    key = jax.random.key(0) if key is None else key
    if shuffle_labels:
        square = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), square))
    counts = np.bincount(square)
    classes = np.flatnonzero(counts >= min_count)
    onehot = {f"square{s}": (square == s).astype(np.float32) for s in classes}
    feats = {s: jnp.asarray(np.asarray(f)[valid], jnp.float32) for s, f in features.items()}
    scores = fit_probes(feats, onehot, kind=kind, key=key, l2=l2)
    probes = {site: (scores.weights[i, :, :feats[site].shape[1]], scores.bias[i]) for i, site in enumerate(scores.sites)}
    train, test = probe_split(key, len(square))
    majority = float(np.mean(square[test] == np.bincount(square[train]).argmax()))  # the train split's mode
    classes_t = tuple(int(s) for s in classes)
    accuracy = {site: float(np.mean(_predict(probes[site], classes_t, feats[site][test]) == square[test]))
                for site in scores.sites}
    return SquareProbes(accuracy=accuracy, majority=majority, positions=len(square), probes=probes, test=test,
                        squares=classes_t)


def _predict(probe: tuple[jax.Array, jax.Array], squares: tuple[int, ...], x: Any) -> np.ndarray:
    w, b = probe
    return np.asarray(squares)[np.asarray(jnp.argmax(jnp.asarray(x, jnp.float32) @ w.T + b, -1))]


def channel_importance(result: SquareProbes, site: str, features: Any, square: Any, valid: Any,
                       channels: int) -> np.ndarray:
    """Where a spatial site keeps what its probe reads: the held-out accuracy lost when one
    channel (at every square) is replaced by its mean, per channel, ``(channels,)``. Features
    are the site's flattened ``(states, squares * channels)`` activations, channels last."""
    x = np.asarray(features, np.float32)[np.asarray(valid, bool)][result.test]
    y = np.asarray(square)[np.asarray(valid, bool)][result.test]
    if x.shape[1] % channels:
        raise ValueError(f"site {site!r} has {x.shape[1]} features, not a multiple of {channels} channels")
    base = np.mean(result.predict(site, x) == y)
    grid = x.reshape(len(x), -1, channels)
    drops = np.zeros(channels)
    for c in range(channels):
        ablated = grid.copy()
        ablated[..., c] = grid[..., c].mean(0)  # each square's mean over the held-out states
        drops[c] = base - np.mean(result.predict(site, ablated.reshape(len(x), -1)) == y)
    return drops
