"""Behavioural cloning / distillation: a student network trained on a teacher's outputs.

The student learns the teacher's policy (KL from the teacher's legal-move distribution)
and value (squared error) over states from the teacher's own play, in one jitted
``lax.scan`` of minibatch Adam steps. Held-out states measure how well it matches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rljaxinterp.agents.common import Params, epsilon_explore
from rljaxinterp.envs.base import EnvState
from rljaxinterp.models.base import ModelOutput, mask_logits, masked_log_softmax

_WIDTH_KEYS = {"mlp": ("hidden",), "conv": ("channels", "value_hidden"), "transformer": ("d_model", "d_mlp")}


def scale_width(kind: str, model_kwargs: dict, factor: float) -> dict:
    """The teacher's model config with every width multiplied by ``factor`` (depth kept)."""
    if kind not in _WIDTH_KEYS:
        raise ValueError(f"model kind {kind!r} has no width rule; allowed: {sorted(_WIDTH_KEYS)}")
    out = dict(model_kwargs)
    for name in _WIDTH_KEYS[kind]:
        if name in out:
            value = out[name]
            out[name] = [max(1, round(v * factor)) for v in value] if isinstance(value, (list, tuple)) \
                else max(1, round(value * factor))
    if kind == "transformer" and "heads" in out and out.get("d_model", 1) % out["heads"]:
        raise ValueError(f"d_model={out['d_model']} after scaling is not divisible by heads={out['heads']}")
    return out


def sampling_player(policy_value: Callable[[jax.Array], ModelOutput], temperature: float = 1.0,
                    epsilon: float = 0.0) -> Callable:
    """Plays by sampling the network's legal policy at ``temperature`` (the teacher's own
    play), or a uniformly random legal move with probability ``epsilon`` (to reach positions
    a strong teacher never visits)."""
    if temperature <= 0 or not 0 <= epsilon <= 1:
        raise ValueError(f"need temperature > 0 and 0 <= epsilon <= 1; got {temperature}, {epsilon}")

    def act(states: EnvState, key: jax.Array) -> jax.Array:
        k_policy, k_random, k_coin = jax.random.split(key, 3)
        legal = states.legal_action_mask
        logits = policy_value(states.observation).logits / temperature
        chosen = jax.random.categorical(k_policy, mask_logits(logits, legal))
        return epsilon_explore(k_coin, k_random, chosen, legal, epsilon)[0]
    return act


@struct.dataclass
class Distillation:
    params: Params
    loss: jax.Array  # (steps,) training loss
    held_out: dict  # policy KL, top-1 agreement, value error on held-out states


def _compare(teacher: ModelOutput, student: ModelOutput, legal) -> dict:
    t, s = masked_log_softmax(teacher.logits, legal), masked_log_softmax(student.logits, legal)
    return {
        "policy_kl": jnp.mean(jnp.sum(jnp.exp(t) * (t - s), -1)),
        "top1_agreement": jnp.mean(jnp.argmax(t, -1) == jnp.argmax(s, -1)),
        "value_mse": jnp.mean((teacher.value - student.value) ** 2),
    }


@dataclasses.dataclass(frozen=True)
class Dataset:
    """States to distil on, the teacher's outputs on them, and a fixed train/test split."""

    obs: jax.Array
    legal: jax.Array
    targets: ModelOutput
    train: np.ndarray  # indices
    test: np.ndarray


def split_dataset(teacher: Callable[[jax.Array], ModelOutput], obs: jax.Array, legal_mask: jax.Array,
                  key: jax.Array, test_fraction: float) -> Dataset:
    n = obs.shape[0]
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    if n < 2 or legal_mask.shape[0] != n:
        raise ValueError(f"need at least 2 states and one legal mask per state; got {n} states, "
                         f"{legal_mask.shape[0]} masks")
    perm = np.asarray(jax.random.permutation(key, n))
    n_test = max(1, round(test_fraction * n))
    return Dataset(obs, legal_mask, jax.jit(teacher)(obs), train=perm[n_test:], test=perm[:n_test])


