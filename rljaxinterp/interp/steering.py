"""Steering: add a direction to a site's activation and measure how behaviour moves.

The usual direction is a difference of means (Turner et al.'s activation addition): the
average activation over states that have a property minus the average over states that
lack it. ``steering_effect`` sweeps the coefficient under one ``vmap``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.interp.cache import Params
from rljaxinterp.interp.interventions import add, run_with_interventions
from rljaxinterp.interp.metrics import log_policy


def mean_difference(activations_a: jax.Array, activations_b: jax.Array) -> jax.Array:
    """Mean over states of ``a`` minus mean over states of ``b`` (state axis first)."""
    if activations_a.shape[1:] != activations_b.shape[1:]:
        raise ValueError(f"the two sets must hold activations of one site: shapes {activations_a.shape[1:]} "
                         f"and {activations_b.shape[1:]} differ")
    if activations_a.shape[0] == 0 or activations_b.shape[0] == 0:
        raise ValueError(f"both sets need states; got {activations_a.shape[0]} and {activations_b.shape[0]}")
    return jnp.mean(activations_a, axis=0) - jnp.mean(activations_b, axis=0)


def mean_differences(activations: jax.Array, labels: Any) -> jax.Array:
    """``mean_difference`` of the states with and without each concept, all concepts at once:
    ``activations`` (states, width), ``labels`` (states, concepts) bool -> (concepts, width).
    One masked mean, so it compiles once, not once per pair of row counts."""
    labels = np.asarray(labels, bool)
    if labels.ndim != 2 or labels.shape[0] != activations.shape[0]:
        raise ValueError(f"labels have shape {labels.shape}; expected ({activations.shape[0]}, concepts)")
    count = labels.sum(0)
    empty = np.flatnonzero((count == 0) | (count == len(labels)))
    if len(empty):
        raise ValueError(f"both sets need states; concepts {empty.tolist()} hold on {count[empty].tolist()} of "
                         f"{len(labels)} states")
    x, y = jnp.asarray(activations, jnp.float32), jnp.asarray(labels, jnp.float32)
    hi = jax.lax.Precision.HIGHEST  # exact means on accelerators too
    return (jnp.matmul(y.T, x, precision=hi) / count[:, None]
            - jnp.matmul(1 - y.T, x, precision=hi) / (len(labels) - count)[:, None])


def steer(model: nn.Module, params: Params, obs: jax.Array, site: str, direction: jax.Array,
          coefficients: Sequence[float] | jax.Array, mask: Any = 1.0) -> Any:
    """Outputs with ``coefficient * direction`` added at ``site`` (where ``mask`` is 1), one
    leading axis over the coefficients."""
    coefficients = jnp.asarray(coefficients, jnp.float32)
    run = lambda c: run_with_interventions(model, params, obs, add(site, c * direction, mask))
    return jax.jit(jax.vmap(run))(coefficients)


def steering_effect(model: nn.Module, params: Params, obs: jax.Array, site: str, direction: jax.Array,
                    coefficients: Sequence[float] | jax.Array, legal_mask: jax.Array | None = None,
                    mask: Any = 1.0) -> dict[str, jax.Array]:
    """Per coefficient, averaged over states: KL(unsteered || steered) policy, the change of
    each action's probability, how often the greedy action changes, the change of the value.

    Coefficient 0 must give zero everywhere: a quick check that the direction is applied
    where it should be and nowhere else.
    """
    # The unsteered run is coefficient 0 of the same vmapped batch, so a zero direction
    # gives exactly zero (no vmapped-versus-plain rounding differences).
    coefficients = jnp.asarray(coefficients, jnp.float32)
    outs = steer(model, params, obs, site, direction, jnp.concatenate([jnp.zeros(1), coefficients]), mask)
    base, steered = jax.tree.map(lambda x: x[0], outs), jax.tree.map(lambda x: x[1:], outs)
    ref = log_policy(base.logits, legal_mask)
    logp = log_policy(steered.logits, legal_mask)
    return {
        "coefficients": coefficients,
        "policy_kl": jnp.mean(jnp.sum(jnp.exp(ref) * (ref - logp), axis=-1), axis=-1),
        "action_prob_change": jnp.mean(jnp.exp(logp) - jnp.exp(ref), axis=-2),
        "greedy_changed": jnp.mean(jnp.argmax(logp, -1) != jnp.argmax(ref, -1), axis=-1),
        "value_change": jnp.mean(steered.value - base.value, axis=-1),
    }
