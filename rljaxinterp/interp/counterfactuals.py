"""Counterfactual state pairs: one concept removed (or added), everything else equal.

Why: a probe or a patching experiment that compares "threat" with "no threat" positions
measures the threat only if nothing else differs. Flipping one square (``boards.
counterfactual_pair``) also flips whose turn it is in connect four and tic-tac-toe, and
moving one object by hand in a gridworld must keep the observation consistent with the
level. This module finds minimal, legal edits generically:

* an **edit operator** maps a batch of states to candidate states with a leading
  candidates axis plus a validity mask; operators are registered per environment
  (:func:`register_edits`, listed by :func:`edits`) and keep the side to move, the
  legality of the position (not finished, no floating piece, reachable piece counts) and
  the consistency of the observation (rebuilt with the environment's own function);
* :func:`find_pairs` applies operators to every state, evaluates a concept of the concept
  library on all candidates in one batched ``concepts.compute`` call, and keeps one
  candidate per state whose concept differs (or equals ``to``), preferring candidates that
  leave the ``keep`` concepts unchanged, chosen at random (deterministic given ``key``).

So a new concept gets counterfactuals with no new code, and a new environment needs only
its edit operators. Every returned pair is re-checked by :func:`verify`: the concept really
flipped (recomputed), same player to move, not terminal, and exactly as many cells changed
as the operator declares (2 board squares for a swap or a move).

Built-in operators:

* tic_tac_toe, connect_four: ``swap_colours`` (one stone of each colour trade places; piece
  counts unchanged), ``move_stone`` (one stone moves to an empty square; in connect four
  the top stone of a column moves onto another column, so gravity holds), ``remove_pair``
  (one stone of each colour is removed; in connect four, tops of columns only).
* CheeseMaze, CoinAtEnd (goal gridworlds): ``move_goal`` (the goal to another open cell
  reachable from the agent), ``move_agent`` (the agent to another free reachable cell),
  ``nudge_agent`` (the agent to a free neighbouring cell).
* KeysChests, MonsterGrid, TreeGrid: ``move_agent`` and ``nudge_agent`` (free = no wall
  and no object of any kind). Moving their keys, chests, apples or monsters is not built in.

Connect four legality is what ``boards.from_boards`` checks (counts, gravity, wins), not
every ordering constraint of stacking.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rljaxinterp.envs.base import Array, Env, EnvState, tree_select
from rljaxinterp.envs.boards import from_boards, winning_lines
from rljaxinterp.envs.pgx_games import PgxGame, from_pgx, game_state
from rljaxinterp.envs.registry import make
from rljaxinterp.interp import concepts

EditOperator = Callable[[Env, EnvState], tuple[EnvState, Array]]
"""``(env, states (N,)) -> (candidates (C, N), valid (C, N) bool)``.

