"""Dark Room concepts (``DarkRoom-v0``, ``DarkRoomHard-v0``), read from the state: where the
hidden goal is, where the agent is, their distance, and whether the goal has already been
found in the context. They work on single-episode room states and on the multi-episode
trial states an algorithm-distillation run reads (``envs.dark_room.DarkRoomTrials``, what
``rljaxinterp probe`` samples for an ``ad`` run); on a room state "found in context" means
found in this episode."""

from __future__ import annotations

import jax.numpy as jnp

from rljaxinterp.envs.dark_room import ACTIONS
from rljaxinterp.interp import concepts

NAMES = ("goal_row", "goal_col", "agent_row", "agent_col", "distance_to_goal", "goal_found_in_context",
         "episode", "step")


def _values(s) -> jnp.ndarray:
    trial = hasattr(s.inner, "room")
    room = s.inner.room if trial else s.inner
    width = s.observation.shape[-1]
    # a room shows one-hot row + column; a trial's table adds valid, previous action, reward and first-step columns
    size = (width - 3 - len(ACTIONS)) // 2 if trial else width // 2
    gr, gc, ar, ac = room.goal // size, room.goal % size, room.pos // size, room.pos % size
    found = s.inner.found_before if trial else room.found
    episode = s.inner.episode if trial else jnp.zeros_like(room.pos)
    values = [gr, gc, ar, ac, jnp.abs(gr - ar) + jnp.abs(gc - ac), found, episode, s.step_count]
    return jnp.stack([jnp.asarray(v, jnp.float32) for v in values], -1)


for env in ("DarkRoom-v0", "DarkRoomHard-v0"):
    concepts.register_group(env, NAMES, _values)
