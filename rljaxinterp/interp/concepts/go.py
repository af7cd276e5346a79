"""Go concepts (pgx ``go_9x9`` and ``go_19x19``), from the side to move's point of view.

Read from pgx's board, which stores for every stone the id of its chain (``+id`` black,
``-id`` white, 0 empty), so groups come for free; liberties and areas are computed here.
Everything is a fixed-shape array program (gathers, one scatter-add, one ``while_loop``
flood fill), so a batch of positions is one ``vmap`` inside the jitted ``compute``.

* Liberties of a group: the distinct empty points next to any of its stones. A stone is
  in atari when its group has exactly one.
* Area (Tromp-Taylor): a colour's stones plus the empty points from which only that
  colour's stones can be reached through empty points; ``score_lead`` subtracts komi
  from Black's side, as pgx scores a finished game.

Scalar concepts: ``{own,opponent}_{stones,groups,liberties,stones_in_atari,
groups_in_atari,area}``, ``neutral_points`` and ``score_lead``. Per-square maps, one
concept per point (flat index ``row * size + col``, as actions): ``own_atari_sq{i}``,
``opponent_atari_sq{i}`` (a stone of that side in atari there), ``liberties_sq{i}``
(liberties of the group on the point, 0 if empty) and ``area_sq{i}`` (+1 the mover's
area, -1 the opponent's, 0 neither). The functions below return the maps whole.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pgx

from rljaxinterp.envs.base import EnvState
from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.interp import concepts

SIZES = {"go_9x9": 9, "go_19x19": 19}
SCALARS = (
    "own_stones", "opponent_stones", "own_groups", "opponent_groups", "own_liberties", "opponent_liberties",
    "own_stones_in_atari", "opponent_stones_in_atari", "own_groups_in_atari", "opponent_groups_in_atari",
    "own_area", "opponent_area", "neutral_points", "score_lead",
)
MAPS = ("own_atari", "opponent_atari", "liberties", "area")


@functools.cache
def neighbours(size: int) -> np.ndarray:
    """(points, 4) indices of the orthogonal neighbours; off-board ones point at ``points``,
    a padding slot that every lookup fills with a neutral value."""
    r, c = np.divmod(np.arange(size * size), size)
    out = []
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        rr, cc = r + dr, c + dc
        ok = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        out.append(np.where(ok, rr * size + cc, size * size))
    return np.stack(out, 1)


class GoAnalysis(NamedTuple):
    """One position, from the mover's side (arrays over points unless noted)."""

    stones: jax.Array  # +1 mover's stone, -1 opponent's, 0 empty
    liberties: jax.Array  # liberties of the group on the point, 0 if empty
    area: jax.Array  # +1 mover's area, -1 opponent's, 0 neither (Tromp-Taylor)
    groups: jax.Array  # (2,) number of groups: (mover, opponent)
    groups_in_atari: jax.Array  # (2,)
    colour_liberties: jax.Array  # (2,) empty points next to any stone of that side


def _gather(x: jax.Array, idx: np.ndarray, fill) -> jax.Array:
    return jnp.append(x, jnp.asarray(fill, x.dtype))[idx]


def _reachable(empty: jax.Array, seed: jax.Array, nbr: np.ndarray) -> jax.Array:
    """Empty points connected through empty points to ``seed`` (a subset of empty points)."""

    def grow(reach):
        return reach | (empty & _gather(reach, nbr, False).any(-1))

    def cond(carry):
        reach, previous = carry
        return (reach != previous).any()

    reach, _ = jax.lax.while_loop(cond, lambda c: (grow(c[0]), c[0]), (grow(seed), seed))
    return reach


