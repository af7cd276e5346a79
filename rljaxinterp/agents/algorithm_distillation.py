"""Algorithm distillation (Laskin et al., 2022) on Dark Room, and its baseline, expert distillation.

The data are learning histories of a source RL algorithm (``envs.dark_room.source_histories``:
Q-learning with planning sweeps, one learner per goal, vmapped), drawn by jitted code from
the config's seed on the training goals, so the same seed regenerates them bit-identically;
they are also kept in the training state. A causal GPT reads windows of
``context_episodes`` consecutive episodes (one token per step embedding the previous action
and reward with the current position) and learns to predict every action of the source
(cross-entropy, AdamW). Having seen learning, not just behaviour, it should improve from its
own episodes in context, without a weight update, on goals it never trained on.
``data="expert"`` is expert distillation: the same model on the converged source policy's
episodes, which shows the same behaviour without the learning.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rljaxinterp.agents.common import Params
from rljaxinterp.agents.rl_common import RLConfig
from rljaxinterp.envs import make
from rljaxinterp.envs.dark_room import (
    DarkRoom,
    DarkRoomTrials,
    expert_histories,
    history_rows,
    source_histories,
)
from rljaxinterp.models.base import ModelOutput
from rljaxinterp.models.gpt import GPT

AD_ENVS = ("DarkRoom-v0", "DarkRoomHard-v0")
DATA = ("history", "expert")
TOKEN_TYPES = ("transition",)


@dataclasses.dataclass(frozen=True)
class ADConfig(RLConfig):
    """Algorithm distillation (``data="history"``) or expert distillation (``"expert"``) on Dark Room.

    ``test_goals`` goals are held out (a permutation of the cells drawn from the seed); each
    training goal gets ``histories_per_goal`` source histories of ``history_episodes``
    episodes; a training example is a window of ``context_episodes`` consecutive episodes
    (the model's context) starting at a uniformly drawn episode. ``num_updates`` AdamW steps,
    the learning rate decaying by a cosine to a tenth; evaluation plays ``context_episodes``
    episodes on every held-out goal with the context accumulating (greedy, or ``eval_samples``
    sampled trials per goal if > 0).
    """

    env: str = "DarkRoom-v0"
    data: str = "history"
    model: str = "gpt"
    model_kwargs: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"d_model": 64, "heads": 4, "layers": 2, "d_mlp": 128})
    test_goals: int = 16
    histories_per_goal: int = 16
    history_episodes: int = 8
    context_episodes: int = 8
    source_epsilon: float = 0.1
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    num_updates: int = 1500
    log_every: int = 500
    checkpoint_every: int = 500
    eval_samples: int = 0

    def validate(self) -> None:
        self._need(self.env in AD_ENVS, "env", f"allowed: {', '.join(AD_ENVS)}")
        self._need(self.data in DATA, "data", f"allowed: {', '.join(DATA)}")
        self._need(self.model == "gpt", "model", "allowed: gpt")
        for name, lo in (("seed", 0), ("checkpoint_every", 1), ("test_goals", 1), ("histories_per_goal", 1),
                         ("history_episodes", 1), ("context_episodes", 1), ("batch_size", 1), ("num_updates", 0),
                         ("log_every", 1), ("eval_samples", 0)):
            self._int_at_least(name, lo)
        self._need(self.seed < 2**31, "seed", "need 0 <= seed < 2**31")
        self._need(self.history_episodes >= self.context_episodes, "history_episodes",
                   f"need >= context_episodes={self.context_episodes} (a window is context_episodes long)")
        self._number_in("source_epsilon", 0.0, 1.0)
        self._number_in("learning_rate", 0.0, 1.0, lo_open=True)
        self._number_in("weight_decay", 0.0, 1.0)
        self._need(self.checkpoint_every % self.log_every == 0, "checkpoint_every",
                   f"need a multiple of log_every={self.log_every}")


@struct.dataclass
class ADState:
    params: Params
    opt_state: Any
    key: jax.Array
    update: jax.Array
    env_steps: jax.Array  # offline: always 0 (the run layer logs it for every kind)
    data: dict  # pos/action/reward (histories, episodes, steps), goal (histories,), test_goals


def goal_split(num_cells: int, test_goals: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` goal cells: a permutation drawn from the seed, the last ``test_goals`` held out."""
    if not 1 <= test_goals < num_cells:
        raise ValueError(f"test_goals={test_goals} is not allowed; need 1..{num_cells - 1}")
    perm = np.random.default_rng([seed, 2]).permutation(num_cells)  # numpy: fixed at trace time, also under jit
    return np.sort(perm[:-test_goals]).astype(np.int32), np.sort(perm[-test_goals:]).astype(np.int32)


def history_tables(room: DarkRoom, pos, action, reward) -> tuple[jax.Array, jax.Array]:
    """``(tables, actions)`` of windows ``(batch, episodes, steps)``: the history table a
    ``DarkRoomTrials`` observation holds once the whole window is played (the previous action
    and reward run across episode boundaries, as in a trial) and the action of every step."""
    b = pos.shape[0]
    pos, action, reward = pos.reshape(b, -1), action.reshape(b, -1), reward.reshape(b, -1)
    shift = lambda x, first: jnp.concatenate([jnp.full((b, 1), first, x.dtype), x[:, :-1]], 1)
    first = (jnp.arange(pos.shape[1]) % room.episode_steps == 0)[None].repeat(b, 0)
    return history_rows(room, shift(action, -1), shift(reward, 0), first, pos), action


@dataclasses.dataclass(frozen=True)
class AlgorithmDistillation:
    config: ADConfig
    room: DarkRoom
    env: DarkRoomTrials  # what the model reads: context_episodes episodes on one goal
    model: GPT

    def policy_value(self, params: Params, observation: jax.Array) -> ModelOutput:
        return self.model.apply({"params": params}, observation)

    def act(self, params: Params, state, key: jax.Array | None = None) -> jax.Array:
        """The most likely action (greedy, as the evaluation plays by default)."""
        return jnp.argmax(self.policy_value(params, state.observation).logits, -1)

    def goals(self) -> tuple[np.ndarray, np.ndarray]:
        return goal_split(self.room.num_cells, self.config.test_goals, self.config.seed)

    def dataset(self) -> dict:
        """The source histories (or expert episodes) of this config's seed on the training
        goals (jitted; bit-identical for a seed), and the held-out goals."""
        c = self.config
        train, test = self.goals()
        goals = jnp.repeat(jnp.asarray(train), c.histories_per_goal)
        key = jax.random.fold_in(jax.random.PRNGKey(c.seed), 1)
        make_data = source_histories if c.data == "history" else expert_histories
        data = make_data(self.room, goals, key, c.history_episodes, epsilon=c.source_epsilon)
        return {**data, "test_goals": jnp.asarray(test)}

    def optimiser(self) -> optax.GradientTransformation:
        c = self.config
        schedule = optax.cosine_decay_schedule(c.learning_rate, max(c.num_updates, 1), alpha=0.1)
        return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=c.weight_decay))

    def init(self, key: jax.Array) -> ADState:
        k_params, k_train = jax.random.split(key)
        params = self.model.init(k_params, jnp.zeros((1, *self.env.observation_shape)))["params"]
        return ADState(params, self.optimiser().init(params), k_train, jnp.int32(0), jnp.int32(0), self.dataset())

    def windows(self, data: dict, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """``n`` training windows drawn uniformly: a history, then a first episode."""
        c = self.config
        k_h, k_e = jax.random.split(key)
        h = jax.random.randint(k_h, (n,), 0, data["pos"].shape[0])
        e = jax.random.randint(k_e, (n,), 0, c.history_episodes - c.context_episodes + 1)
        take = lambda x: jax.vmap(lambda i, j: jax.lax.dynamic_slice_in_dim(x[i], j, c.context_episodes))(h, e)
        return history_tables(self.room, take(data["pos"]), take(data["action"]), take(data["reward"]))

    def loss(self, params: Params, tables: jax.Array, actions: jax.Array):
        logits = self.model.clone(all_steps=True).apply({"params": params}, tables).logits
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, actions)
        return nll.mean(), (logits.argmax(-1) == actions).mean()

    def update(self, state: ADState, _=None) -> tuple[ADState, dict]:
        key, k_batch = jax.random.split(state.key)
        tables, actions = self.windows(state.data, k_batch, self.config.batch_size)
        (loss, accuracy), grads = jax.value_and_grad(self.loss, has_aux=True)(state.params, tables, actions)
        updates, opt_state = self.optimiser().update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(params=params, opt_state=opt_state, key=key, update=state.update + 1)
        return new, {"loss": loss, "accuracy": accuracy}

    def segment(self, state: ADState, n: int) -> tuple[ADState, dict]:
        return jax.lax.scan(self.update, state, None, n)

    def rollouts(self, params: Params, goals: jax.Array, key: jax.Array, samples: int = 0, policy=None) -> dict:
        """In-context trials: ``context_episodes`` episodes per goal, the model acting on the
        table of everything so far (no weight update). Greedy if ``samples == 0``, else
        ``samples`` sampled trials per goal. ``policy(params, tables) -> logits`` replaces the
        network (for ablations). Returns ``reward (trials, steps)``, ``pos``, ``action``,
        ``goal (trials,)`` and the final ``table``."""
        policy = policy or (lambda p, obs: self.policy_value(p, obs).logits)
        goals = jnp.repeat(goals, max(samples, 1))
        states = jax.vmap(self.env.reset_to)(goals)

        def one(states, key):
            logits = policy(params, states.observation)
            action = (jax.random.categorical(key, logits) if samples else jnp.argmax(logits, -1)).astype(jnp.int32)
            nxt = jax.vmap(self.env.step)(states, action, jax.random.split(key, action.shape[0]))
            return nxt, (nxt.rewards[:, 0], states.inner.room.pos, action)

        final, (reward, pos, action) = jax.lax.scan(one, states, jax.random.split(key, self.env.max_steps))
        return {"reward": reward.T, "pos": pos.T, "action": action.T, "goal": goals, "table": final.observation}


