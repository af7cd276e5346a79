"""What every agent network returns, and its logits read as a policy over legal actions
(one fill value for illegal actions, shared by every agent and method)."""

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


def mask_logits(logits: jax.Array, legal: jax.Array) -> jax.Array:
    """``logits`` with illegal actions set to the dtype's most negative finite value."""
    return jnp.where(legal, logits, jnp.finfo(logits.dtype).min)


def masked_log_softmax(logits: jax.Array, legal: jax.Array) -> jax.Array:
    """Log-probabilities of the policy restricted to the legal actions."""
    return jax.nn.log_softmax(mask_logits(logits, legal), axis=-1)
