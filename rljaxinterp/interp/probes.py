"""Linear probes for every site x concept at once.

Features of different sites have different widths; they are zero-padded to a common
width so one ``vmap`` covers all sites and concepts. Standardised padding columns are
exactly zero, so they change neither the ridge solution nor the gradient-trained probes.
Scores are on a held-out split: accuracy for binary concepts, R^2 for the rest.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rljaxinterp.interp.cache import Params, SiteSelection, run_with_cache

KINDS = ("ridge", "logistic", "sparse")


@struct.dataclass
class ProbeScores:
    """Held-out scores, shaped (sites, concepts); ``names`` index the two axes."""

    test: jax.Array
    train: jax.Array
    baseline: jax.Array  # majority-class accuracy (binary) or 0 (R^2)
    sites: tuple[str, ...] = struct.field(pytree_node=False)
    concepts: tuple[str, ...] = struct.field(pytree_node=False)

    def table(self) -> dict[str, dict[str, float]]:
        return {s: {c: float(self.test[i, j]) for j, c in enumerate(self.concepts)} for i, s in enumerate(self.sites)}


def site_features(
    model: nn.Module, params: Params, obs: jax.Array, sites: SiteSelection = None
) -> dict[str, jax.Array]:
    """Activations flattened to ``(states, features)`` per site."""
    _, cache = run_with_cache(model, params, obs, sites)
    return {n: a.reshape(a.shape[0], -1).astype(jnp.float32) for n, a in cache.items()}


def _is_binary(y: np.ndarray) -> np.ndarray:
    return np.all((y == 0) | (y == 1), axis=0)


def _standardise(x, train_idx):
    mean = x[train_idx].mean(0)
    std = x[train_idx].std(0)
    return (x - mean) / jnp.where(std > 1e-6, std, 1.0)


def _ridge(x, y, l2):
    """Closed form on centred data, in primal or dual form, whichever is smaller."""
    n, d = x.shape
    if d <= n:
        w = jnp.linalg.solve(x.T @ x + l2 * jnp.eye(d), x.T @ y)
    else:
        w = x.T @ jnp.linalg.solve(x @ x.T + l2 * jnp.eye(n), y)
    return w


def _score(pred, y, binary):
    acc = jnp.mean((pred > 0.5) == (y > 0.5))
    r2 = 1.0 - jnp.mean((pred - y) ** 2) / jnp.maximum(jnp.var(y), 1e-12)
    return jnp.where(binary, acc, r2)


def _fit_one(x, y, binary, train, test, kind, l2, l1, steps, lr):
    """One gradient-trained probe (logistic for binary concepts, least squares otherwise)."""
    xs = _standardise(x, train)
    xtr, ytr = xs[train], y[train]

    def loss(p):
        logits = xtr @ p["w"] + p["b"]
        data = jnp.where(
            binary, optax.sigmoid_binary_cross_entropy(logits, ytr).mean(), jnp.mean((logits - ytr) ** 2)
        )
        return data + 0.5 * l2 / xtr.shape[0] * jnp.sum(p["w"] ** 2)

    opt = optax.adam(lr)
    p = {"w": jnp.zeros(x.shape[1]), "b": jnp.zeros(())}

    def step(carry, _):
        p, s = carry
        g = jax.grad(loss)(p)
        u, s = opt.update(g, s, p)
        p = optax.apply_updates(p, u)
        if kind == "sparse":  # proximal step of the L1 penalty
            p["w"] = jnp.sign(p["w"]) * jnp.maximum(jnp.abs(p["w"]) - lr * l1, 0.0)
        return (p, s), None

    (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=steps)
    predict = lambda z: jnp.where(binary, jax.nn.sigmoid(z @ p["w"] + p["b"]), z @ p["w"] + p["b"])  # noqa: E731
    return _score(predict(xs[test]), y[test], binary), _score(predict(xtr), ytr, binary)


def _fit_ridge_all(x, y, binary, train, test, l2):
    """Every concept of one site from one factorisation: the right-hand side is a matrix."""
    xs = _standardise(x, train)
    xtr, ytr = xs[train], y[train]
    y_mean = ytr.mean(0)
    w = _ridge(xtr, ytr - y_mean, l2)
    score = jax.vmap(_score, in_axes=(1, 1, 0))
    return score(xs[test] @ w + y_mean, y[test], binary), score(xtr @ w + y_mean, ytr, binary)


def fit_probes(
    features: Mapping[str, jax.Array],
    concepts: Mapping[str, jax.Array],
    kind: str = "ridge",
    key: jax.Array | None = None,
    test_fraction: float = 0.25,
    l2: float = 1.0,
    l1: float = 1e-3,
    steps: int = 300,
    learning_rate: float = 0.05,
    shuffle_labels: bool = False,
) -> ProbeScores:
    """Train one probe per (site, concept) on a random split, all in one jitted ``vmap``.

    ``shuffle_labels`` permutes each concept's labels across states first: the control
    that a probe must fail (its score is what memorisation alone achieves).
    """
    if kind not in KINDS:
        raise ValueError(f"probe kind {kind!r} is not allowed; use one of {KINDS}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    site_names, concept_names = tuple(features), tuple(concepts)
    n = next(iter(features.values())).shape[0]
    for name, f in features.items():
        if f.ndim != 2 or f.shape[0] != n:
            raise ValueError(f"features[{name!r}] has shape {f.shape}; expected ({n}, width)")
    y = np.stack([np.asarray(concepts[c], np.float32).reshape(n) for c in concept_names], 1)
    key = jax.random.key(0) if key is None else key
    split_key, shuffle_key = jax.random.split(key)
    perm = np.asarray(jax.random.permutation(split_key, n))
    n_test = max(1, int(round(test_fraction * n)))
    test, train = perm[:n_test], perm[n_test:]
    if shuffle_labels:
        y = np.asarray(jax.vmap(lambda k, col: jax.random.permutation(k, col))(
            jax.random.split(shuffle_key, y.shape[1]), y.T)).T
    binary = _is_binary(y)
    width = max(f.shape[1] for f in features.values())
    x = jnp.stack([jnp.pad(features[s], ((0, 0), (0, width - features[s].shape[1]))) for s in site_names])

    if kind == "ridge":
        per_site = lambda xi, yy, bb: _fit_ridge_all(xi, yy, bb, train, test, l2)  # noqa: E731
    else:
        fit = lambda xi, yi, bi: _fit_one(xi, yi, bi, train, test, kind, l2, l1, steps, learning_rate)  # noqa: E731
        per_site = jax.vmap(fit, in_axes=(None, 1, 0))
    test_scores, train_scores = jax.jit(jax.vmap(per_site, in_axes=(0, None, None)))(x, jnp.asarray(y), binary)
    majority = np.maximum(y[test].mean(0), 1 - y[test].mean(0))
    baseline = np.where(binary, majority, 0.0)
    return ProbeScores(test_scores, train_scores, jnp.asarray(baseline), site_names, concept_names)
