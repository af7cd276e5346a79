"""Shared machinery for the procedurally generated gridworlds.

Every gridworld keeps its whole level in ``EnvState.inner`` (walls, object
maps, positions, behavioural counters) so a level is data: it can be
generated from a key, parsed from a hand-written layout, stacked, vmapped
and patched against another level of the same shape.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.envs.base import Array, Env, EnvState, single_agent_state, tree_select

DISTRIBUTIONS: tuple[str, ...] = ("train", "test")

# up, right, down, left as (row, col) offsets; row 0 is the top of the grid.
MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)], np.int32)
ACTION_NAMES: tuple[str, ...] = ("up", "right", "down", "left")

Layout = Sequence[str] | np.ndarray

FLOOR_RGB = (235, 235, 228)
# One colour per channel name, shared so every report uses the same palette.
PALETTE: dict[str, tuple[int, int, int]] = {
    "walls": (60, 60, 70),
    "agent": (40, 110, 220),
    "coin": (240, 190, 20),
    "cheese": (250, 210, 40),
    "keys": (230, 150, 20),
    "chests": (150, 90, 40),
    "keys_held": (230, 150, 20),
    "trees": (40, 150, 60),
    "apples": (210, 40, 40),
    "shields": (140, 140, 220),
    "shields_held": (140, 140, 220),
    "monsters": (130, 30, 150),
}


def check_distribution(env_name: str, distribution: str) -> str:
    """Fail early on a misspelt level distribution, listing the allowed ones."""
    if distribution not in DISTRIBUTIONS:
        allowed = ", ".join(map(repr, DISTRIBUTIONS))
        raise ValueError(f"{env_name}: unknown distribution {distribution!r}; allowed: {allowed}")
    return distribution


def check_int(env_name: str, option: str, value: Any, low: int) -> int:
    """Sizes are static shapes, so they must be plain ints known at build time."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{env_name}: option {option!r} must be an int >= {low}; got {value!r}")
    return int(value)


# --- jittable helpers -----------------------------------------------------------------


def shift(mask: Array, dr: int, dc: int) -> Array:
    """``out[r, c] = mask[r - dr, c - dc]``, False where that falls off the grid."""
    h, w = mask.shape
    padded = jnp.pad(mask, 1)
    return padded[1 - dr : 1 - dr + h, 1 - dc : 1 - dc + w]


def dilate(mask: Array) -> Array:
    """A mask grown by one step in the four move directions."""
    return mask | shift(mask, 1, 0) | shift(mask, -1, 0) | shift(mask, 0, 1) | shift(mask, 0, -1)


def reachable(free: Array, start: Array) -> Array:
    """Cells of ``free`` connected to ``start`` (a bool mask) by moves; a flood fill.

    A ``while_loop`` that stops when nothing changes, so it costs the path
    length, not the grid area; under ``vmap`` it runs until the slowest
    level is done.
    """

    def body(carry: tuple[Array, Array]) -> tuple[Array, Array]:
        seen, _ = carry
        grown = dilate(seen) & free
        return grown, jnp.any(grown != seen)

    seen, _ = jax.lax.while_loop(lambda c: c[1], body, (start & free, jnp.bool_(True)))
    return seen


def draw(key: Array, **shapes: tuple[int, ...]) -> dict[str, Array]:
    """All of a function's randomness as named blocks of uniforms in [0, 1), from one call.

    Every ``jax.random`` call inlines its own copy of the threefry hash, and
    on CPU those copies dominate compile time; one draw sliced into blocks
    compiles several times faster than a split per use.
    """
    sizes = [int(np.prod(shape)) for shape in shapes.values()]
    flat = jax.random.uniform(key, (sum(sizes),))
    out, offset = {}, 0
    for (name, shape), size in zip(shapes.items(), sizes):
        out[name] = flat[offset : offset + size].reshape(shape)
        offset += size
    return out


def randint(u: Array, low: int, high: Array | int) -> Array:
    """Integers uniform in ``[low, high)`` from uniforms ``u`` (``high`` may be traced)."""
    span = jnp.asarray(high) - low
    return (low + jnp.minimum(jnp.floor(u * span), span - 1)).astype(jnp.int32)


