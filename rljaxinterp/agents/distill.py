"""Behavioural cloning / distillation: a student network trained on a teacher's outputs.

The student learns the teacher's policy (KL from the teacher's legal-move distribution)
and value (squared error) over states from the teacher's own play, in one jitted
``lax.scan`` of minibatch Adam steps. Held-out states measure how well it matches.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Dataset:
    """States to distil on, the teacher's outputs on them, and a fixed train/test split."""

    obs: jax.Array
    legal: jax.Array
    targets: ModelOutput
    train: np.ndarray  # indices
    test: np.ndarray


def split_dataset(teacher: Callable[[jax.Array], ModelOutput], obs: jax.Array, legal_mask: jax.Array,
                  key: jax.Array, test_fraction: float) -> Dataset:
    n = obs.shape[0]
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    if n < 2 or legal_mask.shape[0] != n:
        raise ValueError(f"need at least 2 states and one legal mask per state; got {n} states, "
                         f"{legal_mask.shape[0]} masks")
    perm = np.asarray(jax.random.permutation(key, n))
    n_test = max(1, round(test_fraction * n))
    return Dataset(obs, legal_mask, jax.jit(teacher)(obs), train=perm[n_test:], test=perm[:n_test])


def make_fit(student: nn.Module, data: Dataset, optimizer: optax.GradientTransformation, batch_size: int,
             value_weight: float) -> Callable:
    """``fit(params, opt_state, keys) -> (params, opt_state, losses)``: one Adam step per key,
    jitted as one ``lax.scan``; chunks of keys give the same result as all keys at once."""
    train = jnp.asarray(data.train)

    def loss_fn(p, idx):
        out = student.apply({"params": p}, data.obs[idx])
        t = jax.tree.map(lambda x: x[idx], data.targets)
        diff = _compare(t, out, data.legal[idx])
        return diff["policy_kl"] + value_weight * diff["value_mse"]

    @jax.jit
    def fit(params, opt_state, keys):
        def step(carry, k):
            p, s = carry
            idx = train[jax.random.randint(k, (min(batch_size, len(data.train)),), 0, len(data.train))]
            loss, g = jax.value_and_grad(loss_fn)(p, idx)
            u, s = optimizer.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), keys)
        return params, opt_state, losses

    return fit


def held_out(student: nn.Module, params: Params, data: Dataset) -> dict[str, float]:
    """Policy KL, top-1 agreement and value error against the teacher on the test states."""
    out = _compare(jax.tree.map(lambda x: x[data.test], data.targets),
                   student.apply({"params": params}, data.obs[data.test]), data.legal[data.test])
    return {k: float(v) for k, v in out.items()}


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
    of observations (e.g. ``lambda o: run.policy_value(params, o)``). The ``distill`` run
    kind does the same in a run folder, with checkpoints."""
    k_split, k_init, k_train = jax.random.split(key, 3)
    data = split_dataset(teacher, obs, legal_mask, k_split, test_fraction)
    params = student.init(k_init, obs[:1])["params"]
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    fit = make_fit(student, data, opt, batch_size, value_weight)
    params, _, losses = fit(params, opt.init(params), jax.random.split(k_train, steps))
    return Distillation(params, losses, held_out(student, params, data))
