"""Activation patching sweeps: one patched run per (site, element), vmapped in chunks.

For every element of every chosen site, the activation of the *base* run is replaced by
that of the *source* run at that element only, and a per-state metric is compared with
the unpatched base run. ``direction="noising"`` patches corrupted activations into the
clean run (what breaks behaviour); ``"denoising"`` patches clean into corrupted (what
restores it). Work before the patched site does not depend on the mask, so ``vmap``
computes it once per chunk instead of once per patch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import distributed
from rljaxinterp.interp.cache import Params, SiteSelection, run_with_cache, select_sites, trace_sites
from rljaxinterp.interp.interventions import patch, run_with_interventions
from rljaxinterp.interp.metrics import Metric
from rljaxinterp.interp.results import DEFAULT_SIZING, SiteEffects, Sizing
from rljaxinterp.interp.shards import pad_rows, replicate, shard_states
from rljaxinterp.models.sites import AXIS_KINDS, SiteInfo

DIRECTIONS = ("noising", "denoising")
GRANULARITIES = ("element", "unit", "position", "head", "site")



def group_axes(info: SiteInfo, granularity: str) -> tuple[int, ...]:
    """Indices (into the site shape) of the axes one patch group is indexed by: every axis
    for ``"element"``, none for ``"site"`` (the whole site is one patch: with per-state masks,
    "patch exactly these squares in each state"), else the site's axes of that kind as its
    model declares them (none: the whole site is one group; ``"head"`` refuses sites without
    a head axis)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity={granularity!r} is not allowed; use one of {GRANULARITIES}")
    if granularity == "site":
        return ()
    if granularity == "element" or not info.shape:
        return tuple(range(len(info.shape)))
    if info.axes is None:
        raise ValueError(
            f"granularity={granularity!r} needs the axes of site {info.name!r} (shape {info.shape}), which its "
            f"model does not declare; declare them with site(..., axes=...) or use granularity='element'"
        )
    axes = info.axes_of_kind(granularity)
    if granularity == "head" and not axes:
        raise ValueError(
            f"granularity='head' needs an attention site with a head axis; site {info.name!r} has axes "
            f"{info.axes}; allowed: sites with an axis in {AXIS_KINDS['head']}"
        )
    return axes


def has_heads(info: SiteInfo) -> bool:
    return info.axes is not None and bool(info.axes_of_kind("head"))


def group_mask(shape: tuple[int, ...], axes: tuple[int, ...], i: int | jax.Array) -> jax.Array:
    """Mask of group ``i`` (flat index over ``axes``): 1 on that index, every other axis whole."""
    sizes = tuple(shape[a] for a in axes)
    one = jax.nn.one_hot(i, max(1, math.prod(sizes))).reshape(sizes)
    kept = [shape[a] if a in axes else 1 for a in range(len(shape))]
    return jnp.broadcast_to(one.reshape(kept), shape)


# Activation elements (of the patched site) that one vectorised step of a sweep touches.
# Measured on CPU (benchmarks/patching_vs_torch.py): a 3x3 conv over 6x7 boards runs about
# 2-4x slower per patch once a step's activations leave the cache (32 patches x 200 states
# at once), so the default keeps a step cache-sized: few states (a tile) x few patches.
# Accelerators want wide steps instead, bounded only by memory.
STEP_BUDGET = 2**18
ACCELERATOR_STEP_BUDGET = 2**24


def _budget() -> int:
    return STEP_BUDGET if jax.default_backend() == "cpu" else ACCELERATOR_STEP_BUDGET