def episode_returns(rewards, episode_steps: int) -> np.ndarray:
    """``(trials, episodes)`` returns of ``(trials, steps)`` rewards."""
    r = np.asarray(rewards, np.float64)
    return r.reshape(r.shape[0], -1, episode_steps).sum(-1)


def curve(room: DarkRoom, rewards, goals) -> dict[str, Any]:
    """Per-episode mean return, the mean optimal return and their ratio per episode."""
    returns = episode_returns(rewards, room.episode_steps)
    optimal = float(room.optimal_return(np.asarray(goals)).mean())
    mean = returns.mean(0)
    return {"returns": mean.tolist(), "optimal": optimal, "ratio": (mean / optimal).tolist()}


def evaluate(agent: AlgorithmDistillation, params: Params, policy=None, samples: int | None = None,
             seed: int = 0) -> dict[str, Any]:
    """The in-context curve on the held-out goals, with its first and last episode ratios."""
    samples = agent.config.eval_samples if samples is None else samples
    _, test = agent.goals()
    out = _rollouts(agent, policy, samples)(params, jnp.asarray(test), jax.random.PRNGKey(seed))
    result = curve(agent.room, out["reward"], out["goal"])
    return {**result, "first_ratio": result["ratio"][0], "last_ratio": result["ratio"][-1]}