Invalid candidates may hold anything of the right structure (usually the base state).
"""

__all__ = [
    "SECOND_ROUND_WIDTH", "CounterfactualPairs", "Edit", "EditOperator", "board_of", "board_operator",
    "changed_cells", "edits", "find_pairs", "grid_operator", "playable", "register_edits", "verify",
]

# A second round of edits starts from at most this many first-round candidates per state.
SECOND_ROUND_WIDTH = 8


@dataclasses.dataclass(frozen=True)
class Edit:
    """A registered edit operator and how many cells one application changes
    (board squares, or grid cells where any observation channel differs)."""

    name: str
    fn: EditOperator
    changes: int | None


_EDITS: dict[str, dict[str, Edit]] = {}


def register_edits(
    env_name: str, name: str, fn: EditOperator, *, changes: int | None = None, overwrite: bool = False
) -> None:
    """Add edit operator ``name`` for ``env_name``.

    ``changes`` is how many cells one application changes, which :func:`verify` then
    checks exactly; ``None`` only checks that something changed. Names may not hold "+",
    which joins composed edits.
    """
    ops = _EDITS.setdefault(env_name, {})
    if name in ops and not overwrite:
        raise ValueError(f"edit operator {name!r} is already registered for {env_name!r}; pass overwrite=True")
    if not isinstance(name, str) or not name or "+" in name:
        raise ValueError(f"edit operator names must be non-empty strings without '+'; got {name!r}")
    if changes is not None and (isinstance(changes, bool) or not isinstance(changes, int) or changes < 1):
        raise ValueError(f"changes must be None or a positive int (cells one application changes); got {changes!r}")
    ops[name] = Edit(name, fn, changes)


def edits(env_name: str) -> list[str]:
    """Names of the edit operators registered for ``env_name``."""
    if env_name not in _EDITS:
        raise ValueError(
            f"no edit operators for environment {env_name!r}; environments with edit operators: "
            f"{', '.join(sorted(_EDITS))}"
        )
    return list(_EDITS[env_name])


@struct.dataclass
class CounterfactualPairs:
    """One (clean, counterfactual) pair per input state that got one.

    ``index`` says which input state each pair came from, ``operator`` indexes
    ``operators`` (composed operators are named ``"a+b"``). ``kept`` is True where every
    concept of ``keep`` is unchanged. ``tried`` counts the input states that could get a
    pair (not finished, and, with ``to``, whose concept was not already ``to``).
    """

    clean: EnvState
    counterfactual: EnvState
    index: Array  # (pairs,) int32
    operator: Array  # (pairs,) int32
    clean_value: Array  # (pairs,) the concept on clean
    counterfactual_value: Array  # (pairs,) the concept on counterfactual
    kept: Array  # (pairs,) bool
    env_name: str = struct.field(pytree_node=False)
    concept: str = struct.field(pytree_node=False)
    operators: tuple[str, ...] = struct.field(pytree_node=False)
    keep: tuple[str, ...] = struct.field(pytree_node=False, default=())
    to: bool | None = struct.field(pytree_node=False, default=None)
    tried: int = struct.field(pytree_node=False, default=0)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def found_fraction(self) -> float:
        """Pairs found per state tried."""
        return len(self) / self.tried if self.tried else 0.0

    def operator_names(self) -> list[str]:
        return [self.operators[i] for i in np.asarray(self.operator)]

    def observations(self) -> tuple[Array, Array]:
        """``(clean, counterfactual)`` observations, ready for a model."""
        return self.clean.observation, self.counterfactual.observation


# --- the generic search ---------------------------------------------------------------------


def _env_for(env_name: str, env: Env | None, states: EnvState) -> Env:
    env = make(env_name) if env is None else env
    shape = tuple(np.shape(states.observation))
    if len(shape) != len(env.observation_shape) + 1:
        raise ValueError(
            f"states must be a batch with a leading axis (observation shape (N, "
            f"{', '.join(map(str, env.observation_shape))})); got observation shape {shape}"
        )
    if shape[1:] != tuple(env.observation_shape):
        raise ValueError(
            f"states have observations of shape {shape[1:]} but {env_name} builds "
            f"{tuple(env.observation_shape)}; pass env= the environment the states came from"
        )
    return env


def _check_concepts(env_name: str, names: Sequence[str], what: str) -> None:
    known = concepts.available(env_name)
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown {what} {bad[0]!r} for {env_name!r}; concepts: {', '.join(known)}")


def _operators(env_name: str, operators: Sequence[str] | str | None) -> list[Edit]:
    known = edits(env_name)
    if operators is None:
        names = known
    else:
        names = [operators] if isinstance(operators, str) else list(operators)
        if not names:
            raise ValueError(f"operators must name at least one of: {', '.join(known)}")
        for n in names:
            if n not in known:
                raise ValueError(f"unknown edit operator {n!r} for {env_name!r}; available: {', '.join(known)}")
    return [_EDITS[env_name][n] for n in names]


def _flat_candidates(env: Env, ops: list[Edit], states: EnvState, op_offset: int = 0):
    """Valid candidates of every operator, flattened: (tree (T,), source index (T,), op (T,))."""
    trees, source, op = [], [], []
    for i, edit in enumerate(ops):
        cand, valid = edit.fn(env, states)
        cs, ns = np.nonzero(np.asarray(valid))
        if cs.size:
            trees.append(jax.tree.map(lambda x, cs=cs, ns=ns: np.asarray(x)[cs, ns], cand))
            source.append(ns)
            op.append(np.full(ns.shape, op_offset + i))
    if not trees:
        return None, np.zeros(0, int), np.zeros(0, int)
    tree = jax.tree.map(lambda *x: jnp.asarray(np.concatenate(x)), *trees)
    return tree, np.concatenate(source), np.concatenate(op)


# Gathers and joins go through NumPy: eager jax indexing compiles one program per leaf and shape.


def _concat(a: EnvState, b: EnvState) -> EnvState:
    return jax.tree.map(lambda x, y: jnp.asarray(np.concatenate([np.asarray(x), np.asarray(y)])), a, b)


def _take(tree, idx):
    idx = np.asarray(idx)
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[idx]), tree)


def _binary(values: np.ndarray) -> bool:
    return values.dtype == bool or bool(np.isin(values, (0, 1)).all())


def find_pairs(
    env_name: str,
    states: EnvState,
    concept: str,
    to: bool | None = None,
    operators: Sequence[str] | str | None = None,
    keep: Sequence[str] = (),
    max_edits: int = 1,
    key: Array | None = None,
    *,
    env: Env | None = None,
    check: bool = True,
) -> CounterfactualPairs:
    """For each state, a minimally edited state whose ``concept`` differs (or becomes ``to``).

    ``to=False`` removes a binary concept (pairs only for states where it holds),
    ``to=True`` adds it, ``to=None`` asks for any change (any concept). ``operators``
    restricts the edits (default: every operator of ``env_name``); ``keep`` names concepts
    that should stay equal: candidates leaving all of them equal are preferred (``kept``
    records whether that succeeded). ``max_edits=2`` composes two edits for the states no
    single edit serves (from at most ``SECOND_ROUND_WIDTH`` first edits each). Among equally
    good candidates the choice is random given ``key``. ``env`` is the environment the
    states came from (default ``make(env_name)``); ``check`` re-verifies every pair.
    """
    if to is not None and not isinstance(to, (bool, np.bool_)):
        raise ValueError(f"to must be True, False or None; got {to!r}")
    if max_edits not in (1, 2):
        raise ValueError(f"max_edits must be 1 or 2; got {max_edits!r}")
    if isinstance(keep, str):
        keep = (keep,)
    keep = tuple(keep)
    ops = _operators(env_name, operators)
    _check_concepts(env_name, [concept], "concept")
    _check_concepts(env_name, keep, "keep concept")
    if concept in keep:
        raise ValueError(f"keep names the concept being flipped, {concept!r}; keep lists concepts to hold equal")
    env = _env_for(env_name, env, states)
    key = jax.random.PRNGKey(0) if key is None else key
    k_choose1, k_width, k_choose2 = jax.random.split(key, 3)
    names = [concept, *keep]
    n = int(np.shape(states.observation)[0])
    k = len(ops)
    op_names = tuple(e.name for e in ops)
    if max_edits == 2:
        op_names += tuple(f"{a.name}+{b.name}" for a in ops for b in ops)

    cand, source, op = _flat_candidates(env, ops, states)
    batch = states if cand is None else _concat(states, cand)
    values = {c: np.asarray(v) for c, v in concepts.compute(env_name, batch, names).items()}
    base = {c: v[:n] for c, v in values.items()}
    cvals = {c: v[n:] for c, v in values.items()}
    if to is not None and not _binary(values[concept]):
        seen = np.unique(values[concept])
        raise ValueError(
            f"concept {concept!r} of {env_name!r} is not binary (values include {seen[:6].tolist()}); "
            f"to= needs a binary concept; pass to=None to ask for any change"
        )
    open_ = ~np.asarray(states.done)
    wanted = open_ if to is None else open_ & (base[concept].astype(bool) != bool(to))
    tried = int(wanted.sum())
    if tried == 0:
        raise ValueError(
            f"no counterfactual for {concept!r} (to={to}) in {env_name!r}: none of the {n} states "
            f"tried can get one ({int(open_.sum())} are not finished"
            + ("" if to is None else f", none of them has {concept}={not to}")
            + "); pass other states or another to="
        )

    def choose(source, op, cvals, u):
        ok = wanted[source] & _target(cvals[concept], base[concept][source], to)
        kept = sum((cvals[c] == base[c][source]).astype(int) for c in keep) if keep else np.zeros(len(source), int)
        score = kept + u  # u in [0, 1): keep first, then random
        idx = np.flatnonzero(ok)
        order = idx[np.lexsort((score[idx], source[idx]))]
        last = np.r_[source[order][1:] != source[order][:-1], True] if order.size else np.zeros(0, bool)
        chosen = order[last]
        return chosen, kept[chosen] == len(keep)

    u1 = np.asarray(jax.random.uniform(k_choose1, (len(source),)))
    chosen, kept = choose(source, op, cvals, u1)
    pieces = []
    if chosen.size:
        pieces.append((_take(cand, chosen), source[chosen], op[chosen],
                       {c: v[chosen] for c, v in cvals.items()}, kept))

    if max_edits == 2 and cand is not None:
        missing = wanted.copy()
        missing[source[chosen]] = False
        firsts = np.flatnonzero(missing[source])
        if firsts.size:
            # Up to SECOND_ROUND_WIDTH random first edits per state that still lacks a pair.
            w = np.asarray(jax.random.uniform(k_width, (firsts.size,)))
            order = firsts[np.lexsort((w, source[firsts]))]
            rank = np.arange(order.size) - np.searchsorted(source[order], source[order])
            mids = order[rank < SECOND_ROUND_WIDTH]
            cand2, mid, op2 = _flat_candidates(env, ops, _take(cand, mids))
            if cand2 is not None:
                source2 = source[mids][mid]
                op2 = k + op[mids][mid] * k + op2
                vals2 = {c: np.asarray(v) for c, v in concepts.compute(env_name, cand2, names).items()}
                u2 = np.asarray(jax.random.uniform(k_choose2, (len(source2),)))
                chosen2, kept2 = choose(source2, op2, vals2, u2)
                if chosen2.size:
                    pieces.append((_take(cand2, chosen2), source2[chosen2], op2[chosen2],
                                   {c: v[chosen2] for c, v in vals2.items()}, kept2))

    if not pieces:
        raise ValueError(
            f"no counterfactual for {concept!r} (to={to}) in {env_name!r}: tried {tried} of {n} states "
            f"with operator(s) {', '.join(e.name for e in ops)} and max_edits={max_edits}, none changed "
            f"it; try other operators (available: {', '.join(edits(env_name))}), max_edits=2 or more states"
        )
    cf = pieces[0][0] if len(pieces) == 1 else _concat(pieces[0][0], pieces[1][0])
    index = np.concatenate([p[1] for p in pieces])
    order = np.argsort(index, kind="stable")
    pairs = CounterfactualPairs(
        clean=_take(states, index[order]),
        counterfactual=_take(cf, order),
        index=jnp.asarray(index[order], jnp.int32),
        operator=jnp.asarray(np.concatenate([p[2] for p in pieces])[order], jnp.int32),
        clean_value=jnp.asarray(base[concept][index[order]]),
        counterfactual_value=jnp.asarray(np.concatenate([p[3][concept] for p in pieces])[order]),
        kept=jnp.asarray(np.concatenate([p[4] for p in pieces])[order]),
        env_name=env_name,
        concept=concept,
        operators=op_names,
        keep=keep,
        to=None if to is None else bool(to),
        tried=tried,
    )
    if check:
        verify(pairs, env=env)
    return pairs


def _target(cand: np.ndarray, base: np.ndarray, to: bool | None) -> np.ndarray:
    if to is None:
        return cand != base
    return cand.astype(bool) == bool(to)


# --- verification -----------------------------------------------------------------------------


def changed_cells(a: EnvState, b: EnvState) -> np.ndarray:
    """Per pair: board squares that differ (board games), else grid cells where any
    observation channel differs."""
    if hasattr(a.inner, "_x") and hasattr(game_state(a), "board"):
        return (np.asarray(game_state(a).board) != np.asarray(game_state(b).board)).sum(-1)
    diff = np.asarray(a.observation) != np.asarray(b.observation)
    return diff.any(-1).reshape(len(diff), -1).sum(-1)


def verify(pairs: CounterfactualPairs, env: Env | None = None) -> None:
    """Raise ``AssertionError`` naming the first pair that breaks a promise: the concept
    (recomputed) flipped as asked, the player to move is the same, the counterfactual is
    legal and not finished, its observation is what the environment builds for it, and
    exactly the operator's number of cells changed (at most the sum for composed edits)."""
    if len(pairs) == 0:
        return
    env_name = pairs.env_name
    env = make(env_name) if env is None else env
    m = len(pairs)
    names = [pairs.concept, *pairs.keep]
    values = {c: np.asarray(v) for c, v in concepts.compute(env_name, _concat(pairs.clean, pairs.counterfactual),
                                                           names).items()}
    before, after = values[pairs.concept][:m], values[pairs.concept][m:]

    def fail(bad: np.ndarray, text: str) -> None:
        i = int(np.flatnonzero(bad)[0])
        raise AssertionError(
            f"counterfactual pair {i} (state {int(pairs.index[i])}, operator "
            f"{pairs.operators[int(pairs.operator[i])]!r}) {text}"
        )

    fail_if = lambda bad, text: fail(bad, text) if np.any(bad) else None
    fail_if(~_target(after, before, pairs.to), f"does not flip {pairs.concept!r} as asked (to={pairs.to})")
    if pairs.to is not None:
        fail_if(before.astype(bool) == pairs.to, f"already had {pairs.concept}={pairs.to} before the edit")
    fail_if(np.asarray(pairs.clean.current_player) != np.asarray(pairs.counterfactual.current_player),
            "changes the player to move")
    fail_if(np.asarray(pairs.counterfactual.done), "is a finished (terminal) state")
    for c in pairs.keep:
        same = values[c][:m] == values[c][m:]
        fail_if(np.asarray(pairs.kept) & ~same, f"is marked kept but changes {c!r}")
    limit = {}  # composed: at most the sum; undeclared: any positive number
    for name in pairs.operators:
        parts = [_EDITS[env_name][part].changes for part in name.split("+")]
        limit[name] = np.inf if None in parts else sum(parts)
    changed = changed_cells(pairs.clean, pairs.counterfactual)
    names_of = pairs.operator_names()
    exact = np.array(["+" not in o and np.isfinite(limit[o]) for o in names_of])
    allowed = np.array([limit[o] for o in names_of])
    fail_if(changed < 1, "changes nothing")
    fail_if(exact & (changed != allowed), "changes a different number of cells than its operator declares")
    fail_if(~exact & (changed > allowed), "changes more cells than its edits allow")
    if env_name in _BOARD_SHAPES:
        cf = pairs.counterfactual
        gs = game_state(cf)
        fail_if(np.asarray(gs.color) != np.asarray(game_state(pairs.clean).color), "changes the colour to move")
        try:
            rebuilt = from_boards(env_name, np.asarray(gs.board), np.asarray(cf.current_player))
        except ValueError as error:  # from_boards names the board and the broken rule
            raise AssertionError(f"a counterfactual {env_name} position is illegal: {error}") from None
        fail_if((np.asarray(rebuilt.observation) != np.asarray(cf.observation)).reshape(m, -1).any(-1),
                "has an observation other than from_boards builds")
        fail_if((np.asarray(rebuilt.legal_action_mask) != np.asarray(cf.legal_action_mask)).any(-1),
                "has a legal-action mask other than from_boards builds")
    elif hasattr(env, "_observe"):
        obs = jax.vmap(env._observe)(pairs.counterfactual.inner)
        fail_if((np.asarray(obs) != np.asarray(pairs.counterfactual.observation)).reshape(m, -1).any(-1),
                "has an observation the environment does not build for its level")
        if hasattr(pairs.clean.inner, "walls"):
            fail_if((np.asarray(pairs.clean.inner.walls) != np.asarray(pairs.counterfactual.inner.walls))
                    .reshape(m, -1).any(-1), "changes the walls")


