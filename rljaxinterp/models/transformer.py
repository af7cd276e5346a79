"""A small pre-norm transformer that reads a board or grid as one token per cell."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rljaxinterp.models.base import ModelOutput, floating
from rljaxinterp.models.mlp import value_head_activation
from rljaxinterp.models.sites import site

RESID = ("token", "d_model")


class Attention(nn.Module):
    """Sites: ``q``, ``k``, ``v``, ``z`` (tokens, heads, d_head), ``pattern`` (heads, query, key).
    ``causal``: a token attends only to itself and earlier tokens (sequence models)."""

    heads: int
    d_head: int
    causal: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        proj = lambda name: nn.DenseGeneral((self.heads, self.d_head), name=name)(x)
        per_head = ("token", "head", "d_head")
        q = site(self, "q", proj("query"), axes=per_head)
        k = site(self, "k", proj("key"), axes=per_head)
        v = site(self, "v", proj("value"), axes=per_head)
        scores = jnp.einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(self.d_head).astype(x.dtype)
        if self.causal:
            n = x.shape[-2]
            scores = jnp.where(jnp.tril(jnp.ones((n, n), bool)), scores, jnp.finfo(scores.dtype).min)
        pattern = site(self, "pattern", jax.nn.softmax(scores, axis=-1), axes=("head", "query", "key"))
        z = site(self, "z", jnp.einsum("...hqk,...khd->...qhd", pattern, v), axes=per_head)
        return nn.DenseGeneral(x.shape[-1], axis=(-2, -1), name="out")(z)


class Block(nn.Module):
    """Sites: ``attn.*``, ``attn_out``, ``resid_mid``, ``mlp.pre``, ``mlp.post``, ``mlp_out``,
    ``resid_post``; every one is indexed by token first, so a square can be patched alone.
    Sequence models ask for ``causal`` attention and a ``resid_pre`` site (the block's input)."""

    heads: int
    d_mlp: int
    causal: bool = False
    resid_pre: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d_model = x.shape[-1]
        if self.resid_pre:
            x = site(self, "resid_pre", x, axes=RESID)
        attn = Attention(self.heads, d_model // self.heads, causal=self.causal, name="attn")(
            nn.LayerNorm(name="ln1")(x))
        x = site(self, "resid_mid", x + site(self, "attn_out", attn, axes=RESID), axes=RESID)
        h = nn.Dense(self.d_mlp, name="mlp_up")(nn.LayerNorm(name="ln2")(x))
        h = site(self, "mlp.pre", h, axes=("token", "d_mlp"), produced_by="mlp_up")
        h = site(self, "mlp.post", nn.gelu(h), axes=("token", "d_mlp"), produced_by="mlp_up")
        out = site(self, "mlp_out", nn.Dense(d_model, name="mlp_down")(h), axes=RESID)
        return site(self, "resid_post", x + out, axes=RESID)


class BoardTransformer(nn.Module):
    """Tokens are the cells of an ``(..., height, width, planes)`` observation; a flat
    ``(..., features)`` observation becomes one token per feature.

    Sites: ``tokens``, ``embed``, ``block{i}.*`` (see ``Block``), ``final``, ``logits``,
    ``value.hidden.post``, ``value``.
    """

    num_actions: int
    obs_ndim: int
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    d_mlp: int = 128
    value_activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> ModelOutput:
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by heads={self.heads}")
        batch_shape = obs.shape[: obs.ndim - self.obs_ndim]
        x = floating(obs)
        if self.obs_ndim == 1:
            x = x[..., None]
        x = site(self, "tokens", x.reshape(*batch_shape, -1, x.shape[-1]), axes=("token", "feature"))
        n_tokens = x.shape[-2]
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (n_tokens, self.d_model))
        x = site(self, "embed", nn.Dense(self.d_model, name="token_embed")(x) + pos, axes=RESID)
        for i in range(self.layers):
            x = Block(self.heads, self.d_mlp, name=f"block{i}")(x)
        x = site(self, "final", nn.LayerNorm(name="ln_final")(x), axes=RESID)

        logits = nn.Dense(self.num_actions, name="policy_head")(x.reshape(*batch_shape, -1))
        logits = site(self, "logits", logits, axes=("action",))
        v = nn.Dense(self.d_model, name="value_hidden")(x.mean(axis=-2))
        v = site(self, "value.hidden.post", nn.relu(v), axes=("unit",), produced_by="value_hidden")
        value = nn.Dense(1, name="value_head")(v)[..., 0]
        value = site(self, "value", value_head_activation(self.value_activation)(value), axes=())
        return ModelOutput(logits=logits, value=value)
