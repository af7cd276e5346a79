"""Sparse autoencoders: a grid of dictionaries over several sites, trained in one program.

An SAE reads one site's activation vector ``x`` (the site's last axis; every other axis,
batch and positions alike, is a row) in normalised units ``u = x / scale`` and writes

    f = σ((u - b_dec) W_enc + b_enc)        x̂ = scale · (f W_dec + b_dec)

with σ one of four sparsifiers (``KINDS``): ``relu`` (an L1 penalty on ``f``), ``topk`` (the k
largest pre-activations, Gao et al. 2024), ``batchtopk`` (the k·batch largest over a batch
while training and a learned global threshold afterwards, Bussmann et al. 2024) and
``jumprelu`` (a learned per-feature threshold trained through straight-through estimators of
its L0 penalty, Rajamanoharan et al. 2024). Decoder rows are kept at unit norm (gradient along
them removed, rows renormalised after each step); latents dead for ``dead_window`` steps learn
to explain the residual through the AuxK loss of Gao et al.; ``W_enc`` starts as ``W_decᵀ`` and
``b_dec`` at the data mean.

``fit_saes`` trains every (site, kind, width, sparsity) member of a grid at once: members of a
kind are padded to the widest site and dictionary and stacked, so one jitted ``lax.scan`` over
steps of a ``vmap`` over members trains them all. Rows stay where the caller keeps them (NumPy
arrays or memory-mapped ``.npy`` files): each chunk of steps copies only its sampled batches to
the device, so memory does not grow with the number of rows.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import zlib
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rljaxinterp import distributed
from rljaxinterp.interp import shards

KINDS = ("relu", "topk", "batchtopk", "jumprelu")
# What ``sparsity`` means per kind, and a grid a first look can start from.
SPARSITY_MEANING = {"relu": "L1 coefficient", "topk": "k", "batchtopk": "k", "jumprelu": "L0 coefficient"}
DEFAULT_SPARSITIES = {"relu": (0.3, 1.0, 3.0, 10.0), "topk": (4, 8, 16, 32), "batchtopk": (4, 8, 16, 32),
                      "jumprelu": (0.03, 0.1, 0.3, 1.0)}


@dataclasses.dataclass(frozen=True)
class SAEConfig:
    """Training settings shared by every member of a grid (units are the normalised ``u``)."""

    steps: int = 2000
    batch_size: int = 1024
    learning_rate: float = 4e-4
    aux_coefficient: float | None = None  # AuxK weight; None: 1/32 for topk/batchtopk, 0 otherwise
    dead_window: int = 250  # steps without firing after which a latent counts as dead
    jumprelu_threshold: float = 0.1  # initial θ
    jumprelu_bandwidth: float = 0.05  # width ε of the rectangle kernel of the straight-through estimators
    threshold_momentum: float = 0.99  # batchtopk: EMA of the smallest kept activation
    steps_per_chunk: int = 100  # steps per jitted call (progress and batch transfer granularity)
    seed: int = 0

    def validate(self) -> None:
        for name in ("steps", "batch_size", "dead_window", "steps_per_chunk"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"SAEConfig.{name}={v!r} is not allowed; need an integer >= 1")
        for name in ("learning_rate", "jumprelu_threshold", "jumprelu_bandwidth"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"SAEConfig.{name}={v!r} is not allowed; need a finite number > 0")
        if self.aux_coefficient is not None and not self.aux_coefficient >= 0:
            raise ValueError(f"SAEConfig.aux_coefficient={self.aux_coefficient!r}; need None or a number >= 0")
        if not 0 <= self.threshold_momentum < 1:
            raise ValueError(f"SAEConfig.threshold_momentum={self.threshold_momentum!r}; need 0 <= m < 1")


@struct.dataclass
class SAE:
    """One trained dictionary for one site. ``threshold`` is JumpReLU's per-feature θ, or
    BatchTopK's global inference threshold (every entry equal); unused by relu and topk."""

    w_enc: jax.Array  # (d, m)
    b_enc: jax.Array  # (m,)
    w_dec: jax.Array  # (m, d), unit-norm rows
    b_dec: jax.Array  # (d,)
    threshold: jax.Array  # (m,)
    scale: jax.Array  # () input normalisation: u = x / scale
    site: str = struct.field(pytree_node=False)
    kind: str = struct.field(pytree_node=False)
    k: int = struct.field(pytree_node=False, default=0)

    @property
    def width(self) -> int:
        return self.w_enc.shape[1]

    @property
    def d_in(self) -> int:
        return self.w_enc.shape[0]

    def _check(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x, jnp.float32)
        if x.shape[-1:] != (self.d_in,):
            raise ValueError(f"SAE for site {self.site!r} reads vectors of size {self.d_in} on the last axis; "
                             f"got an array of shape {x.shape}")
        return x

    def encode(self, x: jax.Array) -> jax.Array:
        """Feature activations ``(..., m)`` of activations ``(..., d)``."""
        u = self._check(x) / self.scale
        pre = (u - self.b_dec) @ self.w_enc + self.b_enc
        return _sparsify(self.kind, pre, self.threshold, self.k, jnp.ones(self.width, bool))

    def decode(self, features: jax.Array) -> jax.Array:
        return (features @ self.w_dec + self.b_dec) * self.scale

    def reconstruct(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))

    def direction(self, feature: int | jax.Array) -> jax.Array:
        """Feature ``feature``'s decoder row in the site's own units: the vector its unit of
        activation adds to the reconstruction (a steering vector)."""
        return self.w_dec[feature] * self.scale


