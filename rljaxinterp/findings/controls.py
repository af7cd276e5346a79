"""Controls measured through the model: a statistic under an intervention, observed and under
many random draws of the same kind of intervention (vmapped in batches)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.findings.stats import random_directions
from rljaxinterp.interp import add, run_with_interventions
from rljaxinterp.models import ModelOutput

Statistic = Callable[[ModelOutput, ModelOutput], jax.Array]  # (steered, unsteered) -> scalar


_COMPILED: dict = {}  # (model description, site) or a statistic -> its compiled function


def _steered_outputs(model: Any, site: str) -> Callable:
    """Jitted ``(params, obs, directions, coefficient, mask) -> outputs`` with one leading axis
    over the directions; compiled once per model description and site."""
    key = (type(model).__name__, repr(model), site)
    if key not in _COMPILED:
        _COMPILED[key] = jax.jit(lambda params, obs, directions, coefficient, mask: jax.vmap(
            lambda d: run_with_interventions(model, params, obs, add(site, coefficient * d, mask)))(directions))
    return _COMPILED[key]


def steering_null(model: Any, params: Any, obs: jax.Array, site: str, direction: jax.Array, statistic: Statistic,
                  key: jax.Array, n: int, coefficient: float = 1.0, mask: Any = 1.0,
                  batch: int = 50) -> tuple[float, np.ndarray]:
    """``statistic(steered, unsteered)`` after adding ``coefficient * direction`` at ``site``,
    and after adding each of ``n`` random directions of the same norm instead: ``(observed,
    null of shape (n,))``.

    The directions run under one ``vmap`` per ``batch`` (compiled once per model and site).
    The unsteered outputs are the zero direction of the same vmapped program, so a zero
    direction gives exactly the statistic of no change.
    """
    if n < 1 or batch < 1:
        raise ValueError(f"n={n} null draws and batch={batch} must both be at least 1")
    run = _steered_outputs(model, site)
    direction = jnp.asarray(direction, jnp.float32)
    # zero (the unsteered run), the observed direction, the random ones; padded to whole batches
    directions = jnp.concatenate([jnp.zeros((1, *direction.shape)), direction[None],
                                  random_directions(key, direction, n)])
    directions = jnp.concatenate([directions, jnp.zeros((-len(directions) % batch, *direction.shape))])
    coefficient, mask = jnp.float32(coefficient), jnp.asarray(mask, jnp.float32)
    outs = [run(params, obs, directions[i:i + batch], coefficient, mask) for i in range(0, len(directions), batch)]
    base = jax.tree.map(lambda x: x[0], outs[0])
    if statistic not in _COMPILED:
        _COMPILED[statistic] = jax.jit(jax.vmap(statistic, in_axes=(0, None)))
    stat = _COMPILED[statistic]
    values = np.concatenate([np.asarray(stat(o, base)) for o in outs])
    return float(values[1]), values[2:n + 2]
