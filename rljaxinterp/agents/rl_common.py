"""What PPO and DQN share: the config base, building env + network, episode returns,
evaluation, and the agent bundle whose ``net`` runs inside training loops.

Kept apart so each training loop (``ppo.py``, ``dqn.py``) stays one file you can read top
to bottom, and both agree on what "a config", "a network" and "a return" mean. What
AlphaZero shares with them too (legal-action policies, the replay buffer) is in
:mod:`rljaxinterp.agents.common`.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rljaxinterp import envs
from rljaxinterp.agents.common import Params, build_model, init_params, uniform_legal_action
from rljaxinterp.envs import Env
from rljaxinterp.models import KINDS, ModelOutput
from rljaxinterp.models.kernels import loop_friendly_apply

MODEL_KINDS = ("auto",) + KINDS


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """The fields every PPO/DQN config has, its JSON round trip and validation helpers.

    Subclasses add their algorithm's fields and extend :meth:`validate`. ``model="auto"``
    picks ``conv`` for (height, width, planes) observations and ``mlp`` otherwise.
    ``checkpoint_every`` is the number of updates per jitted segment of a run folder.
    ``model_kwargs``/``env_kwargs`` are stored in JSON form (tuples become lists) so a
    config read back from ``config.json`` compares equal to the one that wrote it.
    """

    env: str = "CartPole-v1"
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: str = "auto"
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    checkpoint_every: int = 20

    def __post_init__(self) -> None:
        self._canonicalise()
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value and its allowed range."""
        names = envs.available()
        self._need(isinstance(self.env, str) and self.env in names, "env",
                   "use a registered single-agent task, e.g. CartPole-v1, Breakout-MinAtar")
        self._need(self.model in MODEL_KINDS, "model", f"allowed: {', '.join(MODEL_KINDS)}")
        self._need(self.model_kwargs.get("value_activation", "none") == "none", "model_kwargs",
                   "value_activation must be 'none' (returns are unbounded)")
        self._int_at_least("seed", 0)
        self._need(self.seed < 2**31, "seed", "need 0 <= seed < 2**31")
        self._int_at_least("checkpoint_every", 1)

    def _canonicalise(self) -> None:
        for name in ("env_kwargs", "model_kwargs"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                # ValueError like every other bad config value, so callers catch one type
                raise ValueError(f"{type(self).__name__}.{name}={value!r} is not allowed; need a dict")
            object.__setattr__(self, name, json.loads(json.dumps(dict(value))))

    def _need(self, ok: bool, name: str, allowed: str) -> None:
        if not ok:
            raise ValueError(f"{type(self).__name__}.{name}={getattr(self, name)!r} is not allowed; {allowed}")

    def _int_at_least(self, name: str, lo: int) -> None:
        v = getattr(self, name)
        self._need(isinstance(v, int) and not isinstance(v, bool) and v >= lo, name,
                   f"need an integer >= {lo}")

    def _number_in(self, name: str, lo: float, hi: float, *, lo_open: bool = False) -> None:
        v = getattr(self, name)
        is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
        ok = is_num and (lo < v if lo_open else lo <= v) and v <= hi
        self._need(ok, name, f"need {lo} {'<' if lo_open else '<='} value <= {hi}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**data)

    derived: ClassVar[tuple[str, ...]] = ()  # fields computed from others: ``replace`` recomputes them

    def replace(self, **changes: Any):
        kept = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name not in self.derived}
        return type(self)(**{**kept, **changes})


def build_env(name: str, env_kwargs: Mapping[str, Any]) -> Env:
    """The raw (single, non-resetting) environment; loops wrap it in ``AutoReset``."""
    env = envs.make(name, **env_kwargs)
    if env.num_players != 1:
        raise ValueError(f"PPO/DQN need a single-agent task; {name!r} has {env.num_players} players "
                         "(use AlphaZero for two-player games)")
    return env


def resolve_model_kind(kind: str, env: Env) -> str:
    """``auto``: conv for image-like (height, width, planes) observations, mlp otherwise."""
    if kind != "auto":
        return kind
    return "conv" if len(env.observation_shape) == 3 else "mlp"


def build_network(config: RLConfig, env: Env) -> nn.Module:
    """The config's network; its value head is linear because returns are unbounded."""
    return build_model(type(config).__name__, resolve_model_kind(config.model, env), config.model_kwargs, env,
                       value_activation="none")


def track_returns(running: jax.Array, reward: jax.Array, done: jax.Array):
    """Add this step's reward to each env's running return; on ``done`` emit it and restart.

    Returns ``(new_running, finished_returns)``: ``finished_returns`` is the episode's
    return where ``done`` and 0 elsewhere.
    """
    total = running + reward
    return jnp.where(done, 0.0, total), jnp.where(done, total, 0.0)


def mean_or_nan(total: jax.Array, count: jax.Array) -> jax.Array:
    """Mean return of finished episodes; NaN (not 0) when none finished, so plots skip it."""
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def evaluate(env: Env, act: Callable[[Any, jax.Array, jax.Array], jax.Array], params: Any,
             key: jax.Array, num_episodes: int = 64, max_steps: int = 10_000) -> jax.Array:
    """Undiscounted return of ``num_episodes`` full episodes (no resets), all run in parallel.

    ``act(params, state, key) -> action`` for one state. ``max_steps`` only bounds the loop;
    tasks have their own time limits. Jittable; returns shape ``(num_episodes,)``.
    """
    k_init, k_run = jax.random.split(key)
    states = jax.vmap(env.init)(jax.random.split(k_init, num_episodes))

    def cond(carry):
        states, _, t, _ = carry
        return (~jnp.all(states.done)) & (t < max_steps)

    def body(carry):
        states, total, t, key = carry
        key, k_act, k_step = jax.random.split(key, 3)
        actions = jax.vmap(act, in_axes=(None, 0, 0))(params, states, jax.random.split(k_act, num_episodes))
        states = jax.vmap(env.step)(states, actions, jax.random.split(k_step, num_episodes))
        return states, total + states.rewards[:, 0], t + 1, key

    zeros = jnp.zeros((num_episodes,), jnp.float32)
    _, total, _, _ = jax.lax.while_loop(cond, body, (states, zeros, jnp.int32(0), k_run))
    return total


def random_return(env: Env, key: jax.Array, num_episodes: int = 64) -> jax.Array:
    """Returns of the uniformly random legal policy: the baseline a learner must beat."""
    def act(_, state, key):
        return uniform_legal_action(key, state.legal_action_mask)
    return jax.jit(evaluate, static_argnums=(0, 1, 4))(env, act, None, key, num_episodes)


@dataclasses.dataclass(frozen=True)
class NetworkAgent(abc.ABC):
    """What PPO and DQN share: their config, the single (non-resetting) environment, the
    network from the model layer and its optimiser."""

    config: Any
    env: Env
    model: nn.Module
    optimizer: optax.GradientTransformation

    def policy_value(self, params: Params, observation: jax.Array) -> ModelOutput:
        """Raw network on any batch shape (the thing interpretability reads); Q-learning
        agents read ``logits`` as Q-values."""
        return self.model.apply({"params": params}, observation)

    def net(self, params: Params, observation: jax.Array) -> ModelOutput:
        """The same network as run inside training loops (conv gradients rewritten; see
        :func:`rljaxinterp.models.kernels.loop_friendly_conv`)."""
        return loop_friendly_apply(self.model, params, observation)

    def init_params(self, key: jax.Array) -> Params:
        return init_params(self.model, self.env.observation_shape, key)

    @abc.abstractmethod
    def init(self, key: jax.Array) -> Any:
        """The training state before the first update."""

    @abc.abstractmethod
    def update(self, state: Any) -> tuple[Any, dict[str, jax.Array]]:
        """One update: act in the environments, then learn."""

    def segment(self, state: Any, num_updates: int) -> tuple[Any, dict[str, jax.Array]]:
        """``num_updates`` updates as one scan; metrics gain a leading (update,) axis. A run
        folder checkpoints between segments."""
        return jax.lax.scan(lambda s, _: self.update(s), state, None, num_updates)

    def train(self, key: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        """A whole run as one scan from ``key``, so ``jax.vmap`` trains one agent per key."""
        return self.segment(self.init(key), self.config.num_updates)
