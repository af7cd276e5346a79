"""What PPO and DQN share: config checks, building env + network, masking, episode returns.

Kept apart so each training loop (``ppo.py``, ``dqn.py``) stays one file you can read top
to bottom, and both agree on what "a config", "a network" and "a return" mean.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rljaxinterp import envs
from rljaxinterp.envs import Env
from rljaxinterp.models import KINDS, ModelOutput, make_model

MODEL_KINDS = ("auto",) + KINDS


class ConfigMixin:
    """JSON round trip and validation helpers for the frozen PPO/DQN configs.

    ``model_kwargs``/``env_kwargs`` are stored in JSON form (tuples become lists) so a
    config read back from ``config.json`` compares equal to the one that wrote it.
    """

    def _canonicalise(self) -> None:
        for name in ("env_kwargs", "model_kwargs"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ValueError(f"{type(self).__name__}.{name}={value!r} is not allowed; need a dict")
            object.__setattr__(self, name, json.loads(json.dumps(dict(value))))

    def _need(self, ok: bool, name: str, allowed: str) -> None:
        if not ok:
            raise ValueError(f"{type(self).__name__}.{name}={getattr(self, name)!r} is not allowed; {allowed}")

    def _int_at_least(self, name: str, lo: int) -> None:
        v = getattr(self, name)
        self._need(isinstance(v, int) and not isinstance(v, bool) and v >= lo, name,
                   f"need an integer >= {lo}")

    def _number_in(self, name: str, lo: float, hi: float, *, lo_open: bool = False) -> None:
        v = getattr(self, name)
        is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
        ok = is_num and (lo < v if lo_open else lo <= v) and v <= hi
        self._need(ok, name, f"need {lo} {'<' if lo_open else '<='} value <= {hi}")

    def _check_common(self) -> None:
        """env, model, seed, checkpoint_every: the fields every RL config has."""
        names = envs.available()
        self._need(isinstance(self.env, str) and self.env in names, "env",
                   "use a registered single-agent task, e.g. CartPole-v1, Breakout-MinAtar")
        self._need(self.model in MODEL_KINDS, "model", f"allowed: {', '.join(MODEL_KINDS)}")
        self._need(self.model_kwargs.get("value_activation", "none") == "none", "model_kwargs",
                   "value_activation must be 'none' (returns are unbounded)")
        self._int_at_least("seed", 0)
        self._need(self.seed < 2**31, "seed", "need 0 <= seed < 2**31")
        self._int_at_least("checkpoint_every", 1)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


def build_env(name: str, env_kwargs: Mapping[str, Any]) -> Env:
    """The raw (single, non-resetting) environment; loops wrap it in ``AutoReset``."""
    env = envs.make(name, **env_kwargs)
    if env.num_players != 1:
        raise ValueError(f"PPO/DQN need a single-agent task; {name!r} has {env.num_players} players "
                         "(use AlphaZero for two-player games)")
    return env


def resolve_model_kind(kind: str, env: Env) -> str:
    """``auto``: conv for image-like (height, width, planes) observations, mlp otherwise."""
    if kind != "auto":
        return kind
    return "conv" if len(env.observation_shape) == 3 else "mlp"


def build_network(kind: str, model_kwargs: Mapping[str, Any], env: Env) -> nn.Module:
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in model_kwargs.items()}
    kwargs["value_activation"] = "none"
    return make_model(resolve_model_kind(kind, env), env.num_actions, env.observation_shape, **kwargs)


def masked_logits(logits: jax.Array, legal: jax.Array) -> jax.Array:
    """Illegal actions get the most negative finite logit: probability exactly 0, and
    ``p * log p`` stays 0 (``-inf`` would make entropies NaN)."""
    return jnp.where(legal, logits, jnp.finfo(logits.dtype).min)


def track_returns(running: jax.Array, reward: jax.Array, done: jax.Array):
    """Add this step's reward to each env's running return; on ``done`` emit it and restart.

    Returns ``(new_running, finished_returns, done)``: ``finished_returns`` is the
    episode's return where ``done`` and 0 elsewhere.
    """
    total = running + reward
    return jnp.where(done, 0.0, total), jnp.where(done, total, 0.0)


def mean_or_nan(total: jax.Array, count: jax.Array) -> jax.Array:
    """Mean return of finished episodes; NaN (not 0) when none finished, so plots skip it."""
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def evaluate(env: Env, act: Callable[[Any, jax.Array, jax.Array], jax.Array], params: Any,
             key: jax.Array, num_episodes: int = 64, max_steps: int = 10_000) -> jax.Array:
    """Undiscounted return of ``num_episodes`` full episodes (no resets), all run in parallel.

    ``act(params, state, key) -> action`` for one state. ``max_steps`` only bounds the loop;
    tasks have their own time limits. Jittable; returns shape ``(num_episodes,)``.
    """
    k_init, k_run = jax.random.split(key)
    states = jax.vmap(env.init)(jax.random.split(k_init, num_episodes))

    def cond(carry):
        states, _, t, _ = carry
        return (~jnp.all(states.done)) & (t < max_steps)

    def body(carry):
        states, total, t, key = carry
        key, k_act, k_step = jax.random.split(key, 3)
        actions = jax.vmap(act, in_axes=(None, 0, 0))(params, states, jax.random.split(k_act, num_episodes))
        states = jax.vmap(env.step)(states, actions, jax.random.split(k_step, num_episodes))
        return states, total + states.rewards[:, 0], t + 1, key

    zeros = jnp.zeros((num_episodes,), jnp.float32)
    _, total, _, _ = jax.lax.while_loop(cond, body, (states, zeros, jnp.int32(0), k_run))
    return total


def random_return(env: Env, key: jax.Array, num_episodes: int = 64) -> jax.Array:
    """Returns of the uniformly random legal policy: the baseline a learner must beat."""
    def act(_, state, key):
        return jax.random.categorical(key, jnp.where(state.legal_action_mask, 0.0, -jnp.inf))
    return jax.jit(evaluate, static_argnums=(0, 1, 4))(env, act, None, key, num_episodes)


def _same_padding(kh: int, kw: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2)


def _conv(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def loop_friendly_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 SAME convolution of ``(N, H, W, Cin)`` by ``(kh, kw, Cin, Cout)``, no bias.

    Why: inside loops (``lax.scan``, i.e. every jitted training loop here) XLA:CPU runs the
    two *gradient* convolutions ~10-20x slower than outside them (jax-ml/jax#12868; measured
    here: kernel gradient 375 ms in a scan vs 14 ms outside). This VJP computes the kernel
    gradient as one ``(Cin, N*H*W) @ (N*H*W, Cout)`` contraction per kernel tap and the input
    gradient as a forward-shaped convolution with the flipped kernel, neither of which has
    that problem. Same maths as ``nn.Conv``, so a trained agent is read with the plain model.
    End to end it is no cure: PPO on Breakout-MinAtar with a 16-channel tower ran 1,371 env
    steps/s with this and 1,299 with the earlier im2col version (same machine, same minute);
    the forward and input-gradient convolutions in loops are still slow.
    """
    kh, kw = kernel.shape[:2]
    return _conv(x, kernel, _same_padding(kh, kw))


