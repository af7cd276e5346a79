"""GraphPaths-v0 concepts, read from what the environment state carries (``GraphState``):
the true shortest distance to the goal, the return-to-go the episode is conditioned on, and
which successors lie on a shortest path (one binary concept per node: "next node on a
shortest path"). Reading them off the state keeps them right for any graph the env builds."""

from __future__ import annotations

import jax.numpy as jnp

from rljaxinterp.interp import concepts

ENV = "GraphPaths-v0"
NODES = 20  # the default graph's size: one "shortest_next_{i}" concept per node (larger graphs are cut, smaller padded)


def _shortest_next(state) -> jnp.ndarray:
    mask = state.inner.shortest_next.astype(jnp.float32)
    n = mask.shape[-1]
    if n >= NODES:
        return mask[..., :NODES]
    return jnp.concatenate([mask, jnp.zeros((*mask.shape[:-1], NODES - n))], axis=-1)


concepts.register(ENV, "distance_to_goal", lambda s: s.inner.distance.astype(jnp.float32))
concepts.register(ENV, "return_to_go", lambda s: s.inner.return_to_go)
concepts.register(ENV, "timestep", lambda s: s.step_count.astype(jnp.float32))
concepts.register(ENV, "on_track", lambda s: (-s.inner.return_to_go == s.inner.distance).astype(jnp.float32))
concepts.register(ENV, "goal_is_successor", lambda s: (s.inner.distance == 1).astype(jnp.float32))
concepts.register_group(ENV, [f"shortest_next_{i}" for i in range(NODES)], _shortest_next)
