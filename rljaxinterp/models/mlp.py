"""A multilayer perceptron over the flattened observation."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rljaxinterp.models.base import ModelOutput, floating
from rljaxinterp.models.sites import site


def value_head_activation(name: str):
    if name == "tanh":
        return jnp.tanh
    if name == "none":
        return lambda v: v
    raise ValueError(f"value_activation={name!r} is not allowed; use 'tanh' (games) or 'none'")


class MLP(nn.Module):
    """Sites: ``input``, ``layer{i}.pre``, ``layer{i}.post``, ``logits``, ``value``.

    ``obs_ndim`` says how many trailing axes of the input form one observation, so the
    same network runs on a single state or any batch of them. ``separate_critic=True``
    gives the value head its own trunk of the same widths (sites ``critic{i}.pre`` /
    ``critic{i}.post``), the actor-critic layout of PureJaxRL and rejax, so PPO can be
    compared with them like for like; the default shares one trunk.
    """

    num_actions: int
    obs_ndim: int
    hidden: Sequence[int] = (64, 64)
    value_activation: str = "tanh"
    separate_critic: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> ModelOutput:
        batch_shape = obs.shape[: obs.ndim - self.obs_ndim]
        inputs = x = site(self, "input", floating(obs.reshape(*batch_shape, -1)), axes=("feature",))
        x = self._trunk(x, "layer")
        logits = site(self, "logits", nn.Dense(self.num_actions, name="policy_head")(x), axes=("action",))
        if self.separate_critic:
            x = self._trunk(inputs, "critic")
        value = nn.Dense(1, name="value_head")(x)[..., 0]
        value = site(self, "value", value_head_activation(self.value_activation)(value), axes=())
        return ModelOutput(logits=logits, value=value)

    def _trunk(self, x: jax.Array, prefix: str) -> jax.Array:
        for i, width in enumerate(self.hidden):
            layer = f"{prefix}{i}"
            x = site(self, f"{layer}.pre", nn.Dense(width, name=layer)(x), axes=("unit",), produced_by=layer)
            x = site(self, f"{layer}.post", nn.relu(x), axes=("unit",), produced_by=layer)
        return x
