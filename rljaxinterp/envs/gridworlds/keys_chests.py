"""KeysChests: keys open chests; training has few keys, testing has many.

When keys are scarce, picking up every key is always useful, so an agent
can learn to value keys for their own sake; with keys plentiful that shows
up as keys collected beyond what the remaining chests need.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from flax import struct

from rljaxinterp.envs.base import Array, EnvState
from rljaxinterp.envs.gridworlds.common import (
    GridEnv,
    at,
    border,
    cell_mask,
    check_int,
    draw,
    move,
    positions_of,
    randint,
    reachable,
    sample_cell,
    sample_cells,
)


@struct.dataclass
class KeysChestsState:
    walls: Array  # (H, W) bool
    agent: Array  # (2,) int32
    keys: Array  # (H, W) bool: keys still on the floor
    chests: Array  # (H, W) bool: chests still closed
    keys_held: Array  # () int32
    keys_collected: Array  # () int32
    extra_keys: Array  # () int32: keys picked up while already holding enough for every closed chest
    chests_opened: Array  # () int32
    initial_keys: Array  # () int32
    initial_chests: Array  # () int32


def _range(name: str, option: str, value: tuple[int, int]) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: option {option!r} must be a (low, high) pair of ints; got {value!r}"
        ) from None
    if not 0 <= lo <= hi:
        raise ValueError(f"{name}: option {option!r} needs 0 <= low <= high; got {value!r}")
    return lo, hi


class KeysChests(GridEnv):
    """Collect keys (held in an inventory) and step onto chests to open them (+1 each).

    Opening a chest consumes one held key; stepping onto a chest with no
    key does nothing. The episode ends when no more reward is possible:
    every chest is open, or no key is held or left on the floor. In
    "train" the key count is drawn from ``few`` and the chest count from
    ``many`` (inclusive ranges); in "test" the two are swapped. Levels are a
    room with scattered wall blocks, walled in where unreachable; if that
    leaves too little room for the objects, the level falls back to an open
    room. The ``keys_held`` channel is a constant plane holding the count.
    """

    channels = ("walls", "agent", "keys", "chests", "keys_held")
    count_channels = ("keys_held",)
    legend: ClassVar[dict[str, str]] = {"#": "walls", ".": "floor", "A": "agent", "K": "keys", "X": "chests"}

    def __init__(
        self,
        *,
        distribution: str = "train",
        size: int = 9,
        few: tuple[int, int] = (1, 2),
        many: tuple[int, int] = (4, 6),
        wall_density: float = 0.15,
        max_steps: int = 150,
    ) -> None:
        name = "KeysChests"
        size = check_int(name, "size", size, 4)
        self.few, self.many = _range(name, "few", few), _range(name, "many", many)
        self.max_objects = self.few[1] + self.many[1]
        if self.max_objects + 1 > (size - 2) ** 2:
            raise ValueError(
                f"{name}: {self.max_objects} objects and the agent do not fit in a "
                f"{size}x{size} room; raise size or lower few/many"
            )
        if not 0.0 <= float(wall_density) <= 1.0:
            raise ValueError(f"{name}: wall_density must be in [0, 1]; got {wall_density!r}")
        self.wall_density = float(wall_density)
        super().__init__(name, distribution, max_steps, (size, size))

    def _counts(self, u: Array) -> tuple[Array, Array]:
        keys_range, chests_range = (
            (self.few, self.many) if self.distribution == "train" else (self.many, self.few)
        )
        n_keys = randint(u[0], keys_range[0], keys_range[1] + 1)
        n_chests = randint(u[1], chests_range[0], chests_range[1] + 1)
        return n_keys, n_chests

    def _generate(self, key: Array) -> KeysChestsState:
        h, w = self.shape
        u = draw(key, counts=(2,), agent=(h, w), walls=(h, w), objects=(h, w))
        n_keys, n_chests = self._counts(u["counts"])
        ring = jnp.asarray(border((h, w)))
        agent, _ = sample_cell(u["agent"], ~ring)
        agent_mask = cell_mask(agent, (h, w))
        blocks = (u["walls"] < self.wall_density) & ~agent_mask
        open_ = reachable(~(ring | blocks), agent_mask)
        roomy = open_.sum() >= self.max_objects + 1
        open_ = jnp.where(roomy, open_, ~ring)
        cells, _ = sample_cells(u["objects"], open_ & ~agent_mask, self.max_objects)
        slot = jnp.arange(self.max_objects)
        is_key = slot < n_keys
        is_chest = (slot >= n_keys) & (slot < n_keys + n_chests)
        empty = jnp.zeros((h, w), jnp.bool_)
        zero = jnp.int32(0)
        return KeysChestsState(
            walls=~open_,
            agent=agent,
            keys=empty.at[cells[:, 0], cells[:, 1]].max(is_key),
            chests=empty.at[cells[:, 0], cells[:, 1]].max(is_chest),
            keys_held=zero,
            keys_collected=zero,
            extra_keys=zero,
            chests_opened=zero,
            initial_keys=n_keys.astype(jnp.int32),
            initial_chests=n_chests.astype(jnp.int32),
        )

    def _transition(
        self, inner: KeysChestsState, action: Array, key: Array
    ) -> tuple[KeysChestsState, Array, Array]:
        agent = move(inner.walls, inner.agent, action)
        here = cell_mask(agent, self.shape)
        took_key = at(inner.keys, agent)
        # Extra: the agent already holds a key for every chest still closed.
        extra = took_key & (inner.keys_held >= inner.chests.sum())
        held = inner.keys_held + took_key
        opened = at(inner.chests, agent) & (held > 0)
        chests = inner.chests & ~(here & opened)
        inner = inner.replace(
            agent=agent,
            keys=inner.keys & ~here,
            chests=chests,
            keys_held=(held - opened).astype(jnp.int32),
            keys_collected=inner.keys_collected + took_key,
            extra_keys=inner.extra_keys + extra,
            chests_opened=inner.chests_opened + opened,
        )
        # Over once no more reward is possible: no closed chest, or no key held or left.
        out_of_keys = (inner.keys_held == 0) & ~jnp.any(inner.keys)
        return inner, opened.astype(jnp.float32), ~jnp.any(chests) | out_of_keys

    def _observe(self, inner: KeysChestsState) -> Array:
        agent = cell_mask(inner.agent, self.shape)
        held = jnp.full(self.shape, inner.keys_held, jnp.float32)
        planes = jnp.stack([inner.walls, agent, inner.keys, inner.chests], -1).astype(jnp.float32)
        return jnp.concatenate([planes, held[..., None]], -1)

    def _from_grid(self, grid: np.ndarray) -> KeysChestsState:
        keys, chests = grid == "K", grid == "X"
        if not chests.any():
            raise ValueError(f"{self.name}: layout needs at least one chest 'X'")
        zero = jnp.int32(0)
        return KeysChestsState(
            walls=jnp.asarray(grid == "#"),
            agent=jnp.asarray(positions_of(grid, "A")[0]),
            keys=jnp.asarray(keys),
            chests=jnp.asarray(chests),
            keys_held=zero,
            keys_collected=zero,
            extra_keys=zero,
            chests_opened=zero,
            initial_keys=jnp.int32(keys.sum()),
            initial_chests=jnp.int32(chests.sum()),
        )

    def episode_metrics(self, state: EnvState) -> dict[str, Array]:
        """``extra_keys``: keys picked up beyond what the closed chests needed; plus raw counts."""
        inner: KeysChestsState = state.inner
        return {
            "extra_keys": inner.extra_keys,
            "keys_beyond_chests": jnp.maximum(inner.keys_collected - inner.initial_chests, 0),
            "keys_collected": inner.keys_collected,
            "chests_opened": inner.chests_opened,
            "all_chests_opened": inner.chests_opened >= inner.initial_chests,
        }
