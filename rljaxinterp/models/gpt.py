"""A causal GPT-style transformer over trajectories: a decision transformer's network.

The observation is a table of timesteps, ``(..., timesteps, 1 + features)``: column 0 marks
the timesteps that exist (``valid``, filled from the first row), the rest are each token
type's features side by side, in ``token_types`` order (``token_widths`` columns each). Every
timestep becomes one token per type, embedded by its own linear map (so the type is in the
embedding), plus a learned position per token. Sites follow TransformerLens: ``embed``,
``pos_embed``, ``blocks.{i}.resid_pre``, ``blocks.{i}.attn.q/k/v/z/pattern``,
``blocks.{i}.attn_out``, ``blocks.{i}.resid_mid``, ``blocks.{i}.mlp.pre/post``,
``blocks.{i}.mlp_out``, ``blocks.{i}.resid_post``, ``ln_final``, then ``logits`` and
``value``, with named axes so head patching and every other method work unchanged.

The action of a timestep is predicted from the token just before its ``action`` token (the
state's, in a decision transformer), so causal attention never lets it see the answer; a
model without ``action`` tokens (one ``transition`` token per step embedding the previous
action and reward with the current observation, as in algorithm distillation) predicts it
from the timestep's last token.
``__call__`` returns the prediction at the last valid timestep (the move to make now);
``all_steps=True`` (``model.clone(all_steps=True)``, same parameters) returns every
timestep's, for training.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rljaxinterp.models.base import ModelOutput, floating
from rljaxinterp.models.sites import site
from rljaxinterp.models.transformer import RESID, Block

TOKEN_TYPES = ("return_to_go", "state", "action", "reward", "transition")


def check_token_type(kind: str, token_types: tuple[str, ...]) -> int:
    """Index of ``kind`` within a timestep; a clear error naming the model's types otherwise."""
    if kind not in token_types:
        raise ValueError(f"unknown token type {kind!r}; this model's token types are {token_types}")
    return token_types.index(kind)


class _Blocks(nn.Module):
    """Holds the blocks so their sites read ``blocks.{i}.*``."""

    layers: int
    heads: int
    d_mlp: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.layers):
            x = Block(self.heads, self.d_mlp, causal=True, resid_pre=True, name=str(i))(x)
        return x


class GPT(nn.Module):
    """Causal transformer over a timestep table (see the module docstring).

    ``value`` is the log-probability of the most likely action (the model's confidence in its
    move): a decision transformer has no value head, and this keeps value-metric methods
    meaningful.
    """

    num_actions: int
    token_types: tuple[str, ...]
    token_widths: tuple[int, ...]
    max_timesteps: int
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    d_mlp: int = 256
    all_steps: bool = False

    def token_position(self, timestep: int, kind: str) -> int:
        """Site position (token index) of ``kind``'s token at ``timestep``."""
        if not 0 <= timestep < self.max_timesteps:
            raise ValueError(f"timestep={timestep} is out of range; allowed: 0..{self.max_timesteps - 1}")
        return timestep * len(self.token_types) + check_token_type(kind, self.token_types)

    def token_at(self, position: int) -> tuple[int, str]:
        """``(timestep, token type)`` of site position ``position``."""
        n = self.max_timesteps * len(self.token_types)
        if not 0 <= position < n:
            raise ValueError(f"position={position} is out of range; this model has tokens 0..{n - 1}")
        return position // len(self.token_types), self.token_types[position % len(self.token_types)]

    def _check(self, obs: jax.Array) -> None:
        unknown = [t for t in self.token_types if t not in TOKEN_TYPES]
        if unknown:
            raise ValueError(f"unknown token type(s) {unknown}; allowed: {TOKEN_TYPES}")
        if self.token_types[:1] == ("action",):
            raise ValueError(f"token_types={self.token_types} must not start with 'action' "
                             "(the action is predicted from the token before it)")
        if len(self.token_widths) != len(self.token_types):
            raise ValueError(f"token_widths={self.token_widths} needs one width per token type {self.token_types}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by heads={self.heads}")
        if not 1 <= self.layers <= 4:
            raise ValueError(f"layers={self.layers} is not allowed; use 1..4")
        width = 1 + sum(self.token_widths)
        if obs.ndim < 2 or obs.shape[-1] != width:
            raise ValueError(f"observation shape {obs.shape} does not end in (timesteps, {width}) "
                             f"(valid flag + widths {dict(zip(self.token_types, self.token_widths))})")
        if obs.shape[-2] > self.max_timesteps:
            raise ValueError(f"context of {obs.shape[-2]} timesteps is longer than the model's "
                             f"max_timesteps={self.max_timesteps}; allowed: 1..{self.max_timesteps}")

    @nn.compact
    def __call__(self, obs: jax.Array) -> ModelOutput:
        self._check(obs)
        x = floating(obs)
        batch_shape, steps = x.shape[:-2], x.shape[-2]
        per_type, start = [], 1
        for kind, width in zip(self.token_types, self.token_widths):
            per_type.append(nn.Dense(self.d_model, name=f"embed_{kind}")(x[..., start:start + width]))
            start += width
        n_types = len(self.token_types)
        tokens = jnp.stack(per_type, axis=-2).reshape(*batch_shape, steps * n_types, self.d_model)
        tokens = site(self, "embed", tokens, axes=RESID)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (self.max_timesteps * n_types, self.d_model))
        pos = site(self, "pos_embed", jnp.broadcast_to(pos[: steps * n_types], tokens.shape), axes=RESID)
        h = _Blocks(self.layers, self.heads, self.d_mlp, name="blocks")(tokens + pos)
        h = site(self, "ln_final", nn.LayerNorm(name="ln_final_norm")(h), axes=RESID)

        reader = self.token_types.index("action") - 1 if "action" in self.token_types else n_types - 1
        per_step = h.reshape(*batch_shape, steps, n_types, self.d_model)[..., reader, :]
        head = nn.Dense(self.num_actions, name="action_head")
        if self.all_steps:
            logits = head(per_step)
            return ModelOutput(logits=logits, value=jax.nn.log_softmax(logits).max(-1))
        current = jnp.maximum(x[..., 0].sum(-1).astype(jnp.int32) - 1, 0)
        now = jnp.take_along_axis(per_step, current[..., None, None], axis=-2)[..., 0, :]
        logits = site(self, "logits", head(now), axes=("action",))
        value = site(self, "value", jax.nn.log_softmax(logits).max(-1), axes=())
        return ModelOutput(logits=logits, value=value)
