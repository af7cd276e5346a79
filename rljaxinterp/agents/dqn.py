"""DQN in the PureJaxRL style: acting, an on-device ring buffer and learning in one ``jax.jit``.

Read top to bottom: ``DQNConfig`` -> ``Replay`` (fixed-size ring buffer) -> ``DQNState`` ->
``DQN.init`` (random-policy prefill of ``learning_starts`` transitions) -> ``DQN.update``
(``train_frequency`` epsilon-greedy vector steps, one gradient step, target refresh) ->
``make_train``. Q-values are the network's ``ModelOutput.logits``, so the same networks and
interpretability tools serve PPO, DQN and AlphaZero agents.

The buffer stores ``final_observation`` as the next observation, so a transition cut by a
time limit bootstraps from the state the episode actually reached, not the reset state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rljaxinterp.agents.common import Params, RingBuffer, epsilon_explore
from rljaxinterp.agents.rl_common import (
    NetworkAgent,
    RLConfig,
    build_env,
    build_network,
    mean_or_nan,
    track_returns,
)
from rljaxinterp.envs import AutoReset, EnvState
from rljaxinterp.models.base import mask_logits


@dataclasses.dataclass(frozen=True)
class DQNConfig(RLConfig):
    """Everything that determines a DQN run; equal configs give bit-identical runs.

    One *update* is ``train_frequency`` steps of all ``num_envs`` environments followed by
    one gradient step on ``batch_size`` transitions. ``learning_starts`` transitions of the
    uniformly random policy fill the buffer first. Epsilon decays linearly from
    ``eps_start`` to ``eps_finish`` over ``eps_decay_steps`` environment steps. The target
    network moves ``tau`` of the way to the online one every ``target_update_every``
    updates (``tau=1``: a hard copy). ``double_dqn`` picks the bootstrap action with the
    online network. The task, network, seed and checkpoint fields come from
    :class:`~rljaxinterp.agents.rl_common.RLConfig`.
    """

    # RLConfig fields with DQN's own defaults (they keep their place in the field order)
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"hidden": [120, 84]})
    checkpoint_every: int = 5_000
    num_envs: int = 10
    total_timesteps: int = 500_000
    buffer_size: int = 10_000
    batch_size: int = 128
    learning_starts: int = 10_000
    train_frequency: int = 1
    target_update_every: int = 50
    tau: float = 1.0
    gamma: float = 0.99
    lr: float = 2.5e-4
    max_grad_norm: float = 10.0
    eps_start: float = 1.0
    eps_finish: float = 0.05
    eps_decay_steps: int = 250_000
    double_dqn: bool = False

    def validate(self) -> None:
        super().validate()
        for name in ("num_envs", "batch_size", "train_frequency", "target_update_every", "eps_decay_steps"):
            self._int_at_least(name, 1)
        self._int_at_least("learning_starts", 0)
        self._int_at_least("buffer_size", max(self.num_envs * self.train_frequency, 1))
        self._need(self.buffer_size >= self.learning_starts, "buffer_size",
                   f"need >= learning_starts = {self.learning_starts} (the prefill must fit)")
        self._int_at_least("total_timesteps", 1)
        self._need(self.num_updates >= 1, "total_timesteps",
                   f"need >= learning_starts + num_envs * train_frequency = "
                   f"{self.prefill_steps * self.num_envs + self.steps_per_update} (one update)")
        self._number_in("tau", 0.0, 1.0, lo_open=True)
        self._number_in("gamma", 0.0, 1.0)
        self._number_in("lr", 0.0, 1.0, lo_open=True)
        self._number_in("max_grad_norm", 0.0, 1e6, lo_open=True)
        self._number_in("eps_start", 0.0, 1.0)
        self._number_in("eps_finish", 0.0, 1.0)
        self._need(isinstance(self.double_dqn, bool), "double_dqn", "need True or False")

    @property
    def prefill_steps(self) -> int:
        """Vector steps of the random policy before learning (``learning_starts`` rounded up)."""
        return -(-self.learning_starts // self.num_envs)

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.train_frequency

    @property
    def num_updates(self) -> int:
        return (self.total_timesteps - self.prefill_steps * self.num_envs) // self.steps_per_update


@struct.dataclass
class Replay(RingBuffer):
    """Transitions on device; ``Replay.empty(capacity, **blank_row)`` starts it."""

    observation: jax.Array  # (N, *obs_shape)
    action: jax.Array  # (N,)
    reward: jax.Array  # (N,)
    next_observation: jax.Array  # (N, *obs_shape): final_observation, before any reset
    next_legal: jax.Array  # (N, num_actions) legal actions in next_observation
    terminated: jax.Array  # (N,) no bootstrap; truncated transitions do bootstrap
    size: jax.Array
    cursor: jax.Array


@struct.dataclass
class DQNState:
    """Everything a resumed run needs to continue bit-identically."""

    params: Params
    target_params: Params
    opt_state: Any
    buffer: Replay
    env_state: EnvState  # (num_envs,) live episodes
    episode_return: jax.Array  # (num_envs,) return so far of each live episode
    key: jax.Array
    update: jax.Array  # gradient steps done
    env_steps: jax.Array


@dataclasses.dataclass(frozen=True)
class DQN(NetworkAgent):
    """The pure functions of one config; jit/vmap them as you like."""

    config: DQNConfig

    def q_values(self, params: Params, observation: jax.Array, legal: jax.Array) -> jax.Array:
        return mask_logits(self.net(params, observation).logits, legal)

    def act(self, params: Params, state: EnvState, key: jax.Array) -> jax.Array:
        """Greedy legal action (evaluation); any batch shape."""
        return jnp.argmax(self.q_values(params, state.observation, state.legal_action_mask), axis=-1)

    def epsilon(self, env_steps: jax.Array) -> jax.Array:
        cfg = self.config
        frac = jnp.clip(env_steps / cfg.eps_decay_steps, 0.0, 1.0)
        return cfg.eps_start + frac * (cfg.eps_finish - cfg.eps_start)

    def explore(self, params: Params, state: EnvState, eps: jax.Array, key: jax.Array) -> jax.Array:
        """Epsilon-greedy over legal actions, for a (num_envs,) batch of states."""
        k_coin, k_random = jax.random.split(key)
        greedy = self.act(params, state, key)
        return epsilon_explore(k_coin, k_random, greedy, state.legal_action_mask, eps)[0]

    # -- acting ----------------------------------------------------------------------------
    def collect(self, params: Params, carry, eps: jax.Array, keys: jax.Array):
        """One vector step per key; stores every transition. ``eps=1`` is the random policy."""
        env, n = AutoReset(self.env), self.config.num_envs

        def step(carry, key):
            env_state, running, buffer, ret_sum, ret_count = carry
            k_act, k_env = jax.random.split(key)
            action = self.explore(params, env_state, eps, k_act)
            nxt = jax.vmap(env.step)(env_state, action, jax.random.split(k_env, n))
            running, finished = track_returns(running, nxt.rewards[:, 0], nxt.done)
            # After a reset the state's legal mask is the new episode's; the final state's is
            # lost. Terminal rows never bootstrap, and single-agent tasks allow every action.
            buffer = buffer.add(observation=env_state.observation, action=action, reward=nxt.rewards[:, 0],
                                next_observation=nxt.final_observation,
                                next_legal=jnp.where(nxt.done[:, None], True, nxt.legal_action_mask),
                                terminated=nxt.terminated)
            return (nxt, running, buffer, ret_sum + finished.sum(), ret_count + nxt.done.sum()), None

        return jax.lax.scan(step, carry, keys)[0]

    # -- init: parameters, empty buffer, random prefill ------------------------------------
    def init(self, key: jax.Array) -> DQNState:
        cfg = self.config
        k_model, k_env, k_fill, k_run = jax.random.split(key, 4)
        params = self.init_params(k_model)
        env_state = jax.vmap(AutoReset(self.env).init)(jax.random.split(k_env, cfg.num_envs))
        obs = jnp.zeros(self.env.observation_shape, jnp.float32)
        buffer = Replay.empty(cfg.buffer_size, observation=obs, action=jnp.int32(0), reward=jnp.float32(0),
                              next_observation=obs, next_legal=jnp.ones(self.env.num_actions, jnp.bool_),
                              terminated=jnp.bool_(False))
        running = jnp.zeros((cfg.num_envs,), jnp.float32)
        carry = (env_state, running, buffer, jnp.float32(0), jnp.int32(0))
        env_state, running, buffer, _, _ = self.collect(
            params, carry, jnp.float32(1.0), jax.random.split(k_fill, cfg.prefill_steps))
        return DQNState(params=params, target_params=params, opt_state=self.optimizer.init(params),
                        buffer=buffer, env_state=env_state, episode_return=running, key=k_run,
                        update=jnp.int32(0), env_steps=jnp.int32(cfg.prefill_steps * cfg.num_envs))

    # -- learning --------------------------------------------------------------------------
    def td_target(self, params: Params, target_params: Params, batch: Replay) -> jax.Array:
        cfg = self.config
        q_next = self.q_values(target_params, batch.next_observation, batch.next_legal)
        if cfg.double_dqn:
            best = jnp.argmax(self.q_values(params, batch.next_observation, batch.next_legal), axis=-1)
        else:
            best = jnp.argmax(q_next, axis=-1)
        bootstrap = jnp.take_along_axis(q_next, best[:, None], axis=1)[:, 0]
        return batch.reward + cfg.gamma * jnp.where(batch.terminated, 0.0, bootstrap)

    def loss(self, params: Params, batch: Replay, target: jax.Array):
        q = self.net(params, batch.observation).logits
        q_taken = jnp.take_along_axis(q, batch.action[:, None], axis=1)[:, 0]
        return jnp.mean((q_taken - target) ** 2), q_taken.mean()

    def update(self, state: DQNState) -> tuple[DQNState, dict[str, jax.Array]]:
        """Act ``train_frequency`` vector steps, take one gradient step, maybe refresh target."""
        cfg = self.config
        key, k_act, k_sample = jax.random.split(state.key, 3)
        eps = self.epsilon(state.env_steps)
        carry = (state.env_state, state.episode_return, state.buffer, jnp.float32(0), jnp.int32(0))
        env_state, running, buffer, ret_sum, ret_count = self.collect(
            state.params, carry, eps, jax.random.split(k_act, cfg.train_frequency))

        batch = buffer.sample(k_sample, cfg.batch_size)
        target = jax.lax.stop_gradient(self.td_target(state.params, state.target_params, batch))
        (loss, q_mean), grads = jax.value_and_grad(self.loss, has_aux=True)(state.params, batch, target)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        update = state.update + 1
        refresh = update % cfg.target_update_every == 0
        moved = optax.incremental_update(params, state.target_params, cfg.tau)
        target_params = jax.tree.map(lambda a, b: jnp.where(refresh, a, b), moved, state.target_params)

        metrics = {"loss": loss, "q_mean": q_mean, "epsilon": eps,
                   "episode_return": mean_or_nan(ret_sum, ret_count), "episodes": ret_count}
        new = DQNState(params=params, target_params=target_params, opt_state=opt_state, buffer=buffer,
                       env_state=env_state, episode_return=running, key=key, update=update,
                       env_steps=state.env_steps + cfg.steps_per_update)
        return new, metrics


def make_dqn(config: DQNConfig) -> DQN:
    env = build_env(config.env, config.env_kwargs)
    optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr))
    return DQN(config=config, env=env, model=build_network(config, env), optimizer=optimizer)


def make_train(config: DQNConfig) -> Callable[[jax.Array], tuple[DQNState, dict[str, jax.Array]]]:
    """``train(key) -> (final DQNState, metrics over updates)``, jitted; the whole run is one
    scan, so ``jax.jit(jax.vmap(train))(keys)`` trains one agent per key in parallel."""
    return jax.jit(make_dqn(config).train)