# --- board games ------------------------------------------------------------------------------

_BOARD_SHAPES = {"tic_tac_toe": (3, 3, False), "connect_four": (6, 7, True)}


def board_of(states: EnvState) -> np.ndarray:
    """Flat boards ``(N, squares)`` of wrapped pgx tic-tac-toe / connect-four states
    (-1 empty, 0 first mover, 1 second mover), as ``boards.from_boards`` takes them."""
    return np.asarray(game_state(states).board)


def playable(env_name: str, boards: np.ndarray) -> np.ndarray:
    """Per board (any leading axes): a legal, unfinished position of ``env_name`` by
    ``from_boards``' rules: reachable piece counts, no floating piece, no line, not full."""
    rows, cols, gravity = _BOARD_SHAPES[env_name]
    b = np.asarray(boards)
    lead = (b == 0).sum(-1) - (b == 1).sum(-1)
    ok = (lead == 0) | (lead == 1)
    if gravity:
        grid = b.reshape(*b.shape[:-1], rows, cols)
        ok &= ~((grid[..., :-1, :] >= 0) & (grid[..., 1:, :] < 0)).any((-2, -1))
    lines = winning_lines(env_name)
    for player in (0, 1):
        ok &= ~(b[..., lines] == player).all(-1).any(-1)
    return ok & ~(b >= 0).all(-1)


