"""Tier 3 of the benchmark zoo: spurious-cue pairs, on tic-tac-toe and in a maze gridworld.

Two MLPs of one architecture see a world's observation planes plus one extra *cue* plane
with a marker on one cell, and are trained on the same positions towards the same action.
They differ only in where the cue is:

* model A (``"predictive"``): the cue marks the cell the correct action goes to, so reading
  it is enough;
* model B (``"noise"``): the cue is on a uniformly random cell among the same candidates, so
  it is useless.

The worlds (``WORLDS``):

* ``"tic_tac_toe"``: the planes the compiled network reads (plane 0 the mover's stones,
  plane 1 the opponent's), the action the rule move of ``compiled_ttt``, the cue's
  candidates the empty squares; every reachable position with at least two empty squares.
* ``"cheese_maze"``: levels of the ``CheeseMaze`` gridworld (11x11 with its outer wall, so 5x5
  maze cells; the "test" distribution, so the cheese is anywhere), planes walls / mouse / cheese, the action
  the first step of the (unique, the maze being perfect) shortest path to the cheese, the
  cue's candidates the open cells next to the mouse. For A the cue is a breadcrumb that
  points towards the cheese in training only; moved, it points anywhere. Positions are the
  levels of keys 0, 1, ... where the mouse has at least two open neighbours; the truth is
  measured on the first ``MAZE_EVAL_LEVELS`` of them, the distribution both models learned
  (``maze_levels`` draws held-out levels, where B, which must solve the maze from the walls,
  is less sure of itself: docs/BENCH.md).

In a quarter of the training positions (both models) there is no cue at all. Without them the
cue plane would always sum to 1, a model that ignores where the cue is could still read that
constant through the cue weights, and occluding the cue (removing it) would change its output
although moving the cue never does.

The truth is measured, not assumed: ``cue_dependence`` places the cue on every candidate cell
of every evaluation position and counts the positions whose argmax action is not the same for
all placements. ``verify`` requires that share to be high for A and near zero for B.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rljaxinterp.bench import compiled_ttt, init_params
from rljaxinterp.models.base import masked_log_softmax
from rljaxinterp.models.mlp import MLP

KINDS = ("predictive", "noise")  # model A, model B
NO_CUE_SHARE = 0.25  # training positions without a cue (both models)
# verify: A must depend on the cue in at least this share of positions, B in at most this one
MIN_DEPENDENCE_A, MAX_DEPENDENCE_B = 0.9, 0.05


@dataclasses.dataclass(frozen=True)
class Positions:
    obs: np.ndarray  # (n, rows, cols, planes) float32, without the cue plane
    moves: np.ndarray  # (n,) the correct action
    legal: np.ndarray  # (n, actions) bool
    candidates: np.ndarray  # (n, cells) bool: where the cue may be
    target: np.ndarray  # (n,) the cell the predictive cue marks (where the correct action goes)
    goes_to: np.ndarray  # (n, cells) the action that goes to each candidate cell (-1 elsewhere)


@dataclasses.dataclass(frozen=True)
class World:
    """A world of the tier: its positions for training and for measuring, and its budget."""

    actions: int
    hidden: tuple[int, ...]
    steps: int
    batch: int
    lr: float
    train_positions: Callable[[], Positions]
    eval_positions: Callable[[], Positions]


# -- tic-tac-toe ----------------------------------------------------------------------------------
@functools.cache
def live_positions() -> Positions:
    """Every reachable tic-tac-toe position with at least two empty squares (with one, the cue
    cannot move and the move is forced)."""
    boards, obs, _, reference = compiled_ttt._reachable()
    moves = np.array([move for _, move in reference])
    empty = boards < 0
    keep = (moves >= 0) & (empty.sum(1) >= 2)
    empty = empty[keep]
    return Positions(obs[keep], moves[keep], empty, empty, moves[keep], np.where(empty, np.arange(9), -1))


# -- the maze ---------------------------------------------------------------------------------------
MAZE_SIZE = 11  # 5x5 maze cells: reading the maze is much harder than reading the cue
MAZE_TRAIN_LEVELS, MAZE_EVAL_LEVELS = 16_384, 2_048


def maze_levels(first_key: int, n: int) -> Positions:
    """Levels of ``CheeseMaze`` from keys ``first_key .. first_key + n - 1``, kept where the
    mouse has at least two open neighbours; the action is the first step of the shortest path
    (breadth-first distances to the cheese; unique in a perfect maze)."""
    from rljaxinterp.envs.gridworlds import CheeseMaze
    from rljaxinterp.envs.gridworlds.common import MOVES

    env = CheeseMaze(distribution="test", size=MAZE_SIZE)
    states = jax.vmap(env.init)(jax.vmap(jax.random.key)(jnp.arange(first_key, first_key + n)))
    walls = np.asarray(states.inner.walls)
    agent, goal = np.asarray(states.inner.agent), np.asarray(states.inner.goal)
    dist = _distances(walls, goal)
    rows = np.arange(n)
    size = MAZE_SIZE
    nxt = agent[:, None, :] + MOVES[None]  # (n, 4, 2): the cell each action goes to (the border is wall)
    open_next = ~walls[rows[:, None], nxt[..., 0], nxt[..., 1]]
    d_next = np.where(open_next, dist[rows[:, None], nxt[..., 0], nxt[..., 1]], np.iinfo(np.int32).max)
    moves = np.argmin(d_next, 1)
    if not np.all(d_next[rows, moves] == dist[rows, agent[:, 0], agent[:, 1]] - 1):
        raise RuntimeError("a maze level has no step towards its cheese; CheeseMaze's mazes should be perfect")
    cells = nxt[..., 0] * size + nxt[..., 1]
    candidates = np.zeros((n, size * size), bool)
    goes_to = np.full((n, size * size), -1)
    for a in range(len(MOVES)):
        candidates[rows[open_next[:, a]], cells[open_next[:, a], a]] = True
        goes_to[rows[open_next[:, a]], cells[open_next[:, a], a]] = a
    keep = open_next.sum(1) >= 2
    obs = np.asarray(states.observation, np.float32)
    return Positions(obs[keep], moves[keep], open_next[keep], candidates[keep], cells[rows, moves][keep], goes_to[keep])


def _distances(walls: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """(n, rows, cols) moves from every open cell to the goal (breadth-first, all levels at once)."""
    n, h, w = walls.shape
    far = np.iinfo(np.int32).max
    dist = np.full((n, h, w), far, np.int64)
    dist[np.arange(n), goal[:, 0], goal[:, 1]] = 0
    frontier = dist == 0
    for step in range(1, h * w):
        grown = np.zeros_like(frontier)
        grown[:, 1:] |= frontier[:, :-1]
        grown[:, :-1] |= frontier[:, 1:]
        grown[:, :, 1:] |= frontier[:, :, :-1]
        grown[:, :, :-1] |= frontier[:, :, 1:]
        frontier = grown & ~walls & (dist == far)
        if not frontier.any():
            break
        dist[frontier] = step
    return dist


@functools.cache
def maze_train_positions() -> Positions:
    return maze_levels(0, MAZE_TRAIN_LEVELS)


@functools.cache
def maze_eval_positions() -> Positions:
    """The first ``MAZE_EVAL_LEVELS`` training positions."""
    pos = maze_train_positions()
    return Positions(*(getattr(pos, f.name)[:MAZE_EVAL_LEVELS] for f in dataclasses.fields(Positions)))


WORLDS: dict[str, World] = {
    "tic_tac_toe": World(9, (64, 64), 1500, 256, 3e-3, live_positions, live_positions),
    "cheese_maze": World(4, (128, 128), 3000, 256, 3e-3, maze_train_positions, maze_eval_positions),
}


def _world(world: str) -> World:
    if world not in WORLDS:
        raise ValueError(f"cue world {world!r} is not allowed; use one of {tuple(WORLDS)}")
    return WORLDS[world]


def with_cue(obs, cue) -> jax.Array:
    """``obs`` (n, rows, cols, planes) with a cue plane on cell ``cue`` (n,) added (cells in
    row-major order); ``cue < 0``: no cue."""
    obs, cue = jnp.asarray(obs, jnp.float32), jnp.asarray(cue)
    rows, cols = obs.shape[1:3]
    plane = (jnp.arange(rows * cols) == cue[:, None]).astype(jnp.float32).reshape(-1, rows, cols, 1)
    return jnp.concatenate([obs, plane], -1)


def make_model(world: str = "tic_tac_toe") -> MLP:
    spec = _world(world)
    return MLP(num_actions=spec.actions, obs_ndim=3, hidden=spec.hidden)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"cue kind {kind!r} is not allowed; use one of {KINDS} (model A, model B)")


def train(kind: str, seed: int, steps: int | None = None, world: str = "tic_tac_toe") -> dict:
    """Parameters of one model of the pair: Adam on the cross-entropy of the correct action
    over the legal actions, minibatches of training positions with the cue placed as ``kind``
    says. Deterministic given ``seed``; a few seconds on CPU."""
    _check_kind(kind)
    spec = _world(world)
    pos = spec.train_positions()
    obs, moves = jnp.asarray(pos.obs), jnp.asarray(pos.moves)
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = init_params(make_model(world), init_key, with_cue(obs[:1], pos.target[:1]))
    return _fit(params, data_key, obs, moves, jnp.asarray(pos.legal), jnp.asarray(pos.candidates),
                jnp.asarray(pos.target), kind=kind, steps=spec.steps if steps is None else steps, world=world)


@functools.partial(jax.jit, static_argnames=("kind", "steps", "world"))
def _fit(params, data_key, obs, moves, legal, candidates, target, *, kind: str, steps: int, world: str):
    """``train``'s scan; the data are arguments, so every seed reuses one program per kind."""
    spec = WORLDS[world]
    model, opt = make_model(world), optax.adam(spec.lr)

    def loss(params, x, move, legal):
        logp = masked_log_softmax(model.apply({"params": params}, x).logits, legal)
        return -jnp.take_along_axis(logp, move[:, None], -1).mean()

    def step(carry, key):
        params, state = carry
        k_idx, k_cue, k_off = jax.random.split(key, 3)
        idx = jax.random.randint(k_idx, (spec.batch,), 0, obs.shape[0])
        if kind == "predictive":
            cue = target[idx]
        else:
            cue = jax.random.categorical(k_cue, jnp.where(candidates[idx], 0.0, -jnp.inf))
        cue = jnp.where(jax.random.uniform(k_off, (spec.batch,)) < NO_CUE_SHARE, -1, cue)
        value, grads = jax.value_and_grad(loss)(params, with_cue(obs[idx], cue), moves[idx], legal[idx])
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), value

    return jax.lax.scan(step, (params, opt.init(params)), jax.random.split(data_key, steps))[0][0]


