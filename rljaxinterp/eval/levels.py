"""Behaviour on fresh levels: policies run on many new levels of a task at once, read
through the task's ``episode_metrics`` counters (reached the coin, went to the corner, ...)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import envs


def rollout_metrics(env: envs.Env, policy: Callable, params: Any, key: jax.Array, n: int):
    """``n`` levels of ``env`` run for its whole ``max_steps`` with no reset (finished levels
    stay frozen), sampling from ``policy(params, obs) -> logits``. Returns final
    ``episode_metrics`` (n,) and their per-step means (steps,), the time series for
    reset-free tasks. Jittable."""
    k0, k1 = jax.random.split(key)
    states = jax.vmap(env.init)(jax.random.split(k0, n))

    def body(states, key):
        k_act, k_env = jax.random.split(key)
        action = jax.random.categorical(k_act, policy(params, states.observation))
        states = jax.vmap(env.step)(states, action, jax.random.split(k_env, n))
        means = {k: jnp.mean(v.astype(jnp.float32)) for k, v in env.episode_metrics(states).items()}
        return states, (means, states.rewards[:, 0].mean())

    states, (trace, reward) = jax.lax.scan(body, states, jax.random.split(k1, env.max_steps))
    return env.episode_metrics(states), {**trace, "reward": reward}


def sampled(agent: Any) -> Callable:
    """The agent's policy as logits to sample from (PPO's policy)."""
    return lambda p, obs: agent.policy_value(p, obs).logits


def greedy(agent: Any) -> Callable:
    """Logits that always pick the argmax action (DQN's policy: argmax Q)."""
    def logits(p, obs):
        best = jnp.argmax(agent.policy_value(p, obs).logits, -1)
        return jnp.where(jax.nn.one_hot(best, agent.env.num_actions) > 0, 0.0, -1e9)
    return logits


def make_evaluator(agent: Any, env: envs.Env, n: int, policy: Callable | None = None):
    """``(params (seeds, ...), key) -> metrics (seeds, n), traces (seeds, steps)``, jitted;
    each seed gets its own key split from ``key``."""
    policy = sampled(agent) if policy is None else policy
    one = lambda p, k: rollout_metrics(env, policy, p, k, n)  # noqa: E731
    return jax.jit(lambda params, key: jax.vmap(one)(params, jax.random.split(key, jax.tree.leaves(params)[0].shape[0])))


def train_and_test(agent: Any, params: Any, env: str, env_kwargs: Mapping[str, Any], n: int,
                   policy: Callable | None = None, keys: Mapping[str, int] = {"train": 7, "test": 8}) -> dict:
    """Every seed on ``n`` fresh levels of both distributions: per-seed means of each counter,
    the per-step traces (mean over seeds) and each distribution's episode length."""
    out = {}
    for dist, seed in keys.items():
        level_env = envs.make(env, distribution=dist, **env_kwargs)
        metrics, trace = make_evaluator(agent, level_env, n, policy)(params, jax.random.PRNGKey(seed))
        out[dist] = dict(per_seed={k: np.asarray(v, np.float64).mean(axis=1) for k, v in metrics.items()},
                         trace={k: np.asarray(v, np.float64).mean(axis=0) for k, v in trace.items()},
                         max_steps=level_env.max_steps)
    return out