def _pairs_of(squares: int, ordered: bool) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.meshgrid(np.arange(squares), np.arange(squares), indexing="ij")
    keep = (i != j) if ordered else (i < j)
    return i[keep], j[keep]


def _board_edits(env_name: str, kind: str, b: np.ndarray) -> tuple[list, np.ndarray]:
    """``kind``'s candidate edits of boards ``b`` (N, S): a list of (square, value) assignments,
    each (C, N), and where they are valid (C, N)."""
    rows, cols, gravity = _BOARD_SHAPES[env_name]
    n = len(b)
    at = lambda sq: np.take_along_axis(b.T, np.clip(sq, 0, b.shape[1] - 1), 0) if sq.ndim == 2 else b[:, sq].T
    if kind == "swap_colours":  # pieces never float when two of them trade colours
        i, j = _pairs_of(rows * cols, ordered=False)
        bi, bj = b[:, i].T, b[:, j].T
        valid = (bi >= 0) & (bj >= 0) & (bi != bj)
        return [(np.broadcast_to(i[:, None], bi.shape), bj), (np.broadcast_to(j[:, None], bj.shape), bi)], valid
    if gravity:
        a, c = _pairs_of(cols, ordered=True)  # column pairs
        height = (b.reshape(n, rows, cols) >= 0).sum(1)  # (N, cols)
        ha, hc = height[:, a].T, height[:, c].T  # (C, N)
        top_a, top_c = (rows - ha) * cols + a[:, None], (rows - hc) * cols + c[:, None]
        if kind == "move_stone":
            dest = (rows - 1 - hc) * cols + c[:, None]
            valid = (ha > 0) & (hc < rows)
            return [(top_a, np.full_like(ha, -1)), (dest, at(top_a))], valid
        valid = (ha > 0) & (hc > 0) & (at(top_a) == 0) & (at(top_c) == 1)
        return [(top_a, np.full_like(ha, -1)), (top_c, np.full_like(ha, -1))], valid
    i, j = _pairs_of(rows * cols, ordered=True)
    bi, bj = b[:, i].T, b[:, j].T
    si, sj = np.broadcast_to(i[:, None], bi.shape), np.broadcast_to(j[:, None], bj.shape)
    if kind == "move_stone":
        return [(si, np.full_like(bi, -1)), (sj, bi)], (bi >= 0) & (bj < 0)
    return [(si, np.full_like(bi, -1)), (sj, np.full_like(bj, -1))], (bi == 0) & (bj == 1)


