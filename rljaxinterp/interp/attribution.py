"""Attribution of a per-state metric to the input or to a hidden site.

Every method takes the same arguments as the sweeps (model, params, observations, metric)
and answers one array per state shaped like what it attributes: the observation, or the
activation at ``site``. Attributing at a site means treating that activation as the input:
the site is overwritten with the value being differentiated (a full ``patch``), so only the
layers after it matter (Hilton et al. attribute at a hidden conv layer this way).

States are processed ``sizing.states_per_call`` at a time by one compiled program, so memory stays
bounded whatever the number of states; integrated gradients vmaps its path points within
a chunk.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.interp.cache import Params, run_with_cache, variables
from rljaxinterp.interp.interventions import patch, run_with_interventions
from rljaxinterp.interp.metrics import Metric
from rljaxinterp.interp.patching import pad_rows
from rljaxinterp.interp.results import DEFAULT_SIZING, Sizing
from rljaxinterp.models.base import floating

INTEGRATION = ("gausslegendre", "riemann_trapezoid", "riemann_middle")
DEFAULT_ROWS = 2048  # forward passes per compiled call (states x path points): measured best on a CPU


def path_points(steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights of the path integral (captum's conventions)."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1), 0.5 * weights
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("riemann_trapezoid needs steps >= 2")
        alphas = np.linspace(0, 1, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
        return alphas, weights
    if method == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    raise ValueError(f"integration method {method!r} is not allowed; use one of {INTEGRATION}")


def _scalar_fn(model: nn.Module, params: Params, metric: Metric, site: str | None) -> Callable:
    """``f(x, obs, data) -> metric`` of one state, ``x`` being the observation or the site."""

    def f(x, obs, data):
        if site is None:
            out = model.apply(variables(params), x[None])
        else:
            out = run_with_interventions(model, params, obs[None], patch(site, x[None]))
        score = metric(out) if data is None else metric(out, jax.tree.map(lambda d: d[None], data))
        return jnp.reshape(score, ())

    return f


@functools.partial(jax.jit, static_argnames=("model", "metric", "site", "how", "steps"))
def _attribute(params, x, base, obs, data, *, model, metric, site, how, steps):
    """One chunk of states, vmapped; compiled once per (model, metric, site, method, shape)."""
    f = _scalar_fn(model, params, metric, site)
    grad = jax.grad(f)
    if how == "gradient":
        return jax.vmap(grad)(x, obs, data)
    if how == "occlusion":  # ``base`` holds the fill value; the last mask occludes nothing
        positions = obs.shape[1:-1]
        n_pos = math.prod(positions)
        masks = jnp.eye(n_pos + 1, n_pos).reshape(n_pos + 1, *positions, 1)

        def occlude(oi, bi, di):
            scores = jax.vmap(f, in_axes=(0, None, None))(oi + masks * (bi - oi), oi, di)
            return scores[:-1] - scores[-1]

        return jax.vmap(occlude)(obs, base, data)
    alphas, weights = (floating(a) for a in path_points(steps, how))

    def integrate(xi, bi, oi, di):
        points = bi + alphas.reshape(-1, *([1] * xi.ndim)) * (xi - bi)
        g = jax.vmap(grad, in_axes=(0, None, None))(points, oi, di)
        return (xi - bi) * jnp.tensordot(weights, g, axes=1), f(xi, oi, di) - f(bi, oi, di)

    return jax.vmap(integrate)(x, base, obs, data)


def _in_chunks(state_chunk: int | None, rows_per_state: int, *arrays, **static) -> Any:
    """Run ``_attribute`` over the states ``state_chunk`` at a time (the last chunk padded,
    so every chunk reuses one compiled program). A Python loop of jitted chunks: on XLA's
    CPU backend, convolutions inside ``lax.map``/``scan`` run several times slower."""
    params, *per_state = arrays
    n = jax.tree.leaves(per_state)[0].shape[0]
    chunk = min(state_chunk or max(1, DEFAULT_ROWS // rows_per_state), n)
    padded = -(-n // chunk) * chunk
    per_state = jax.tree.map(lambda a: pad_rows(a, padded), per_state)
    parts = [_attribute(params, *jax.tree.map(lambda a: a[i:i + chunk], per_state), **static)
             for i in range(0, padded, chunk)]
    return jax.tree.map(lambda *p: jnp.concatenate(p)[:n], *parts)


@functools.partial(jax.jit, static_argnames=("model", "site"))
def _site_activation(params, obs, *, model, site):
    return run_with_cache(model, params, obs, [site])[1][site]


def _inputs(model, params, obs, site):
    if site is None:
        return floating(obs)
    return _site_activation(params, obs, model=model, site=site)


def _baseline_like(baseline: Any, x: jax.Array) -> jax.Array:
    b = floating(baseline)
    try:
        return jnp.broadcast_to(b, x.shape)
    except ValueError:
        raise ValueError(f"baseline of shape {b.shape} does not broadcast to the attributed shape {x.shape} "
                         f"(states x {x.shape[1:]}); give a scalar, one {x.shape[1:]} array, or one per state")


def gradients(model: nn.Module, params: Params, obs: jax.Array, metric: Metric, site: str | None = None,
              metric_data: Any = None, sizing: Sizing = DEFAULT_SIZING) -> jax.Array:
    """d metric / d (observation or site activation), per state."""
    x = _inputs(model, params, obs, site)
    return _in_chunks(sizing.states_per_call, 1, params, x, x, obs, metric_data, model=model, metric=metric, site=site,
                      how="gradient", steps=0)


def gradient_x_input(model: nn.Module, params: Params, obs: jax.Array, metric: Metric, site: str | None = None,
                     metric_data: Any = None, sizing: Sizing = DEFAULT_SIZING) -> jax.Array:
    x = _inputs(model, params, obs, site)
    return x * gradients(model, params, obs, metric, site, metric_data, sizing)


def integrated_gradients(
    model: nn.Module,
    params: Params,
    obs: jax.Array,
    metric: Metric,
    baseline: Any = 0.0,
    steps: int = 50,
    method: str = "gausslegendre",
    site: str | None = None,
    metric_data: Any = None,
    return_delta: bool = False,
    sizing: Sizing = DEFAULT_SIZING,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Integrated gradients (Sundararajan et al.) from ``baseline`` to each state.

    Completeness: the attributions of a state sum to ``metric(x) - metric(baseline)`` up
    to the quadrature error; ``return_delta`` also returns that gap per state.
    """
    path_points(steps, method)  # validates before any work
    x = _inputs(model, params, obs, site)
    base = _baseline_like(baseline, x)
    attr, gap = _in_chunks(sizing.states_per_call, steps, params, x, base, obs, metric_data, model=model, metric=metric,
                           site=site, how=method, steps=steps)
    if return_delta:
        return attr, attr.reshape(attr.shape[0], -1).sum(1) - gap
    return attr


def occlusion(model: nn.Module, params: Params, obs: jax.Array, metric: Metric, fill: Any = 0.0,
              metric_data: Any = None, sizing: Sizing = DEFAULT_SIZING) -> jax.Array:
    """Change of the metric when one square/cell (all channels of one position) is set to
    ``fill``: shape ``(states, *positions)``, the observation's shape without its channels.
    The unedited run is evaluated in the same batch, so occluding a square with the value
    it already holds gives exactly zero."""
    x = jnp.asarray(obs, jnp.float32)
    fill = jnp.broadcast_to(jnp.asarray(fill, jnp.float32), x.shape)
    effect = _in_chunks(sizing.states_per_call, math.prod(x.shape[1:-1]) + 1, params, x, fill, x, metric_data, model=model,
                        metric=metric, site=None, how="occlusion", steps=0)
    return effect.reshape(x.shape[:-1])
