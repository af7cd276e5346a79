"""Interventions as data: elementwise affine maps and linear maps along a subspace.

An ``Intervention`` at a site says, per element, ``x -> x + mask * (scale * x + shift - x)``:
``mask`` picks the elements (1 = edited, 0 = untouched; fractions interpolate, which is what
attribution patching differentiates), ``scale`` and ``shift`` say how. Patching, zero, mean
and resample ablation, steering and scaling are all choices of ``(mask, scale, shift)``.
Because the three fields are arrays, a batch of interventions is a pytree with a leading
axis: ``jax.vmap`` sweeps it, ``jax.jit`` compiles once per shape, ``jax.grad`` flows
through it. Only the site name is static.

Arrays broadcast NumPy-style against the activation, whose shape is ``batch + site shape``:
a ``(site shape)`` array applies to every state, a ``(batch, site shape)`` array per state.

A ``SubspaceIntervention`` edits along one named axis of a site (``"d_model"``, ``"channel"``,
...): ``x -> x + B Bᵀ (source - x)`` replaces the component of ``x`` in the span of the
orthonormal columns of ``B`` by the source's. Removing a direction (``project_out``),
patching a subspace (``subspace_patch``) and distributed alignment search over a learned
rotation (``rotated_patch``) are choices of ``(B, source)``; the site and axis names are
static, the arrays are pytree leaves like those of ``Intervention``. Both kinds mix freely in
one list; edits at one site apply in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct, traverse_util

from rljaxinterp.interp.cache import Params, trace_sites, variables
from rljaxinterp.models.base import floating
from rljaxinterp.models.sites import AFFINE, CACHE, INTERVENTIONS, SUBSPACE, SiteInfo


@struct.dataclass
class Intervention:
    site: str = struct.field(pytree_node=False)
    mask: jax.Array
    scale: jax.Array
    shift: jax.Array


def _f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def patch(site: str, value: jax.Array, mask: jax.Array = 1.0) -> Intervention:
    """Replace activations by ``value`` (e.g. another run's cached activation)."""
    return Intervention(site, _f32(mask), _f32(0.0), _f32(value))


def zero_ablate(site: str, mask: jax.Array = 1.0) -> Intervention:
    return Intervention(site, _f32(mask), _f32(0.0), _f32(0.0))


def mean_ablate(site: str, activations: jax.Array, mask: jax.Array = 1.0) -> Intervention:
    """Replace by the mean over a reference batch ``activations`` (batch axis first)."""
    return patch(site, jnp.mean(activations, axis=0), mask)


def resample_ablate(site: str, activations: jax.Array, key: jax.Array, mask: jax.Array = 1.0) -> Intervention:
    """Replace each state's activation by that of another state of the same batch, drawn at random."""
    return patch(site, jax.random.permutation(key, activations, axis=0), mask)


def add(site: str, vector: jax.Array, mask: jax.Array = 1.0) -> Intervention:
    """Steering: add ``vector`` (broadcast against the activation)."""
    return Intervention(site, _f32(mask), _f32(1.0), _f32(vector))


def scale(site: str, factor: jax.Array, mask: jax.Array = 1.0) -> Intervention:
    return Intervention(site, _f32(mask), _f32(factor), _f32(0.0))


@struct.dataclass
class SubspaceIntervention:
    """A linear edit along one named axis of a site: ``x -> x + B Bᵀ (source - x)``.

    The columns of ``basis`` (``(axis size, k)``, orthonormal) span a subspace of the
    vectors along ``axis``; the activation's component in that subspace is replaced by the
    source's and the orthogonal complement is kept. ``source = 0`` removes the component
    (projection ablation). ``axis=None`` acts along the site's last axis. Under ``vmap``
    over a batch of interventions each member's basis is ``(axis size, k)``.
    """

    site: str = struct.field(pytree_node=False)
    axis: str | None = struct.field(pytree_node=False)
    basis: jax.Array
    source: jax.Array


def _floating(x) -> jax.Array:
    """At least float32, float64 kept (gradient checks of rotations run in float64)."""
    return floating(x)


def project_out(site: str, direction: jax.Array, axis: str | None = None) -> SubspaceIntervention:
    """Remove the component along ``direction`` (normalised here): ``x - (x·d) d``."""
    d = _floating(direction)
    if d.ndim != 1:
        raise ValueError(f"project_out at site {site!r}: direction has shape {d.shape}; allowed: one vector (n,)")
    return SubspaceIntervention(site, axis, (d / jnp.linalg.norm(d))[:, None], _floating(0.0))


def subspace_patch(site: str, basis: jax.Array, source: jax.Array, axis: str | None = None) -> SubspaceIntervention:
    """Replace the component in span(``basis``) (orthonormal columns) by that of ``source``
    (e.g. another run's cached activation), keeping the orthogonal complement."""
    return SubspaceIntervention(site, axis, _floating(basis), _floating(source))


def rotated_patch(
    site: str, rotation: jax.Array, k: int, source: jax.Array, axis: str | None = None
) -> SubspaceIntervention:
    """Distributed alignment search: patch the first ``k`` coordinates of the rotated basis
    ``rotation`` (orthogonal, ``(n, n)``, columns are the new basis vectors) from ``source``.

    ``x + R_k R_kᵀ (source - x)`` with ``R_k = rotation[:, :k]``; differentiable in ``rotation``,
    which is the parameter DAS learns (e.g. through ``orthogonal``).
    """
    rotation = _floating(rotation)
    if rotation.ndim != 2 or rotation.shape[0] != rotation.shape[1] or not 0 <= k <= rotation.shape[1]:
        raise ValueError(
            f"rotated_patch at site {site!r}: rotation of shape {rotation.shape} with k={k}; allowed: a square "
            f"(n, n) rotation and 0 <= k <= n"
        )
    return SubspaceIntervention(site, axis, rotation[:, :k], _floating(source))


def orthogonal(weights: jax.Array) -> jax.Array:
    """An orthogonal matrix from unconstrained square ``weights`` (Cayley transform of their
    skew-symmetric part), so gradient descent on ``weights`` stays on rotations."""
    w = _floating(weights)
    skew = w - w.T
    eye = jnp.eye(w.shape[0], dtype=w.dtype)
    return jnp.linalg.solve(eye + skew, eye - skew)


AnyIntervention = Intervention | SubspaceIntervention
Interventions = AnyIntervention | Sequence[AnyIntervention]


def _as_list(interventions: Interventions | None) -> list[AnyIntervention]:
    if interventions is None:
        return []
    if isinstance(interventions, (Intervention, SubspaceIntervention)):
        return [interventions]
    items = list(interventions)
    for item in items:
        if not isinstance(item, (Intervention, SubspaceIntervention)):
            raise TypeError(
                f"expected Intervention or SubspaceIntervention objects, got {type(item).__name__}: {item!r}"
            )
    return items


def _check_broadcast(iv: AnyIntervention, field: str, activation_shape: tuple[int, ...], batch_ndim: int) -> None:
    shape = np.shape(getattr(iv, field))
    try:
        ok = np.broadcast_shapes(shape, activation_shape) == activation_shape
    except ValueError:
        ok = False
    if not ok:
        site_shape = activation_shape[batch_ndim:]
        raise ValueError(
            f"intervention at site {iv.site!r}: {field} has shape {shape}, which does not broadcast "
            f"to the activation shape {activation_shape}; allowed: shapes broadcastable to the site "
            f"shape {site_shape} or to batch + site shape {activation_shape}"
        )


def _check_subspace(iv: SubspaceIntervention, info: SiteInfo, activation_shape: tuple[int, ...]) -> None:
    try:
        n = info.shape[info.axis_index(iv.axis)]
    except ValueError as err:
        raise ValueError(f"intervention at site {iv.site!r}: {err}") from None
    shape = np.shape(iv.basis)
    if len(shape) != 2 or shape[0] != n:
        raise ValueError(
            f"intervention at site {iv.site!r}: basis has shape {shape}; allowed: (n, k) with n = {n}, the "
            f"size of axis {iv.axis or 'last'!r} of the site (shape {info.shape}, axes {info.axes})"
        )
    _check_broadcast(iv, "source", activation_shape, info.batch_ndim)


def compile_interventions(
    model: nn.Module, params: Params, obs: jax.Array, interventions: Interventions | None
) -> dict:
    """Validate and lower interventions to the ``interventions`` collection: per site, the
    edits in the order given, consecutive elementwise ones composed into one ``(gain, bias)``."""
    items = _as_list(interventions)
    if not items:
        return {}
    traced = trace_sites(model, params, obs)
    lowered: dict[tuple[str, ...], list[tuple[str, dict[str, jax.Array]]]] = {}
    for iv in items:
        if iv.site not in traced:
            raise KeyError(f"unknown site {iv.site!r}; available sites: {', '.join(traced)}")
        info = traced[iv.site]
        activation_shape = info.activation_shape
        edits = lowered.setdefault(info.key, [])
        if isinstance(iv, SubspaceIntervention):
            _check_subspace(iv, info, activation_shape)
            kind = SUBSPACE if iv.axis is None else f"{SUBSPACE}.{iv.axis}"
            edits.append((kind, {"basis": iv.basis, "source": iv.source}))
            continue
        for field in ("mask", "scale", "shift"):
            _check_broadcast(iv, field, activation_shape, info.batch_ndim)
        gain = 1.0 + iv.mask * (iv.scale - 1.0)
        bias = iv.mask * iv.shift
        if edits and edits[-1][0] == AFFINE:  # compose: later edits act on the already-edited activation
            prev = edits.pop()[1]
            gain, bias = gain * prev["gain"], gain * prev["bias"] + bias
        edits.append((AFFINE, {"gain": gain, "bias": bias}))
    collection = {
        key: {f"{i:03d}.{kind}": arrays for i, (kind, arrays) in enumerate(edits)} for key, edits in lowered.items()
    }
    return traverse_util.unflatten_dict(collection)


def run_with_interventions(
    model: nn.Module, params: Params, obs: jax.Array, interventions: Interventions | None
) -> Any:
    """The model's output with the interventions applied (in order; several per site compose)."""
    collection = compile_interventions(model, params, obs, interventions)
    vs = variables(params)
    if collection:
        vs = {**vs, INTERVENTIONS: collection}
    return model.apply(vs, obs)


def run_with_interventions_and_cache(
    model: nn.Module, params: Params, obs: jax.Array, interventions: Interventions | None
) -> tuple[Any, dict[str, jax.Array]]:
    """Like ``run_with_interventions`` and also returns every (edited) activation."""
    collection = compile_interventions(model, params, obs, interventions)
    vs = variables(params)
    if collection:
        vs = {**vs, INTERVENTIONS: collection}
    out, state = model.apply(vs, obs, mutable=[CACHE])
    flat = traverse_util.flatten_dict(dict(state.get(CACHE, {})))
    return out, {".".join(k): v for k, v in flat.items()}


def stack(interventions: Sequence[AnyIntervention]) -> AnyIntervention:
    """One batched intervention (leading axis) from several of one kind at the same site
    (and axis), for ``vmap``.

    To sweep over different sites at once, give every member of the batch an entry at
    each site and a zero mask where it does nothing.
    """
    items = _as_list(interventions)
    kinds = {(type(iv).__name__, iv.site, getattr(iv, "axis", None)) for iv in items}
    if len(kinds) != 1:
        raise ValueError(f"stack needs interventions of one kind at one site and axis; got {sorted(kinds, key=str)}")

    def stack_field(field: str) -> jax.Array:
        arrays = [getattr(iv, field) for iv in items]
        shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
        return jnp.stack([jnp.broadcast_to(a, shape) for a in arrays])

    first = items[0]
    if isinstance(first, SubspaceIntervention):
        return SubspaceIntervention(first.site, first.axis, stack_field("basis"), stack_field("source"))
    return Intervention(first.site, *(stack_field(f) for f in ("mask", "scale", "shift")))