@functools.cache
def _pgx_env(env_name: str) -> PgxGame:
    return PgxGame(env_name)


@functools.cache
def _board_builder(env_name: str) -> Callable:
    rows, cols, gravity = _BOARD_SHAPES[env_name]
    observe = _pgx_env(env_name).pgx_env.observe

    @jax.jit
    def build(states: EnvState, boards: Array, valid: Array) -> EnvState:
        c = boards.shape[0]
        tiled = jax.tree.map(lambda x: jnp.broadcast_to(x, (c, *x.shape)), states)
        inner = tiled.inner
        legal = boards.reshape(*boards.shape[:-1], rows, cols)[..., 0, :] < 0 if gravity else boards < 0
        edited = inner.replace(
            _x=inner._x._replace(board=boards, winner=jnp.full(boards.shape[:-1], -1, jnp.int32)),
            legal_action_mask=legal,
            rewards=jnp.zeros_like(inner.rewards),
            terminated=jnp.zeros_like(inner.terminated),
            truncated=jnp.zeros_like(inner.truncated),
            _step_count=(boards >= 0).sum(-1).astype(inner._step_count.dtype),
        )
        edited = edited.replace(observation=jax.vmap(jax.vmap(observe))(edited))
        out = from_pgx(edited).replace(final_observation=tiled.final_observation)
        return tree_select(valid, out, tiled)

    return build