@dataclasses.dataclass(frozen=True)
class Member:
    site: str
    kind: str
    width: int
    sparsity: float

    @property
    def label(self) -> str:
        return f"{self.site} {self.kind} m={self.width} {SPARSITY_MEANING[self.kind].split()[0]}={self.sparsity:g}"


@dataclasses.dataclass(frozen=True)
class SAEGrid:
    """Every trained member with its SAE (unpadded) and its loss curve (one entry per chunk)."""

    members: tuple[Member, ...]
    saes: tuple[SAE, ...]
    history: tuple[dict[str, np.ndarray], ...]
    config: SAEConfig

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, i: int) -> SAE:
        return self.saes[i]

    def select(self, site: str | None = None, kind: str | None = None, width: int | None = None) -> list[int]:
        """Indices of the members matching every given field."""
        return [i for i, m in enumerate(self.members)
                if (site is None or m.site == site) and (kind is None or m.kind == kind)
                and (width is None or m.width == width)]


# -- the sparsifiers --------------------------------------------------------------------------
def _rectangle(x: jax.Array) -> jax.Array:
    return (jnp.abs(x) < 0.5).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _jump(pre: jax.Array, threshold: jax.Array, bandwidth: float) -> jax.Array:
    """``pre · H(pre - θ)``; d/dθ by the rectangle-kernel estimator ``-(θ/ε) K((pre - θ)/ε)``."""
    return pre * (pre > threshold)


def _jump_fwd(pre, threshold, bandwidth):
    return _jump(pre, threshold, bandwidth), (pre, threshold)


def _jump_bwd(bandwidth, res, g):
    pre, threshold = res
    d_theta = -(threshold / bandwidth) * _rectangle((pre - threshold) / bandwidth) * g
    return (pre > threshold) * g, jnp.sum(d_theta.reshape(-1, pre.shape[-1]), 0).reshape(threshold.shape)


