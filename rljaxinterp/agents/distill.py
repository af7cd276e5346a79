"""Behavioural cloning / distillation: a student network trained on a teacher's outputs.

The student learns the teacher's policy (KL from the teacher's legal-move distribution)
and value (squared error) over states from the teacher's own play, in one jitted
``lax.scan`` of minibatch Adam steps. Held-out states measure how well it matches.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rljaxinterp.agents.common import Params, epsilon_explore
from rljaxinterp.envs.base import EnvState
from rljaxinterp.models.base import ModelOutput, mask_logits, masked_log_softmax

_WIDTH_KEYS = {"mlp": ("hidden",), "conv": ("channels", "value_hidden"), "transformer": ("d_model", "d_mlp")}


def scale_width(kind: str, model_kwargs: dict, factor: float) -> dict:
    """The teacher's model config with every width multiplied by ``factor`` (depth kept)."""
    if kind not in _WIDTH_KEYS:
        raise ValueError(f"model kind {kind!r} has no width rule; allowed: {sorted(_WIDTH_KEYS)}")
    out = dict(model_kwargs)
    for name in _WIDTH_KEYS[kind]:
        if name in out:
            value = out[name]
            out[name] = [max(1, round(v * factor)) for v in value] if isinstance(value, (list, tuple)) \
                else max(1, round(value * factor))
    if kind == "transformer" and "heads" in out and out.get("d_model", 1) % out["heads"]:
        raise ValueError(f"d_model={out['d_model']} after scaling is not divisible by heads={out['heads']}")
    return out


def sampling_player(policy_value: Callable[[jax.Array], ModelOutput], temperature: float = 1.0,
                    epsilon: float = 0.0) -> Callable:
    """Plays by sampling the network's legal policy at ``temperature`` (the teacher's own
    play), or a uniformly random legal move with probability ``epsilon`` (to reach positions
    a strong teacher never visits)."""
    if temperature <= 0 or not 0 <= epsilon <= 1:
        raise ValueError(f"need temperature > 0 and 0 <= epsilon <= 1; got {temperature}, {epsilon}")

    def act(states: EnvState, key: jax.Array) -> jax.Array:
        k_policy, k_random, k_coin = jax.random.split(key, 3)
        legal = states.legal_action_mask
        logits = policy_value(states.observation).logits / temperature
        chosen = jax.random.categorical(k_policy, mask_logits(logits, legal))
        return epsilon_explore(k_coin, k_random, chosen, legal, epsilon)[0]
    return act


@struct.dataclass
class Distillation:
    params: Params
    loss: jax.Array  # (steps,) training loss
    held_out: dict  # policy KL, top-1 agreement, value error on held-out states


def _compare(teacher: ModelOutput, student: ModelOutput, legal) -> dict:
    t, s = masked_log_softmax(teacher.logits, legal), masked_log_softmax(student.logits, legal)
    return {
        "policy_kl": jnp.mean(jnp.sum(jnp.exp(t) * (t - s), -1)),
        "top1_agreement": jnp.mean(jnp.argmax(t, -1) == jnp.argmax(s, -1)),
        "value_mse": jnp.mean((teacher.value - student.value) ** 2),
    }


def distil(
    teacher: Callable[[jax.Array], ModelOutput],
    student: nn.Module,
    obs: jax.Array,
    legal_mask: jax.Array,
    key: jax.Array,
    steps: int = 2000,
    batch_size: int = 256,
    learning_rate: float = 3e-3,
    value_weight: float = 1.0,
    test_fraction: float = 0.2,
) -> Distillation:
    """Train ``student`` to reproduce ``teacher(obs)``; ``teacher`` is any jit-able function
    of observations (e.g. ``lambda o: run.policy_value(params, o)``)."""
    n = obs.shape[0]
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    if n < 2 or legal_mask.shape[0] != n:
        raise ValueError(f"need at least 2 states and one legal mask per state; got {n} states, "
                         f"{legal_mask.shape[0]} masks")
    k_split, k_init, k_train = jax.random.split(key, 3)
    perm = np.asarray(jax.random.permutation(k_split, n))
    n_test = max(1, round(test_fraction * n))
    test, train = perm[:n_test], perm[n_test:]
    targets = jax.jit(teacher)(obs)
    params = student.init(k_init, obs[:1])["params"]
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))

    def loss_fn(p, idx):
        out = student.apply({"params": p}, obs[idx])
        t = jax.tree.map(lambda x: x[idx], targets)
        diff = _compare(t, out, legal_mask[idx])
        return diff["policy_kl"] + value_weight * diff["value_mse"]

    @jax.jit
    def fit(params, key):
        def step(carry, k):
            p, s = carry
            idx = jnp.asarray(train)[jax.random.randint(k, (min(batch_size, len(train)),), 0, len(train))]
            loss, g = jax.value_and_grad(loss_fn)(p, idx)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
        return p, losses

    params, losses = fit(params, k_train)
    held_out = _compare(jax.tree.map(lambda x: x[test], targets), student.apply({"params": params}, obs[test]),
                        legal_mask[test])
    return Distillation(params, losses, {k: float(v) for k, v in held_out.items()})
