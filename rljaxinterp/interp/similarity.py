"""How alike two networks' representations are, site by site (e.g. teacher and student).

Linear CKA (Kornblith et al. 2019) is invariant to orthogonal transformations and
isotropic scaling of either side, so two networks that learned the same features in a
different basis score 1. Regression similarity asks how much of one site's activation a
ridge regression from the other site predicts on held-out states (not symmetric).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np


def _flat(x) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    return x.reshape(x.shape[0], -1)


def linear_cka(x: jax.Array, y: jax.Array) -> jax.Array:
    """CKA between two activation matrices over the same states (state axis first)."""
    x, y = _flat(x), _flat(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA compares the same states: got {x.shape[0]} and {y.shape[0]} rows")
    x, y = x - x.mean(0), y - y.mean(0)
    cross = jnp.sum((y.T @ x) ** 2)
    return cross / jnp.maximum(jnp.linalg.norm(x.T @ x) * jnp.linalg.norm(y.T @ y), 1e-30)


def regression_similarity(x: jax.Array, y: jax.Array, l2: float = 1.0, test_fraction: float = 0.25,
                          key: jax.Array | None = None) -> jax.Array:
    """Held-out R^2 (variance-weighted over y's features) of a ridge regression from x to y."""
    x, y = _flat(x), _flat(y)
    n = x.shape[0]
    perm = jax.random.permutation(jax.random.key(0) if key is None else key, n)
    n_test = max(1, int(round(test_fraction * n)))
    test, train = perm[:n_test], perm[n_test:]
    mx, my = x[train].mean(0), y[train].mean(0)
    xt, yt = x[train] - mx, y[train] - my
    w = jnp.linalg.solve(xt.T @ xt + l2 * jnp.eye(x.shape[1]), xt.T @ yt)
    residual = y[test] - my - (x[test] - mx) @ w
    return 1.0 - jnp.sum(residual**2) / jnp.maximum(jnp.sum((y[test] - y[test].mean(0)) ** 2), 1e-30)


def similarity_matrix(features_a: Mapping[str, jax.Array], features_b: Mapping[str, jax.Array],
                      measure: str = "cka", **kwargs) -> np.ndarray:
    """(sites of a, sites of b) matrix of ``measure`` ("cka" or "regression": a predicts b)."""
    fn = {"cka": linear_cka, "regression": regression_similarity}.get(measure)
    if fn is None:
        raise ValueError(f"similarity measure {measure!r} is not allowed; use 'cka' or 'regression'")
    return np.array([[float(fn(a, b, **kwargs)) for b in features_b.values()] for a in features_a.values()])
