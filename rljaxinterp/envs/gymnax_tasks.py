"""Discrete-action gymnax tasks behind the common protocol, without auto-reset."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax.numpy as jnp

from rljaxinterp.envs.base import (
    Array,
    Env,
    EnvState,
    check_options,
    describe,
    single_agent_state,
    tree_select,
)

# Discrete-action gymnax ids verified to reset and step offline with gymnax 1.0.
# Left out: continuous-action tasks (Pendulum, MountainCarContinuous,
# PointRobot, Reacher, Swimmer) and MNISTBandit-bsuite (downloads MNIST).
GYMNAX_TASKS: tuple[str, ...] = (
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "Asterix-MinAtar",
    "Breakout-MinAtar",
    "Freeway-MinAtar",
    "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar",
    "Catch-bsuite",
    "DeepSea-bsuite",
    "MemoryChain-bsuite",
    "UmbrellaChain-bsuite",
    "DiscountingChain-bsuite",
    "SimpleBandit-bsuite",
    "FourRooms-misc",
    "MetaMaze-misc",
    "BernoulliBandit-misc",
    "GaussianBandit-misc",
    "Pong-misc",
    "FrozenLake-misc",
)


def _constructor_args(cls: type) -> list[str]:
    sig = inspect.signature(cls.__init__)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for i, p in enumerate(sig.parameters.values()) if i > 0 and p.kind in kinds]


class GymnaxTask(Env):
    """A single-agent gymnax task.

    ``step`` uses gymnax's ``step_env`` rather than ``step``: gymnax's
    ``step`` resets inside, which would hide the final observation and make
    the reset policy impossible to change. Resetting is ``AutoReset``'s job.

    Keyword options go to the task's constructor (e.g. ``size`` for
    DeepSea) or override its ``EnvParams`` (e.g. ``max_steps_in_episode``).
    ``truncated`` means the time limit ended a non-terminal episode, so it is
    never set together with ``terminated``: bootstrap exactly when truncated.
    """

    def __init__(self, name: str, **options: Any) -> None:
        import gymnax  # imported when a task is made (it pulls in seaborn and scipy: seconds)

        probe, params = gymnax.make(name)
        ctor_args = _constructor_args(type(probe))
        param_fields = [f.name for f in dataclasses.fields(params)]
        check_options(name, options, ctor_args + param_fields)
        ctor = {k: v for k, v in options.items() if k in ctor_args}
        if ctor:
            probe, params = gymnax.make(name, **ctor)
        self.gymnax_env = probe
        self.params = params.replace(**{k: v for k, v in options.items() if k not in ctor})
        self.name = name
        self.num_players = 1
        self.num_actions = int(self.gymnax_env.action_space(self.params).n)
        self.observation_shape = tuple(describe(self.init).observation.shape)

    def _wrap(
        self, obs: Array, inner: Any, reward: Array, terminated: Array, truncated: Array, step_count: Array
    ) -> EnvState:
        return single_agent_state(
            jnp.atleast_1d(jnp.asarray(obs, jnp.float32)), inner, self.num_actions, reward, terminated, truncated,
            step_count,
        )

    def init(self, key: Array) -> EnvState:
        obs, inner = self.gymnax_env.reset_env(key, self.params)
        return self._wrap(obs, inner, 0.0, False, False, 0)

    def step(self, state: EnvState, action: Array, key: Array) -> EnvState:
        action = jnp.asarray(action, jnp.int32)
        obs, inner, reward, terminated, _ = self.gymnax_env.step_env(key, state.inner, action, self.params)
        truncated = self.gymnax_env.is_truncated(inner, self.params) & ~terminated
        stepped = self._wrap(obs, inner, reward, terminated, truncated, state.step_count + 1)
        frozen = state.replace(rewards=jnp.zeros_like(state.rewards))
        return tree_select(state.done, frozen, stepped)
