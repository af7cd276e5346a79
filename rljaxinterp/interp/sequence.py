"""Reading a sequence model's sites at one token per state: the token a decision is made at.

A trajectory transformer's sites hold every token of the context; a question about "the
current state" concerns one of them, and which one differs per state (contexts have
different lengths). These pick that token out by the site's declared axes (``token`` or
``query``), so probes and attention summaries need no per-model code.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from rljaxinterp.interp.cache import Params, SiteSelection, run_with_cache, trace_sites


def _pick(x: jax.Array, axis: int, positions: jax.Array) -> jax.Array:
    """``x[i, ..., positions[i], ...]`` along ``axis`` (counted after the state axis)."""
    moved = jnp.moveaxis(x, axis + 1, 1)
    return jnp.take_along_axis(moved, positions.reshape(-1, *[1] * (moved.ndim - 1)), axis=1)[:, 0]


def token_features(model, params: Params, obs: jax.Array, positions: jax.Array,
                   sites: SiteSelection = None, chunk: int = 256) -> dict[str, jax.Array]:
    """``{site: (states, features)}``: each site's activation at state i's token
    ``positions[i]`` (the query row of an attention pattern), flattened; sites without a
    token axis (logits, value) whole. For ``probes.fit_probes``. States are run ``chunk``
    at a time: a long context's whole cache (attention patterns) would not fit at once."""
    infos = trace_sites(model, params, obs[:1])
    positions = jnp.asarray(positions, jnp.int32)

    def read(o, p):
        _, cache = run_with_cache(model, params, o, sites)
        out = {}
        for name, x in cache.items():
            axes = infos[name].axes or ()
            axis = next((axes.index(a) for a in ("query", "token") if a in axes), None)
            x = x if axis is None else _pick(x, axis, p)
            out[name] = x.reshape(x.shape[0], -1).astype(jnp.float32)
        return out

    parts = [read(obs[i:i + chunk], positions[i:i + chunk]) for i in range(0, obs.shape[0], chunk)]
    return parts[0] if len(parts) == 1 else {k: jnp.concatenate([p[k] for p in parts]) for k in parts[0]}


def attention_from(model, params: Params, obs: jax.Array, positions: jax.Array,
                   key_mask: jax.Array) -> dict[str, jax.Array]:
    """``{pattern site: (states, heads)}``: the attention each head pays from state i's token
    ``positions[i]`` to the keys where ``key_mask`` (``(tokens,)`` or ``(states, tokens)``)
    is true, e.g. every return-to-go token."""
    infos = trace_sites(model, params, obs[:1])
    names = [n for n, info in infos.items() if info.axes == ("head", "query", "key")]
    if not names:
        raise ValueError(f"model has no attention-pattern site (axes ('head', 'query', 'key')); sites: {list(infos)}")
    _, cache = run_with_cache(model, params, obs, names)
    positions = jnp.asarray(positions, jnp.int32)
    mask = jnp.broadcast_to(jnp.asarray(key_mask, jnp.float32), (obs.shape[0], infos[names[0]].shape[-1]))
    return {n: jnp.einsum("shk,sk->sh", _pick(cache[n], 1, positions), mask) for n in names}


def head_sites(model, obs: jax.Array, params: Params | None = None) -> list[str]:
    """Sites with a ``head`` axis whose heads are the attention outputs (``attn.z``)."""
    return [n for n, info in trace_sites(model, params, obs[:1]).items()
            if info.axes == ("token", "head", "d_head") and n.endswith(".z")]


def positions_of(model, obs: jax.Array, kind: str) -> jax.Array:
    """Per state, the position of token type ``kind`` at its current (last valid) timestep."""
    current = jnp.maximum(jnp.asarray(obs)[..., 0].sum(-1).astype(jnp.int32) - 1, 0)
    return current * len(model.token_types) + model.token_types.index(kind) if kind in model.token_types else \
        model.token_position(0, kind)  # raises, naming the allowed types


def decision_positions(model, obs: jax.Array) -> jax.Array:
    """Per state, the position of the token its move is read from (the one before the current
    ``action`` token, or the current timestep's last token in a model without action tokens)."""
    types = model.token_types
    return positions_of(model, obs, types[types.index("action") - 1] if "action" in types else types[-1])


def kind_mask(model, tokens: int, kinds: Sequence[str]) -> jax.Array:
    """``(tokens,)`` true at every token of the given types."""
    for k in kinds:
        model.token_position(0, k)  # raises, naming the allowed types
    types = [model.token_types[i % len(model.token_types)] for i in range(tokens)]
    return jnp.asarray([t in kinds for t in types])