def make_fit(student: nn.Module, data: Dataset, optimizer: optax.GradientTransformation, batch_size: int,
             value_weight: float) -> Callable:
    """``fit(params, opt_state, keys) -> (params, opt_state, losses)``: one Adam step per key,
    jitted as one ``lax.scan``; chunks of keys give the same result as all keys at once."""
    train = jnp.asarray(data.train)

    def loss_fn(p, idx):
        out = student.apply({"params": p}, data.obs[idx])
        t = jax.tree.map(lambda x: x[idx], data.targets)
        diff = _compare(t, out, data.legal[idx])
        return diff["policy_kl"] + value_weight * diff["value_mse"]

    @jax.jit
    def fit(params, opt_state, keys):
        def step(carry, k):
            p, s = carry
            idx = train[jax.random.randint(k, (min(batch_size, len(data.train)),), 0, len(data.train))]
            loss, g = jax.value_and_grad(loss_fn)(p, idx)
            u, s = optimizer.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), keys)
        return params, opt_state, losses

    return fit


def held_out(student: nn.Module, params: Params, data: Dataset) -> dict[str, float]:
    """Policy KL, top-1 agreement and value error against the teacher on the test states."""
    out = _compare(jax.tree.map(lambda x: x[data.test], data.targets),
                   student.apply({"params": params}, data.obs[data.test]), data.legal[data.test])
    return {k: float(v) for k, v in out.items()}


def distil(
    teacher: Callable[[jax.Array], ModelOutput],
    student: nn.Module,
    obs: jax.Array,
    legal_mask: jax.Array,
    key: jax.Array,
    steps: int = 2000,
    batch_size: int = 256,
    learning_rate: float = 3e-3,
    value_weight: float = 1.0,
    test_fraction: float = 0.2,
) -> Distillation:
    """Train ``student`` to reproduce ``teacher(obs)``; ``teacher`` is any jit-able function
    of observations (e.g. ``lambda o: run.policy_value(params, o)``). The ``distill`` run
    kind does the same in a run folder, with checkpoints."""
    k_split, k_init, k_train = jax.random.split(key, 3)
    data = split_dataset(teacher, obs, legal_mask, k_split, test_fraction)
    params = student.init(k_init, obs[:1])["params"]
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    fit = make_fit(student, data, opt, batch_size, value_weight)
    params, _, losses = fit(params, opt.init(params), jax.random.split(k_train, steps))
    return Distillation(params, losses, held_out(student, params, data))


# -- the "distill" run kind: a student trained in a run folder ------------------------------------
@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """A student of the run in folder ``teacher`` (at ``teacher_step``, default its last
    checkpoint): the teacher's architecture with every width times ``width``, trained for
    ``steps`` Adam steps on states from ``games`` games of the teacher's play (its policy at
    ``temperature``, a uniformly random move with probability ``epsilon``). States, split and
    step keys all follow from ``seed`` (and ``epsilon``, so two data sets differ)."""

    teacher: str
    teacher_step: int | None = None
    width: float = 0.5
    games: int = 2048
    moves: int = 9  # per game
    temperature: float = 1.0
    epsilon: float = 0.0
    steps: int = 4000
    batch_size: int = 256
    learning_rate: float = 3e-3
    value_weight: float = 1.0
    test_fraction: float = 0.2
    seed: int = 0
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        for name in ("games", "moves", "steps", "batch_size", "checkpoint_every"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"DistillConfig.{name}={v!r} is not allowed; need an integer >= 1")
        if not self.width > 0:
            raise ValueError(f"DistillConfig.width={self.width!r} is not allowed; need > 0")
        if self.temperature <= 0 or not 0 <= self.epsilon <= 1:
            raise ValueError(f"DistillConfig temperature={self.temperature!r}, epsilon={self.epsilon!r} are not "
                             "allowed; need temperature > 0 and 0 <= epsilon <= 1")

    @property
    def env(self) -> str:
        from rljaxinterp.runs import read_config

        return read_config(self.teacher)[1].env

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DistillConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        if set(data) - known:
            raise ValueError(f"unknown DistillConfig field(s) {sorted(set(data) - known)}; allowed: {sorted(known)}")
        return cls(**data)


@struct.dataclass
class DistillState:
    params: Params
    opt_state: Any
    step: jax.Array
    env_steps: jax.Array  # teacher-play states in the data set (constant)