def sample_cells(u: Array, mask: Array, k: int) -> tuple[Array, Array]:
    """``k`` distinct cells drawn uniformly from ``mask``, as ``(k, 2)`` positions.

    ``u`` is a ``mask``-shaped block of uniforms. Top-k of iid uniforms is a
    uniform random subset and needs no dynamic shapes. The second output
    says which draws were real (fewer than ``k`` cells leaves the rest invalid).
    """
    w = mask.shape[1]
    scores = jnp.where(mask, u, -1.0).ravel()
    values, flat = jax.lax.top_k(scores, k)
    return jnp.stack([flat // w, flat % w], -1).astype(jnp.int32), values >= 0.0


def sample_cell(u: Array, mask: Array) -> tuple[Array, Array]:
    """One cell drawn uniformly from ``mask`` as ``(2,)``, and whether one existed."""
    w = mask.shape[1]
    flat = jnp.argmax(jnp.where(mask, u, -1.0).ravel())
    return jnp.stack([flat // w, flat % w]).astype(jnp.int32), jnp.any(mask)


def cell_mask(pos: Array, shape: tuple[int, int]) -> Array:
    """A bool map that is True only at the ``(2,)`` position ``pos``."""
    return jnp.zeros(shape, jnp.bool_).at[pos[0], pos[1]].set(True)


def at(grid: Array, pos: Array) -> Array:
    """The value of ``grid`` at a ``(2,)`` position."""
    return grid[pos[0], pos[1]]


def move(walls: Array, pos: Array, action: Array) -> Array:
    """Where a move leads: one step in the action's direction unless a wall or the edge blocks it."""
    h, w = walls.shape
    target = jnp.clip(pos + jnp.asarray(MOVES)[action], 0, jnp.array([h - 1, w - 1]))
    return jnp.where(at(walls, target), pos, target).astype(jnp.int32)


def border(shape: tuple[int, int]) -> np.ndarray:
    """A bool map of the outer ring, which every walled gridworld keeps as walls."""
    ring = np.ones(shape, bool)
    ring[1:-1, 1:-1] = False
    return ring


# --- layouts ------------------------------------------------------------------------------


def parse_layout(
    env_name: str, layout: Layout, shape: tuple[int, int], legend: Mapping[str, str]
) -> np.ndarray:
    """Check a char-grid layout and return it as a ``(H, W)`` array of one-char strings.

    Accepts a list of equal-length strings or a 2-D array of characters.
    """
    if isinstance(layout, np.ndarray):
        if layout.ndim != 2:
            raise ValueError(f"{env_name}: layout must be 2-D; got an array of shape {layout.shape}")
        rows = ["".join(str(ch) for ch in row) for row in layout]
    else:
        rows = [str(row) for row in layout]
    widths = sorted({len(row) for row in rows})
    if len(widths) > 1:
        raise ValueError(f"{env_name}: layout rows have different lengths {widths}")
    got = (len(rows), widths[0] if widths else 0)
    if got != tuple(shape):
        raise ValueError(
            f"{env_name}: layout has shape {got} but this environment's grid is {tuple(shape)}; "
            f"build the environment with a matching size"
        )
    grid = np.array([list(row) for row in rows], dtype="<U1")
    unknown = sorted(set(grid.ravel()) - set(legend))
    if unknown:
        known = ", ".join(f"{ch!r}={name}" for ch, name in legend.items())
        raise ValueError(f"{env_name}: layout has unknown character(s) {unknown}; legend: {known}")
    agents = int((grid == "A").sum())
    if agents != 1:
        problem = "no agent" if agents == 0 else f"{agents} agents"
        raise ValueError(f"{env_name}: layout has {problem}; it needs exactly one 'A'")
    return grid


def positions_of(grid: np.ndarray, ch: str) -> np.ndarray:
    """``(n, 2)`` int32 positions of a character, in reading order."""
    return np.argwhere(grid == ch).astype(np.int32).reshape(-1, 2)


# --- the base class -----------------------------------------------------------------------


class GridEnv(Env):
    """A single-agent gridworld whose level lives in ``inner``.

    Subclasses provide ``_generate`` (key -> inner), ``_transition`` (the
    rules), ``_observe`` (symbolic channels) and ``_from_grid`` (a parsed
    layout -> inner); this class adds the episode bookkeeping shared by all:
    time-limit truncation, no-op steps once done, rendering and layouts.
    ``truncated`` is never set together with ``terminated``.
    """

    num_actions = 4
    num_players = 1
    channels: tuple[str, ...] = ()
    # Channels holding a count (inventory) rather than positions; drawn on the top row.
    count_channels: tuple[str, ...] = ()
    # Channels painted as full tiles rather than inset squares.
    tile_channels: tuple[str, ...] = ("walls",)
    legend: ClassVar[Mapping[str, str]] = {}

    def __init__(self, name: str, distribution: str, max_steps: int, shape: tuple[int, int]) -> None:
        self.name = name
        self.distribution = check_distribution(name, distribution)
        self.max_steps = check_int(name, "max_steps", max_steps, 1)
        self.shape = shape
        self.observation_shape = (*shape, len(self.channels))

    # subclass hooks
    @abc.abstractmethod
    def _generate(self, key: Array) -> Any:
        """A fresh level drawn from ``self.distribution``."""

    @abc.abstractmethod
    def _transition(self, inner: Any, action: Array, key: Array) -> tuple[Any, Array, Array]:
        """Rules: ``(inner, reward, terminated)`` after one move."""

    @abc.abstractmethod
    def _observe(self, inner: Any) -> Array:
        """``(H, W, C)`` float32 channels, ordered as ``self.channels``."""

    @abc.abstractmethod
    def _from_grid(self, grid: np.ndarray) -> Any:
        """An ``inner`` from a checked char grid."""

    @abc.abstractmethod
    def episode_metrics(self, state: EnvState) -> dict[str, Array]:
        """Behavioural counters of the episode so far (work on batched states too)."""

    # protocol
    def _wrap(
        self, inner: Any, reward: Array, terminated: Array, truncated: Array, step_count: Array
    ) -> EnvState:
        return single_agent_state(
            self._observe(inner), inner, self.num_actions, reward, terminated, truncated, step_count
        )

    def init(self, key: Array) -> EnvState:
        return self._wrap(self._generate(key), 0.0, False, False, 0)

    def step(self, state: EnvState, action: Array, key: Array) -> EnvState:
        action = jnp.clip(jnp.asarray(action, jnp.int32), 0, self.num_actions - 1)
        inner, reward, terminated = self._transition(state.inner, action, key)
        count = state.step_count + 1
        truncated = (count >= self.max_steps) & ~terminated
        stepped = self._wrap(inner, reward, terminated, truncated, count)
        frozen = state.replace(rewards=jnp.zeros_like(state.rewards))
        return tree_select(state.done, frozen, stepped)

    # levels as data
    def from_layout(self, layout: Layout) -> EnvState:
        """The first state of a hand-written level; see ``legend`` for the characters.

        Two layouts differing in one object give two states of identical
        structure, ready to stack and patch against each other.
        """
        grid = parse_layout(self.name, layout, self.shape, self.legend)
        return self._wrap(self._from_grid(grid), 0.0, False, False, 0)

    def to_layout(self, state: EnvState) -> list[str]:
        """The char grid of a single (unbatched) state's observation; inverse of ``from_layout``."""
        obs = np.asarray(state.observation)
        grid = np.full(self.shape, ".", dtype="<U1")
        by_name = {name: ch for ch, name in self.legend.items()}
        for index, name in enumerate(self.channels):
            if name in by_name and name not in self.count_channels and name != "agent":
                grid[obs[..., index] > 0] = by_name[name]
        grid[obs[..., self.channels.index("agent")] > 0] = "A"
        return ["".join(row) for row in grid]

    def render(self, state: EnvState, scale: int = 8) -> np.ndarray:
        """RGB ``(H*scale, W*scale, 3)`` uint8 picture (leading batch axes allowed).

        Walls fill their tile, objects are inset squares painted in channel
        order (the agent last, on top), and inventory counts are shown as
        tiles along the top row. NumPy, not jax: pictures are for plots and
        reports, outside jit, where eager jax ops would only add dispatch cost.
        """
        obs = np.asarray(state.observation)
        h, w = self.shape
        batch = obs.shape[:-3]
        bg = np.broadcast_to(np.asarray(FLOOR_RGB, np.uint8), (*batch, h, w, 3)).copy()
        fg = np.zeros((*batch, h, w, 3), np.uint8)
        has_fg = np.zeros((*batch, h, w), bool)
        top_row = np.arange(h)[:, None] == 0
        for index, name in enumerate(self.channels):
            colour = np.asarray(PALETTE.get(name, (0, 0, 0)), np.uint8)
            plane = obs[..., index]
            if name in self.count_channels:
                mask = top_row & (np.arange(w)[None, :] < plane[..., :1, :1])
            else:
                mask = plane > 0
            if name in self.tile_channels:
                bg[mask] = colour
            else:
                fg[mask] = colour
                has_fg |= mask
        margin = max(1, scale // 6) if scale >= 3 else 0
        inside = np.zeros((scale, scale), bool)
        inside[margin : scale - margin, margin : scale - margin] = True
        show = _upsample(has_fg[..., None], scale)[..., 0] & np.tile(inside, (h, w))
        return np.where(show[..., None], _upsample(fg, scale), _upsample(bg, scale)).astype(np.uint8)


def _upsample(image: np.ndarray, scale: int) -> np.ndarray:
    """Repeat each cell of a ``(..., H, W, C)`` image into a ``scale`` x ``scale`` block."""
    return np.repeat(np.repeat(image, scale, -3), scale, -2)
