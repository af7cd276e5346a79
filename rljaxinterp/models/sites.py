"""Named activation sites: the single hook every model calls.

A site is a point of the forward pass with a stable, self-explaining name such as
``"block0.conv1.post"``. At a site the activation is

1. rewritten by the edits the read-only ``interventions`` collection holds for that site
   (elementwise affine maps and linear maps along one axis, applied in order), and then
2. recorded in the ``intermediates`` collection when that collection is mutable.

Interventions are therefore *data* handed to ``Module.apply``; nothing is patched into
the model. With neither collection present a site is the identity, so a model run
without interventions compiles to the same program as the plain Flax model.

The model also says what the activation's axes mean, so interpretability code never has
to guess from names or ranks::

    z = site(self, "z", z, axes=("token", "head", "d_head"))
    h = site(self, "layer0.pre", nn.Dense(64, name="layer0")(x), axes=("unit",), produced_by="layer0")

``axes`` names the trailing axes of ``x``; the leading ones are batch axes. Axis names come
from ``AXIS_KINDS``: position axes (a square, a token), head axes and unit axes (a neuron,
a channel, a coordinate of a vector). ``produced_by`` names the child Dense/Conv module
whose output units are the site's last axis, so a unit can be removed from the weights.
This metadata is only read while ``rljaxinterp.interp.cache.trace_sites`` traces the model
abstractly; it never changes what the model computes.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

CACHE = "intermediates"
INTERVENTIONS = "interventions"

# The axis vocabulary, by what a granularity of the patching sweeps groups over.
AXIS_KINDS: dict[str, tuple[str, ...]] = {
    "position": ("row", "col", "token", "query", "key"),
    "head": ("head",),
    "unit": ("feature", "unit", "channel", "d_head", "d_model", "d_mlp", "action"),
}
AXES: tuple[str, ...] = tuple(a for names in AXIS_KINDS.values() for a in names)

# Keys of one site's entry in the ``interventions`` collection: ``"<order>.affine"`` holds
# ``gain`` and ``bias``; ``"<order>.subspace[.<axis>]"`` holds ``basis`` and ``source``
# (no axis: the last one). The zero-padded order survives pytree flattening, which sorts keys.
AFFINE = "affine"
SUBSPACE = "subspace"


@dataclasses.dataclass(frozen=True)
class SiteInfo:
    """What the model declares about one site, for one traced observation shape.

    ``shape`` excludes the leading ``batch_shape``; ``axes`` is None when the model declared
    none; ``produced_by`` is the full parameter path of the producing layer; ``key`` is the
    site's path in the Flax collections.
    """

    name: str
    key: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: jnp.dtype
    batch_shape: tuple[int, ...] = ()
    axes: tuple[str, ...] | None = None
    produced_by: tuple[str, ...] | None = None

    @property
    def batch_ndim(self) -> int:
        return len(self.batch_shape)

    @property
    def activation_shape(self) -> tuple[int, ...]:
        return (*self.batch_shape, *self.shape)

    def axes_of_kind(self, kind: str) -> tuple[int, ...]:
        """Indices (into ``shape``) of the axes of ``kind`` ("position", "head" or "unit")."""
        if kind not in AXIS_KINDS:
            raise ValueError(f"axis kind {kind!r} is not allowed; use one of {tuple(AXIS_KINDS)}")
        if self.axes is None:
            raise ValueError(
                f"site {self.name!r} (shape {self.shape}) declares no axes, so it has no {kind} axis; "
                f"declare them with site(..., axes=...) using names from {AXES}"
            )
        return tuple(i for i, a in enumerate(self.axes) if a in AXIS_KINDS[kind])

    def axis_index(self, axis: str | None) -> int:
        """Index (into ``shape``) of the named axis; None means the last one."""
        if axis is None:
            if not self.shape:
                raise ValueError(f"site {self.name!r} is a scalar per state; it has no axis to act along")
            return len(self.shape) - 1
        if self.axes is None or axis not in self.axes:
            allowed = "none declared" if self.axes is None else self.axes
            raise ValueError(f"site {self.name!r} has no axis {axis!r}; allowed: {allowed} (or None for the last axis)")
        return self.axes.index(axis)


_RECORDER: contextvars.ContextVar[dict[str, SiteInfo] | None] = contextvars.ContextVar("site_recorder", default=None)


@contextlib.contextmanager
def recording() -> Iterator[dict[str, SiteInfo]]:
    """Collect the ``SiteInfo`` of every site called inside the block, in call order."""
    found: dict[str, SiteInfo] = {}
    token = _RECORDER.set(found)
    try:
        yield found
    finally:
        _RECORDER.reset(token)


def _check_axes(name: str, x: jax.Array, axes: tuple[str, ...]) -> None:
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise ValueError(f"site {name!r}: unknown axis name(s) {unknown}; allowed: {AXES}")
    if len(set(axes)) != len(axes):
        raise ValueError(f"site {name!r}: axis names {axes} repeat a name")
    if len(axes) > x.ndim:
        raise ValueError(f"site {name!r}: {len(axes)} axes {axes} for an activation of shape {x.shape}")


def _subspace(x: jax.Array, axis: int, basis: jax.Array, source: jax.Array) -> jax.Array:
    """``x + B Bᵀ (source - x)`` along ``axis``: swap in the source's component in span(B)."""
    delta = jnp.moveaxis(jnp.broadcast_to(source, x.shape) - x, axis, -1)
    return x + jnp.moveaxis((delta @ basis) @ basis.T, -1, axis)


def _apply(x: jax.Array, name: str, axes: tuple[str, ...] | None, edits: dict) -> jax.Array:
    for key in sorted(edits):
        edit = edits[key]
        kind = key.split(".")[1]
        if kind == AFFINE:
            x = x * edit["gain"] + edit["bias"]
        else:
            axis_name = key.split(".", 2)[2] if key.count(".") >= 2 else None
            if axis_name is None:
                axis = -1
            elif axes is not None and axis_name in axes:
                axis = axes.index(axis_name) - len(axes)
            else:
                raise ValueError(f"site {name!r} has no axis {axis_name!r}; declared axes: {axes}")
            x = _subspace(x, axis, edit["basis"], edit["source"])
    return x


def site(
    module: nn.Module,
    name: str,
    x: jax.Array,
    axes: tuple[str, ...] | None = None,
    produced_by: str | None = None,
) -> jax.Array:
    """Mark ``x`` as the activation site ``<module path>.<name>`` and return it (edited).

    ``axes`` names the trailing axes of ``x`` (the rest are batch axes); ``produced_by`` is
    the child Dense/Conv module whose output units are the last axis.
    """
    if axes is not None:
        axes = tuple(axes)
        _check_axes(name, x, axes)
    recorder = _RECORDER.get()
    if recorder is not None:
        key = (*module.scope.path, name)
        batch_ndim = x.ndim - len(axes) if axes is not None else 0  # undeclared: split by the tracer
        recorder[".".join(key)] = SiteInfo(
            ".".join(key), key, tuple(x.shape[batch_ndim:]), x.dtype, tuple(x.shape[:batch_ndim]), axes,
            (*module.scope.path, produced_by) if produced_by is not None else None,
        )
    if module.has_variable(INTERVENTIONS, name):
        x = _apply(x, name, axes, module.get_variable(INTERVENTIONS, name))
    module.sow(CACHE, name, x, init_fn=lambda: None, reduce_fn=_keep_last)
    return x


def _keep_last(_, new):
    return new
