"""What every training algorithm here (AlphaZero, PPO, DQN, distillation) shares: policies
over legal actions, the on-device replay ring buffer, building a network's parameters, and
the one cache of compiled training programs.

One fill value for illegal actions everywhere: the most negative finite number of the
logits' dtype. Softmax gives them probability exactly 0, ``p * log p`` stays 0 (``-inf``
would make entropies and KLs NaN), argmax and ``jax.random.categorical`` never pick them
while any action is legal, and a row with no legal action stays finite.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from rljaxinterp.envs import Env
from rljaxinterp.models import make_model
from rljaxinterp.models.base import mask_logits

Params = Any
T = TypeVar("T")

_COMPILED: collections.OrderedDict = collections.OrderedDict()
COMPILED_KEEP = 64  # programs kept; the least recently used goes first


def settings(config: Any) -> dict[str, Any]:
    """``config.to_dict()`` without its labels (dataclass fields declared ``compare=False``,
    e.g. ``AlphaZeroConfig.preset``): the part that determines what a run computes."""
    fields = dataclasses.fields(config) if dataclasses.is_dataclass(config) else ()
    labels = {f.name for f in fields if not f.compare}
    return {k: v for k, v in config.to_dict().items() if k not in labels}


def compiled(kind: str, config: Any, build: Callable[[], T], *extra: Any) -> T:
    """``build()`` once per (kind, config, extra) in a process, so training, resuming and
    reading a run of one config compile its programs once. ``config`` is keyed by its JSON
    form without labels (``settings``); ``extra`` holds anything else the programs depend on
    (devices)."""
    key = (kind, json.dumps(settings(config), sort_keys=True), *extra)
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
    else:
        _COMPILED[key] = build()
        while len(_COMPILED) > COMPILED_KEEP:
            _COMPILED.popitem(last=False)
    return _COMPILED[key]


def epsilon_greedy(greedy: Callable[[Any], jax.Array], epsilon: float) -> Callable[[Any, jax.Array], jax.Array]:
    """A player ``(states, key) -> actions`` making ``greedy(states)``'s move, or with
    probability ``epsilon`` a uniformly random legal one: the positions an agent reaches, with
    enough variety to study (``envs.sampling.random_play_states``)."""
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon={epsilon} must lie in [0, 1]")

    def player(states: Any, key: jax.Array) -> jax.Array:
        k_coin, k_random = jax.random.split(key)
        return epsilon_explore(k_coin, k_random, greedy(states), states.legal_action_mask, epsilon)[0]

    return player


def uniform_legal_action(key: jax.Array, legal: jax.Array) -> jax.Array:
    """A uniformly random legal action for each row of ``legal`` (any batch shape)."""
    return jax.random.categorical(key, mask_logits(jnp.zeros(legal.shape, jnp.float32), legal))


def epsilon_explore(coin_key: jax.Array, random_key: jax.Array, chosen: jax.Array, legal: jax.Array,
                    epsilon: float | jax.Array) -> tuple[jax.Array, jax.Array]:
    """``chosen``, or with probability ``epsilon`` a uniformly random legal action instead.

    Returns ``(action, coin)``; ``coin`` marks the rows that explored (the random action
    may still equal ``chosen``).
    """
    random_action = uniform_legal_action(random_key, legal)
    coin = jax.random.uniform(coin_key, chosen.shape) < epsilon
    return jnp.where(coin, random_action, chosen), coin


def build_model(owner: str, kind: str, model_kwargs: Mapping[str, Any], env: Env, **fixed: Any) -> nn.Module:
    """The model layer's ``kind`` network for ``env`` from a config's JSON-form
    ``model_kwargs`` (lists become tuples) plus ``fixed`` ones; kwargs the model does not
    take are a ``ValueError`` naming ``owner``'s field, like every other bad config value."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in model_kwargs.items()} | fixed
    try:
        return make_model(kind, env.num_actions, env.observation_shape, **kwargs)
    except TypeError as e:
        raise ValueError(f"{owner}.model_kwargs={model_kwargs!r} do not fit model {kind!r}: {e}") from None


def init_params(model: nn.Module, observation_shape: tuple[int, ...], key: jax.Array) -> Params:
    """Fresh parameters of ``model`` for observations of ``observation_shape``."""
    return model.init(key, jnp.zeros((1, *observation_shape), jnp.float32))["params"]


class RingBuffer:
    """Fixed-size replay ring buffer on device, as a mixin for a ``flax.struct`` dataclass.

    The dataclass declares one ``(capacity, ...)`` array per stored quantity, then ``size``
    (rows filled) and ``cursor`` (next row written). Rows are sampled uniformly with
    replacement from the filled ones, so an algorithm's buffer only names its fields.
    """

    size: jax.Array
    cursor: jax.Array

    def _row_fields(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if f.name not in ("size", "cursor")]

    @classmethod
    def empty(cls, capacity: int, **blank_row: jax.Array):
        """``capacity`` copies of ``blank_row``, which fixes each field's shape, dtype and
        the value of rows not yet written."""
        rows = {name: jnp.broadcast_to(v, (capacity, *jnp.shape(v))) for name, v in blank_row.items()}
        return cls(**rows, size=jnp.int32(0), cursor=jnp.int32(0))

    def add(self, **rows: jax.Array):
        """Write a batch of ``n`` rows (one ``(n, ...)`` array per field) after the cursor,
        overwriting the oldest once full."""
        names = self._row_fields()
        if set(rows) != set(names):
            raise ValueError(f"{type(self).__name__}.add needs exactly the fields {names}; got {sorted(rows)}")
        capacity = getattr(self, names[0]).shape[0]
        n = rows[names[0]].shape[0]
        idx = (self.cursor + jnp.arange(n)) % capacity
        return self.replace(
            **{name: getattr(self, name).at[idx].set(rows[name]) for name in names},
            size=jnp.minimum(self.size + n, capacity),
            cursor=(self.cursor + n) % capacity,
        )

    def sample(self, key: jax.Array, n: int):
        """``n`` rows uniformly with replacement, as the same dataclass (``size``/``cursor``
        left as they are)."""
        idx = jax.random.randint(key, (n,), 0, jnp.maximum(self.size, 1))
        return self.replace(**{name: getattr(self, name)[idx] for name in self._row_fields()})
