"""Procedurally generated gridworlds for goal-misgeneralisation studies; registered on import.

Each level is generated from a key inside ``init`` (jittable, vmappable) or
built from a char layout with ``env.from_layout``; every environment has a
"train" and a "test" level distribution, a symbolic ``(H, W, C)``
observation, ``env.render`` and ``env.episode_metrics``. ``AutoReset``
replaces a finished level (and its counters) in the same step, so read
episode metrics from a plain ``Batched(env, n)`` rollout of ``max_steps``
steps: finished states stay frozen until then.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from rljaxinterp.envs.base import Env, check_options
from rljaxinterp.envs.gridworlds.cheese_maze import CheeseMaze, kruskal_maze
from rljaxinterp.envs.gridworlds.coin_run import CoinAtEnd
from rljaxinterp.envs.gridworlds.common import ACTION_NAMES, DISTRIBUTIONS, GridEnv
from rljaxinterp.envs.gridworlds.keys_chests import KeysChests
from rljaxinterp.envs.gridworlds.monster_grid import MonsterGrid
from rljaxinterp.envs.gridworlds.tree_grid import TreeGrid, regrow_probability
from rljaxinterp.envs.registry import register

GRIDWORLDS: dict[str, type[GridEnv]] = {
    "CoinAtEnd": CoinAtEnd,
    "CheeseMaze": CheeseMaze,
    "KeysChests": KeysChests,
    "TreeGrid": TreeGrid,
    "MonsterGrid": MonsterGrid,
}


def _factory(name: str, cls: type[GridEnv]) -> Callable[..., Env]:
    """Reject unknown options the way the other registered environments do."""
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def make(**options: Any) -> Env:
        check_options(name, options, allowed)
        return cls(**options)

    return make


for _name, _cls in GRIDWORLDS.items():
    register(_name, _factory(_name, _cls))

__all__ = [
    "ACTION_NAMES",
    "DISTRIBUTIONS",
    "GRIDWORLDS",
    "CheeseMaze",
    "CoinAtEnd",
    "GridEnv",
    "KeysChests",
    "MonsterGrid",
    "TreeGrid",
    "kruskal_maze",
    "regrow_probability",
]
