"""One protocol for two-player board games and single-agent control tasks."""

from __future__ import annotations

import abc
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array
T = TypeVar("T")


@struct.dataclass
class EnvState:
    """What an agent, a learner and a probe read, plus the library's own state.

    ``rewards`` has one entry per player (shape ``(1,)`` for single-agent
    tasks) because a game's reward depends on whose side you are on; read
    ``rewards[current_player]`` of the *previous* state, never a scalar.
    The outer ``terminated``/``truncated`` flags are authoritative: a step on
    a state whose flags are set is a no-op with zero rewards, and clearing
    them (as :class:`~rljaxinterp.envs.wrappers.AutoReset` does) lets
    stepping resume. ``inner`` keeps the wrapped library's state untouched so
    its own tools (renderers, game logic) still apply.
    ``final_observation`` is only filled by ``AutoReset``: the observation
    the last transition reached, before any reset replaced it.
    """

    observation: Array
    legal_action_mask: Array
    rewards: Array
    terminated: Array
    truncated: Array
    current_player: Array
    step_count: Array
    inner: Any
    final_observation: Array | None = None

    @property
    def done(self) -> Array:
        """True once the episode is over for any reason."""
        return self.terminated | self.truncated


class Env(abc.ABC):
    """Pure ``init``/``step`` pair; both are jittable and vmappable.

    Attributes describe a single environment (no batch axis), so models can
    be built from them regardless of how states are batched.
    """

    name: str
    num_actions: int
    num_players: int
    observation_shape: tuple[int, ...]

    @abc.abstractmethod
    def init(self, key: Array) -> EnvState:
        """Start an episode."""

    @abc.abstractmethod
    def step(self, state: EnvState, action: Array, key: Array) -> EnvState:
        """Advance one move; must not reset, and is a no-op once ``done``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def single_agent_state(
    observation: Array, inner: Any, num_actions: int, reward: Any, terminated: Any, truncated: Any, step_count: Any
) -> EnvState:
    """The ``EnvState`` of a one-player task: every action legal, one reward, player 0."""
    return EnvState(
        observation=observation,
        legal_action_mask=jnp.ones(num_actions, jnp.bool_),
        rewards=jnp.reshape(jnp.asarray(reward, jnp.float32), (1,)),
        terminated=jnp.asarray(terminated, jnp.bool_),
        truncated=jnp.asarray(truncated, jnp.bool_),
        current_player=jnp.int32(0),
        step_count=jnp.asarray(step_count, jnp.int32),
        inner=inner,
    )


class EnvOptionError(TypeError, ValueError):
    """A keyword argument an environment does not accept.

    Subclasses both, so callers who treat it as a bad call (``TypeError``,
    what Python raises for unknown keywords) or a bad value
    (``ValueError``, what ``make`` raises for unknown names) both catch it.
    """


def check_options(name: str, options: dict[str, Any], allowed: list[str]) -> None:
    """Reject unknown keyword options with a message listing the allowed ones."""
    bad = sorted(set(options) - set(allowed))
    if bad:
        allowed_text = ", ".join(sorted(allowed)) if allowed else "none"
        raise EnvOptionError(
            f"{name!r} got unknown option(s) {', '.join(map(repr, bad))}; allowed options: {allowed_text}"
        )


def tree_select(pred: Array, on_true: T, on_false: T) -> T:
    """Leafwise ``where``; ``pred`` broadcasts over trailing axes.

    Used instead of ``lax.cond`` because under ``vmap`` a cond becomes a
    select anyway, and this also works when ``pred`` has a batch axis.
    """
    pred = jnp.asarray(pred)

    def pick(a: Array, b: Array) -> Array:
        p = jnp.reshape(pred, pred.shape + (1,) * (jnp.ndim(a) - pred.ndim))
        return jnp.where(p, a, b)

    return jax.tree.map(pick, on_true, on_false)


def describe(env_init: Any) -> EnvState:
    """Shapes and dtypes of an initial state, without running anything."""
    return jax.eval_shape(env_init, jax.random.PRNGKey(0))
