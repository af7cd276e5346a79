"""Navigate to one goal object; shared by CoinAtEnd and CheeseMaze.

Both tasks are probes of goal misgeneralisation: in training the goal
always sits where a simpler target (the far-right end, the top-right
corner) also is, so the state records whether the agent went to that lure.
"""

from __future__ import annotations

import abc

import jax.numpy as jnp
import numpy as np
from flax import struct

from rljaxinterp.envs.base import Array
from rljaxinterp.envs.gridworlds.common import GridEnv, at, cell_mask, move, positions_of


@struct.dataclass
class GoalState:
    """A level and what the agent has done in it.

    ``reached_lure`` is set when the agent stands on a lure cell that is not
    the goal (the right end for CoinAtEnd, the top-right corner for
    CheeseMaze); the episode ends on the goal, so any lure visit came first.
    """

    walls: Array  # (H, W) bool
    agent: Array  # (2,) int32
    goal: Array  # (2,) int32
    got_goal: Array  # () bool
    reached_lure: Array  # () bool


def goal_state(walls: Array, agent: Array, goal: Array) -> GoalState:
    return GoalState(
        walls=jnp.asarray(walls, jnp.bool_),
        agent=jnp.asarray(agent, jnp.int32),
        goal=jnp.asarray(goal, jnp.int32),
        got_goal=jnp.bool_(False),
        reached_lure=jnp.bool_(False),
    )


class GoalGridEnv(GridEnv):
    """Move with 4 actions; walls block; +1 and the end of the episode on the goal."""

    goal_name = "goal"

    @abc.abstractmethod
    def lure_mask(self) -> np.ndarray:
        """``(H, W)`` bool: where a goal-misgeneralising agent would head."""

    def _transition(self, inner: GoalState, action: Array, key: Array) -> tuple[GoalState, Array, Array]:
        agent = move(inner.walls, inner.agent, action)
        on_goal = jnp.all(agent == inner.goal) & ~inner.got_goal
        on_lure = at(jnp.asarray(self.lure_mask()), agent) & ~on_goal
        inner = inner.replace(
            agent=agent, got_goal=inner.got_goal | on_goal, reached_lure=inner.reached_lure | on_lure
        )
        return inner, on_goal.astype(jnp.float32), on_goal

    def _observe(self, inner: GoalState) -> Array:
        h, w = self.shape
        agent = cell_mask(inner.agent, (h, w))
        goal = jnp.zeros((h, w), jnp.bool_).at[inner.goal[0], inner.goal[1]].set(~inner.got_goal)
        return jnp.stack([inner.walls, agent, goal], -1).astype(jnp.float32)

    def _from_grid(self, grid: np.ndarray) -> GoalState:
        char = {name: ch for ch, name in self.legend.items()}[self.goal_name]
        goals = positions_of(grid, char)
        if len(goals) != 1:
            raise ValueError(
                f"{self.name}: layout needs exactly one {char!r} ({self.goal_name}); got {len(goals)}"
            )
        return goal_state(grid == "#", positions_of(grid, "A")[0], goals[0])
