"""Board symmetries as training-data augmentation (as in AlphaGo Zero / AlphaZero for Go).

A game's rules are invariant under some transformations of the board; a position and its
search policy transformed together are another valid training sample. Each sample in a
minibatch gets a uniformly random symmetry of its game, so the network sees every
orientation of every position it was trained on. Value targets do not change.

Layouts (checked in tests against the pgx envs): observations are ``(H, W, C)`` with
``[row, col]`` cells; actions are the row-major cells, plus a trailing pass action for Go
and othello, and one action per column for connect four.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

# augment(key, observations (B, H, W, C), per-action arrays ((B, A), ...)) -> same, transformed
Augment = Callable[[jax.Array, jax.Array, tuple[jax.Array, ...]], tuple[jax.Array, tuple[jax.Array, ...]]]

# game -> (symmetry group, number of trailing non-board actions)
GAMES: dict[str, tuple[str, int]] = {
    "tic_tac_toe": ("dihedral", 0),
    "go_9x9": ("dihedral", 1),
    "go_19x19": ("dihedral", 1),
    "othello": ("dihedral", 1),
    "connect_four": ("mirror_columns", 0),
}


def dihedral(x: jax.Array) -> jax.Array:
    """The 8 images of boards ``x`` of shape ``(B, H, H, ...)``, stacked on a new axis 0."""
    rotations = [jnp.rot90(x, k, axes=(1, 2)) for k in range(4)]
    return jnp.stack(rotations + [jnp.flip(r, axis=2) for r in rotations])


def _pick(images: jax.Array, which: jax.Array) -> jax.Array:
    return images[which, jnp.arange(which.shape[0])]


def make_augment(env_name: str, observation_shape: tuple[int, ...], num_actions: int) -> Augment | None:
    """``augment(key, observations, (policy, legal, ...)) -> (observations, (policy, legal, ...))``
    applying one random symmetry per sample to the board and to every per-action array
    (any dtype), or ``None`` when the game has no known symmetry here."""
    if env_name not in GAMES:
        return None
    group, extra = GAMES[env_name]
    h, w = observation_shape[:2]

    if group == "mirror_columns":
        assert num_actions == w, (env_name, observation_shape, num_actions)

        def augment(key, obs, per_action):
            flip = jax.random.bernoulli(key, 0.5, (obs.shape[0],))
            obs = jnp.where(flip[:, None, None, None], jnp.flip(obs, axis=2), obs)
            return obs, tuple(jnp.where(flip[:, None], jnp.flip(a, axis=1), a) for a in per_action)
        return augment

    assert group == "dihedral" and h == w and num_actions == h * w + extra, (env_name, observation_shape)

    def augment(key, obs, per_action):
        which = jax.random.randint(key, (obs.shape[0],), 0, 8)

        def move(a):
            board = _pick(dihedral(a[:, : h * w].reshape(-1, h, w)), which).reshape(-1, h * w)
            return jnp.concatenate([board, a[:, h * w:]], axis=1)
        return _pick(dihedral(obs), which), tuple(move(a) for a in per_action)
    return augment
