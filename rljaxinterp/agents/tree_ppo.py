"""PPO living online in Tree Gridworld (Shah et al., 2022): several seeds under one ``vmap``,
each acting in ``num_envs`` worlds that never reset, a run kind of the one run layer.

One checkpoint per chunk of ``updates_per_chunk`` updates. Every update logs, per seed, the
population figures of its worlds and, per world, its trees standing, chops and steps with no
tree standing (from which :mod:`rljaxinterp.eval.tree_worlds` reads extinctions and
regrowths to the step); every chunk also judges the frozen policy on fresh forests. A run
may be lengthened or ended early by asking for another number of ``chunks``
(``RunKind.extendable``): with a constant learning rate nothing else depends on the length.
The trainer, the metric rows and the import of the experiment's earlier npz progress files
are in :mod:`rljaxinterp.runs.tree_ppo`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rljaxinterp.agents.ppo import PPO, PPOConfig, make_ppo
from rljaxinterp.agents.seeds import SeedsAgent, positive_ints, set_derived
from rljaxinterp.eval.tree_worlds import NEVER, SPEC, world_stats



@dataclasses.dataclass(frozen=True)
class TreePPOConfig(PPOConfig):
    """A PPO config for ``seeds`` agents on a continuing TreeGrid, trained in ``chunks`` of
    ``updates_per_chunk`` updates; ``total_timesteps`` and ``checkpoint_every`` follow from
    them. Frozen policies are evaluated on ``eval_forests`` fresh forests for ``eval_steps``."""

    env: str = "TreeGrid"
    env_kwargs: dict = dataclasses.field(default_factory=lambda: {**SPEC, "max_steps": NEVER})
    model: str = "mlp"
    model_kwargs: dict = dataclasses.field(default_factory=lambda: {"hidden": [64, 64]})
    num_envs: int = 128
    lr: float = 1e-3
    anneal_lr: bool = False  # online: nothing anneals, so a run can be lengthened
    seeds: int = 2
    chunks: int = 12
    updates_per_chunk: int = 1
    eval_forests: int = 64
    eval_steps: int = 4000
    derived = ("total_timesteps", "checkpoint_every")

    def __post_init__(self) -> None:
        positive_ints(self, ("seeds", "chunks", "updates_per_chunk", "eval_forests", "eval_steps"))
        set_derived(self, "total_timesteps", self.chunks * self.updates_per_chunk * self.batch_size,
                    "chunks * updates_per_chunk * num_envs * num_steps")
        set_derived(self, "checkpoint_every", self.updates_per_chunk, "updates_per_chunk")
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        self._need(self.env == "TreeGrid", "env", "this kind records TreeGrid worlds; use the ppo kind otherwise")
        self._need(self.env_kwargs.get("max_steps") == NEVER, "env_kwargs",
                   f"need max_steps={NEVER} (the worlds never reset: training is online)")
        self._need(self.anneal_lr is False, "anneal_lr", "must be False (online training; runs are lengthened)")


def make_agent(config: TreePPOConfig) -> SeedsAgent:
    return SeedsAgent(config, make_ppo(config))


def make_segment(agent: PPO, updates: int):
    """``updates`` PPO updates of every seed (vmapped), with world statistics after each."""
    steps = agent.config.num_steps

    def one(state, _):
        before = state.env_state.inner
        state, m = agent.update(state)
        inner = state.env_state.inner
        stats = world_stats(inner, before.chopped, steps)
        # Per world (num_envs,): trees standing at the end of the rollout, its chops and the
        # steps it spent with no tree standing during the rollout (for ``world_phases``).
        per_world = {"world_trees": jnp.sum(inner.trees, (-2, -1)).astype(jnp.int32),
                     "world_chops": inner.chopped - before.chopped,
                     "world_extinct_steps": inner.extinctions - before.extinctions}
        return state, {**stats, **per_world, "entropy": m["entropy"], "value_mean": m["value_mean"]}

    return jax.jit(jax.vmap(lambda s: jax.lax.scan(one, s, None, updates)))
