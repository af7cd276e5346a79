"""Path patching: the effect of a sender site that flows through one receiver site only.

Step 1 runs the base input with the sender patched from the source run and records what
the receiver becomes. Step 2 runs the base input again with only the receiver set to that
value, so every other path out of the sender keeps its base activation.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from rljaxinterp.interp.cache import Params, run_with_cache, select_sites, trace_sites
from rljaxinterp.interp.interventions import patch, run_with_interventions, run_with_interventions_and_cache
from rljaxinterp.interp.metrics import Metric
from rljaxinterp.interp.patching import base_and_source
from rljaxinterp.interp.results import DEFAULT_SIZING, Sizing


def path_patching(
    model: nn.Module,
    params: Params,
    clean_obs: jax.Array,
    corrupted_obs: jax.Array,
    metric: Metric,
    sender: str,
    receiver: str,
    direction: str = "noising",
    sizing: Sizing = DEFAULT_SIZING,
) -> jax.Array:
    """Mean effect on ``metric`` of patching each sender element, through ``receiver`` only.

    Shaped like the sender site.
    """
    base_obs, source_obs = base_and_source(clean_obs, corrupted_obs, direction)
    base_out, base_cache = run_with_cache(model, params, base_obs)
    select_sites(base_cache, [sender, receiver])
    _, source_cache = run_with_cache(model, params, source_obs, sites=[sender])
    base_metric = metric(base_out)
    shape = trace_sites(model, params, base_obs)[sender].shape
    n = max(1, math.prod(shape))

    def one(i):
        mask = jax.nn.one_hot(i, n).reshape(shape)
        _, cache = run_with_interventions_and_cache(
            model, params, base_obs, patch(sender, source_cache[sender], mask)
        )
        out = run_with_interventions(model, params, base_obs, patch(receiver, cache[receiver]))
        return (metric(out) - base_metric).mean()

    effects = jax.jit(lambda: jax.lax.map(one, jnp.arange(n), batch_size=sizing.patches_per_step or 16))()
    return effects.reshape(shape)
