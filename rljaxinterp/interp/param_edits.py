"""Parameter-space edits: pure functions from a parameter tree to an edited copy.

Removing a unit by its weights is the parameter-space twin of zero-ablating it: zeroing
the kernel column and bias that produce unit ``j`` makes its pre-activation 0 and, for
ReLU and GELU, its post-activation 0 too. ``remove_unit`` maps a site name of our models
to the layer that produces it, so ``remove_unit(model, params, "layer0.post", j)`` equals
``run_with_interventions(..., zero_ablate("layer0.post", one_hot(j)))``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import traverse_util

from rljaxinterp.interp.cache import Params
from rljaxinterp.models import MLP, BoardTransformer, ResTower

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


def producing_layer(model, site: str) -> tuple[str, ...]:
    """The layer whose output units are the elements of ``site`` (a ``.post`` or ``.pre`` site)."""
    patterns = []
    if isinstance(model, MLP):
        patterns = [(r"layer(\d+)\.(pre|post)", lambda m: (f"layer{m[1]}",))]
    elif isinstance(model, ResTower):
        patterns = [
            (r"stem\.(pre|post)", lambda m: ("stem",)),
            (r"block(\d+)\.(conv[12])\.pre|block(\d+)\.(conv1)\.post",
             lambda m: (f"block{m[1] or m[3]}", m[2] or m[4])),
        ]
    elif isinstance(model, BoardTransformer):
        patterns = [(r"block(\d+)\.mlp\.(pre|post)", lambda m: (f"block{m[1]}", "mlp_up"))]
    for pattern, layer in patterns:
        match = re.fullmatch(pattern, site)
        if match:
            return layer(match)
    raise ValueError(
        f"site {site!r} of {type(model).__name__} is not produced unit-by-unit by one layer; "
        f"removable sites are the .pre/.post sites of hidden layers (MLP layer{{i}}, ResTower "
        f"stem and block{{i}}.conv1, BoardTransformer block{{i}}.mlp)"
    )


def remove_unit(model, params: Params, site: str, unit: int | jax.Array) -> Params:
    """Remove neuron/channel ``unit`` of ``site`` by zeroing the weights that produce it."""
    return zero_output_unit(params, producing_layer(model, site), unit)


def unit_mask(shape: Sequence[int], unit: int | jax.Array) -> jax.Array:
    """Mask selecting one neuron/channel (last axis) of a site of shape ``shape``."""
    return jnp.broadcast_to(jax.nn.one_hot(unit, shape[-1]), tuple(shape))