def _loop_conv_fwd(x, kernel):
    return loop_friendly_conv(x, kernel), (x, kernel)


def _loop_conv_bwd(res, g):
    x, kernel = res
    kh, kw = kernel.shape[:2]
    h, w = x.shape[1:3]
    (pt, pb), (pl, pr) = _same_padding(kh, kw)
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    dk = jnp.stack([jnp.stack([jnp.einsum("nhwc,nhwd->cd", xp[:, i:i + h, j:j + w], g)
                               for j in range(kw)]) for i in range(kh)])
    dx = _conv(g, jnp.flip(kernel, (0, 1)).swapaxes(2, 3), ((pb, pt), (pr, pl)))
    return dx, dk.astype(kernel.dtype)


loop_friendly_conv.defvjp(_loop_conv_fwd, _loop_conv_bwd)


def _intercept_conv(next_fun, args, kwargs, context):
    """Route plain stride-1 SAME ``nn.Conv`` calls through :func:`loop_friendly_conv`;
    anything else falls through to ``nn.Conv``."""
    mod = context.module
    if not isinstance(mod, nn.Conv) or context.method_name != "__call__" or mod.is_initializing():
        return next_fun(*args, **kwargs)
    ones = (None, 1, (1, 1), [1, 1])
    if (mod.padding != "SAME" or mod.strides not in ones or mod.input_dilation not in ones
            or mod.kernel_dilation not in ones or mod.feature_group_count != 1 or len(args) != 1 or kwargs):
        return next_fun(*args, **kwargs)
    x = jnp.asarray(args[0], jnp.float32)
    kernel = mod.get_variable("params", "kernel")
    if x.ndim < 3 or x.shape[-1] != kernel.shape[2]:
        return next_fun(*args, **kwargs)
    batch = x.shape[:-3]
    y = loop_friendly_conv(x.reshape(-1, *x.shape[-3:]), kernel)
    y = y.reshape(*batch, *y.shape[1:])
    if mod.use_bias:
        y = y + mod.get_variable("params", "bias")
    return y


def loop_friendly_apply(model: nn.Module, params: Any, observation: jax.Array):
    """``model.apply`` for training loops; see :func:`loop_friendly_conv`."""
    with nn.intercept_methods(_intercept_conv):
        return model.apply({"params": params}, observation)


@dataclasses.dataclass(frozen=True)
class NetworkAgent:
    """What PPO and DQN share: their config, the single (non-resetting) environment, the
    network from the model layer and its optimiser."""

    config: Any
    env: Env
    model: nn.Module
    optimizer: optax.GradientTransformation

    def policy_value(self, params: Any, observation: jax.Array) -> ModelOutput:
        """Raw network on any batch shape (the thing interpretability reads); Q-learning
        agents read ``logits`` as Q-values."""
        return self.model.apply({"params": params}, observation)

    def net(self, params: Any, observation: jax.Array) -> ModelOutput:
        """The same network as run inside training loops (conv gradients rewritten; see
        ``loop_friendly_conv``)."""
        return loop_friendly_apply(self.model, params, observation)
