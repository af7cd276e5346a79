"""The ``distill`` run kind: a student of another run folder trained in a run folder of its
own (checkpoints, resume, metrics), on the teacher's play, by :mod:`rljaxinterp.agents.distill`.

It reads the teacher's run, so it lives with the run layer rather than with the algorithms.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rljaxinterp.agents.common import Params
from rljaxinterp.agents.distill import held_out, make_fit, sampling_player, scale_width, split_dataset
from rljaxinterp.agents.seeds import positive_ints
from rljaxinterp.runs import folder as files
from rljaxinterp.runs.kinds import _finite
from rljaxinterp.models.base import ModelOutput


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """A student of the run in folder ``teacher`` (at ``teacher_step``, default its last
    checkpoint): the teacher's architecture with every width times ``width``, trained for
    ``steps`` Adam steps on states from ``games`` games of the teacher's play (its policy at
    ``temperature``, a uniformly random move with probability ``epsilon``). States, split and
    step keys all follow from ``seed`` (and ``epsilon``, so two data sets differ)."""

    teacher: str
    teacher_step: int | None = None  # None: its last checkpoint now, written into config.json
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
        positive_ints(self, ("games", "moves", "steps", "batch_size", "checkpoint_every"))
        for name, ok, allowed in (("width", self.width > 0, "> 0"), ("temperature", self.temperature > 0, "> 0"),
                                  ("epsilon", 0 <= self.epsilon <= 1, "in [0, 1]"),
                                  ("learning_rate", self.learning_rate > 0, "> 0"),
                                  ("value_weight", self.value_weight >= 0, ">= 0"),
                                  ("test_fraction", 0 < self.test_fraction < 1, "strictly between 0 and 1")):
            if not ok:  # NaN fails every comparison, so it is refused too
                raise ValueError(f"DistillConfig.{name}={getattr(self, name)!r} is not allowed; need {allowed}")
        # Pin the teacher: an absolute folder and a concrete checkpoint, so a resumed student
        # learns from the same states even if the teacher trains on meanwhile.
        teacher = Path(self.teacher).absolute()
        steps = sorted(int(p.name) for p in (teacher / files.CHECKPOINTS).glob("*") if p.name.isdigit())
        if not steps:
            raise ValueError(f"DistillConfig.teacher={self.teacher!r} is not allowed; need a run folder with a "
                             f"checkpoint ({teacher / files.CHECKPOINTS} has none)")
        if self.teacher_step is not None and self.teacher_step not in steps:
            raise ValueError(f"DistillConfig.teacher_step={self.teacher_step!r} is not allowed; {teacher} has "
                             f"checkpoints {steps}")
        object.__setattr__(self, "teacher", str(teacher))
        object.__setattr__(self, "teacher_step", steps[-1] if self.teacher_step is None else self.teacher_step)

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
        """The student's initial state; its key follows from the config (as in ``distil``), not ``key``."""
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
                 "loss": _finite(float(losses[lo:lo + self.log_every].mean()))} for lo in range(0, n, self.log_every)]
        self.last = {k: _finite(v) for k, v in held_out(self.model, params, self.data).items()}
        rows[-1].update(self.last)
        return state, rows

    def summary(self, rows: list[dict]) -> dict:
        return {"loss": rows[-1]["loss"], **self.last}

    def describe(self, rows: list[dict]) -> str:
        text = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
        return f"loss={text(rows[-1]['loss'])} " + " ".join(f"{k}={text(v)}" for k, v in self.last.items())
