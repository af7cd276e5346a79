"""Ablation sweeps and circuit evaluation.

An ablation replaces activations by a reference that carries no information about the
state: zeros, the mean over a reference batch, or another state's activation (resample).
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from rljaxinterp.interp.cache import Params, SiteSelection, run_with_cache, select_sites, trace_sites
from rljaxinterp.interp.interventions import patch, run_with_interventions
from rljaxinterp.interp.metrics import Metric
from rljaxinterp.interp.patching import has_heads, sweep_sources
from rljaxinterp.interp.results import DEFAULT_SIZING, SiteEffects, Sizing

METHODS = ("zero", "mean", "resample")


def ablation_values(
    model: nn.Module, params: Params, obs: jax.Array, method: str, sites: SiteSelection = None,
    key: jax.Array | None = None, reference_obs: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """What each site is replaced by: zeros, the mean over ``reference_obs`` (default
    ``obs``) or, per state, the activation of a randomly drawn other state."""
    if method not in METHODS:
        raise ValueError(f"ablation method {method!r} is not allowed; use one of {METHODS}")
    _, cache = run_with_cache(model, params, obs)
    chosen = select_sites(cache, sites)
    if method == "zero":
        return {n: jnp.zeros_like(cache[n]) for n in chosen}
    if method == "mean":
        ref = cache if reference_obs is None else run_with_cache(model, params, reference_obs)[1]
        return {n: jnp.broadcast_to(ref[n].mean(0), cache[n].shape) for n in chosen}
    if key is None:
        raise ValueError("resample ablation needs a PRNG key: pass key=jax.random.key(...)")
    perm = jax.random.permutation(key, obs.shape[0])
    return {n: cache[n][perm] for n in chosen}


def ablation_sweep(
    model: nn.Module, params: Params, obs: jax.Array, metric: Metric, method: str = "mean",
    sites: SiteSelection = None, granularity: str = "element", key: jax.Array | None = None,
    reduce: bool = True, sizing: Sizing = DEFAULT_SIZING,
) -> SiteEffects:
    """Effect on ``metric`` of ablating each element (group) of each site alone
    (``granularity="head"`` with ``sites=None``: every head of every attention site)."""
    if granularity == "head" and sites is None:
        sites = [n for n, info in trace_sites(model, params, obs[:1]).items() if has_heads(info)]
    values = ablation_values(model, params, obs, method, sites, key)
    return sweep_sources(model, params, obs, values, metric, granularity, reduce, sizing=sizing)


def circuit_faithfulness(
    model: nn.Module, params: Params, obs: jax.Array, metric: Metric, keep: Mapping[str, jax.Array],
    method: str = "mean", key: jax.Array | None = None,
) -> dict[str, float]:
    """Keep the elements ``keep[site] == 1`` of each site, ablate the rest of those sites,
    and report the fraction of the metric the circuit keeps:
    ``(circuit - all ablated) / (full model - all ablated)``, averaged over states."""
    values = ablation_values(model, params, obs, method, list(keep), key)
    full = metric(run_with_interventions(model, params, obs, None)).mean()
    circuit = metric(run_with_interventions(
        model, params, obs, [patch(s, values[s], 1.0 - jnp.asarray(m, jnp.float32)) for s, m in keep.items()]
    )).mean()
    ablated = metric(run_with_interventions(model, params, obs, [patch(s, values[s]) for s in keep])).mean()
    return {
        "full": float(full), "circuit": float(circuit), "ablated": float(ablated),
        "fraction_kept": float((circuit - ablated) / (full - ablated)),
    }
