"""An AlphaZero-style residual convolutional tower with policy and value heads."""

from __future__ import annotations

import flax.linen as nn
import jax

from rljaxinterp.models.base import ModelOutput, floating
from rljaxinterp.models.mlp import value_head_activation
from rljaxinterp.models.sites import site

BOARD = ("row", "col", "channel")


class ResBlock(nn.Module):
    """Sites: ``conv1.pre``, ``conv1.post``, ``conv2.pre``, ``resid_post``."""

    channels: int
    kernel: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = (self.kernel, self.kernel)
        h = site(self, "conv1.pre", nn.Conv(self.channels, k, name="conv1")(x), axes=BOARD, produced_by="conv1")
        h = site(self, "conv1.post", nn.relu(h), axes=BOARD, produced_by="conv1")
        h = site(self, "conv2.pre", nn.Conv(self.channels, k, name="conv2")(h), axes=BOARD, produced_by="conv2")
        return site(self, "resid_post", nn.relu(x + h), axes=BOARD)


class ResTower(nn.Module):
    """Reads observations shaped ``(..., height, width, planes)``.

    Sites: ``input``, ``stem.pre``, ``stem.post``, ``block{i}.*`` (see ``ResBlock``),
    ``policy.conv.post``, ``logits``, ``value.conv.post``, ``value.hidden.post``, ``value``.
    No normalisation layers, so an agent is a pure function of its parameters.
    """

    num_actions: int
    channels: int = 32
    blocks: int = 2
    kernel: int = 3
    value_hidden: int = 64
    value_activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> ModelOutput:
        if obs.ndim < 3:
            raise ValueError(
                f"ResTower needs observations shaped (..., height, width, planes); got shape {obs.shape}"
            )
        batch_shape = obs.shape[:-3]
        x = site(self, "input", floating(obs), axes=BOARD)
        k = (self.kernel, self.kernel)
        x = site(self, "stem.pre", nn.Conv(self.channels, k, name="stem")(x), axes=BOARD, produced_by="stem")
        x = site(self, "stem.post", nn.relu(x), axes=BOARD, produced_by="stem")
        for i in range(self.blocks):
            x = ResBlock(self.channels, self.kernel, name=f"block{i}")(x)

        p = nn.relu(nn.Conv(2, (1, 1), name="policy_conv")(x))
        p = site(self, "policy.conv.post", p, axes=BOARD, produced_by="policy_conv")
        logits = nn.Dense(self.num_actions, name="policy_head")(p.reshape(*batch_shape, -1))
        logits = site(self, "logits", logits, axes=("action",))

        v = nn.relu(nn.Conv(1, (1, 1), name="value_conv")(x))
        v = site(self, "value.conv.post", v, axes=BOARD, produced_by="value_conv")
        v = nn.Dense(self.value_hidden, name="value_hidden")(v.reshape(*batch_shape, -1))
        v = site(self, "value.hidden.post", nn.relu(v), axes=("unit",), produced_by="value_hidden")
        value = nn.Dense(1, name="value_head")(v)[..., 0]
        value = site(self, "value", value_head_activation(self.value_activation)(value), axes=())
        return ModelOutput(logits=logits, value=value)
