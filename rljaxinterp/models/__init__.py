"""Agent networks whose every intermediate activation is a named site."""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from rljaxinterp.models.base import ModelOutput
from rljaxinterp.models.conv import ResBlock, ResTower
from rljaxinterp.models.mlp import MLP
from rljaxinterp.models.sites import AXES, AXIS_KINDS, CACHE, INTERVENTIONS, SiteInfo, site
from rljaxinterp.models.transformer import BoardTransformer

KINDS = ("mlp", "conv", "transformer")


def make_model(kind: str, num_actions: int, observation_shape: tuple[int, ...], **config: Any) -> nn.Module:
    """Build a network by name, the way configs and the CLI refer to them."""
    if kind == "mlp":
        return MLP(num_actions=num_actions, obs_ndim=len(observation_shape), **config)
    if kind == "conv":
        if len(observation_shape) != 3:
            raise ValueError(
                f"model kind 'conv' needs a (height, width, planes) observation; got {observation_shape}"
            )
        return ResTower(num_actions=num_actions, **config)
    if kind == "transformer":
        return BoardTransformer(num_actions=num_actions, obs_ndim=len(observation_shape), **config)
    raise ValueError(f"unknown model kind {kind!r}; allowed: {', '.join(KINDS)}")


__all__ = [
    "AXES", "AXIS_KINDS", "CACHE", "INTERVENTIONS", "KINDS", "MLP", "BoardTransformer", "ModelOutput",
    "ResBlock", "ResTower", "SiteInfo", "make_model", "site",
]
