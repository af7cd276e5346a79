"""Null distributions, empirical p-values, multiple-comparison corrections and intervals.

Everything here is plain NumPy on small arrays of measured statistics (the expensive part,
computing each statistic, stays in JAX in the experiments). Draws are reproducible: the same
seed gives bit-identical nulls.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ALTERNATIVES = ("greater", "less", "two-sided")
CORRECTIONS = ("holm", "bh", "none")
CORRECTION_NAMES = {"holm": "Holm (family-wise error, any dependence)",
                    "bh": "Benjamini-Hochberg (false discovery rate)", "none": "no correction"}
INTERVALS = ("t", "bootstrap")


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; use one of {tuple(allowed)}")


# -- drawing nulls ---------------------------------------------------------------------------
def draw_null(statistic: Callable[[jax.Array], Any], key: jax.Array, n: int, *, batch: int | None = None) -> np.ndarray:
    """``statistic(key_i)`` for ``n`` keys split from ``key``, stacked on a leading axis.

    With ``batch`` the statistic is vmapped over that many keys at a time (it must then be
    jittable); without, it is called once per key (any Python is fine).
    """
    if n < 1:
        raise ValueError(f"n={n} null draws: need at least 1")
    keys = jax.random.split(key, n)
    if batch is None:
        return np.stack([np.asarray(statistic(k)) for k in keys])
    if batch < 1:
        raise ValueError(f"batch={batch} must be at least 1")
    many = jax.jit(jax.vmap(statistic))
    return np.concatenate([np.asarray(many(keys[i:i + batch])) for i in range(0, n, batch)])


def random_directions(key: jax.Array, like: jax.Array, n: int, norm: float | jax.Array | None = None) -> jax.Array:
    """``n`` Gaussian directions shaped like ``like``, each rescaled to ``norm`` (the norm of
    ``like`` by default): the equal-norm random-direction control."""
    like = jnp.asarray(like, jnp.float32)
    norm = jnp.linalg.norm(like) if norm is None else jnp.asarray(norm, jnp.float32)
    return _random_directions(key, like.size, n, norm).reshape(n, *like.shape)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _random_directions(key: jax.Array, size: int, n: int, norm: jax.Array) -> jax.Array:
    d = jax.random.normal(key, (n, size), jnp.float32)
    return d * (norm / jnp.linalg.norm(d, axis=1, keepdims=True))


def random_units(key: jax.Array, num_units: int, k: int, n: int, exclude: Sequence[int] = ()) -> np.ndarray:
    """``n`` random sets of ``k`` distinct unit indices (rows of an ``(n, k)`` array), none in
    ``exclude``: the random-unit control for an ablation of ``k`` chosen units."""
    pool = np.setdiff1d(np.arange(num_units), np.asarray(exclude, int))
    if k > pool.size:
        raise ValueError(f"k={k} units requested but only {pool.size} of {num_units} are left after excluding "
                         f"{list(exclude)}")
    # each row: the first k of a uniformly random order of the pool
    order = np.argsort(np.asarray(jax.random.uniform(key, (n, pool.size))), axis=1, kind="stable")
    return pool[order[:, :k]]


def shuffled_labels(key: jax.Array, labels: jax.Array, n: int) -> jax.Array:
    """``n`` permutations of ``labels`` along their first (state) axis: the shuffled-label control."""
    labels = jnp.asarray(labels)
    return jax.vmap(lambda k: jax.random.permutation(k, labels, axis=0))(jax.random.split(key, n))


def untrained_params(model: Any, example_obs: jax.Array, key: jax.Array, n: int) -> list[Any]:
    """``n`` freshly initialised parameter trees of ``model``: the untrained-network control."""
    init = jax.jit(lambda k: model.init(k, example_obs[:1])["params"])
    return [init(k) for k in jax.random.split(key, n)]


# -- comparing with a null -------------------------------------------------------------------
def empirical_p(observed: Any, null: Any, alternative: str = "greater") -> np.ndarray:
    """``(1 + #null at least as extreme as observed) / (1 + n)`` (never 0; Phipson & Smyth 2010).

    ``null`` has the draws on its first axis and the rest broadcast against ``observed``.
    ``greater``: extreme means ``>= observed``; ``less``: ``<= observed``; ``two-sided``:
    ``|null - median(null)| >= |observed - median(null)|``.
    """
    _check_choice("alternative", alternative, ALTERNATIVES)
    obs, null = np.asarray(observed, np.float64), np.asarray(null, np.float64)
    if null.ndim < 1 or null.shape[0] < 1:
        raise ValueError(f"null has shape {null.shape}: need draws on a leading axis")
    if np.isnan(obs).any() or np.isnan(null).any():
        raise ValueError("observed or null holds NaN; a p-value of a NaN statistic is undefined")
    if alternative == "greater":
        hits = null >= obs
    elif alternative == "less":
        hits = null <= obs
    else:
        centre = np.median(null, axis=0)
        hits = np.abs(null - centre) >= np.abs(obs - centre)
    return (1.0 + hits.sum(0)) / (1.0 + null.shape[0])


def percentile(observed: Any, null: Any) -> np.ndarray:
    """Percent of null draws below ``observed`` (ties count half): 50 is typical of the null,
    near 0 or 100 is extreme."""
    obs, null = np.asarray(observed, np.float64), np.asarray(null, np.float64)
    return 100.0 * ((null < obs).mean(0) + 0.5 * (null == obs).mean(0))


def correct(pvalues: Any, method: str = "holm", axis: int = -1) -> np.ndarray:
    """Adjusted p-values over ``axis`` (the sites / settings searched): ``holm`` (step-down
    Bonferroni: controls the family-wise error under any dependence), ``bh``
    (Benjamini-Hochberg: controls the false discovery rate, valid under positive dependence)
    or ``none``. Reject where adjusted p <= alpha."""
    _check_choice("correction", method, CORRECTIONS)
    p = np.moveaxis(np.asarray(pvalues, np.float64), axis, -1)
    if ((p < 0) | (p > 1) | np.isnan(p)).any():
        raise ValueError(f"p-values must lie in [0, 1]; got {p[(p < 0) | (p > 1) | np.isnan(p)][:5]}")
    if method == "none":
        return np.moveaxis(p, -1, axis)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, -1)
    if method == "holm":
        adj = np.maximum.accumulate(ranked * (m - np.arange(m)), axis=-1)
    else:
        adj = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[..., ::-1], axis=-1)[..., ::-1]
    out = np.empty_like(adj)
    np.put_along_axis(out, order, np.minimum(adj, 1.0), -1)
    return np.moveaxis(out, -1, axis)


def required_draws(tests: int, alpha: float = 0.05, method: str = "holm") -> int:
    """The fewest null draws for which one test can come out significant after correcting for
    ``tests`` tests: the smallest p-value is ``1/(1+n)`` and Holm or BH (with one true effect)
    multiplies it by ``tests``."""
    _check_choice("correction", method, CORRECTIONS)
    if tests < 1 or not 0 < alpha < 1:
        raise ValueError(f"tests={tests} must be >= 1 and alpha={alpha} in (0, 1)")
    m = 1 if method == "none" else tests
    return max(1, math.ceil(m / alpha - 1 - 1e-9))


# -- intervals across agents -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Interval:
    """Mean of ``values`` (one per agent) with a ``level`` confidence interval by ``method``."""

    mean: float
    low: float
    high: float
    values: tuple[float, ...]
    method: str
    level: float = 0.95

    def __str__(self) -> str:
        return fmt_interval(self)


def interval(values: Sequence[float], method: str = "t", level: float = 0.95, seed: int = 0,
             resamples: int = 10_000) -> Interval:
    """Mean and ``level`` interval of per-agent values. ``t``: Student-t interval (assumes the
    per-agent values are roughly normal; honest for 3-10 agents). ``bootstrap``: percentile
    bootstrap over agents (``resamples`` resamples, ``seed``; too narrow for very few agents).
    With one value the bounds are NaN: one agent gives no interval."""
    _check_choice("interval method", method, INTERVALS)
    if not 0 < level < 1:
        raise ValueError(f"level={level} must lie in (0, 1)")
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values: an interval needs at least one agent's value")
    if np.isnan(v).any():
        raise ValueError(f"values hold NaN: {v.tolist()}")
    mean = float(v.mean())
    name = "t-interval" if method == "t" else f"percentile bootstrap ({resamples} resamples)"
    if v.size == 1:
        return Interval(mean, math.nan, math.nan, (mean,), name, level)
    if method == "t":
        from scipy.stats import t

        half = float(t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
        low, high = mean - half, mean + half
    else:
        rng = np.random.default_rng(seed)
        means = v[rng.integers(0, v.size, (resamples, v.size))].mean(1)
        low, high = (float(x) for x in np.quantile(means, [0.5 - level / 2, 0.5 + level / 2]))
    return Interval(mean, float(low), float(high), tuple(float(x) for x in v), name, level)


def fmt_interval(iv: Interval | Sequence[float], digits: int = 3) -> str:
    """``mean [low, high] (per agent: a, b, c)`` of an interval, or of per-agent values (their
    95% t-interval)."""
    iv = iv if isinstance(iv, Interval) else interval(iv)
    f = f"{{:+.{digits}f}}"
    bounds = "no interval (one agent)" if math.isnan(iv.low) else f"[{f.format(iv.low)}, {f.format(iv.high)}]"
    return f"{f.format(iv.mean)} {bounds} (per agent: {', '.join(f.format(x) for x in iv.values)})"
