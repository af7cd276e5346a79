"""Parameter-space edits: pure functions from a parameter tree to an edited copy.

Removing a unit by its weights is the parameter-space twin of zero-ablating it: zeroing
the kernel column and bias that produce unit ``j`` makes its pre-activation 0 and, for
ReLU and GELU, its post-activation 0 too. ``remove_unit`` finds the layer that produces a
site from the model itself (``site(..., produced_by=...)``), so
``remove_unit(model, params, "layer0.post", j, obs)`` equals
``run_with_interventions(..., zero_ablate("layer0.post", unit_mask(shape, j)))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from rljaxinterp.interp.cache import Params, site_info

Path = str | Sequence[str]


def _split(path: Path) -> tuple[str, ...]:
    return tuple(path.split("/")) if isinstance(path, str) else tuple(path)


def edit_leaf(params: Params, path: Path, fn) -> Params:
    """Return ``params`` with the leaf at ``path`` (``"block0/conv2/kernel"``) replaced by ``fn(leaf)``."""
    flat = traverse_util.flatten_dict(params)
    key = _split(path)
    if key not in flat:
        raise KeyError(f"no parameter {'/'.join(key)!r}; parameters: {', '.join('/'.join(k) for k in flat)}")
    flat = dict(flat)
    flat[key] = fn(flat[key])
    return traverse_util.unflatten_dict(flat)


def zero_output_unit(params: Params, layer: Path, unit: int | jax.Array) -> Params:
    """Zero what layer ``layer`` (a Dense or Conv) writes to output unit/channel ``unit``."""
    layer = _split(layer)
    params = edit_leaf(params, (*layer, "kernel"), lambda k: k.at[..., unit].set(0.0))
    return edit_leaf(params, (*layer, "bias"), lambda b: b.at[..., unit].set(0.0))


def zero_input_unit(params: Params, layer: Path, unit: int | jax.Array) -> Params:
    """Zero how layer ``layer`` (a Dense or Conv) reads input unit/channel ``unit``."""
    return edit_leaf(params, (*_split(layer), "kernel"), lambda k: k.at[..., unit, :].set(0.0))


def producing_layer(model: nn.Module, site: str, example_obs: jax.Array, params: Params | None = None) -> tuple[str, ...]:
    """The layer whose output units are the last axis of ``site``, as the model declares it
    (``site(..., produced_by=...)``); ``example_obs`` is any observation the model accepts."""
    infos = site_info(model, example_obs, params)
    if site not in infos:
        raise KeyError(f"unknown site {site!r}; available sites: {', '.join(infos)}")
    if infos[site].produced_by is None:
        removable = [name for name, info in infos.items() if info.produced_by is not None]
        raise ValueError(
            f"site {site!r} of {type(model).__name__} is not produced unit-by-unit by one layer (its model "
            f"declares no produced_by); removable sites: {', '.join(removable) or 'none'}"
        )
    return infos[site].produced_by


def remove_unit(
    model: nn.Module, params: Params, site: str, unit: int | jax.Array, example_obs: jax.Array
) -> Params:
    """Remove neuron/channel ``unit`` of ``site`` by zeroing the weights that produce it
    (the layer comes from the model's ``produced_by``, read by tracing on ``example_obs``)."""
    return zero_output_unit(params, producing_layer(model, site, example_obs, params), unit)


def unit_mask(shape: Sequence[int], unit: int | jax.Array) -> jax.Array:
    """Mask selecting one neuron/channel (last axis) of a site of shape ``shape``."""
    return jnp.broadcast_to(jax.nn.one_hot(unit, shape[-1]), tuple(shape))