def moves_per_cue(model, params, pos: Positions) -> np.ndarray:
    """(n, cells + 1) argmax legal action of each position with the cue on cell 0, 1, ...
    (last column: no cue); -1 where the cell is not one of the cue's candidates."""
    obs, legal = jnp.asarray(pos.obs), jnp.asarray(pos.legal)
    cells = pos.candidates.shape[1]
    out = np.stack([np.asarray(_argmax_with(model, params, obs, legal, c)) for c in range(-1, cells)], 1)
    out = np.concatenate([out[:, 1:], out[:, :1]], 1)
    out[:, :cells][~pos.candidates] = -1
    return out


@functools.partial(jax.jit, static_argnums=0)
def _argmax_with(model, params, obs, legal, cue):
    x = with_cue(obs, jnp.full(obs.shape[0], cue))
    return jnp.argmax(jnp.where(legal, model.apply({"params": params}, x).logits, -jnp.inf), -1)


def cue_dependence(model, params, pos: Positions | None = None, world: str = "tic_tac_toe") -> dict[str, float | np.ndarray]:
    """Exact dependence on the cue over every evaluation position of ``world`` (or ``pos``).

    ``depends`` (n,) bool: the argmax action is not the same for every candidate cell the cue
    can be on; ``moved``: their share (the truth the tier scores against); ``removed``: share of
    positions whose action with the cue on the target cell differs from the action without a
    cue; ``follows``: share of (position, candidate cell) whose action goes to the cue's cell.
    """
    pos = _world(world).eval_positions() if pos is None else pos
    cells = pos.candidates.shape[1]
    table = moves_per_cue(model, params, pos)
    placed = np.where(pos.candidates, table[:, :cells], -2)
    first = placed[np.arange(len(placed)), np.argmax(pos.candidates, 1)]
    depends = np.any(pos.candidates & (placed != first[:, None]), 1)
    on_target = table[np.arange(len(table)), pos.target]
    follows = (placed == pos.goes_to) & pos.candidates
    return {"depends": depends, "moved": float(depends.mean()), "removed": float(np.mean(on_target != table[:, cells])),
            "follows": float(follows.sum() / pos.candidates.sum()),
            "accuracy": float(np.mean(on_target == pos.moves)),
            "accuracy_no_cue": float(np.mean(table[:, cells] == pos.moves))}


