"""Per-state scalar metrics of a model output, the quantities patching sweeps measure."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from rljaxinterp.models.base import ModelOutput, masked_log_softmax

Metric = Callable[[ModelOutput], jax.Array]


def log_policy(logits: jax.Array, legal_mask: jax.Array | None = None) -> jax.Array:
    """Log-probabilities of the policy, over the legal actions when a mask is given."""
    return jax.nn.log_softmax(logits, axis=-1) if legal_mask is None else masked_log_softmax(logits, legal_mask)


def value(out: ModelOutput) -> jax.Array:
    return out.value


def logit_diff(action_a: int, action_b: int) -> Metric:
    return lambda out: out.logits[..., action_a] - out.logits[..., action_b]


def clean_minus_corrupt(out: ModelOutput, data: dict) -> jax.Array:
    """Per state, the logit of the clean run's action minus that of the corrupted run's, with
    the actions as data (``{"clean": (states,), "corrupt": (states,)}``) so sweeps can chunk
    states: the patching metric of pairs whose right answers differ."""
    take = lambda a: jnp.take_along_axis(out.logits, a[:, None], -1)[:, 0]
    return take(data["clean"]) - take(data["corrupt"])


def action_log_prob(action: int | jax.Array, legal_mask: jax.Array | None = None) -> Metric:
    def metric(out: ModelOutput) -> jax.Array:
        logp = log_policy(out.logits, legal_mask)
        return jnp.take_along_axis(logp, jnp.asarray(action)[..., None] * jnp.ones_like(logp[..., :1], int), -1)[..., 0]

    return metric


def policy_kl(reference_logits: jax.Array, legal_mask: jax.Array | None = None) -> Metric:
    """KL(reference policy || patched policy), over legal actions when a mask is given."""

    ref = log_policy(reference_logits, legal_mask)

    def metric(out: ModelOutput) -> jax.Array:
        return jnp.sum(jnp.exp(ref) * (ref - log_policy(out.logits, legal_mask)), axis=-1)

    return metric


def policy_kl_to_reference(out: ModelOutput, data: dict) -> jax.Array:
    """``policy_kl`` with its per-state inputs as data, so sweeps can chunk states:
    ``data = {"reference_logits": ..., "legal_mask": ...}``."""
    return policy_kl(data["reference_logits"], data["legal_mask"])(out)
