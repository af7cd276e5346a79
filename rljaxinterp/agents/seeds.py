"""Several seeds of one PPO or DQN config trained as one program, the PureJaxRL way (one
``jax.vmap`` over seeds of a jitted segment of updates); the run kinds ``ppo_seeds`` and
``dqn_seeds`` (trainer in :mod:`rljaxinterp.runs.seeds`).

Seeds are split from ``seed`` exactly as ``jax.vmap(agent.train)(jax.random.split(key,
seeds))`` splits them. The run is cut into ``chunks`` segments, each one checkpoint, so it
ends bit-identical to those segments run in a row (resumed or not); the one-call training,
compiled as one fused program, agrees to float rounding (about 1e-9 at first), which RL
training can amplify over many updates. with ``eval_levels`` every chunk ends with all
seeds' policies sampled on that many fresh levels of the task's training distribution, and
the means of ``env.episode_metrics`` logged per seed (behaviour over training).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from rljaxinterp.agents.dqn import DQNConfig, make_dqn
from rljaxinterp.agents.ppo import PPOConfig, make_ppo


def positive_ints(config: Any, names: tuple[str, ...], lo: int = 1) -> None:
    for name in names:
        v = getattr(config, name)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= lo):
            raise ValueError(f"{type(config).__name__}.{name}={v!r} is not allowed; need an integer >= {lo}")


def set_derived(config: Any, name: str, value: Any, rule: str) -> None:
    """Set a field that follows from others; a value given that disagrees is an error."""
    given = getattr(config, name)
    default = next(f.default for f in dataclasses.fields(config) if f.name == name)
    if given not in (default, value):
        raise ValueError(f"{type(config).__name__}.{name}={given!r} is not allowed: it follows from {rule} "
                         f"(here {value!r}); leave it out")
    object.__setattr__(config, name, value)


def _derive(config: Any) -> None:
    positive_ints(config, ("seeds", "chunks"))
    positive_ints(config, ("eval_levels",), lo=0)
    updates = config.num_updates
    if updates < config.chunks or updates % config.chunks:
        raise ValueError(f"{type(config).__name__}.total_timesteps={config.total_timesteps!r} is not allowed: it "
                         f"gives {updates} updates, which {config.chunks} chunks must divide")
    set_derived(config, "checkpoint_every", updates // config.chunks, "num_updates // chunks")
    if config.eval_levels:
        from rljaxinterp import envs

        try:
            envs.make(config.env, distribution="train", **config.env_kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{type(config).__name__}.eval_levels={config.eval_levels} needs a task with a "
                             f"'train' level distribution (the gridworlds); {config.env!r}: {e}") from None


@dataclasses.dataclass(frozen=True)
class SeedsFields:
    """``seeds`` agents of one config, trained in ``chunks`` (a checkpoint each: so
    ``checkpoint_every`` follows), evaluated after each on ``eval_levels`` fresh levels."""

    seeds: int = 3
    chunks: int = 1
    eval_levels: int = 0
    derived = ("checkpoint_every",)

    def __post_init__(self) -> None:
        super().__post_init__()  # the algorithm's config (next in the MRO) validates first
        _derive(self)


@dataclasses.dataclass(frozen=True)
class PPOSeedsConfig(SeedsFields, PPOConfig):
    """Seeded PPO (see :class:`SeedsFields`)."""


@dataclasses.dataclass(frozen=True)
class DQNSeedsConfig(SeedsFields, DQNConfig):
    """Seeded DQN (see :class:`SeedsFields`)."""


@dataclasses.dataclass(frozen=True)
class SeedsAgent:
    """``config.seeds`` agents as one: state and params carry a leading seeds axis."""

    config: Any
    base: Any  # the one-seed agent (PPO, DQN): its pure functions are vmapped

    @property
    def env(self):
        return self.base.env

    @property
    def model(self):
        return self.base.model

    def init(self, key: jax.Array):
        return jax.vmap(self.base.init)(jax.random.split(key, self.config.seeds))

    def policy_value(self, params, observation):
        """Every seed's network on the same observations: outputs (seeds, batch, ...)."""
        return jax.vmap(self.base.policy_value, in_axes=(0, None))(params, observation)


def seeds_agent(config: Any) -> SeedsAgent:
    return SeedsAgent(config, (make_ppo if isinstance(config, PPOConfig) else make_dqn)(config))
