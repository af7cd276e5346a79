"""AlphaZero on any two-player rljaxinterp game: mctx search over true env states.

One jitted ``iteration(state, key) -> (state, metrics)`` does a self-play batch and the
optax updates, so a run is a Python loop that only logs and checkpoints. The search tree
stays reachable through ``Agent.search`` for researchers.

Conventions: every value is from the perspective of the player to move in that state;
pgx randomises which player id moves first, so the code follows ``current_player`` and
never assumes a fixed id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import mctx
import optax
from flax import struct

from rljaxinterp import envs
from rljaxinterp.agents.common import (
    Params,
    RingBuffer,
    build_model,
    compiled,
    epsilon_explore,
    init_params,
)
from rljaxinterp.agents.config import AlphaZeroConfig
from rljaxinterp.agents.symmetry import Augment, make_augment
from rljaxinterp.envs import Env, EnvState, tree_select
from rljaxinterp.envs.pgx_games import go_consecutive_passes
from rljaxinterp.models import ModelOutput
from rljaxinterp.models.base import mask_logits


@struct.dataclass
class ReplayBuffer(RingBuffer):
    """Self-play training samples on device; ``ReplayBuffer.empty(capacity, **blank_row)``
    starts it."""

    observation: jax.Array  # (N, *obs_shape)
    policy: jax.Array  # (N, num_actions) search's improved policy
    legal: jax.Array  # (N, num_actions) the moves the search chose among
    value: jax.Array  # (N,) value target, mover's view
    size: jax.Array
    cursor: jax.Array


@struct.dataclass
class TrainState:
    """Everything a resumed run needs to continue bit-identically."""

    params: Params
    opt_state: Any
    env_state: EnvState  # (games,) live self-play games, carried across iterations
    buffer: ReplayBuffer
    iteration: jax.Array
    env_steps: jax.Array


@struct.dataclass
class Transition:
    observation: jax.Array
    policy: jax.Array  # search's action_weights
    legal: jax.Array  # the moves the search chose among (Agent.legal_actions)
    root_value: jax.Array  # search value at the root, mover's view
    reward: jax.Array  # reward to the mover of this step
    done: jax.Array  # the step ended the game
    sign: jax.Array  # +1 if the same player moves next, -1 otherwise
    explored: jax.Array  # the move was the random exploration move, not the search's


@dataclasses.dataclass(frozen=True)
class Agent:
    """The pure functions of one config: network, search, self-play, and a training iteration."""

    config: AlphaZeroConfig
    env: Env
    model: nn.Module
    optimizer: optax.GradientTransformation
    augment: Augment | None = None  # random board symmetry per training sample

    # -- network ---------------------------------------------------------------------------
    def policy_value(self, params: Params, observation: jax.Array) -> ModelOutput:
        """Raw network on any batch shape; jit/vmap friendly."""
        return self.model.apply({"params": params}, observation)

    def legal_actions(self, states: EnvState) -> jax.Array:
        """The moves the agent may choose: the env's legal moves, and with
        ``config.restrict_pass`` (Go) no pass unless it is the only legal move or the opponent
        has just passed (so passing ends the game and is scored exactly)."""
        legal = states.legal_action_mask
        if not self.config.restrict_pass:
            return legal
        opponent_passed = go_consecutive_passes(states) > 0
        allow = opponent_passed | ~legal[..., :-1].any(axis=-1)
        return legal.at[..., -1].set(legal[..., -1] & allow)

    def masked_policy_value(self, params: Params, states: EnvState) -> tuple[jax.Array, jax.Array]:
        out = self.policy_value(params, states.observation)
        logits = out.logits - jnp.max(out.logits, axis=-1, keepdims=True)
        return mask_logits(logits, self.legal_actions(states)), out.value

    def greedy_action(self, params: Params, states: EnvState) -> jax.Array:
        logits, _ = self.masked_policy_value(params, states)
        return jnp.argmax(logits, axis=-1)

    # -- search ----------------------------------------------------------------------------
    def recurrent_fn(self, params: Params, key: jax.Array, action: jax.Array, states: EnvState):
        """One env step per tree node: the embedding is the true env state."""
        mover = states.current_player
        keys = jax.random.split(key, action.shape[0])
        nxt = jax.vmap(self.env.step)(states, action, keys)
        logits, value = self.masked_policy_value(params, nxt)
        reward = jnp.take_along_axis(nxt.rewards, mover[:, None], axis=1)[:, 0]
        sign = jnp.where(nxt.current_player == mover, 1.0, -1.0)
        discount = jnp.where(nxt.done, 0.0, sign)
        value = jnp.where(nxt.done, 0.0, value)
        return mctx.RecurrentFnOutput(reward=reward, discount=discount, prior_logits=logits, value=value), nxt

    def search(self, params: Params, states: EnvState, key: jax.Array, *,
               num_simulations: int | None = None, deterministic: bool = False) -> mctx.PolicyOutput:
        """mctx search from a batch of states; ``.search_tree`` holds the whole tree.

        ``deterministic`` drops Gumbel noise / Dirichlet noise and acts greedily (evaluation).
        """
        cfg = self.config
        logits, value = self.masked_policy_value(params, states)
        root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=states)
        common = {"params": params, "rng_key": key, "root": root, "recurrent_fn": self.recurrent_fn,
                  "num_simulations": num_simulations or cfg.num_simulations,
                  "invalid_actions": ~self.legal_actions(states)}
        if cfg.policy == "gumbel":
            return mctx.gumbel_muzero_policy(
                **common, max_num_considered_actions=cfg.max_num_considered_actions,
                gumbel_scale=0.0 if deterministic else 1.0)
        if deterministic:
            return mctx.muzero_policy(**common, dirichlet_fraction=0.0, temperature=0.0)
        return mctx.muzero_policy(**common)

    # -- self-play -------------------------------------------------------------------------
    def init_games(self, key: jax.Array) -> EnvState:
        return jax.vmap(self.env.init)(jax.random.split(key, self.config.games))

    def self_play(self, params: Params, games: EnvState, key: jax.Array) -> tuple[EnvState, Transition]:
        """``unroll_length`` moves in every game; finished games restart in the same step."""
        cfg, n = self.config, self.config.games

        def step(states: EnvState, key: jax.Array):
            k_search, k_explore, k_random, k_env, k_reset = jax.random.split(key, 5)
            out = self.search(params, states, k_search)
            legal = self.legal_actions(states)
            action, explore = epsilon_explore(k_explore, k_random, out.action, legal, cfg.exploration)
            mover = states.current_player
            nxt = jax.vmap(self.env.step)(states, action, jax.random.split(k_env, n))
            tr = Transition(
                observation=states.observation,
                policy=out.action_weights,
                legal=legal,
                root_value=out.search_tree.summary().value,
                reward=jnp.take_along_axis(nxt.rewards, mover[:, None], axis=1)[:, 0],
                done=nxt.done,
                sign=jnp.where(nxt.current_player == mover, 1.0, -1.0),
                explored=explore & (action != out.action),
            )
            fresh = jax.vmap(self.env.init)(jax.random.split(k_reset, n))
            return tree_select(nxt.done, fresh, nxt), tr

        return jax.lax.scan(step, games, jax.random.split(key, cfg.unroll_length))

    def value_targets(self, params: Params, traj: Transition, last: EnvState) -> jax.Array:
        """Returns to the mover, bootstrapped from the network where the unroll cut a game,
        mixed with the root search value (``value_target_mix``).

        With ``cut_exploration`` a random exploration move does not pass its outcome back:
        the return before it bootstraps from that position's search value instead, so value
        targets estimate play by the search, not by the search plus random blunders.
        """
        _, bootstrap = self.masked_policy_value(params, last)
        cut = self.config.cut_exploration

        def back(next_value, t: Transition):
            g = t.reward + jnp.where(t.done, 0.0, t.sign * next_value)
            g = jnp.where(t.explored, t.root_value, g) if cut else g
            return g, g

        _, outcome = jax.lax.scan(back, bootstrap, traj, reverse=True)
        mix = self.config.value_target_mix
        return (1.0 - mix) * outcome + mix * traj.root_value

    # -- learning --------------------------------------------------------------------------
    def loss(self, params: Params, obs: jax.Array, policy: jax.Array, legal: jax.Array, value: jax.Array):
        """Cross-entropy to the search policy over the legal moves only (the network is only
        ever used masked; an unmasked softmax would also learn to push down illegal moves, which
        biases an always-legal move such as Go's pass upwards), plus squared value error."""
        out = self.policy_value(params, obs)
        policy_loss = optax.softmax_cross_entropy(out.logits, policy, where=legal).mean()
        value_loss = jnp.mean((out.value - value) ** 2)
        return policy_loss + value_loss, (policy_loss, value_loss)

    def update(self, params: Params, opt_state: Any, buffer: ReplayBuffer, key: jax.Array):
        def one(carry, key):
            params, opt_state = carry
            k_sample, k_symmetry = jax.random.split(key)
            rows = buffer.sample(k_sample, self.config.minibatch_size)
            obs, policy, legal = rows.observation, rows.policy, rows.legal
            if self.augment is not None:
                obs, (policy, legal) = self.augment(k_symmetry, obs, (policy, legal))
            batch = obs, policy, legal, rows.value
            grads, (pl, vl) = jax.grad(self.loss, has_aux=True)(params, *batch)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), (pl, vl)

        keys = jax.random.split(key, self.config.updates_per_iteration)
        (params, opt_state), (pl, vl) = jax.lax.scan(one, (params, opt_state), keys)
        return params, opt_state, pl, vl

    # -- the iteration -----------------------------------------------------------------------
    def init(self, key: jax.Array) -> TrainState:
        k_model, k_games = jax.random.split(key)
        params = init_params(self.model, self.env.observation_shape, k_model)
        num_actions = self.env.num_actions
        buffer = ReplayBuffer.empty(
            self.config.replay_size, observation=jnp.zeros(self.env.observation_shape, jnp.float32),
            policy=jnp.zeros(num_actions, jnp.float32), legal=jnp.ones(num_actions, jnp.bool_),
            value=jnp.float32(0))
        return TrainState(
            params=params,
            opt_state=self.optimizer.init(params),
            env_state=self.init_games(k_games),
            buffer=buffer,
            iteration=jnp.int32(0),
            env_steps=jnp.int32(0),
        )

    def iteration(self, state: TrainState, key: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        """Self-play a batch with the current params, store it, then take optax steps."""
        k_play, k_train = jax.random.split(key)
        games, traj = self.self_play(state.params, state.env_state, k_play)
        value_target = self.value_targets(state.params, traj, games)
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        buffer = state.buffer.add(observation=flat(traj.observation), policy=flat(traj.policy),
                                  legal=flat(traj.legal), value=flat(value_target))
        params, opt_state, pl, vl = self.update(state.params, state.opt_state, buffer, k_train)
        finished = traj.done.sum()
        # reward to the mover is +1 only on winning moves; a finished game without one is a draw
        decisive = (traj.done & (traj.reward != 0)).sum()
        n_steps = jnp.int32(traj.done.size)
        metrics = {
            "loss": (pl + vl).mean() if pl.size else jnp.float32(jnp.nan),
            "policy_loss": pl.mean() if pl.size else jnp.float32(jnp.nan),
            "value_loss": vl.mean() if vl.size else jnp.float32(jnp.nan),
            "games_finished": finished,
            "selfplay_draw_rate": jnp.where(finished > 0, 1.0 - decisive / jnp.maximum(finished, 1), jnp.nan),
            "root_value": traj.root_value.mean(),
            "buffer_size": buffer.size,
        }
        new = TrainState(params=params, opt_state=opt_state, env_state=games, buffer=buffer,
                         iteration=state.iteration + 1, env_steps=state.env_steps + n_steps)
        return new, metrics


def make_agent(config: AlphaZeroConfig) -> Agent:
    env = envs.make(config.env)
    if env.num_players != 2:
        raise ValueError(f"AlphaZero needs a two-player game; {config.env!r} has {env.num_players} player(s)")
    # Cosine decay to a fraction of the rate: late updates stop undoing the endgame knowledge.
    schedule = optax.cosine_decay_schedule(
        config.learning_rate, max(1, config.iterations * config.updates_per_iteration),
        alpha=config.final_learning_rate_fraction)
    augment = make_augment(config.env, env.observation_shape, env.num_actions) if config.symmetries else None
    model = build_model("AlphaZeroConfig", config.model, config.model_kwargs, env)
    return Agent(config=config, env=env, model=model, optimizer=optax.adam(schedule), augment=augment)


def make_iteration(config: AlphaZeroConfig) -> Callable[[TrainState, jax.Array], tuple[TrainState, dict]]:
    """ONE jitted ``iteration(state, key) -> (state, metrics)``; build the state with
    ``make_agent(config).init(key)`` or :func:`init_state`. Cached per config, so a second
    run of the same config in one process does not compile again."""
    return _jitted(config)[1]


def _jitted(config: AlphaZeroConfig):
    def build():
        agent = make_agent(config)
        return jax.jit(agent.init), jax.jit(agent.iteration)
    return compiled("alphazero", config, build)


def init_state(config: AlphaZeroConfig) -> TrainState:
    """The state before iteration 0, a pure function of the config's seed."""
    return _jitted(config)[0](jax.random.PRNGKey(config.seed))


def iteration_key(config: AlphaZeroConfig, i: int) -> jax.Array:
    """The key for iteration ``i``: a pure function of seed and index, so resuming is exact."""
    return jax.random.fold_in(jax.random.PRNGKey(config.seed), i)