def source_curve(agent: AlgorithmDistillation, goals, histories: int = 16, seed: int = 0) -> dict[str, Any]:
    """The source algorithm's own curve on ``goals``: ``histories`` fresh learners per goal."""
    c = agent.config
    goals = jnp.repeat(jnp.asarray(goals), histories)
    data = source_histories(agent.room, goals, jax.random.fold_in(jax.random.PRNGKey(seed), 3), c.context_episodes,
                            epsilon=c.source_epsilon)
    return curve(agent.room, np.asarray(data["reward"]).reshape(goals.shape[0], -1), goals)


_ROLLOUTS: dict = {}


def _rollouts(agent, policy, samples):
    """``agent.rollouts`` jitted once per (config, policy, samples) in a process."""
    key = (json.dumps(agent.config.to_dict(), sort_keys=True), policy, samples)
    if key not in _ROLLOUTS:
        if len(_ROLLOUTS) >= 8:
            _ROLLOUTS.pop(next(iter(_ROLLOUTS)))
        _ROLLOUTS[key] = jax.jit(lambda p, g, k: agent.rollouts(p, g, k, samples, policy))
    return _ROLLOUTS[key]


def make_ad(config: ADConfig) -> AlgorithmDistillation:
    room = make(config.env, **config.env_kwargs)
    env = DarkRoomTrials(room, config.context_episodes)
    try:
        model = GPT(num_actions=room.num_actions, token_types=TOKEN_TYPES, token_widths=env.token_widths,
                    max_timesteps=env.max_steps, **dict(config.model_kwargs))
    except TypeError as e:
        raise ValueError(f"ADConfig.model_kwargs={config.model_kwargs!r} do not fit model 'gpt': {e}") from None
    return AlgorithmDistillation(config, room, env, model)
