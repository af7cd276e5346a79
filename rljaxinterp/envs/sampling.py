"""States to analyse, drawn from play, for games too large to enumerate."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rljaxinterp.envs.base import Env, EnvState


def random_play_states(env: Env, games: int, moves: int, key: jax.Array) -> EnvState:
    """Every state visited by ``games`` uniformly random legal games of up to ``moves`` moves,
    flattened to one batch and without finished (terminal or truncated) states."""

    def one_move(states, key):
        k_act, k_step = jax.random.split(key)
        logits = jnp.where(states.legal_action_mask, 0.0, -jnp.inf)
        actions = jax.random.categorical(k_act, logits)
        nxt = jax.vmap(env.step)(states, actions, jax.random.split(k_step, games))
        return nxt, states

    k_init, k_play = jax.random.split(key)
    start = jax.vmap(env.init)(jax.random.split(k_init, games))
    _, visited = jax.jit(lambda s, k: jax.lax.scan(one_move, s, jax.random.split(k, moves)))(start, k_play)
    flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), visited)
    keep = jnp.flatnonzero(~flat.done)
    return jax.tree.map(lambda x: x[keep], flat)
