"""Compose environments: automatic resets and batching."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rljaxinterp.envs.base import Array, Env, EnvState, tree_select


class Wrapper(Env):
    """Forwards the description of the wrapped environment."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.name = env.name
        self.num_actions = env.num_actions
        self.num_players = env.num_players
        self.observation_shape = env.observation_shape

    def init(self, key: Array) -> EnvState:
        return self.env.init(key)

    def step(self, state: EnvState, action: Array, key: Array) -> EnvState:
        return self.env.step(state, action, key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env!r})"


class AutoReset(Wrapper):
    """Start a new episode in the same step that ends one, for rollouts in ``scan``.

    The returned state after a finishing step is the new episode's first
    state (observation, legal mask, current player, ``step_count`` 0), but it
    carries the finishing transition's ``rewards``, ``terminated`` and
    ``truncated`` so a learner sees them. ``final_observation`` always holds
    the observation the transition reached before any reset, so values can
    be bootstrapped on truncation; it equals ``observation`` when no reset
    happened. The carried flags are cleared before the next step so they do
    not end the new episode. Selects with ``where`` rather than ``lax.cond``:
    under ``vmap`` a cond runs both branches anyway, and ``where`` also works
    when the wrapped environment is itself batched.
    """

    def init(self, key: Array) -> EnvState:
        state = self.env.init(key)
        return state.replace(final_observation=state.observation)

    def step(self, state: EnvState, action: Array, key: Array) -> EnvState:
        step_key, reset_key = jax.random.split(key)
        state = state.replace(
            terminated=jnp.zeros_like(state.terminated),
            truncated=jnp.zeros_like(state.truncated),
            final_observation=None,
        )
        stepped = self.env.step(state, action, step_key)
        fresh = self.env.init(reset_key)
        out = tree_select(stepped.done, fresh, stepped)
        return out.replace(
            rewards=stepped.rewards,
            terminated=stepped.terminated,
            truncated=stepped.truncated,
            final_observation=stepped.observation,
        )


class Batched(Wrapper):
    """``n`` independent copies, each with its own key; states gain a leading axis.

    The description attributes stay per-environment (no batch axis).
    """

    def __init__(self, env: Env, n: int) -> None:
        super().__init__(env)
        if n < 1:
            raise ValueError(f"batch size n must be >= 1; got {n}")
        self.num_envs = n

    def init(self, key: Array) -> EnvState:
        return jax.vmap(self.env.init)(jax.random.split(key, self.num_envs))

    def step(self, state: EnvState, action: Array, key: Array) -> EnvState:
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.step)(state, action, keys)

    def __repr__(self) -> str:
        return f"Batched({self.env!r}, {self.num_envs})"
