"""Gridworld concepts read from the symbolic observation: where the agent is, where its
goal is, and how far and in which direction; plus each world's own counters."""

from __future__ import annotations

import jax.numpy as jnp

from rljaxinterp.envs import make
from rljaxinterp.interp import concepts


def _position(plane):
    """(row, col) of the single marked cell of a (..., H, W) plane."""
    w = plane.shape[-1]
    flat = jnp.argmax(plane.reshape(*plane.shape[:-2], -1), axis=-1)
    return flat // w, flat % w


def _register(env_name: str) -> None:
    env = make(env_name)
    ch = {name: i for i, name in enumerate(env.channels)}
    plane = lambda s, name: s.observation[..., ch[name]]
    agent = lambda s: _position(plane(s, "agent"))
    concepts.register(env_name, "agent_row", lambda s: agent(s)[0])
    concepts.register(env_name, "agent_col", lambda s: agent(s)[1])
    goal = next((g for g in ("coin", "cheese") if g in ch), None)
    if goal:
        at = lambda s: _position(plane(s, goal))
        concepts.register(env_name, "goal_row", lambda s: at(s)[0])
        concepts.register(env_name, "goal_col", lambda s: at(s)[1])
        concepts.register(env_name, "goal_distance",
                          lambda s: jnp.abs(at(s)[0] - agent(s)[0]) + jnp.abs(at(s)[1] - agent(s)[1]))
        concepts.register(env_name, "goal_is_right", lambda s: at(s)[1] > agent(s)[1])
        concepts.register(env_name, "goal_is_up", lambda s: at(s)[0] < agent(s)[0])
        concepts.register(env_name, "goal_in_top_right_quadrant", lambda s: (
            (at(s)[0] < plane(s, goal).shape[-2] // 2) & (at(s)[1] >= plane(s, goal).shape[-1] // 2)))
    for name in ("keys", "chests", "trees", "apples", "shields", "monsters"):
        if name in ch:
            concepts.register(env_name, f"{name}_on_grid", lambda s, n=name: plane(s, n).sum((-2, -1)))
    for name in ("keys_held", "shields_held"):
        if name in ch:
            concepts.register(env_name, name, lambda s, n=name: plane(s, n).max((-2, -1)))


for _name in ("CoinAtEnd", "CheeseMaze", "KeysChests", "TreeGrid", "MonsterGrid"):
    _register(_name)
