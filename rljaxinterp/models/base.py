"""What every agent network returns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


def floating(x) -> jax.Array:
    """``x`` as float32, or float64 if it already is (so float64 checks run end to end)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


@struct.dataclass
class ModelOutput:
    """Policy logits over actions and a scalar value per state.

    Q-learning agents read ``logits`` as Q-values.
    """

    logits: jax.Array
    value: jax.Array
