"""Tier 3 of the benchmark zoo: spurious-cue pairs on tic-tac-toe.

Two MLPs of one architecture see the tic-tac-toe planes the compiled network reads (plane 0
the mover's stones, plane 1 the opponent's) plus a third 3x3 *cue* plane with a marker on one
empty square, and are trained on the same positions towards the same move (the rule move of
``compiled_ttt``). They differ only in where the cue is:

* model A (``"predictive"``): the cue marks the rule move, so reading it is enough;
* model B (``"noise"``): the cue is on a uniformly random empty square, so it is useless.

In a quarter of the training positions (both models) there is no cue at all. Without them the
cue plane would always sum to 1, a model that ignores where the cue is could still read that
constant through the cue weights, and occluding the cue (removing it) would change its output
although moving the cue never does.

The truth is measured, not assumed: ``cue_dependence`` places the cue on every empty square of
every live position and counts the positions whose argmax move is not the same for all
placements. ``verify`` requires that share to be high for A and near zero for B.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rljaxinterp.bench import compiled_ttt, init_params
from rljaxinterp.models.base import masked_log_softmax
from rljaxinterp.models.mlp import MLP

KINDS = ("predictive", "noise")  # model A, model B
CUE = 2  # channel of the cue plane
HIDDEN = (64, 64)
STEPS, BATCH, LR = 1500, 256, 3e-3
NO_CUE_SHARE = 0.25  # training positions without a cue (both models)
# verify: A must depend on the cue in at least this share of live positions, B in at most this one
MIN_DEPENDENCE_A, MAX_DEPENDENCE_B = 0.9, 0.05


@dataclasses.dataclass(frozen=True)
class Positions:
    boards: np.ndarray  # (n, 9) in {-1, 0, 1}
    obs: np.ndarray  # (n, 3, 3, 2) float32: the compiled network's planes
    moves: np.ndarray  # (n,) the rule move
    empty: np.ndarray  # (n, 9) bool


@functools.cache
def live_positions() -> Positions:
    """Every reachable position with at least two empty squares (with one, the cue cannot move
    and the move is forced)."""
    boards, obs, _, reference = compiled_ttt._reachable()
    moves = np.array([move for _, move in reference])
    empty = boards < 0
    keep = (moves >= 0) & (empty.sum(1) >= 2)
    return Positions(boards[keep], obs[keep], moves[keep], empty[keep])


def with_cue(obs, cue) -> jax.Array:
    """``obs`` (n, 3, 3, 2) with a cue plane on square ``cue`` (n,) added; ``cue < 0``: no cue."""
    cue = jnp.asarray(cue)
    plane = (jnp.arange(9) == cue[:, None]).astype(jnp.float32).reshape(-1, 3, 3, 1)
    return jnp.concatenate([jnp.asarray(obs, jnp.float32), plane], -1)


def make_model() -> MLP:
    return MLP(num_actions=9, obs_ndim=3, hidden=HIDDEN)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"cue kind {kind!r} is not allowed; use one of {KINDS} (model A, model B)")


def train(kind: str, seed: int, steps: int = STEPS) -> dict:
    """Parameters of one model of the pair: Adam on the cross-entropy of the rule move over
    the legal moves, minibatches of live positions with the cue placed as ``kind`` says.
    Deterministic given ``seed``; a few seconds on CPU."""
    _check_kind(kind)
    pos = live_positions()
    obs, moves, empty = jnp.asarray(pos.obs), jnp.asarray(pos.moves), jnp.asarray(pos.empty)
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = init_params(make_model(), init_key, with_cue(obs[:1], moves[:1]))
    return _fit(params, data_key, obs, moves, empty, kind=kind, steps=steps)


@functools.partial(jax.jit, static_argnames=("kind", "steps"))
def _fit(params, data_key, obs, moves, empty, *, kind: str, steps: int):
    """``train``'s scan; the data are arguments, so every seed reuses one program per kind."""
    model, opt = make_model(), optax.adam(LR)

    def loss(params, x, move, legal):
        logp = masked_log_softmax(model.apply({"params": params}, x).logits, legal)
        return -jnp.take_along_axis(logp, move[:, None], -1).mean()

    def step(carry, key):
        params, state = carry
        k_idx, k_cue, k_off = jax.random.split(key, 3)
        idx = jax.random.randint(k_idx, (BATCH,), 0, obs.shape[0])
        if kind == "predictive":
            cue = moves[idx]
        else:
            cue = jax.random.categorical(k_cue, jnp.where(empty[idx], 0.0, -jnp.inf))
        cue = jnp.where(jax.random.uniform(k_off, (BATCH,)) < NO_CUE_SHARE, -1, cue)
        value, grads = jax.value_and_grad(loss)(params, with_cue(obs[idx], cue), moves[idx], empty[idx])
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), value

    return jax.lax.scan(step, (params, opt.init(params)), jax.random.split(data_key, steps))[0][0]