def board_operator(env_name: str, kind: str) -> EditOperator:
    """Built-in board edit ``kind`` (swap_colours, move_stone, remove_pair) for ``env_name``."""

    def op(env: Env, states: EnvState) -> tuple[EnvState, Array]:
        b = board_of(states)
        assignments, valid = _board_edits(env_name, kind, b)
        c, n = valid.shape
        new = np.broadcast_to(b, (c, *b.shape)).copy()
        cs, ns = np.arange(c)[:, None], np.arange(n)[None, :]
        writes = [(np.clip(sq, 0, b.shape[1] - 1), value) for sq, value in assignments]
        for sq, value in writes:
            new[cs, ns, sq] = value
        valid = valid & playable(env_name, new) & ~np.asarray(states.done)[None]
        new = np.where(valid[..., None], new, b[None])
        return _board_builder(env_name)(states, jnp.asarray(new, jnp.int32), jnp.asarray(valid)), jnp.asarray(valid)

    op.__name__ = f"{env_name}_{kind}"
    return op


for _game in _BOARD_SHAPES:
    for _kind in ("swap_colours", "move_stone", "remove_pair"):
        register_edits(_game, _kind, board_operator(_game, _kind), changes=2)


# --- gridworlds -------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 2))
def _grid_candidates(env: Env, states: EnvState, kind: str) -> tuple[EnvState, Array]:
    from rljaxinterp.envs.gridworlds.common import reachable

    h, w = env.shape
    cells = jnp.stack(jnp.divmod(jnp.arange(h * w), w), -1).astype(jnp.int32)  # (C, 2)
    objects = [i for i, ch in enumerate(env.channels)
               if ch not in ("walls", "agent") and ch not in env.count_channels]
    lure = jnp.asarray(env.lure_mask()) if hasattr(env, "lure_mask") else jnp.zeros((h, w), bool)

    def per_state(s: EnvState) -> tuple[EnvState, Array]:
        inner = s.inner
        walls = inner.walls if hasattr(inner, "walls") else jnp.zeros((h, w), bool)
        here = jnp.zeros((h, w), bool).at[inner.agent[0], inner.agent[1]].set(True)
        occupied = (s.observation[..., objects] > 0).any(-1) if objects else jnp.zeros((h, w), bool)
        reach = reachable(~walls, here)

        def one(cell: Array) -> tuple[EnvState, Array]:
            r, c = cell[0], cell[1]
            if kind == "move_goal":
                new = inner.replace(goal=cell)
                ok = reach[r, c] & ~here[r, c] & jnp.any(cell != inner.goal) & ~(inner.reached_lure & lure[r, c])
            else:
                new = inner.replace(agent=cell)
                if hasattr(inner, "reached_lure"):  # as if the agent had walked there
                    on_goal = jnp.all(cell == inner.goal)
                    new = new.replace(reached_lure=inner.reached_lure | (lure[r, c] & ~on_goal))
                ok = reach[r, c] & ~occupied[r, c] & ~here[r, c]
                if kind == "nudge_agent":
                    ok &= jnp.abs(cell - inner.agent).sum() == 1
            ok &= ~s.done
            return s.replace(observation=env._observe(new).astype(s.observation.dtype), inner=new), ok

        return jax.vmap(one)(cells)

    return jax.vmap(per_state, out_axes=1)(states)


def grid_operator(kind: str) -> EditOperator:
    """Built-in gridworld edit ``kind`` (move_goal, move_agent, nudge_agent)."""

    def op(env: Env, states: EnvState) -> tuple[EnvState, Array]:
        return _grid_candidates(env, states, kind)

    op.__name__ = kind
    return op


for _world in ("CheeseMaze", "CoinAtEnd"):
    register_edits(_world, "move_goal", grid_operator("move_goal"), changes=2)
for _world in ("CheeseMaze", "CoinAtEnd", "KeysChests", "MonsterGrid", "TreeGrid"):
    register_edits(_world, "move_agent", grid_operator("move_agent"), changes=2)
    register_edits(_world, "nudge_agent", grid_operator("nudge_agent"), changes=2)
