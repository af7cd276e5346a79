"""PPO in the PureJaxRL style: rollout, GAE and minibatch epochs all inside one ``jax.jit``.

Read top to bottom: ``PPOConfig`` -> ``PPOState`` -> ``PPO.init`` -> ``PPO.update`` (rollout,
advantages, epochs of minibatch steps) -> ``make_train``. ``make_train(config)(key)`` runs a
whole training run as one ``lax.scan`` of updates, so ``jax.vmap(train)(keys)`` trains many
seeds at once. ``PPO.segment`` runs a fixed number of updates from a state, which is what a
run folder checkpoints between (:mod:`rljaxinterp.runs`).

Everything a run needs to continue (params, optimiser, live environments, running episode
returns, PRNG key) lives in ``PPOState``, so a resumed run is bit-identical.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rljaxinterp.agents.common import Params
from rljaxinterp.agents.rl_common import (
    NetworkAgent,
    RLConfig,
    build_env,
    build_network,
    mean_or_nan,
    track_returns,
)
from rljaxinterp.envs import AutoReset, EnvState
from rljaxinterp.models.base import mask_logits, masked_log_softmax


@dataclasses.dataclass(frozen=True)
class PPOConfig(RLConfig):
    """Everything that determines a PPO run; equal configs give bit-identical runs.

    One *update* collects ``num_envs * num_steps`` transitions, then takes
    ``update_epochs * num_minibatches`` gradient steps on them. The task, network, seed and
    checkpoint fields come from :class:`~rljaxinterp.agents.rl_common.RLConfig`.
    """

    num_envs: int = 16
    num_steps: int = 128
    total_timesteps: int = 500_000
    update_epochs: int = 4
    num_minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    lr: float = 2.5e-4
    anneal_lr: bool = True

    def validate(self) -> None:
        super().validate()
        for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches"):
            self._int_at_least(name, 1)
        self._int_at_least("total_timesteps", 1)
        self._need(self.total_timesteps >= self.num_envs * self.num_steps, "total_timesteps",
                   f"need >= num_envs * num_steps = {self.num_envs * self.num_steps} (one update)")
        self._need(self.batch_size % self.num_minibatches == 0, "num_minibatches",
                   f"must divide num_envs * num_steps = {self.batch_size}")
        self._number_in("gamma", 0.0, 1.0)
        self._number_in("gae_lambda", 0.0, 1.0)
        self._number_in("clip_eps", 0.0, 10.0, lo_open=True)
        self._number_in("ent_coef", 0.0, 10.0)
        self._number_in("vf_coef", 0.0, 100.0)
        self._number_in("max_grad_norm", 0.0, 1e6, lo_open=True)
        self._number_in("lr", 0.0, 1.0, lo_open=True)
        self._need(isinstance(self.anneal_lr, bool), "anneal_lr", "need True or False")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size


@struct.dataclass
class PPOState:
    """Everything a resumed run needs to continue bit-identically."""

    params: Params
    opt_state: Any
    env_state: EnvState  # (num_envs,) live episodes, carried across updates
    episode_return: jax.Array  # (num_envs,) return so far of each live episode
    key: jax.Array
    update: jax.Array  # updates done
    env_steps: jax.Array


@struct.dataclass
class Transition:
    observation: jax.Array
    legal: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array  # truncation-bootstrapped: r + gamma * V(final_observation) if truncated
    done: jax.Array  # the episode ended here (terminated or truncated): GAE stops


@dataclasses.dataclass(frozen=True)
class PPO(NetworkAgent):
    """The pure functions of one config; jit/vmap them as you like."""

    config: PPOConfig

    def act(self, params: Params, state: EnvState, key: jax.Array) -> jax.Array:
        """Sample from the masked policy; any batch shape."""
        logits = mask_logits(self.net(params, state.observation).logits, state.legal_action_mask)
        return jax.random.categorical(key, logits)

    # -- init ------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> PPOState:
        k_model, k_env, k_run = jax.random.split(key, 3)
        params = self.init_params(k_model)
        env = AutoReset(self.env)
        n = self.config.num_envs
        return PPOState(
            params=params,
            opt_state=self.optimizer.init(params),
            env_state=jax.vmap(env.init)(jax.random.split(k_env, n)),
            episode_return=jnp.zeros((n,), jnp.float32),
            key=k_run,
            update=jnp.int32(0),
            env_steps=jnp.int32(0),
        )

    # -- one update: rollout, GAE, epochs of minibatch steps ---------------------------------
    def rollout(self, state: PPOState, key: jax.Array):
        """``num_steps`` steps of every env with the current policy; episodes auto-reset."""
        cfg, env = self.config, AutoReset(self.env)

        def step(carry, key):
            env_state, running, ret_sum, ret_count = carry
            k_act, k_env = jax.random.split(key)
            out = self.net(state.params, env_state.observation)
            logits = mask_logits(out.logits, env_state.legal_action_mask)
            action = jax.random.categorical(k_act, logits)
            log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=1)[:, 0]
            nxt = jax.vmap(env.step)(env_state, action, jax.random.split(k_env, cfg.num_envs))
            reward = nxt.rewards[:, 0]
            running, finished = track_returns(running, reward, nxt.done)
            tr = Transition(observation=env_state.observation, legal=env_state.legal_action_mask,
                            action=action, log_prob=log_prob, value=out.value, reward=reward,
                            done=nxt.done)
            carry = (nxt, running, ret_sum + finished.sum(), ret_count + nxt.done.sum())
            return carry, (tr, nxt.truncated, nxt.final_observation)

        carry = (state.env_state, state.episode_return, jnp.float32(0), jnp.int32(0))
        carry, (traj, truncated, final_obs) = jax.lax.scan(step, carry, jax.random.split(key, cfg.num_steps))
        # Bootstrap through the time limit: a truncated episode did not end, its last state
        # is worth V(final_observation). One batched forward pass instead of one per step.
        final_value = self.net(state.params, final_obs).value
        traj = traj.replace(reward=traj.reward + cfg.gamma * jnp.where(truncated, final_value, 0.0))
        return carry, traj

    def advantages(self, traj: Transition, last_value: jax.Array) -> tuple[jax.Array, jax.Array]:
        """GAE(lambda), scanned backwards; returns (advantages, value targets)."""
        cfg = self.config

        def back(carry, t: Transition):
            gae, next_value = carry
            keep = 1.0 - t.done
            delta = t.reward + cfg.gamma * next_value * keep - t.value
            gae = delta + cfg.gamma * cfg.gae_lambda * keep * gae
            return (gae, t.value), gae

        _, adv = jax.lax.scan(back, (jnp.zeros_like(last_value), last_value), traj, reverse=True)
        return adv, adv + traj.value

    def loss(self, params: Params, batch: Transition, adv: jax.Array, target: jax.Array):
        """Clipped surrogate + clipped value loss - entropy bonus (PPO paper, PureJaxRL)."""
        cfg = self.config
        out = self.net(params, batch.observation)
        log_probs = masked_log_softmax(out.logits, batch.legal)
        log_prob = jnp.take_along_axis(log_probs, batch.action[:, None], axis=1)[:, 0]
        entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1).mean()

        v_clipped = batch.value + jnp.clip(out.value - batch.value, -cfg.clip_eps, cfg.clip_eps)
        value_loss = 0.5 * jnp.maximum((out.value - target) ** 2, (v_clipped - target) ** 2).mean()

        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        log_ratio = log_prob - batch.log_prob
        ratio = jnp.exp(log_ratio)
        clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
        policy_loss = -jnp.minimum(ratio * adv, clipped * adv).mean()

        total = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        stats = {
            "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
            "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
            "clip_frac": (jnp.abs(ratio - 1.0) > cfg.clip_eps).mean(),
        }
        return total, stats

    def update(self, state: PPOState) -> tuple[PPOState, dict[str, jax.Array]]:
        """Collect a batch with the current policy, then ``update_epochs`` passes over it."""
        cfg = self.config
        key, k_roll, k_epochs = jax.random.split(state.key, 3)
        (env_state, running, ret_sum, ret_count), traj = self.rollout(state, k_roll)
        last_value = self.net(state.params, env_state.observation).value
        adv, target = self.advantages(traj, last_value)

        def epoch(carry, key):
            def minibatch(carry, mb):
                params, opt_state = carry
                grads, stats = jax.grad(self.loss, has_aux=True)(params, *mb)
                updates, opt_state = self.optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), stats

            flat = jax.tree.map(lambda x: x.reshape(cfg.batch_size, *x.shape[2:]), (traj, adv, target))
            perm = jax.random.permutation(key, cfg.batch_size)
            mbs = jax.tree.map(lambda x: x[perm].reshape(cfg.num_minibatches, -1, *x.shape[1:]), flat)
            return jax.lax.scan(minibatch, carry, mbs)

        (params, opt_state), stats = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(k_epochs, cfg.update_epochs))
        # stats: (update_epochs, num_minibatches); the first epoch's loss is measured on
        # params before this update, the last epoch's after most of it.
        total = stats["policy_loss"] + cfg.vf_coef * stats["value_loss"] - cfg.ent_coef * stats["entropy"]
        metrics = {k: v.mean() for k, v in stats.items()}
        metrics.update(
            loss=total.mean(),
            loss_first_epoch=total[0].mean(),
            loss_last_epoch=total[-1].mean(),
            episode_return=mean_or_nan(ret_sum, ret_count),
            episodes=ret_count,
            value_mean=traj.value.mean(),
        )
        new = PPOState(params=params, opt_state=opt_state, env_state=env_state, episode_return=running,
                       key=key, update=state.update + 1, env_steps=state.env_steps + cfg.batch_size)
        return new, metrics


def _lr_schedule(config: PPOConfig) -> Callable[[jax.Array], jax.Array] | float:
    if not config.anneal_lr:
        return config.lr
    steps_per_update = config.update_epochs * config.num_minibatches

    def schedule(count):
        return config.lr * (1.0 - (count // steps_per_update) / config.num_updates)
    return schedule


def make_ppo(config: PPOConfig) -> PPO:
    env = build_env(config.env, config.env_kwargs)
    optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                            optax.adam(_lr_schedule(config), eps=1e-5))
    return PPO(config=config, env=env, model=build_network(config, env), optimizer=optimizer)


def make_train(config: PPOConfig) -> Callable[[jax.Array], tuple[PPOState, dict[str, jax.Array]]]:
    """``train(key) -> (final PPOState, metrics over updates)``, jitted; the whole run is one
    scan, so ``jax.jit(jax.vmap(train))(keys)`` trains one agent per key in parallel."""
    return jax.jit(make_ppo(config).train)
