"""Non-negative matrix factorisation and PCA of activations (or attributions).

Rows are observations (states, or state x square when a conv site is factorised per
position as in Hilton et al.), columns are features (neurons, channels). A factorisation
``x ~= weights @ components`` gives each row a few factor weights, and each factor a
direction in feature space; ``top_rows`` finds the states that show a factor most.

NMF uses the multiplicative updates of Lee & Seung for the Frobenius loss, the same
iteration as scikit-learn's ``NMF(solver="mu")``: from the same starting point both reach
the same factors, which is what ``benchmarks/nmf_vs_sklearn.py`` checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

_TINY = 1e-10  # keeps the multiplicative updates away from 0/0


@struct.dataclass
class Factorisation:
    """``x ~= weights @ components + mean`` (``mean`` is zero for NMF)."""

    weights: jax.Array  # (rows, rank): how much of each factor each row holds
    components: jax.Array  # (rank, features): each factor's direction
    mean: jax.Array  # (features,)
    explained: jax.Array  # (rank,) share of the variance (PCA) or of the squared norm (NMF) per factor
    relative_error: jax.Array  # ||x - reconstruction||_F / ||x||_F

    def reconstruct(self) -> jax.Array:
        return self.weights @ self.components + self.mean


def _check_matrix(x, rank: int) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a (rows, features) matrix; got shape {x.shape}. Flatten with "
                         "x.reshape(-1, x.shape[-1]) (rows = states x positions) or x.reshape(len(x), -1)")
    if not 1 <= rank <= min(x.shape):
        raise ValueError(f"rank={rank} is not allowed for a {x.shape} matrix; use 1 <= rank <= {min(x.shape)}")
    return x


def random_init(x: jax.Array, rank: int, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Scaled absolute Gaussians, scikit-learn's ``init="random"`` scheme."""
    scale = jnp.sqrt(jnp.mean(x) / rank)
    k_w, k_h = jax.random.split(key)
    w = scale * jnp.abs(jax.random.normal(k_w, (x.shape[0], rank)))
    h = scale * jnp.abs(jax.random.normal(k_h, (rank, x.shape[1])))
    return w, h


@jax.jit
def _mu_step(x, w, h):
    w = w * (x @ h.T) / jnp.maximum(w @ (h @ h.T), _TINY)
    h = h * (w.T @ x) / jnp.maximum((w.T @ w) @ h, _TINY)
    return w, h


def nmf(
    x: jax.Array,
    rank: int,
    iterations: int = 200,
    key: jax.Array | None = None,
    init: tuple[jax.Array, jax.Array] | None = None,
) -> Factorisation:
    """Factorise a non-negative matrix into ``rank`` non-negative parts.

    Activations after a ReLU are non-negative as they are; for signed data (attributions,
    pre-activations) factorise :func:`nonnegative_parts` instead. ``init`` is an explicit
    ``(weights, components)`` starting point; otherwise :func:`random_init` from ``key``.
    """
    x = _check_matrix(x, rank)
    lowest = float(jnp.min(x))
    if lowest < 0:
        raise ValueError(f"nmf needs a non-negative matrix; its smallest entry is {lowest:.4g}. "
                         "Split signed data with nonnegative_parts(x) or factorise post-ReLU sites")
    if iterations < 1:
        raise ValueError(f"iterations={iterations} must be >= 1")
    w, h = init if init is not None else random_init(x, rank, jax.random.key(0) if key is None else key)
    w, h = jnp.asarray(w, jnp.float32), jnp.asarray(h, jnp.float32)
    if w.shape != (x.shape[0], rank) or h.shape != (rank, x.shape[1]):
        raise ValueError(f"init shapes {w.shape}, {h.shape} do not fit; expected {(x.shape[0], rank)}, "
                         f"{(rank, x.shape[1])}")
    w, h = jax.lax.fori_loop(0, iterations, lambda _, wh: _mu_step(x, *wh), (w, h))
    # Put factors in a canonical order and scale: unit-norm components, largest first.
    norms = jnp.maximum(jnp.linalg.norm(h, axis=1), _TINY)
    w, h = w * norms, h / norms[:, None]
    order = jnp.argsort(-jnp.sum(w**2, axis=0))
    w, h = w[:, order], h[order]
    total = jnp.sum(x**2)
    explained = jnp.sum(w**2, axis=0) / total
    error = jnp.linalg.norm(x - w @ h) / jnp.sqrt(total)
    return Factorisation(w, h, jnp.zeros(x.shape[1]), explained, error)


def pca(x: jax.Array, rank: int) -> Factorisation:
    """Principal components of the centred matrix, from one SVD."""
    x = _check_matrix(x, rank)
    mean = x.mean(0)
    u, s, vt = jnp.linalg.svd(x - mean, full_matrices=False)
    weights, components = u[:, :rank] * s[:rank], vt[:rank]
    # Fix the sign (largest loading positive) so runs and checkpoints compare.
    sign = jnp.sign(components[jnp.arange(rank), jnp.argmax(jnp.abs(components), axis=1)])
    weights, components = weights * sign, components * sign[:, None]
    explained = s[:rank] ** 2 / jnp.sum(s**2)
    error = jnp.linalg.norm(x - mean - weights @ components) / jnp.linalg.norm(x)
    return Factorisation(weights, components, mean, explained, error)


def nonnegative_parts(x: jax.Array) -> jax.Array:
    """``[relu(x), relu(-x)]`` along the last axis: signed data as a non-negative matrix,
    so a factor can use the positive and the negative side of a feature separately."""
    return jnp.concatenate([jnp.maximum(x, 0.0), jnp.maximum(-x, 0.0)], axis=-1)


def per_position(activations: jax.Array) -> jax.Array:
    """(states, *positions, channels) -> (states x positions, channels): rows are squares."""
    a = jnp.asarray(activations)
    return a.reshape(-1, a.shape[-1])


def top_rows(weights: jax.Array, k: int = 8) -> np.ndarray:
    """(rank, k) indices of the rows holding most of each factor, strongest first."""
    w = np.asarray(weights)
    k = min(k, w.shape[0])
    return np.argsort(-w, axis=0)[:k].T
