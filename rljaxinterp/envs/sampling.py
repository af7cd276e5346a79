"""States to analyse, drawn from play, for games too large to enumerate."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from rljaxinterp.envs.base import Env, EnvState

Player = Callable[[EnvState, jax.Array], jax.Array]


def uniform_random(states: EnvState, key: jax.Array) -> jax.Array:
    return jax.random.categorical(key, jnp.where(states.legal_action_mask, 0.0, -jnp.inf))


def random_play_states(env: Env, games: int, moves: int, key: jax.Array, player: Player | None = None) -> EnvState:
    """Every state visited by ``games`` games of up to ``moves`` moves, flattened to one
    batch and without finished (terminal or truncated) states.

    ``player(states, key) -> actions`` chooses every move (both sides of a board game);
    uniformly random legal moves by default.
    """
    player = uniform_random if player is None else player

    def one_move(states, key):
        k_act, k_step = jax.random.split(key)
        actions = player(states, k_act)
        nxt = jax.vmap(env.step)(states, actions, jax.random.split(k_step, games))
        return nxt, states

    k_init, k_play = jax.random.split(key)
    start = jax.vmap(env.init)(jax.random.split(k_init, games))
    _, visited = jax.jit(lambda s, k: jax.lax.scan(one_move, s, jax.random.split(k, moves)))(start, k_play)
    flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), visited)
    keep = jnp.flatnonzero(~flat.done)
    return jax.tree.map(lambda x: x[keep], flat)


def unique_states(states: EnvState) -> EnvState:
    """The first occurrence of each distinct observation, in order (openings repeat across
    games, and duplicates would leak between a probe's train and test split)."""
    import numpy as np

    obs = np.asarray(states.observation).reshape(len(states.observation), -1)
    _, first = np.unique(obs, axis=0, return_index=True)
    keep = np.sort(first)
    return jax.tree.map(lambda x: x[keep], states)


def sample_states(env: Env, n: int, key: jax.Array, player: Player | None = None, moves: int = 64) -> tuple[EnvState, dict]:
    """Up to ``n`` distinct live states from ``player``'s play (uniformly random moves by
    default), and how many were drawn and kept.

    Play repeats positions (every game starts from the same few openings), so more games are
    played until ``n`` distinct states are found or the draws stop bringing new ones; the
    returned counts say which happened, instead of silently handing back fewer.
    """
    import numpy as np

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r} states: expected a positive integer")
    moves = min(moves, int(getattr(env, "max_steps", moves)) or moves)
    games, drawn, found, distinct = max(1, -(-n // moves)), 0, None, 0
    for attempt in range(6):
        before = distinct
        batch = random_play_states(env, games, moves, jax.random.fold_in(key, attempt), player)
        drawn += len(batch.observation)
        found = batch if found is None else jax.tree.map(lambda a, b: jnp.concatenate([a, b]), found, batch)
        found = unique_states(found)
        distinct = len(found.observation)
        if distinct >= n or distinct - before <= 0.01 * before:
            break
        games *= 2
    kept = jax.tree.map(lambda x: x[:n], found)
    return kept, {"asked": int(n), "drawn": int(drawn), "distinct": int(distinct), "used": int(min(n, distinct))}