def _tile(n_states: int, elements: int, budget: int | None = None) -> int:
    """States per tile: equal tiles of at most ``budget // elements`` states (at least 1),
    so padding wastes less than one state per tile."""
    n_tiles = -(-n_states * max(1, elements) // (budget or _budget()))
    return -(-n_states // max(1, n_tiles))


def _chunk(n_groups: int, elements_per_patch: int, budget: int | None = None) -> int:
    """Patches run together: the largest divisor of ``n_groups`` within the budget, so
    ``lax.map`` needs no separately compiled remainder."""
    limit = max(1, min(n_groups, (budget or _budget()) // max(1, elements_per_patch)))
    return max(d for d in range(1, limit + 1) if n_groups % d == 0)


def base_and_source(clean_obs: jax.Array, corrupted_obs: jax.Array, direction: str) -> tuple[jax.Array, jax.Array]:
    """(the run that is patched, the run that activations are taken from)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} is not allowed; use one of {DIRECTIONS}")
    if clean_obs.shape != corrupted_obs.shape:
        raise ValueError(
            f"clean and corrupted observations must have the same shape; got {clean_obs.shape} "
            f"and {corrupted_obs.shape}"
        )
    return (clean_obs, corrupted_obs) if direction == "noising" else (corrupted_obs, clean_obs)


def patch_sources(
    model: nn.Module, params: Params, clean_obs: jax.Array, corrupted_obs: jax.Array, sites: SiteSelection,
    direction: str,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(base observations, {site: source activation})``: what every patching method
    starts from."""
    base_obs, source_obs = base_and_source(clean_obs, corrupted_obs, direction)
    _, source_cache = run_with_cache(model, params, source_obs)
    return base_obs, {n: source_cache[n] for n in select_sites(source_cache, sites)}


def patching_sweep(
    model: nn.Module,
    params: Params,
    clean_obs: jax.Array,
    corrupted_obs: jax.Array,
    metric: Metric,
    sites: SiteSelection = None,
    direction: str = "noising",
    granularity: str = "element",
    reduce: bool = True,
    metric_data: Any = None,
    sizing: Sizing = DEFAULT_SIZING,
    state_masks: Mapping[str, Any] | None = None,
) -> SiteEffects:
    """Effect of patching each element of each site: ``metric(patched) - metric(base)``.

    Returns ``{site: effect}`` with the effect shaped like the site (``granularity="element"``)
    or by the site's axes of one kind, as its model declares them (``models.sites.AXIS_KINDS``):
    ``"unit"`` (neuron / channel, at every position), ``"position"`` (square / token, all its
    units) or ``"head"`` (one whole attention head at a time; with ``sites=None`` it sweeps
    every site with a head axis), averaged over states
    when ``reduce`` (else with a trailing state axis); ``sizing`` bounds the work in flight
    (see ``sweep_sources``). ``metric`` maps a model output to one
    number per state; a metric returning a dict of such arrays is swept in the same pass
    and gives ``{site: {metric name: effect}}``. Per-state inputs go with the states, never in
    the metric's closure: ``metric_data`` (its second argument) and ``state_masks`` (per site,
    ``(states, ...)`` broadcastable to the site, multiplying every patch's mask, e.g. the
    squares of each state's threat), both chunked with the states.
    """
    if granularity == "head" and sites is None:
        sites = [n for n, info in trace_sites(model, params, clean_obs[:1]).items() if has_heads(info)]
    base_obs, sources = patch_sources(model, params, clean_obs, corrupted_obs, sites, direction)
    return sweep_sources(model, params, base_obs, sources, metric, granularity, reduce, metric_data, sizing,
                         state_masks)


def gap_shares(
    model: nn.Module,
    params: Params,
    clean_obs: jax.Array,
    corrupted_obs: jax.Array,
    metric: Metric,
    sites: SiteSelection = None,
    granularity: str = "element",
    metric_data: Any = None,
) -> tuple[dict[str, np.ndarray], float, float]:
    """How much of the clean-minus-corrupted gap each component carries: the drop in the mean
    metric when that component alone is patched from the corrupted run, over the whole gap
    (1 = patching it alone closes the gap; 0 = it carries none of it).

    Returns ``(shares, clean, corrupted)``: ``{site: share}`` shaped as ``patching_sweep``
    gives effects, and the two mean metrics the shares are relative to.
    """
    def mean_metric(obs: jax.Array) -> float:
        out = model.apply({"params": params}, obs)
        return float(jnp.mean(metric(out) if metric_data is None else metric(out, metric_data)))

    clean, corrupted = mean_metric(clean_obs), mean_metric(corrupted_obs)
    if not abs(clean - corrupted) > 1e-9 * max(1.0, abs(clean)):
        raise ValueError(f"the clean and corrupted runs give the same mean metric ({clean:.6g} vs {corrupted:.6g}): "
                         "there is no gap to share; pick inputs or a metric that differ")
    effects = patching_sweep(model, params, clean_obs, corrupted_obs, metric, sites=sites, granularity=granularity,
                             metric_data=metric_data)
    return {k: -np.asarray(v) / (clean - corrupted) for k, v in effects.items()}, clean, corrupted


def sweep_sources(
    model: nn.Module,
    params: Params,
    base_obs: jax.Array,
    sources: dict[str, jax.Array],
    metric: Metric,
    granularity: str = "element",
    reduce: bool = True,
    metric_data: Any = None,
    sizing: Sizing = DEFAULT_SIZING,
    state_masks: Mapping[str, Any] | None = None,
) -> SiteEffects:
    """The sweep itself: set each element (group) of each site in ``sources`` to the given
    value (broadcast against batch + site shape) in the base run, one patch at a time.

    Three sizes bound the work in flight. ``sizing.states_per_call`` states go to each jitted
    call (all by default), sharded over the available devices, so device memory is bounded by
    the chunk, not the data. Inside the call, ``lax.map`` walks over tiles of
    ``sizing.states_per_step`` states and, per tile, over groups of ``sizing.patches_per_step``
    patches run together with ``vmap``;
    the defaults keep one step's activations cache-sized (``STEP_BUDGET``), which is what
    makes CPU sweeps fast (``ACCELERATOR_STEP_BUDGET`` on GPU/TPU), and the work before the
    patched site is shared by every patch of a tile. A metric that needs per-state data (reference logits, legal masks) takes it as
    a second argument from ``metric_data``, a pytree with a leading state axis that is
    chunked with the states; ``state_masks`` restrict each site's patches per state (see
    ``patching_sweep``).
    """
    n_total = base_obs.shape[0]
    state_chunk = min(sizing.states_per_call or n_total, n_total)
    infos = trace_sites(model, params, base_obs[:1])
    for name in sources:
        if name not in infos:
            raise KeyError(f"unknown site {name!r}; available sites: {', '.join(infos)}")
    state_masks = _check_state_masks(state_masks, sources, infos, n_total)
    _check_metric_data(metric_data, n_total)
    params = replicate(params)  # next to the sharded states, wherever the parameters were put
    effects = {}
    for name, value in sources.items():
        shape = infos[name].shape
        axes = group_axes(infos[name], granularity)
        group_shape = tuple(shape[a] for a in axes)
        n_groups = max(1, math.prod(group_shape))
        elements = max(1, math.prod(shape))
        tile = min(sizing.states_per_step or _tile(state_chunk, elements), state_chunk)
        # Whole shards of whole tiles; pad to whole chunks (one compilation per site) and
        # weight the padding rows by zero.
        step = tile * jax.device_count()
        chunk_len = -(-state_chunk // step) * step
        n_chunks = -(-n_total // chunk_len)
        padded = n_chunks * chunk_len
        pad = functools.partial(pad_rows, rows=padded)
        valid = (jnp.arange(padded) < n_total).astype(jnp.float32)
        value = pad(jnp.broadcast_to(value, (n_total, *shape)))
        # None when not given: the default sweep keeps its exact program (no extra multiply or array)
        state_mask = (pad(jnp.broadcast_to(state_masks[name], (n_total, *shape)).astype(jnp.float32))
                      if name in state_masks else None)
        batch = sizing.patches_per_step or _chunk(n_groups, tile * elements)
        sweep = functools.partial(_sweep_chunk, params, model=static_arg(model), metric=static_arg(metric), name=name,
                                  shape=tuple(shape), axes=tuple(axes), batch=batch, tile=tile, reduce=reduce)
        parts = []
        for c in range(n_chunks):
            rows = slice(c * chunk_len, (c + 1) * chunk_len)
            data = jax.tree.map(lambda x, pad=pad, rows=rows: shard_states(pad(x)[rows]), metric_data)
            try:
                # host_local: with several processes, every process gets the whole result
                parts.append(distributed.host_local(sweep(
                    shard_states(pad(base_obs)[rows]), shard_states(value[rows]), shard_states(valid[rows]), data,
                    None if state_mask is None else shard_states(state_mask[rows]))))
            except (TypeError, ValueError) as err:
                if "shapes" not in str(err) or (n_chunks == 1 and tile == n_total):
                    raise
                raise _captured_per_state_data(err, n_total, chunk_len, tile) from err
        if reduce:
            result = jax.tree.map(lambda *p: sum(p) / n_total, *parts)
        else:
            result = jax.tree.map(lambda *p: jnp.concatenate(p, axis=1)[:, :n_total], *parts)
        effects[name] = jax.tree.map(lambda r, g=group_shape: r.reshape(*g, *r.shape[1:]), result)
    return SiteEffects(effects, granularity)


class _ByIdentity:
    """A static argument that cannot be hashed (a module with a list field, a metric object),
    compared by identity: the same object reuses its compiled sweep, as ``jax.jit`` does for
    functions. Like any static argument, it stays alive in the compilation cache; per-state
    data belong in ``metric_data``, not in a metric's closure."""

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _ByIdentity) and other.obj is self.obj


def static_arg(x):
    """``x`` as a ``jax.jit`` static argument: itself when hashable, else compared by identity."""
    try:
        hash(x)
    except TypeError:
        return _ByIdentity(x)
    return x


def from_static_arg(x):
    return x.obj if isinstance(x, _ByIdentity) else x


@functools.partial(jax.jit, static_argnames=("model", "metric", "name", "shape", "axes", "batch", "tile", "reduce"))
def _sweep_chunk(params, obs, value, weight, data, state_mask, *, model, metric, name, shape, axes, batch, tile,
                 reduce):
    """One chunk of ``sweep_sources``: the parameters are an argument, so every call with the
    same model, metric, site and sizes (other checkpoints, seeds, chunks) reuses one program."""
    model, metric = map(from_static_arg, (model, metric))
    n_groups = max(1, math.prod(shape[a] for a in axes))

    def per_tile(xs):
        obs, value, weight, data, state_mask = xs
        run = lambda iv: run_with_interventions(model, params, obs, iv)
        metric_of = metric if data is None else (lambda out: metric(out, data))
        base_metric = metric_of(run(None))

        def one(i):
            mask = group_mask(shape, axes, i)
            edited = run(patch(name, value, mask if state_mask is None else mask * state_mask))
            delta = jax.tree.map(jnp.subtract, metric_of(edited), base_metric)
            return jax.tree.map(lambda d: (d * weight).sum() if reduce else d, delta)

        return jax.lax.map(one, jnp.arange(n_groups), batch_size=batch)

    tiles = jax.tree.map(lambda x: x.reshape(-1, tile, *x.shape[1:]), (obs, value, weight, data, state_mask))
    per = jax.lax.map(per_tile, tiles)  # (tiles, groups) or (tiles, groups, tile)
    if reduce:
        return jax.tree.map(lambda r: r.sum(0), per)
    return jax.tree.map(lambda r: jnp.moveaxis(r, 0, 1).reshape(n_groups, -1), per)


def _check_state_masks(state_masks, sources, infos, n_total) -> dict[str, jax.Array]:
    if state_masks is None:
        return {}
    unknown = [k for k in state_masks if k not in sources]
    if unknown:
        raise KeyError(f"state_masks for site(s) {unknown} that are not swept; swept sites: {', '.join(sources)}")
    out = {}
    for name, mask in state_masks.items():
        mask = jnp.asarray(mask, jnp.float32)
        full = (n_total, *infos[name].shape)
        try:
            ok = mask.ndim >= 1 and mask.shape[0] == n_total and np.broadcast_shapes(mask.shape, full) == full
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"state_masks[{name!r}] has shape {mask.shape}; allowed: one mask per state, "
                             f"(states, ...) broadcastable to {full} (states = {n_total})")
        out[name] = mask
    return out


def _check_metric_data(metric_data, n_total) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(metric_data):
        if np.ndim(leaf) < 1 or np.shape(leaf)[0] != n_total:
            raise ValueError(f"metric_data{jax.tree_util.keystr(path)} has shape {np.shape(leaf)}; every leaf of "
                             f"metric_data needs a leading state axis of {n_total} (one row per state)")


def _captured_per_state_data(err: Exception, n_total: int, chunk: int, tile: int) -> ValueError:
    """The error for a metric that closes over per-state arrays: it works while the sweep
    sees every state at once and breaks as soon as it walks them in chunks or tiles."""
    return ValueError(
        f"the metric failed on a chunk of the {n_total} states ({type(err).__name__}: {str(err).splitlines()[0]}); "
        f"the sweep evaluates it on {chunk} states per call in tiles of {tile}, so per-state arrays (actions, "
        "reference logits, legal masks) must not be captured in the metric: pass them as "
        "metric_data=<pytree with a leading state axis> and take them as the metric's second argument, "
        "metric(output, data)")