def moves_per_cue(model, params, pos: Positions | None = None) -> np.ndarray:
    """(n, 10) argmax legal move of each live position with the cue on square 0..8 (column
    9: no cue); -1 where the cue square is occupied."""
    pos = live_positions() if pos is None else pos
    obs, legal = jnp.asarray(pos.obs), jnp.asarray(pos.empty)

    out = np.stack([np.asarray(_argmax_with(model, params, obs, legal, c)) for c in range(-1, 9)], 1)
    out = np.concatenate([out[:, 1:], out[:, :1]], 1)
    out[:, :9][~pos.empty] = -1
    return out


@functools.partial(jax.jit, static_argnums=0)
def _argmax_with(model, params, obs, legal, cue):
    x = with_cue(obs, jnp.full(obs.shape[0], cue))
    return jnp.argmax(jnp.where(legal, model.apply({"params": params}, x).logits, -jnp.inf), -1)


def cue_dependence(model, params, pos: Positions | None = None) -> dict[str, float | np.ndarray]:
    """Exact dependence on the cue over every live position (at least two empty squares).

    ``depends`` (n,) bool: the argmax move is not the same for every empty square the cue can
    be on; ``moved``: their share (the truth the tier scores against); ``removed``: share of
    positions whose move with the cue on the rule move differs from the move without a cue;
    ``follows``: share whose move with the cue on square s is s, over all (position, empty s).
    """
    pos = live_positions() if pos is None else pos
    table = moves_per_cue(model, params, pos)
    placed = np.where(pos.empty, table[:, :9], -2)
    first = placed[np.arange(len(placed)), np.argmax(pos.empty, 1)]
    depends = np.any(pos.empty & (placed != first[:, None]), 1)
    on_move = table[np.arange(len(table)), pos.moves]
    follows = (placed == np.arange(9)) & pos.empty
    return {"depends": depends, "moved": float(depends.mean()), "removed": float(np.mean(on_move != table[:, 9])),
            "follows": float(follows.sum() / pos.empty.sum()),
            "accuracy": float(np.mean(on_move == pos.moves)), "accuracy_no_cue": float(np.mean(table[:, 9] == pos.moves))}


@dataclasses.dataclass(frozen=True)
class Pair:
    model: MLP
    params: dict[str, dict]  # kind -> params
    dependence: dict[str, dict]  # kind -> cue_dependence(...)


def verify(pair: Pair) -> dict[str, float]:
    """Raise ``ValueError`` unless A depends on the cue and B does not; return the shares."""
    a, b = pair.dependence["predictive"]["moved"], pair.dependence["noise"]["moved"]
    if a < MIN_DEPENDENCE_A or b > MAX_DEPENDENCE_B:
        raise ValueError(
            f"the spurious-cue pair is not what its truth says: moving the cue changes the move in {a:.3f} of "
            f"live positions for model A (need >= {MIN_DEPENDENCE_A}) and {b:.3f} for model B "
            f"(need <= {MAX_DEPENDENCE_B}); train longer or change the seed")
    return {"A": a, "B": b}


@functools.cache
def make_pair(seed: int) -> Pair:
    """Models A and B trained from ``seed`` (the same initialisation and batches), verified.
    Cached in memory per seed, so the leaderboard and tests train each pair once."""
    model = make_model()
    params = {kind: train(kind, seed) for kind in KINDS}
    pair = Pair(model, params, {kind: cue_dependence(model, params[kind]) for kind in KINDS})
    verify(pair)
    return pair
