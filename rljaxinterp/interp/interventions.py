"""Interventions as data: every edit of an activation is an elementwise affine map.

An ``Intervention`` at a site says, per element, ``x -> x + mask * (scale * x + shift - x)``:
``mask`` picks the elements (1 = edited, 0 = untouched; fractions interpolate, which is what
attribution patching differentiates), ``scale`` and ``shift`` say how. Patching, zero, mean
and resample ablation, steering and scaling are all choices of ``(mask, scale, shift)``.
Because the three fields are arrays, a batch of interventions is a pytree with a leading
axis: ``jax.vmap`` sweeps it, ``jax.jit`` compiles once per shape, ``jax.grad`` flows
through it. Only the site name is static.

Arrays broadcast NumPy-style against the activation, whose shape is ``batch + site shape``:
a ``(site shape)`` array applies to every state, a ``(batch, site shape)`` array per state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct, traverse_util

from rljaxinterp.interp.cache import Params, trace_sites, variables
from rljaxinterp.models.sites import INTERVENTIONS


@struct.dataclass
class Intervention:
    site: str = struct.field(pytree_node=False)
    mask: jax.Array
    scale: jax.Array
    shift: jax.Array


def _f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def patch(site: str, value: jax.Array, mask: jax.Array = 1.0) -> Intervention:
    """Replace activations by ``value`` (e.g. another run's cached activation)."""
    return Intervention(site, _f32(mask), _f32(0.0), _f32(value))


def zero_ablate(site: str, mask: jax.Array = 1.0) -> Intervention:
    return Intervention(site, _f32(mask), _f32(0.0), _f32(0.0))


def mean_ablate(site: str, activations: jax.Array, mask: jax.Array = 1.0) -> Intervention:
    """Replace by the mean over a reference batch ``activations`` (batch axis first)."""
    return patch(site, jnp.mean(activations, axis=0), mask)


def resample_ablate(site: str, activations: jax.Array, key: jax.Array, mask: jax.Array = 1.0) -> Intervention:
    """Replace each state's activation by that of another state of the same batch, drawn at random."""
    return patch(site, jax.random.permutation(key, activations, axis=0), mask)


def add(site: str, vector: jax.Array, mask: jax.Array = 1.0) -> Intervention:
    """Steering: add ``vector`` (broadcast against the activation)."""
    return Intervention(site, _f32(mask), _f32(1.0), _f32(vector))


def scale(site: str, factor: jax.Array, mask: jax.Array = 1.0) -> Intervention:
    return Intervention(site, _f32(mask), _f32(factor), _f32(0.0))


Interventions = Intervention | Sequence[Intervention]


def _as_list(interventions: Interventions | None) -> list[Intervention]:
    if interventions is None:
        return []
    if isinstance(interventions, Intervention):
        return [interventions]
    items = list(interventions)
    for item in items:
        if not isinstance(item, Intervention):
            raise TypeError(f"expected Intervention objects, got {type(item).__name__}: {item!r}")
    return items


def _check_broadcast(iv: Intervention, field: str, activation_shape: tuple[int, ...], batch_ndim: int) -> None:
    shape = np.shape(getattr(iv, field))
    try:
        ok = np.broadcast_shapes(shape, activation_shape) == activation_shape
    except ValueError:
        ok = False
    if not ok:
        site_shape = activation_shape[batch_ndim:]
        raise ValueError(
            f"intervention at site {iv.site!r}: {field} has shape {shape}, which does not broadcast "
            f"to the activation shape {activation_shape}; allowed: shapes broadcastable to the site "
            f"shape {site_shape} or to batch + site shape {activation_shape}"
        )


def compile_interventions(
    model: nn.Module, params: Params, obs: jax.Array, interventions: Interventions | None
) -> dict:
    """Validate and lower interventions to the ``interventions`` collection: one composed
    ``(gain, bias)`` per site, applied in the order given."""
    items = _as_list(interventions)
    if not items:
        return {}
    traced = trace_sites(model, params, obs)
    out_ndim = jax.eval_shape(lambda p, o: model.apply(variables(p), o), params, obs).value.ndim
    lowered: dict[tuple[str, ...], dict[str, jax.Array]] = {}
    for iv in items:
        if iv.site not in traced:
            raise KeyError(f"unknown site {iv.site!r}; available sites: {', '.join(traced)}")
        key, abstract = traced[iv.site]
        for field in ("mask", "scale", "shift"):
            _check_broadcast(iv, field, abstract.shape, out_ndim)
        gain = 1.0 + iv.mask * (iv.scale - 1.0)
        bias = iv.mask * iv.shift
        if key in lowered:  # compose: later edits act on the already-edited activation
            prev = lowered[key]
            gain, bias = gain * prev["gain"], gain * prev["bias"] + bias
        lowered[key] = {"gain": gain, "bias": bias}
    return traverse_util.unflatten_dict(lowered)


def run_with_interventions(
    model: nn.Module, params: Params, obs: jax.Array, interventions: Interventions | None
) -> Any:
    """The model's output with the interventions applied (in order; several per site compose)."""
    collection = compile_interventions(model, params, obs, interventions)
    vs = variables(params)
    if collection:
        vs = {**vs, INTERVENTIONS: collection}
    return model.apply(vs, obs)


def run_with_interventions_and_cache(
    model: nn.Module, params: Params, obs: jax.Array, interventions: Interventions | None
) -> tuple[Any, dict[str, jax.Array]]:
    """Like ``run_with_interventions`` and also returns every (edited) activation."""
    from rljaxinterp.models.sites import CACHE

    collection = compile_interventions(model, params, obs, interventions)
    vs = variables(params)
    if collection:
        vs = {**vs, INTERVENTIONS: collection}
    out, state = model.apply(vs, obs, mutable=[CACHE])
    flat = traverse_util.flatten_dict(dict(state.get(CACHE, {})))
    return out, {".".join(k): v for k, v in flat.items()}


def stack(interventions: Sequence[Intervention]) -> Intervention:
    """One batched intervention (leading axis) from several at the same site, for ``vmap``.

    To sweep over different sites at once, give every member of the batch an entry at
    each site and a zero mask where it does nothing.
    """
    items = _as_list(interventions)
    names = {iv.site for iv in items}
    if len(names) != 1:
        raise ValueError(f"stack needs interventions at one site; got sites {sorted(names)}")

    def stack_field(field: str) -> jax.Array:
        arrays = [getattr(iv, field) for iv in items]
        shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
        return jnp.stack([jnp.broadcast_to(a, shape) for a in arrays])

    return Intervention(items[0].site, *(stack_field(f) for f in ("mask", "scale", "shift")))
