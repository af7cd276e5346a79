"""Run a model and keep the activation at every named site, indexed by its full name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import traverse_util

from rljaxinterp.models.sites import CACHE

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


def trace_sites(model: nn.Module, params: Params, obs: jax.Array) -> dict[str, tuple[tuple[str, ...], jax.ShapeDtypeStruct]]:
    """Full site name -> (key path in the Flax collections, abstract activation), in forward order.

    Runs abstractly (no FLOPs); the order is read while tracing because pytree
    flattening would sort the names.
    """
    found = {}

    def forward(p, o):
        _, state = model.apply(variables(p), o, mutable=[CACHE])
        flat = _flat_sites(state.get(CACHE, {}))
        found.update({".".join(k): (k, jax.ShapeDtypeStruct(v.shape, v.dtype)) for k, v in flat.items()})

    jax.eval_shape(forward, params, obs)
    return found


def sites(model: nn.Module, example_obs: jax.Array, params: Params | None = None) -> dict[str, tuple[int, ...]]:
    """Every site's full name and its shape for one observation (batch axes removed), in
    forward order.

    ``example_obs`` is a single observation or a batch of them; parameters are only
    needed for their shapes, so they are initialised abstractly when not given.
    """
    if params is None:
        params = jax.eval_shape(model.init, jax.random.key(0), example_obs)
    out = jax.eval_shape(lambda p, o: model.apply(variables(p), o), params, example_obs)
    batch_ndim = out.value.ndim
    return {name: tuple(a.shape[batch_ndim:]) for name, (_, a) in trace_sites(model, params, example_obs).items()}


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