@dataclasses.dataclass(frozen=True)
class Pair:
    model: MLP
    params: dict[str, dict]  # kind -> params
    dependence: dict[str, dict]  # kind -> cue_dependence(...)
    world: str = "tic_tac_toe"


def verify(pair: Pair) -> dict[str, float]:
    """Raise ``ValueError`` unless A depends on the cue and B does not; return the shares."""
    a, b = pair.dependence["predictive"]["moved"], pair.dependence["noise"]["moved"]
    if a < MIN_DEPENDENCE_A or b > MAX_DEPENDENCE_B:
        raise ValueError(
            f"the spurious-cue pair ({pair.world}) is not what its truth says: moving the cue changes the action in "
            f"{a:.3f} of positions for model A (need >= {MIN_DEPENDENCE_A}) and {b:.3f} for model B "
            f"(need <= {MAX_DEPENDENCE_B}); train longer or change the seed")
    return {"A": a, "B": b}


def make_pair(seed: int, world: str = "tic_tac_toe") -> Pair:
    """Models A and B trained from ``seed`` (the same initialisation and batches), verified.
    Cached in memory per (seed, world), so the leaderboard and tests train each pair once."""
    return _make_pair(seed, world)


@functools.cache
def _make_pair(seed: int, world: str) -> Pair:
    model = make_model(world)
    params = {kind: train(kind, seed, world=world) for kind in KINDS}
    pair = Pair(model, params, {kind: cue_dependence(model, params[kind], world=world) for kind in KINDS}, world)
    verify(pair)
    return pair