def analyse(board: jax.Array, colour: jax.Array, size: int) -> GoAnalysis:
    """Groups, liberties and area of one pgx Go board (chain ids) with ``colour`` to move
    (pgx's ``color``: 0 Black, 1 White)."""
    n = size * size
    nbr = neighbours(size)
    sign = jnp.where(colour == 0, 1, -1)
    stones = jnp.sign(board) * sign
    empty = stones == 0
    chain = jnp.where(empty, n, jnp.abs(board) - 1)  # chain id per point; n = none

    # A liberty counts once per group even when it touches the group on several sides:
    # each (empty point, side) pair contributes only for the first side showing that chain.
    nb_chain = _gather(chain, nbr, n)  # (points, 4)
    first = jnp.ones_like(nb_chain, bool)
    for k in range(1, 4):
        first = first.at[:, k].set((nb_chain[:, k:k + 1] != nb_chain[:, :k]).all(-1))
    counted = empty[:, None] & first & (nb_chain < n)
    libs_of_chain = jnp.zeros(n + 1, jnp.int32).at[nb_chain].add(counted.astype(jnp.int32))
    liberties = jnp.where(empty, 0, libs_of_chain[chain])

    colour_of_chain = jnp.zeros(n + 1, jnp.int32).at[chain].max(jnp.where(empty, 0, stones + 2)) - 2  # +1/-1, -2 none
    is_group = jnp.stack([colour_of_chain[:n] == 1, colour_of_chain[:n] == -1])  # (2, chains)
    groups = is_group.sum(-1)
    groups_in_atari = (is_group & (libs_of_chain[:n] == 1)).sum(-1)

    near = jnp.stack([_gather(stones == s, nbr, False).any(-1) & empty for s in (1, -1)])  # (2, points)
    colour_liberties = near.sum(-1)
    reach_own = _reachable(empty, near[0], nbr)
    reach_opp = _reachable(empty, near[1], nbr)
    area = jnp.where(empty, reach_own.astype(jnp.int32) - reach_opp.astype(jnp.int32), stones)
    return GoAnalysis(stones, liberties, area, groups, groups_in_atari, colour_liberties)


def analyse_states(state: EnvState, size: int) -> GoAnalysis:
    """``analyse`` over a batch of wrapped pgx Go states."""
    x = game_state(state)
    return jax.vmap(analyse, in_axes=(0, 0, None))(x.board, x.color, size)


def _scalars(state: EnvState, a: GoAnalysis, komi: float) -> jax.Array:
    own, opp = a.stones == 1, a.stones == -1
    atari = a.liberties == 1
    own_area, opp_area = (a.area == 1).sum(-1), (a.area == -1).sum(-1)
    black_to_move = game_state(state).color == 0
    lead = own_area - opp_area + jnp.where(black_to_move, -komi, komi)
    columns = (
        own.sum(-1), opp.sum(-1), a.groups[:, 0], a.groups[:, 1], a.colour_liberties[:, 0],
        a.colour_liberties[:, 1], (own & atari).sum(-1), (opp & atari).sum(-1), a.groups_in_atari[:, 0],
        a.groups_in_atari[:, 1], own_area, opp_area, (a.area == 0).sum(-1), lead,
    )
    return jnp.stack([jnp.asarray(c, jnp.float32) for c in columns], -1)


def maps(state: EnvState, size: int) -> dict[str, jax.Array]:
    """The per-square maps, each ``(states, size * size)``."""
    return _maps(analyse_states(state, size))


def _maps(a: GoAnalysis) -> dict[str, jax.Array]:
    atari = a.liberties == 1
    return {"own_atari": (a.stones == 1) & atari, "opponent_atari": (a.stones == -1) & atari,
            "liberties": a.liberties, "area": a.area}


def _register(env_name: str, size: int) -> None:
    komi = float(pgx.make(env_name)._game.komi)

    def everything(state):  # one analysis (one flood fill) for every Go concept
        a = analyse_states(state, size)
        m = _maps(a)
        return jnp.concatenate([_scalars(state, a, komi), *(m[k].astype(jnp.float32) for k in MAPS)], -1)

    names = [*SCALARS, *(f"{m}_sq{i}" for m in MAPS for i in range(size * size))]
    concepts.register_group(env_name, names, everything)


for _name, _size in SIZES.items():
    _register(_name, _size)