_jump.defvjp(_jump_fwd, _jump_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _step(pre: jax.Array, threshold: jax.Array, bandwidth: float) -> jax.Array:
    """``H(pre - θ)``, the L0 count; d/dθ by ``-(1/ε) K((pre - θ)/ε)``, nothing to ``pre``."""
    return (pre > threshold).astype(pre.dtype)


def _step_fwd(pre, threshold, bandwidth):
    return _step(pre, threshold, bandwidth), (pre, threshold)


def _step_bwd(bandwidth, res, g):
    pre, threshold = res
    d_theta = -(1.0 / bandwidth) * _rectangle((pre - threshold) / bandwidth) * g
    return jnp.zeros_like(pre), jnp.sum(d_theta.reshape(-1, pre.shape[-1]), 0).reshape(threshold.shape)


_step.defvjp(_step_fwd, _step_bwd)


def _sortable(x: jax.Array) -> jax.Array:
    """float32 -> uint32 keys in the same order (sign bit flipped for positives, all bits for
    negatives), so the k-th largest can be found by bisection on integers."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    return jnp.where(bits >> 31 == 0, bits | jnp.uint32(0x80000000), ~bits)


def _top_mask(values: jax.Array, k: jax.Array, block: int = 8) -> jax.Array:
    """Where ``values`` is among the ``k`` largest along the last axis (ties at the k-th value
    kept), ``k`` traced. An exact radix select: 32 halvings of the key range, each one compare
    and count, several times cheaper than ``lax.top_k`` on CPU and free of a static k. Rows go
    through in blocks of ``block`` so the 32 passes stay in cache."""
    rows = math.prod(values.shape[:-1])
    if values.ndim >= 2 and rows > block and rows % block == 0:
        blocks = values.reshape(rows // block, block, values.shape[-1])
        return jax.lax.map(lambda v: _top_mask(v, k, block), blocks).reshape(values.shape)
    key = _sortable(values)
    lo = jnp.zeros((*values.shape[:-1], 1), jnp.uint32)
    hi = jnp.full((*values.shape[:-1], 1), 0xFFFFFFFF, jnp.uint32)

    def halve(_, bounds):  # invariant: the k-th largest key lies in [lo, hi]
        lo, hi = bounds
        mid = lo + (hi - lo) // 2 + (hi - lo) % 2
        enough = jnp.sum(key >= mid, -1, keepdims=True) >= k
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid - 1)

    lo, _ = jax.lax.fori_loop(0, 32, halve, (lo, hi))
    return key >= lo


def _sparsify(kind, pre, threshold, k, latent_mask, *, training=False, bandwidth=0.05):
    """Feature activations from pre-activations; padded latents (``latent_mask`` 0) stay 0."""
    pre = jnp.where(latent_mask, pre, -jnp.inf)
    positive = jnp.where(latent_mask, jax.nn.relu(pre), 0.0)
    if kind == "relu":
        return positive
    if kind == "topk":
        return positive * _top_mask(pre, k)
    if kind == "batchtopk":
        if training:  # the k·batch largest of the whole batch
            rows = positive.size // pre.shape[-1]
            return positive * _top_mask(positive.reshape(-1), k * rows).reshape(positive.shape) * (positive > 0)
        return positive * (pre > threshold)
    if kind == "jumprelu":
        safe = jnp.where(latent_mask, pre, 0.0)
        return jnp.where(latent_mask, _jump(safe, threshold, bandwidth), 0.0)
    raise ValueError(f"unknown SAE kind {kind!r}; allowed: {KINDS}")


# -- the grid program -------------------------------------------------------------------------
def _member_sparsity(kind: str, sparsity: float, width: int, site: str) -> float:
    if not (isinstance(sparsity, (int, float)) and math.isfinite(sparsity) and sparsity > 0):
        raise ValueError(f"sparsity {sparsity!r} for kind {kind!r} is not allowed; need a finite number > 0 "
                         f"({SPARSITY_MEANING[kind]})")
    if kind in ("topk", "batchtopk"):
        if int(sparsity) != sparsity:
            raise ValueError(f"k={sparsity!r} for kind {kind!r} must be a whole number")
        if sparsity > width:
            raise ValueError(f"k={int(sparsity)} is larger than the dictionary (width {width}) for site {site!r}; "
                             f"allowed: 1 <= k <= width")
    return float(sparsity)


def _init_member(key, d, m, d_max, m_max, mean_u, config):
    """Drawn at the member's own size, then padded: a member starts where it would alone."""
    w = jax.random.normal(key, (m, d))
    w_dec = jnp.pad(w / jnp.linalg.norm(w, axis=1, keepdims=True), ((0, m_max - m), (0, d_max - d)))
    return {"w_enc": w_dec.T, "b_enc": jnp.zeros(m_max), "w_dec": w_dec, "b_dec": mean_u,
            "log_threshold": jnp.full(m_max, math.log(config.jumprelu_threshold)),  # jumprelu's θ
            "threshold": jnp.zeros(m_max)}  # batchtopk's inference threshold, an EMA outside the gradient


def _loss(p, u, spec, kind, config, aux_coefficient):
    """Normalised-unit loss of one member on one batch ``u`` (batch, d_max)."""
    latent_mask, dims, sparsity, k, dead = spec["latent_mask"], spec["dims"], spec["sparsity"], spec["k"], spec["dead"]
    pre = (u - p["b_dec"]) @ p["w_enc"] + p["b_enc"]
    threshold = jnp.exp(p["log_threshold"]) if kind == "jumprelu" else p["threshold"]
    f = _sparsify(kind, pre, threshold, k, latent_mask, training=True, bandwidth=config.jumprelu_bandwidth)
    u_hat = (f @ p["w_dec"] + p["b_dec"]) * dims
    mse = jnp.mean(jnp.sum((u_hat - u) ** 2, -1))
    loss = mse
    if kind == "relu":  # decoder rows have unit norm, so the L1 needs no decoder-norm weight
        loss = loss + sparsity * jnp.mean(jnp.sum(f, -1))
    elif kind == "jumprelu":
        safe = jnp.where(latent_mask, pre, 0.0)
        l0 = jnp.where(latent_mask, _step(safe, threshold, config.jumprelu_bandwidth), 0.0)
        loss = loss + sparsity * jnp.mean(jnp.sum(l0, -1))
    if aux_coefficient > 0:  # AuxK: dead latents reconstruct what the live ones miss
        residual = jax.lax.stop_gradient(u - u_hat)
        dead_pre = jnp.where(dead & latent_mask, pre, -jnp.inf)
        f_aux = jnp.where(_top_mask(dead_pre, spec["k_aux"]), jax.nn.relu(jnp.where(dead & latent_mask, pre, 0.0)), 0.0)
        e_hat = (f_aux @ p["w_dec"]) * dims
        total = jnp.sum((residual - residual.mean(0)) ** 2)
        aux = jnp.sum((e_hat - residual) ** 2) / jnp.maximum(total, 1e-12)
        loss = loss + aux_coefficient * jnp.where(jnp.any(dead & latent_mask), aux, 0.0)
    return loss, (mse, jnp.sum(f > 0, -1).mean(), f)


def _constrain_decoder(w_dec: jax.Array) -> jax.Array:
    return w_dec / jnp.maximum(jnp.linalg.norm(w_dec, axis=1, keepdims=True), 1e-12)


def _member_step(p, o, spec, since, u_sites, *, kind, config, aux_coefficient, optimizer):
    """One Adam step of one member; ``u_sites`` is (sites, batch, d_max)."""
    u = u_sites[spec["site_index"]]
    spec = {**spec, "dead": since > config.dead_window}
    (loss, (mse, l0, f)), g = jax.value_and_grad(_loss, has_aux=True)(p, u, spec, kind, config, aux_coefficient)
    g_dec = g["w_dec"]  # keep the decoder rows' norm: drop the gradient along them
    g = {**g, "w_dec": g_dec - jnp.sum(g_dec * p["w_dec"], 1, keepdims=True) * p["w_dec"]}
    updates, o = optimizer.update(g, o, p)
    p = optax.apply_updates(p, updates)
    p = {**p, "w_dec": _constrain_decoder(p["w_dec"]) * spec["dims"]}
    since = jnp.where(jnp.any(f > 0, 0), 0, since + 1)
    if kind == "batchtopk":  # inference threshold: EMA of the smallest activation kept
        smallest = jnp.min(jnp.where(f > 0, f, jnp.inf))
        smallest = jnp.where(jnp.isfinite(smallest), smallest, p["threshold"][0])
        m = config.threshold_momentum
        p = {**p, "threshold": jnp.full_like(p["threshold"], m * p["threshold"][0] + (1 - m) * smallest)}
    return p, o, since, jnp.stack([loss, mse, l0])


@functools.partial(jax.jit, static_argnames=("kind", "config", "aux_coefficient"))
def _run_chunk(carry, batches, *, kind: str, config: SAEConfig, aux_coefficient: float):
    """``len(batches)`` steps of every member: a scan over steps of a vmap over members,
    compiled once per kind, settings and shapes (seed and step count are not part of it).
    AuxK's extra selection and matmul run only on steps where some member has a dead latent:
    elsewhere its term is exactly zero, so skipping it changes nothing."""
    optimizer = optax.adam(config.learning_rate)

    def step(carry, u_sites):
        params, opt_state, specs, since = carry

        def members(aux):
            one = functools.partial(_member_step, u_sites=u_sites, kind=kind, config=config, aux_coefficient=aux,
                                    optimizer=optimizer)
            return jax.vmap(one)(params, opt_state, specs, since)

        if aux_coefficient > 0:
            any_dead = jnp.any((since > config.dead_window) & specs["latent_mask"])
            out = jax.lax.cond(any_dead, lambda: members(aux_coefficient), lambda: members(0.0))
        else:
            out = members(0.0)
        params, opt_state, since, stats = out
        return (params, opt_state, specs, since), stats

    return jax.lax.scan(step, carry, batches)


def _as_rows(site: str, x) -> np.ndarray | np.memmap:
    if not hasattr(x, "shape") or len(x.shape) != 2:
        raise ValueError(f"activations of site {site!r} must be a (rows, features) array; got shape "
                         f"{getattr(x, 'shape', None)}. Use site_rows(...) to flatten positions into rows")
    if x.shape[0] < 2:
        raise ValueError(f"activations of site {site!r} hold {x.shape[0]} row(s); an SAE needs at least 2")
    return x


def _draw_rows(x, rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` training rows drawn uniformly with replacement, or by ``x.draw_rows`` where
    the rows' holder samples better itself (``store.StoreRows``: a few chunks from disk)."""
    if hasattr(x, "draw_rows"):
        return np.asarray(x.draw_rows(rng, count), np.float32)
    idx = rng.integers(0, x.shape[0], size=count)
    order = np.argsort(idx, kind="stable")  # sorted reads are cheap on memory-mapped files
    rows = np.empty((idx.size, x.shape[1]), np.float32)
    rows[order] = np.asarray(x[idx[order]], np.float32)
    return rows


def _site_rng(seed: int, purpose: str, site: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{purpose}|{site}".encode())])


def _sample_stats(site: str, x, rng: np.random.Generator, rows: int = 8192) -> tuple[float, np.ndarray]:
    """Normalisation scale (mean squared norm of ``u`` = d) and mean of ``u`` from a sample."""
    idx = np.sort(rng.choice(x.shape[0], min(rows, x.shape[0]), replace=False))
    sample = np.asarray(x[idx], np.float64)
    scale = math.sqrt(float(np.mean(np.sum(sample**2, 1))) / sample.shape[1])
    if scale == 0:
        raise ValueError(f"activations of site {site!r} are all zero in a sample of {len(idx)} rows")
    return scale, (sample / scale).mean(0)


def _check_finite_all(site: str, x, chunk: int = 1 << 16) -> None:
    for start in range(0, x.shape[0], chunk):
        if not np.all(np.isfinite(np.asarray(x[start:start + chunk]))):
            raise ValueError(f"activations of site {site!r} contain non-finite values (NaN or inf) in rows "
                             f"{start}..{min(x.shape[0], start + chunk) - 1}; an SAE needs finite activations")


def _check_batch_splits(batch_size: int) -> None:
    """Every device must hold an equal slice of a batch: padding one would change its mean loss."""
    devices = jax.device_count()
    if batch_size % devices:
        where = f"{devices} devices" + (f" of {jax.process_count()} processes" if jax.process_count() > 1 else "")
        raise ValueError(f"SAEConfig.batch_size={batch_size} does not split evenly over the {where}; data-parallel "
                         f"SAE training needs a batch size that is a multiple of {devices} (e.g. "
                         f"{-(-batch_size // devices) * devices})")


def fit_saes(
    activations: Mapping[str, np.ndarray],
    kinds: str | Sequence[str] = "topk",
    widths: int | Sequence[int] = 64,
    sparsities: float | Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    config: SAEConfig = SAEConfig(),
    progress: bool = True,
) -> SAEGrid:
    """Train one SAE per (site, kind, width, sparsity), all members of a kind in one program.

    ``activations``: site name -> ``(rows, d)`` array (NumPy, or ``np.load(..., mmap_mode="r")``
    for rows on disk; see ``site_rows``; or ``store.ActivationStore.rows(site)``). ``sparsities``: per member its kind's sparsity
    setting (``SPARSITY_MEANING``), one list for every kind or a dict by kind; None: the
    kind's ``DEFAULT_SPARSITIES``. Same config and seed, same result, bit for bit.

    With several devices (of one process or of several, ``rljaxinterp launch``) training is
    data-parallel: the members are replicated, every batch is split over the devices
    (``config.batch_size`` must be a multiple of their number) and every process draws the
    same batches, so each must be given the same rows (``site_rows`` gathers them).
    """
    config.validate()
    _check_batch_splits(config.batch_size)
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    widths = [widths] if isinstance(widths, int) else list(widths)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown SAE kind(s) {bad or kinds}; allowed: {KINDS}")
    if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths={widths!r}; need integers >= 1")
    if not activations:
        raise ValueError("no activations given; pass {site name: (rows, d) array}")
    data = {site: _as_rows(site, x) for site, x in activations.items()}
    for site, x in data.items():
        _check_finite_all(site, x)
    stats = {site: _sample_stats(site, x, _site_rng(config.seed, "stats", site)) for site, x in data.items()}
    sites = list(data)
    d_max = max(x.shape[1] for x in data.values())

    members: list[Member] = []
    saes: list[SAE] = []
    history: list[dict[str, np.ndarray]] = []
    for kind in kinds:
        if sparsities is None:
            kind_sparsities = DEFAULT_SPARSITIES[kind]
        elif isinstance(sparsities, Mapping):
            if kind not in sparsities:
                raise ValueError(f"sparsities has no entry for kind {kind!r}; given for {list(sparsities)}")
            kind_sparsities = sparsities[kind]
        else:
            kind_sparsities = [sparsities] if isinstance(sparsities, (int, float)) else sparsities
        grid = [Member(site, kind, w, _member_sparsity(kind, s, w, site))
                for site, w, s in itertools.product(sites, widths, kind_sparsities)]
        params, curves = _fit_kind(grid, data, stats, sites, d_max, config, progress)
        for i, member in enumerate(grid):
            members.append(member)
            saes.append(_unpad(params, i, member, data[member.site].shape[1], stats[member.site][0]))
            history.append({name: curve[:, i] for name, curve in curves.items()})
    return SAEGrid(tuple(members), tuple(saes), tuple(history), config)


def _specs(grid, data, sites, d_max, m_max):
    return {
        "site_index": jnp.array([sites.index(m.site) for m in grid]),
        "dims": jnp.stack([(jnp.arange(d_max) < data[m.site].shape[1]).astype(jnp.float32) for m in grid]),
        "latent_mask": jnp.stack([jnp.arange(m_max) < m.width for m in grid]),
        "sparsity": jnp.array([m.sparsity for m in grid], jnp.float32),
        "k": jnp.array([int(m.sparsity) if m.kind in ("topk", "batchtopk") else 0 for m in grid]),
        "k_aux": jnp.array([_k_aux(data[m.site].shape[1], m.width) for m in grid]),
    }


def _k_aux(d: int, width: int) -> int:
    """Latents AuxK may use: half the input size (Gao et al.), at most the dictionary."""
    return max(1, min(d // 2, width))


def _fit_kind(grid, data, stats, sites, d_max, config, progress):
    kind = grid[0].kind
    m_max = max(m.width for m in grid)
    aux_coefficient = config.aux_coefficient
    if aux_coefficient is None:
        aux_coefficient = 1 / 32 if kind in ("topk", "batchtopk") else 0.0
    specs = _specs(grid, data, sites, d_max, m_max)
    keys = [jax.random.fold_in(jax.random.key(config.seed), zlib.crc32(repr(m).encode())) for m in grid]
    means = jnp.stack([jnp.pad(jnp.asarray(stats[m.site][1], jnp.float32), (0, d_max - data[m.site].shape[1]))
                       for m in grid])
    params = _init_all(grid, keys, data, d_max, m_max, means, config)
    opt_state = jax.vmap(optax.adam(config.learning_rate).init)(params)
    since = jnp.zeros((len(grid), m_max), jnp.int32)
    program = dataclasses.replace(config, steps=1, seed=0, steps_per_chunk=1)  # what the compiled step depends on
    run_chunk = functools.partial(_run_chunk, kind=kind, config=program, aux_coefficient=float(aux_coefficient))
    carry = shards.replicate((params, opt_state, specs, since))  # several devices: every one holds the members
    scales = [stats[s][0] for s in sites]
    rngs = [_site_rng(config.seed, kind, s) for s in sites]  # a member sees the same batches in any grid
    curves = []
    from rljaxinterp.runs.progress import Progress  # a bar on a terminal, a few lines in a log

    bar = Progress(f"SAEs {kind} x{len(grid)}", config.steps, 0, config.steps_per_chunk, enabled=progress)
    done = 0
    while done < config.steps:
        n = min(config.steps_per_chunk, config.steps - done)
        batches = np.zeros((n, len(sites), config.batch_size, d_max), np.float32)
        for j, site in enumerate(sites):
            x = data[site]
            rows = _draw_rows(x, rngs[j], n * config.batch_size)
            batches[:, j, :, : x.shape[1]] = rows.reshape(n, config.batch_size, -1) / scales[j]
        # Data-parallel over several devices (or processes): each holds a slice of every batch
        # and the jitted step sums the members' gradients over the slices.
        batches = jnp.asarray(batches) if jax.device_count() == 1 else shards.shard_states(batches, axis=2)
        carry, chunk_stats = run_chunk(carry, batches)
        curves.append(np.asarray(distributed.host_local(chunk_stats)).mean(0))  # (members, 3)
        done += n
        mse = float(np.mean(curves[-1][:, 1]))
        line = f"SAEs {kind} x{len(grid)} step {done}/{config.steps} mean mse {mse:.3g}"
        bar.update(n, done, f"mse {mse:.3g}", lambda line=line: line)
    bar.close()
    curves = np.stack(curves)  # (chunks, members, 3)
    names = ("loss", "mse", "l0")
    return distributed.host_local(carry[0]), {name: curves[:, :, i] for i, name in enumerate(names)}


def _init_all(grid, keys, data, d_max, m_max, means, config):
    inits = [_init_member(key, data[m.site].shape[1], m.width, d_max, m_max, mean, config)
             for key, m, mean in zip(keys, grid, means)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *inits)


def _unpad(params, i, member: Member, d: int, scale: float) -> SAE:
    p = jax.tree.map(lambda x: np.asarray(x[i]), params)
    m = member.width
    if member.kind == "jumprelu":
        threshold = np.exp(p["log_threshold"][:m])
    else:
        threshold = p["threshold"][:m]
    return SAE(w_enc=jnp.asarray(p["w_enc"][:d, :m]), b_enc=jnp.asarray(p["b_enc"][:m]),
               w_dec=jnp.asarray(p["w_dec"][:m, :d]), b_dec=jnp.asarray(p["b_dec"][:d]),
               threshold=jnp.asarray(threshold), scale=jnp.asarray(scale, jnp.float32), site=member.site,
               kind=member.kind, k=int(member.sparsity) if member.kind in ("topk", "batchtopk") else 0)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _site_cache(model, sites: tuple[str, ...], params, obs):  # params traced: one compile for many networks
    from rljaxinterp.interp.cache import run_with_cache

    return run_with_cache(model, params, obs, list(sites))[1]


def site_rows(model, params, obs: jax.Array, sites: Sequence[str], states_per_call: int = 2048) -> dict[str, np.ndarray]:
    """Each site's activations as SAE rows ``(rows, d)``: the site's last axis is the feature
    axis, every other axis (states, squares, tokens) a row, computed ``states_per_call`` states
    at a time so only the rows themselves are held (in host memory). With several devices each
    chunk's states are sharded over all of them (``shards.map_states``) and every process
    holds all the rows."""
    sites = list(sites)
    try:
        hash(model)
        cached = functools.partial(_site_cache, model, tuple(sites))
        run, shared = (lambda o, p: cached(p, o)), (params,)
    except TypeError:  # a model with unhashable fields (lists from a JSON config): compile per call site
        from rljaxinterp.interp.cache import run_with_cache

        run, shared = jax.jit(lambda o: run_with_cache(model, params, o, sites)[1]), ()
    parts: dict[str, list[np.ndarray]] = {s: [] for s in sites}
    for start in range(0, obs.shape[0], states_per_call):
        # several devices (or processes): each chunk's states sharded over all of them
        cache = shards.map_states(run, obs[start:start + states_per_call], *shared)
        for s in sites:
            a = np.asarray(cache[s], np.float32)
            parts[s].append(a.reshape(-1, a.shape[-1]))
    return {s: np.concatenate(p) for s, p in parts.items()}


# -- metrics ----------------------------------------------------------------------------------
@jax.jit
def _row_stats(sae: SAE, x: jax.Array) -> dict[str, jax.Array]:
    f = sae.encode(x)
    x_hat = sae.decode(f)
    return {"sq_error": jnp.sum((x - x_hat) ** 2), "active": jnp.sum(f > 0), "fires": jnp.sum(f > 0, 0),
            "sum": jnp.sum(x, 0), "sq": jnp.sum(x**2)}


def evaluate_saes(grid: SAEGrid, activations: Mapping[str, np.ndarray], rows_per_call: int = 8192,
                  dense_above: float = 0.1) -> list[dict]:
    """Per member, on the given rows: ``l0`` (mean active features per row), ``fve`` (fraction
    of variance explained, 1 - SSE / total sum of squares about the mean), ``mse`` (per row),
    ``dead`` (features that never fire), ``dense`` (features firing on more than
    ``dense_above`` of the rows) and ``frequency`` (per feature, the share of rows it fires on)."""
    results = []
    for member, sae in zip(grid.members, grid.saes):
        if member.site not in activations:
            raise KeyError(f"no activations for site {member.site!r}; given: {', '.join(activations)}")
        x = activations[member.site]
        total: dict[str, np.ndarray] = {}
        for start in range(0, x.shape[0], rows_per_call):
            rows = jnp.asarray(x[start:start + rows_per_call], jnp.float32)
            part = jax.device_get(_row_stats(sae.replace(site=""), rows))  # one compile per shape, not per site
            total = {k: total.get(k, 0) + np.asarray(v, np.float64) for k, v in part.items()}
        n = x.shape[0]
        variance = total["sq"] - np.sum(total["sum"] ** 2) / n
        frequency = total["fires"] / n
        results.append({"l0": float(total["active"] / n), "fve": float(1 - total["sq_error"] / variance),
                        "mse": float(total["sq_error"] / n), "dead": int(np.sum(frequency == 0)),
                        "dense": int(np.sum(frequency > dense_above)), "frequency": frequency})
    return results


# -- SAEs as interventions --------------------------------------------------------------------
def _on_site(sae: SAE, activations: jax.Array) -> jax.Array:
    a = jnp.asarray(activations, jnp.float32)
    if a.shape[-1] != sae.d_in:
        raise ValueError(f"SAE for site {sae.site!r} reads vectors of size {sae.d_in}; the activations given "
                         f"have shape {a.shape}")
    return a


def splice(sae: SAE, activations: jax.Array):
    """The intervention that replaces the site by the SAE's reconstruction of ``activations``
    (the clean run's own activation at the site, batch first): upstream of the site nothing
    changes, so this is exactly the model with the SAE spliced in."""
    from rljaxinterp.interp.interventions import patch

    return patch(sae.site, sae.reconstruct(_on_site(sae, activations)))


def _feature_mask(sae: SAE, features: Sequence[int] | jax.Array) -> jax.Array:
    idx = np.asarray(features, np.int64).reshape(-1)
    bad = idx[(idx < 0) | (idx >= sae.width)]
    if bad.size:
        raise ValueError(f"feature(s) {bad.tolist()} do not exist; the SAE for site {sae.site!r} has features "
                         f"0..{sae.width - 1}")
    return jnp.zeros(sae.width).at[idx].set(1.0)


def ablate_features(sae: SAE, activations: jax.Array, features: Sequence[int] | jax.Array):
    """Remove features from the site: ``x - Σ_i f_i(x) d_i`` (the SAE's error term is kept)."""
    from rljaxinterp.interp.interventions import patch

    a = _on_site(sae, activations)
    return patch(sae.site, a - ((sae.encode(a) * _feature_mask(sae, features)) @ sae.w_dec) * sae.scale)


def patch_features(sae: SAE, base: jax.Array, source: jax.Array, features: Sequence[int] | jax.Array):
    """Swap the chosen features' activations from ``source`` into ``base`` (per state, same
    shapes), everything else of ``base`` kept: ``x + Σ_i (f_i(source) - f_i(x)) d_i``."""
    from rljaxinterp.interp.interventions import patch

    base, source = _on_site(sae, base), _on_site(sae, source)
    if base.shape != source.shape:
        raise ValueError(f"base and source activations must have one shape; got {base.shape} and {source.shape}")
    delta = (sae.encode(source) - sae.encode(base)) * _feature_mask(sae, features)
    return patch(sae.site, base + (delta @ sae.w_dec) * sae.scale)


def feature_patching_sweep(model, params, base_obs: jax.Array, source_obs: jax.Array, metric, sae: SAE,
                           features: Sequence[int] | None = None, features_per_step: int = 16) -> jax.Array:
    """Per feature, the mean change of ``metric`` when that one feature is patched from the
    source run into the base run (a patching sweep at feature granularity), ``(features,)``."""
    from rljaxinterp.interp.cache import run_with_cache
    from rljaxinterp.interp.interventions import patch, run_with_interventions

    if features is not None:
        _feature_mask(sae, features)
    features = jnp.arange(sae.width) if features is None else jnp.asarray(features, jnp.int32)
    out, base_cache = run_with_cache(model, params, base_obs, [sae.site])
    _, source_cache = run_with_cache(model, params, source_obs, [sae.site])
    base, source = base_cache[sae.site], source_cache[sae.site]
    f_base, f_source = sae.encode(base), sae.encode(source)
    reference = jnp.mean(metric(out))

    def one(i):
        delta = (f_source[..., i] - f_base[..., i])[..., None] * sae.direction(i)
        return jnp.mean(metric(run_with_interventions(model, params, base_obs, patch(sae.site, base + delta))))

    return jax.jit(lambda fs: jax.lax.map(one, fs, batch_size=features_per_step))(features) - reference


def splice_cost(model, params, obs: jax.Array, grid: SAEGrid, members: Sequence[int] | None = None,
                legal_mask: jax.Array | None = None) -> list[dict]:
    """What splicing each SAE in costs the agent, per member: ``policy_kl`` (KL from the clean
    policy, legal moves only when ``legal_mask`` is given), ``value_mse``, ``greedy_changed``
    (share of states whose greedy action changes) and, for scale, ``policy_kl_mean_ablation``
    (the same KL when the site is replaced by its mean) with ``kl_recovered = 1 - KL / that``.
    Members at one site run as one vmapped batch of patch interventions."""
    from rljaxinterp.interp.cache import run_with_cache
    from rljaxinterp.interp.interventions import patch, run_with_interventions
    from rljaxinterp.interp.metrics import log_policy, policy_kl

    members = list(range(len(grid))) if members is None else list(members)
    by_site: dict[str, list[int]] = {}
    for i in members:
        by_site.setdefault(grid.members[i].site, []).append(i)
    results: dict[int, dict] = {}
    for site, idx in by_site.items():
        clean, cache = run_with_cache(model, params, obs, [site])
        acts = cache[site]
        ref = log_policy(clean.logits, legal_mask)
        values = jnp.stack([grid[i].reconstruct(acts) for i in idx] + [jnp.broadcast_to(acts.mean(0), acts.shape)])
        outs = jax.jit(jax.vmap(lambda v, site=site: run_with_interventions(model, params, obs, patch(site, v))))(values)
        kl = np.asarray(jnp.mean(policy_kl(clean.logits, legal_mask)(outs), -1))
        mse = np.asarray(jnp.mean((outs.value - clean.value) ** 2, -1))
        changed = np.asarray(jnp.mean(jnp.argmax(log_policy(outs.logits, legal_mask), -1) != jnp.argmax(ref, -1), -1))
        for j, i in enumerate(idx):
            results[i] = {"policy_kl": float(kl[j]), "value_mse": float(mse[j]), "greedy_changed": float(changed[j]),
                          "policy_kl_mean_ablation": float(kl[-1]),
                          "kl_recovered": float(1 - kl[j] / kl[-1]) if kl[-1] > 0 else float("nan")}
    return [results[i] for i in members]
