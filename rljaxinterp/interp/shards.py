"""States spread over every device of every process, and the results handed back whole.

Per-state work (a forward pass that records activations, a patched run, an SAE batch) is
sharded along one axis over a mesh of ``jax.devices()``: with several processes
(``rljaxinterp launch``) each computes the shards that live on its own devices, and
``distributed.host_local`` gives every process the whole result. On one device every
function here is the identity, so a single-device run keeps its exact program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import distributed

AXIS = "states"


def mesh() -> jax.sharding.Mesh:
    return jax.sharding.Mesh(np.asarray(jax.devices()), (AXIS,))


def whole_shards(n: int) -> int:
    """``n`` rounded up to a multiple of the global device count."""
    devices = jax.device_count()
    return -(-n // devices) * devices


def pad_rows(x: jax.Array, rows: int) -> jax.Array:
    """``x`` extended to ``rows`` rows by repeating its last row."""
    extra = rows - x.shape[0]
    return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)]) if extra > 0 else x


def shard_states(x: jax.Array, axis: int = 0) -> jax.Array:
    """Spread ``axis`` (the states) over every device of every process; a no-op on one
    device or when the count does not divide evenly (then the states stay whole on the
    default device, and each process computes them all). Callers that pad to
    ``whole_shards`` first always spread."""
    devices = jax.device_count()
    if devices == 1 or x.shape[axis] % devices:
        return x
    spec = jax.sharding.PartitionSpec(*([None] * axis), AXIS)
    return distributed.put(x, jax.sharding.NamedSharding(mesh(), spec))


def replicate(tree: Any) -> Any:
    """Every leaf whole on every device (parameters next to sharded states); identity on one."""
    if jax.device_count() == 1:
        return tree
    return distributed.put(tree, jax.sharding.NamedSharding(mesh(), jax.sharding.PartitionSpec()))


def map_states(fn: Callable[..., Any], states: jax.Array, *shared: Any) -> Any:
    """``fn(states, *shared)``, a jitted function whose outputs all lead with the state axis,
    computed where the states live: ``states`` padded to whole shards (by repeating the
    last state) and sharded, ``shared`` replicated. Every process receives the whole result
    of the real states as arrays on its default device; the padding rows are cut off, so
    they enter no result. On one device, or inside a trace (under ``jit``/``vmap`` the caller
    decides the placement), this is ``fn(states, *shared)`` unchanged."""
    if jax.device_count() == 1 or isinstance(states, jax.core.Tracer):
        return fn(states, *shared)
    n = states.shape[0]
    out = fn(shard_states(pad_rows(states, whole_shards(n))), *replicate(shared))
    # The same local arrays whether the shards were on one process or several.
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)[:n]), distributed.host_local(out))
