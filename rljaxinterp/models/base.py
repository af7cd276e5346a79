"""What every agent network returns."""

from __future__ import annotations

import jax
from flax import struct


@struct.dataclass
class ModelOutput:
    """Policy logits over actions and a scalar value per state.

    Q-learning agents read ``logits`` as Q-values.
    """

    logits: jax.Array
    value: jax.Array
