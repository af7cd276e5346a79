"""Chess concepts, from the side to move's point of view (pgx keeps the board that way:
the mover's pieces positive)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pgx._src.games.chess import KING, _is_attacked, _is_checked

from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.interp import concepts

ENV = "chess"
PIECES = ("pawn", "knight", "bishop", "rook", "queen")
VALUES = jnp.array([0, 1, 3, 3, 5, 9, 0])  # indexed by |piece| (empty .. king)


def _board(state):
    return game_state(state).board


def material_balance(state):
    b = _board(state)
    return (jnp.sign(b) * VALUES[jnp.abs(b)]).sum(-1)


def in_check(state):
    return jax.vmap(_is_checked)(game_state(state)) & ~state.terminated


def king_zone_attacked(state):
    """Squares next to the mover's king that the opponent attacks."""

    def one(x):
        king = jnp.argmin(jnp.abs(x.board - KING))
        r, c = king // 8, king % 8
        dr, dc = jnp.meshgrid(jnp.arange(-1, 2), jnp.arange(-1, 2), indexing="ij")
        rr, cc = r + dr.ravel(), c + dc.ravel()
        ok = (rr >= 0) & (rr < 8) & (cc >= 0) & (cc < 8) & ((dr.ravel() != 0) | (dc.ravel() != 0))
        squares = jnp.clip(rr, 0, 7) * 8 + jnp.clip(cc, 0, 7)
        return (jax.vmap(lambda p: _is_attacked(x, p))(squares) & ok).sum()

    return jax.vmap(one)(game_state(state))


def mobility(state):
    return state.legal_action_mask.sum(-1) * ~state.terminated


concepts.register(ENV, "material_balance", material_balance)
concepts.register(ENV, "in_check", in_check)
concepts.register(ENV, "king_zone_attacked", king_zone_attacked)
concepts.register(ENV, "mobility", mobility)
for _i, _name in enumerate(PIECES, start=1):
    concepts.register(ENV, f"own_{_name}s", lambda s, p=_i: (_board(s) == p).sum(-1))
    concepts.register(ENV, f"opponent_{_name}s", lambda s, p=_i: (_board(s) == -p).sum(-1))