@dataclasses.dataclass(frozen=True)
class StudentAgent:
    """The teacher's agent kind with the student's network; ``init`` gives the training state."""

    config: DistillConfig
    agent: Any  # e.g. an AlphaZero Agent or PPO with the scaled model
    optimizer: Any

    @property
    def env(self):
        return self.agent.env

    @property
    def model(self):
        return self.agent.model

    def policy_value(self, params: Params, observation: jax.Array) -> ModelOutput:
        return self.agent.policy_value(params, observation)

    def init(self, key: jax.Array) -> DistillState:
        k_init = jax.random.split(_keys(self.config)[1], 3)[1]
        obs = jnp.zeros((1, *self.env.observation_shape), jnp.float32)
        params = self.model.init(k_init, obs)["params"]
        return DistillState(params, self.optimizer.init(params), jnp.int32(0), jnp.int32(0))


def _keys(config: DistillConfig) -> tuple[jax.Array, jax.Array]:
    """``(play, fit)`` keys; ``fit`` splits into (data split, student init, step keys)."""
    k_play, k_fit = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), int(1000 * config.epsilon)))
    return k_play, k_fit


def teacher_run(config: DistillConfig):
    from rljaxinterp.runs import load_run

    return load_run(config.teacher)


def make_student(config: DistillConfig) -> StudentAgent:
    teacher = teacher_run(config)
    tc = teacher.config
    student_config = dataclasses.replace(tc, model_kwargs=scale_width(tc.model, dict(tc.model_kwargs), config.width))
    optimizer = optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps))
    return StudentAgent(config, teacher.kind.agent(student_config), optimizer)


def teacher_play(config: DistillConfig):
    """The states of the teacher's play the student learns from (an EnvState batch)."""
    from rljaxinterp.envs.sampling import random_play_states

    teacher = teacher_run(config)
    params = teacher.params(config.teacher_step)
    player = sampling_player(lambda o: teacher.policy_value(params, o), config.temperature, config.epsilon)
    return random_play_states(teacher.env, config.games, config.moves, _keys(config)[0], player), \
        (lambda o: teacher.policy_value(params, o))


class DistillTrainer:
    """Chunks of the student's Adam steps; held-out agreement with the teacher at each checkpoint."""

    shardings = None
    log_every = 100

    def __init__(self, config: DistillConfig, devices=None):
        if devices is not None and len(devices) > 1:
            raise ValueError(f"distill runs on one device; got devices={list(devices)}")
        self.config = config
        self.agent = make_student(config)
        played, teacher = teacher_play(config)
        k_split, _, k_train = jax.random.split(_keys(config)[1], 3)
        self.data = split_dataset(teacher, played.observation.astype(jnp.float32), played.legal_action_mask,
                                  k_split, config.test_fraction)
        self.keys = jax.random.split(k_train, config.steps)
        self.fit = make_fit(self.model, self.data, self.agent.optimizer, config.batch_size, config.value_weight)
        self.total, self.every = config.steps, config.checkpoint_every
        self.chunk = self.every
        self.last: dict = {}

    @property
    def model(self):
        return self.agent.model

    def init(self) -> DistillState:
        state = self.agent.init(jax.random.PRNGKey(self.config.seed))
        return state.replace(env_steps=jnp.int32(self.data.obs.shape[0]))

    def step(self, state: DistillState) -> int:
        return int(state.step)

    def advance(self, state: DistillState, n: int):
        done = self.step(state)
        params, opt_state, losses = self.fit(state.params, state.opt_state, self.keys[done:done + n])
        state = state.replace(params=params, opt_state=opt_state, step=state.step + n)
        losses = np.asarray(losses, np.float64)
        rows = [{"step": done + min(lo + self.log_every, n), "env_steps": int(state.env_steps),
                 "loss": float(losses[lo:lo + self.log_every].mean())} for lo in range(0, n, self.log_every)]
        self.last = held_out(self.model, params, self.data)
        rows[-1].update(self.last)
        return state, rows

    def summary(self, rows: list[dict]) -> dict:
        return {"loss": rows[-1]["loss"], **self.last}

    def describe(self, rows: list[dict]) -> str:
        return f"loss={rows[-1]['loss']:.4g} " + " ".join(f"{k}={v:.4g}" for k, v in self.last.items())
