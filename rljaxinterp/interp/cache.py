"""Run a model and keep the activation at every named site, indexed by its full name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import traverse_util

from rljaxinterp.interp import shards
from rljaxinterp.models.sites import CACHE, SiteInfo, recording

Params = Any
Cache = dict[str, jax.Array]
SiteSelection = Iterable[str] | Callable[[str], bool] | None


def variables(params: Params) -> dict:
    """Accept either a bare parameter tree or Flax's ``{'params': ...}`` variables."""
    if isinstance(params, Mapping) and set(params) == {"params"}:
        return dict(params)
    return {"params": params}


def _flat_sites(intermediates: Mapping) -> dict[tuple[str, ...], jax.Array]:
    return traverse_util.flatten_dict(dict(intermediates))


def _resolve_batch(found: dict[str, SiteInfo]) -> dict[str, SiteInfo]:
    """Give sites without declared axes the batch rank the declared sites agree on (one
    leading batch axis when no site declares axes)."""
    declared = {info.batch_ndim for info in found.values() if info.axes is not None}
    if len(declared) > 1:
        ranks = {name: info.batch_ndim for name, info in found.items() if info.axes is not None}
        raise ValueError(f"the model's sites disagree on the number of batch axes: {ranks}")
    batch = declared.pop() if declared else 1
    resolved = {}
    for name, info in found.items():
        if info.axes is None:
            full = info.activation_shape
            b = min(batch, len(full))
            info = dataclasses.replace(info, batch_shape=full[:b], shape=full[b:])
        resolved[name] = info
    return resolved


def trace_sites(model: nn.Module, params: Params, obs: jax.Array) -> dict[str, SiteInfo]:
    """Full site name -> ``SiteInfo`` (shape without batch axes, axes, producing layer), in
    forward order, as the model declares them for observations shaped like ``obs``.

    Runs abstractly (no FLOPs); ``site()`` reports to a recorder only during this trace.
    """
    with recording() as found:
        jax.eval_shape(lambda p, o: model.apply(variables(p), o), params, obs)
    return _resolve_batch(dict(found))


def site_info(model: nn.Module, example_obs: jax.Array, params: Params | None = None) -> dict[str, SiteInfo]:
    """Every site's ``SiteInfo`` for observations shaped like ``example_obs`` (one or a batch)."""
    if params is None:
        params = jax.eval_shape(model.init, jax.random.key(0), example_obs)
    return trace_sites(model, params, example_obs)


def site_axes(model: nn.Module, example_obs: jax.Array, params: Params | None = None) -> dict[str, tuple[str, ...] | None]:
    """Every site's declared axis names (None where the model declares none)."""
    return {name: info.axes for name, info in site_info(model, example_obs, params).items()}


def sites(model: nn.Module, example_obs: jax.Array, params: Params | None = None) -> dict[str, tuple[int, ...]]:
    """Every site's full name and its shape for one observation (batch axes removed), in
    forward order.

    ``example_obs`` is a single observation or a batch of them; parameters are only
    needed for their shapes, so they are initialised abstractly when not given.
    """
    return {name: info.shape for name, info in site_info(model, example_obs, params).items()}


def select_sites(available: Iterable[str], selection: SiteSelection) -> list[str]:
    """Resolve ``sites=`` (names, a predicate or None for all), refusing unknown names."""
    available = list(available)
    if selection is None:
        return available
    if callable(selection):
        return [name for name in available if selection(name)]
    if isinstance(selection, str):
        selection = [selection]
    chosen = list(selection)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise KeyError(f"unknown site(s) {unknown}; available sites: {', '.join(available)}")
    return chosen


def run_with_cache(
    model: nn.Module, params: Params, obs: jax.Array, sites: SiteSelection = None
) -> tuple[Any, Cache]:
    """The model's output and a dict ``{site name: activation}`` (batch axes first).

    Unrequested sites are dropped inside the traced function, so under ``jit`` XLA never
    materialises them.
    """
    out, state = model.apply(variables(params), obs, mutable=[CACHE])
    flat = {".".join(k): v for k, v in _flat_sites(state.get(CACHE, {})).items()}
    chosen = select_sites(flat, sites)
    return out, {name: flat[name] for name in chosen}


def cache_states(model: nn.Module, params: Params, obs: jax.Array, sites: SiteSelection = None) -> Cache:
    """``run_with_cache``'s activations for every state in ``obs``, computed where the states
    live: with several devices (of one process or of several, ``rljaxinterp launch``) the
    states are padded to whole shards, each device runs its own, and every process gets the
    whole cache of the real states. On one device (or inside a trace) it is ``run_with_cache``
    as always."""
    if jax.device_count() == 1 or isinstance(obs, jax.core.Tracer):
        return run_with_cache(model, params, obs, sites)[1]
    order = []  # the sites in run_with_cache's order (jit hands dicts back with sorted keys)

    def run(o, p):
        cache = run_with_cache(model, p, o, sites)[1]
        order[:] = cache
        return cache

    cache = shards.map_states(jax.jit(run), obs, params)
    return {name: cache[name] for name in order}
