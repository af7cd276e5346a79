"""Activations of millions of states on disk, and consumers that stream them in batches.

``write_store`` runs a model over states from any source (an array, or a generator of
batches such as ``random_play_batches``), keeps the named sites ``run_with_cache`` would
return, and writes them with the states' labels (concepts) as chunked zarr arrays through
tensorstore (already installed as orbax's dependency). Memory holds a few batches, never the
whole cache, so 1M states cost what 100k cost.

A store is written into a hidden sibling folder and renamed into place only after every
array and then ``manifest.json`` is written: a crash leaves no folder under the store's
name (a killed process leaves only a ``.NAME.partial-*`` folder, which reading refuses since
it holds no manifest). Writes are not resumable; an existing path is never overwritten.

``ActivationStore.batches`` reads rows back in a deterministic order (optionally shuffled by
seed: chunk order permuted, rows permuted within each window of chunks, since a full random
permutation would read every chunk per batch). The consumers keep only sufficient statistics:
``ridge_probe`` (X^T X, X^T y in float64; the closed form of ``probes.fit_probes``),
``linear_cka`` (the three cross-products), ``online_nmf`` (Mairal et al.'s accumulated
statistics), and ``ActivationStore.rows`` feeds ``sae.fit_saes`` minibatches from disk.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.interp.cache import Params, run_with_cache, select_sites, site_info

FORMAT = "rljaxinterp.activation_store/1"
MANIFEST = "manifest.json"


def _context():
    """No tensorstore cache: memory must not grow with what has been read or written."""
    import tensorstore as ts

    return ts.Context({"cache_pool": {"total_bytes_limit": 0}, "data_copy_concurrency": {"limit": 2}})


def _spec(folder: Path, dtype: np.dtype, row_shape: tuple[int, ...], chunk: int, compress: bool) -> dict:
    compressor = {"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": 1} if compress else None
    return {"driver": "zarr", "kvstore": {"driver": "file", "path": str(folder)},
            "metadata": {"dtype": np.dtype(dtype).str, "shape": [0, *row_shape], "chunks": [chunk, *row_shape],
                         "compressor": compressor, "fill_value": None}}


class _Column:
    """One on-disk array filled row-batch by row-batch in whole chunks (a partial chunk
    would be read back and rewritten); at most one write per column in flight."""

    def __init__(self, folder: Path, dtype, row_shape, chunk: int, compress: bool, context):
        import tensorstore as ts

        self.arr = ts.open(_spec(folder, dtype, tuple(row_shape), chunk, compress), create=True,
                           context=context).result()
        self.dtype, self.row_shape, self.chunk = np.dtype(dtype), tuple(row_shape), chunk
        self.pending: list[np.ndarray] = []
        self.buffered = self.written = self.capacity = 0
        self.future = None

    def append(self, rows: np.ndarray, final: bool = False) -> None:
        if len(rows):
            self.pending.append(rows)
            self.buffered += len(rows)
        whole = self.buffered if final else self.buffered // self.chunk * self.chunk
        if whole == 0:
            return
        block = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        rest = block[whole:]
        self.pending, self.buffered = ([rest] if len(rest) else []), len(rest)
        self.wait()
        stop = self.written + whole
        if stop > self.capacity:  # metadata-only growth; shrunk to the exact count at the end
            self.capacity = max(stop, 2 * self.capacity)
            self.arr = self.arr.resize(exclusive_max=[self.capacity, *self.row_shape],
                                       resize_metadata_only=True).result()
        self.future = self.arr[self.written:stop].write(np.ascontiguousarray(block[:whole]))
        self.written = stop

    def wait(self) -> None:
        if self.future is not None:
            self.future.result()
            self.future = None

    def close(self) -> int:
        self.append(np.empty((0, *self.row_shape), self.dtype), final=True)
        self.wait()
        self.arr.resize(exclusive_max=[self.written, *self.row_shape], resize_metadata_only=True).result()
        return self.written


def _items(source, labels) -> Iterator[tuple[np.ndarray, dict]]:
    """``(observations, {label: values})`` pairs from an array (with ``labels`` beside it)
    or from an iterable of arrays / ``(observations, labels)`` pairs."""
    if hasattr(source, "shape"):
        yield source, dict(labels or {})
        return
    if labels is not None:
        raise ValueError("labels= goes with an array source; a generator yields (observations, labels) pairs")
    for item in source:
        yield (item[0], dict(item[1])) if isinstance(item, tuple) else (item, {})


@functools.lru_cache(maxsize=8)
def _cached_forward(model, sites: tuple[str, ...]):
    return jax.jit(lambda p, o: run_with_cache(model, p, o, list(sites))[1])


def _forward(model, sites: tuple[str, ...]):
    """One compiled forward pass per (model, sites), reused across stores; a model with
    unhashable fields (lists from a JSON config) compiles per store instead."""
    try:
        hash(model)
    except TypeError:
        return _cached_forward.__wrapped__(model, sites)
    return _cached_forward(model, sites)


def write_store(
    path: str | os.PathLike,
    model,
    params: Params,
    source,
    sites: str | Sequence[str],
    *,
    labels: Mapping[str, np.ndarray] | None = None,
    states_per_call: int = 2048,
    chunk_states: int = 1024,
    compress: bool = True,
    attrs: Mapping | None = None,
) -> ActivationStore:
    """Cache ``sites`` of ``model`` over every state of ``source`` into a new store at ``path``.

    ``source``: an observation array (``labels``: name -> per-state values beside it) or any
    iterable of observation batches or ``(observations, {name: values})`` pairs, of any sizes
    (re-batched to ``states_per_call`` for one compiled forward pass; the last call is
    zero-padded and trimmed). ``attrs``: JSON-able notes kept in the manifest (env, model,
    checkpoint). Refuses an existing ``path``; an exception leaves nothing under ``path``.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; an activation store is never overwritten (choose a new "
                              "path or delete it first)")
    if states_per_call < 1 or chunk_states < 1:
        raise ValueError(f"states_per_call={states_per_call} and chunk_states={chunk_states} must be >= 1")
    items = _items(source, labels)
    try:
        first = next(items)
    except StopIteration:
        raise ValueError("the source yielded no states; a store needs at least one") from None
    items = itertools.chain([first], items)
    example = np.asarray(first[0])
    info = site_info(model, jnp.asarray(example[:1]), params)
    chosen = tuple(select_sites(info, [sites] if isinstance(sites, str) else sites))  # KeyError names them
    if not chosen:
        raise ValueError("no sites chosen; name at least one")
    forward = _forward(model, chosen)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        manifest = _write(tmp, forward, params, items, chosen, info, example, states_per_call, chunk_states,
                          compress)
        manifest["attrs"] = dict(attrs or {})
        (tmp / f"{MANIFEST}.tmp").write_text(json.dumps(manifest, indent=1))
        os.replace(tmp / f"{MANIFEST}.tmp", tmp / MANIFEST)  # the manifest last: it marks the arrays complete
        if path.exists():
            raise FileExistsError(f"{path} appeared while the store was being written; not overwriting it")
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ActivationStore(path)


def _write(tmp, forward, params, items, sites, info, example, per_call, chunk, compress) -> dict:
    context = _context()
    obs_shape, obs_dtype = example.shape[1:], example.dtype
    columns: dict[str, _Column] = {}
    label_columns: dict[str, _Column] = {}
    label_names: list[str] | None = None
    pending: list[np.ndarray] = []
    buffered = 0

    def run(block: np.ndarray) -> None:
        n = len(block)
        if n < per_call:
            block = np.concatenate([block, np.zeros((per_call - n, *obs_shape), obs_dtype)])
        cache = jax.device_get(forward(params, jnp.asarray(block)))
        for s in sites:
            a = np.asarray(cache[s])[:n]
            if s not in columns:
                columns[s] = _Column(tmp / "sites" / str(len(columns)), a.dtype, a.shape[1:], chunk, compress, context)
            columns[s].append(a)

    for obs, lab in items:
        obs = np.asarray(obs)
        if obs.shape[1:] != obs_shape:
            raise ValueError(f"observations of shape {obs.shape[1:]} after batches of {obs_shape}; every batch "
                             "must hold states of one shape")
        if label_names is None:
            label_names = list(lab)
        if list(lab) != label_names:
            raise ValueError(f"labels {list(lab)} after batches labelled {label_names}; every batch needs the same")
        for name, values in lab.items():
            values = np.asarray(values)
            if values.shape[:1] != obs.shape[:1]:
                raise ValueError(f"label {name!r} has {values.shape[:1]} rows for {len(obs)} states")
            if name not in label_columns:
                label_columns[name] = _Column(tmp / "labels" / str(len(label_columns)), values.dtype,
                                              values.shape[1:], chunk, compress, context)
            label_columns[name].append(values.astype(label_columns[name].dtype, copy=False))
        pending.append(obs)
        buffered += len(obs)
        while buffered >= per_call:
            block = np.concatenate(pending)
            run(block[:per_call])
            pending, buffered = [block[per_call:]], buffered - per_call
    if buffered:
        run(np.concatenate(pending))
    counts = {name: c.close() for name, c in {**columns, **label_columns}.items()}
    n = counts.get(sites[0], 0)
    if n == 0:
        raise ValueError("the source yielded no states; a store needs at least one")
    if any(v != n for v in counts.values()):
        raise ValueError(f"arrays hold different numbers of states: {counts}")
    return {
        "format": FORMAT, "states": n, "chunk_states": chunk,
        "observation": {"shape": list(obs_shape), "dtype": np.dtype(obs_dtype).str},
        "sites": {s: {"dir": f"sites/{i}", "shape": list(columns[s].row_shape), "dtype": columns[s].dtype.str,
                      "axes": None if info[s].axes is None else list(info[s].axes)} for i, s in enumerate(sites)},
        "labels": {name: {"dir": f"labels/{i}", "shape": list(c.row_shape), "dtype": c.dtype.str}
                   for i, (name, c) in enumerate(label_columns.items())},
    }


@dataclasses.dataclass(frozen=True)
class Batch:
    """Rows ``index`` (positions in the store) of every requested site and label."""

    index: np.ndarray
    sites: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]


class ActivationStore:
    """A complete store on disk (``write_store`` made it); reads never load it whole."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{self.path} is not a complete activation store (no {MANIFEST}); an "
                                    "interrupted write leaves only a hidden '.NAME.partial-*' folder, safe to delete")
        self.manifest = json.loads(manifest.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{self.path}: format {self.manifest.get('format')!r}; this version reads {FORMAT!r}")
        self.states = int(self.manifest["states"])
        self.chunk_states = int(self.manifest["chunk_states"])
        self.attrs = self.manifest.get("attrs", {})
        self._context = _context()
        self._open: dict[str, object] = {}

    def __len__(self) -> int:
        return self.states

    @property
    def sites(self) -> dict[str, tuple[int, ...]]:
        """Site name -> shape of one state's activation, in forward order."""
        return {s: tuple(m["shape"]) for s, m in self.manifest["sites"].items()}

    @property
    def labels(self) -> dict[str, tuple[int, ...]]:
        return {s: tuple(m["shape"]) for s, m in self.manifest["labels"].items()}

    def _array(self, kind: str, name: str):
        entries = self.manifest[kind]
        if name not in entries:
            raise KeyError(f"no {kind[:-1]} {name!r} in {self.path}; stored {kind}: {', '.join(entries) or 'none'}")
        key = f"{kind}/{name}"
        if key not in self._open:
            import tensorstore as ts

            spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(self.path / entries[name]["dir"])}}
            self._open[key] = ts.open(spec, open=True, read=True, context=self._context).result()
        return self._open[key]

    def read(self, name: str, start: int = 0, stop: int | None = None, kind: str = "sites") -> np.ndarray:
        """Rows ``start:stop`` of one site (or label, ``kind="labels"``) as a NumPy array."""
        return self._array(kind, name)[start:self.states if stop is None else stop].read().result()

    def batches(
        self,
        batch_size: int = 4096,
        sites: str | Sequence[str] | None = None,
        labels: str | Sequence[str] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        window: int = 8,
    ) -> Iterator[Batch]:
        """Every row once, in batches of ``batch_size`` (the last may be smaller), in store
        order; with ``shuffle``, chunk order permuted and rows permuted within each window of
        ``window`` chunks, both from ``seed``. ``sites``/``labels``: names (None: all). Memory:
        two windows (one being read ahead) and a batch."""
        site_names = self._names("sites", sites)
        label_names = self._names("labels", labels)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        reads = [("sites", s) for s in site_names] + [("labels", s) for s in label_names]
        chunk = self.chunk_states
        starts = np.arange(0, self.states, chunk)
        rng = np.random.default_rng(seed) if shuffle else None
        if shuffle:
            starts = starts[rng.permutation(len(starts))]
        else:
            window = -(-batch_size // chunk)  # in order: read one batch's chunks at a time
        groups = [starts[i:i + window] for i in range(0, len(starts), window)]

        def issue(group):  # reads started now, so the next window loads while a batch is used
            return [[self._array(k, n)[int(s):int(min(s + chunk, self.states))].read() for s in group]
                    for k, n in reads], group

        def collect(issued):
            futures, group = issued
            index = np.concatenate([np.arange(s, min(s + chunk, self.states)) for s in group])
            arrays = [np.concatenate([f.result() for f in fs]) for fs in futures]
            if shuffle:
                perm = rng.permutation(len(index))
                index, arrays = index[perm], [a[perm] for a in arrays]
            return index, arrays

        carry_index, carry = np.empty(0, np.int64), None
        ahead = issue(groups[0]) if groups else None
        for g in range(len(groups)):
            index, arrays = collect(ahead)
            ahead = issue(groups[g + 1]) if g + 1 < len(groups) else None
            if carry is not None and len(carry_index):
                index = np.concatenate([carry_index, index])
                arrays = [np.concatenate([c, a]) for c, a in zip(carry, arrays)]
            last = g + 1 == len(groups)
            full = len(index) if last else len(index) // batch_size * batch_size
            for b in range(0, full, batch_size):
                part = [a[b:b + batch_size] for a in arrays]
                yield Batch(index[b:b + batch_size], dict(zip(site_names, part[:len(site_names)])),
                            dict(zip(label_names, part[len(site_names):])))
            carry_index, carry = index[full:], [a[full:] for a in arrays]

    def _names(self, kind: str, names) -> list[str]:
        if names is None:
            return list(self.manifest[kind])
        names = [names] if isinstance(names, str) else list(names)
        for n in names:
            self._array(kind, n)  # KeyError naming what is stored
        return names

    def rows(self, site: str) -> StoreRows:
        """``site`` as SAE rows ``(rows, d)`` on disk for ``sae.fit_saes`` / ``evaluate_saes``:
        the last axis is the feature axis, every other axis (squares) a row, as ``sae.site_rows``."""
        self._array("sites", site)
        return StoreRows(self, site)


class StoreRows:
    """A read-only ``(rows, d)`` view of one site: slices and sorted index arrays read from
    disk, and ``draw_rows`` samples SAE minibatches from a few random chunks at a time."""

    def __init__(self, store: ActivationStore, site: str, window_rows: int = 1 << 18):
        shape = store.sites[site]
        self.store, self.site = store, site
        self.positions = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        d = shape[-1] if shape else 1
        self.shape = (store.states * self.positions, d)
        self.dtype = np.dtype(store.manifest["sites"][site]["dtype"])
        self.window_rows = window_rows

    def _states(self, start: int, stop: int) -> np.ndarray:
        return self.store.read(self.site, start, stop).reshape(-1, self.shape[1])

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                raise IndexError("StoreRows slices need step 1")
            p = self.positions
            rows = self._states(start // p, -(-stop // p))
            return rows[start - start // p * p: stop - start // p * p]
        idx = np.asarray(key)
        states, inverse = np.unique(idx // self.positions, return_inverse=True)
        arr = self.store._array("sites", self.site)
        out = np.empty((len(idx), self.shape[1]), self.dtype)
        for lo in range(0, len(states), 4096):  # bounded reads, however many rows are asked for
            part = states[lo:lo + 4096]
            got = arr[part].read().result().reshape(len(part), self.positions, self.shape[1])
            sel = (inverse >= lo) & (inverse < lo + len(part))
            out[sel] = got[inverse[sel] - lo, idx[sel] % self.positions]
        return out

    def draw_rows(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` rows drawn uniformly from a window of random whole chunks (about
        ``window_rows`` rows): reading a few chunks instead of every chunk per batch is what
        makes SAE training from disk fast; the minibatches are then local samples, not
        uniform over the whole store."""
        chunk = self.store.chunk_states
        n_chunks = -(-self.store.states // chunk)
        per_chunk = chunk * self.positions
        take = max(1, min(n_chunks, self.window_rows // per_chunk))
        chosen = np.sort(rng.choice(n_chunks, take, replace=False))
        block = np.concatenate([self._states(c * chunk, min((c + 1) * chunk, self.store.states)) for c in chosen])
        return np.asarray(block[rng.integers(0, len(block), size=count)], np.float32)


# -- sources -----------------------------------------------------------------------------------
def random_play_batches(env, n: int, key: jax.Array, concepts: Sequence[str] = (), games: int = 1024,
                        moves: int | None = None) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``(observations, {concept: values})`` of ``n`` live states of uniformly random play
    (``envs.sampling.random_play_states``' states), ``games`` games per batch: one compiled
    program of fixed shape, finished states dropped on the host. Openings repeat across
    games; deduplicate (``probes.unique_rows``) where a probe's split must not leak."""
    from rljaxinterp.envs.sampling import uniform_random
    from rljaxinterp.interp import concepts as library

    moves = int(moves or getattr(env, "max_steps", None) or 64)
    names = list(concepts)
    if names:
        library.compute(env.name, jax.vmap(env.init)(jax.random.split(key, 1)), names)  # unknown names: KeyError

    @jax.jit
    def play(k):
        def one_move(states, k):
            k_act, k_step = jax.random.split(k)
            nxt = jax.vmap(env.step)(states, uniform_random(states, k_act), jax.random.split(k_step, games))
            return nxt, states

        k_init, k_play = jax.random.split(k)
        start = jax.vmap(env.init)(jax.random.split(k_init, games))
        _, visited = jax.lax.scan(one_move, start, jax.random.split(k_play, moves))
        flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), visited)
        return flat.observation, library.compute(env.name, flat, names) if names else {}, ~flat.done

    made, i = 0, 0
    while made < n:
        obs, labels, live = jax.device_get(play(jax.random.fold_in(key, i)))
        keep = np.flatnonzero(live)[: n - made]
        made, i = made + len(keep), i + 1
        yield obs[keep], {c: labels[c][keep] for c in names}  # jit returns dicts key-sorted



# -- streaming consumers -----------------------------------------------------------------------
def _flat64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64).reshape(len(a), -1)


def _moments(acc: dict | None, x: np.ndarray, y: np.ndarray, yy: bool = True) -> dict:
    """Running sums of ``x``, ``y`` and their cross-products in float64, about a shift (the
    first batch's mean) so centring later loses no precision to large means. Pure: returns
    a new dict."""
    if acc is None:
        acc = {"n": 0, "cx": x.mean(0), "cy": y.mean(0), "sx": 0.0, "sy": 0.0, "sxx": 0.0, "sxy": 0.0, "syy": 0.0}
    xc, yc = x - acc["cx"], y - acc["cy"]
    out = dict(acc, n=acc["n"] + len(x), sx=acc["sx"] + xc.sum(0), sy=acc["sy"] + yc.sum(0),
               sxx=acc["sxx"] + xc.T @ xc, sxy=acc["sxy"] + xc.T @ yc)
    if yy:
        out["syy"] = acc["syy"] + yc.T @ yc
    return out


def _centred(acc: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Means of x and y and the centred scatter matrices (Xc^T Xc, Xc^T Yc, Yc^T Yc)."""
    n, sx, sy = acc["n"], acc["sx"], acc["sy"]
    cxx = acc["sxx"] - np.outer(sx, sx) / n
    cxy = acc["sxy"] - np.outer(sx, sy) / n
    cyy = acc["syy"] - np.outer(sy, sy) / n if np.ndim(acc["syy"]) else None
    return acc["cx"] + sx / n, acc["cy"] + sy / n, cxx, cxy, cyy


def _ridge_solution(acc: dict, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """``probes._fit_ridge`` on features standardised as ``probes._standardise`` does, from
    the training rows' moments: weights (width, concepts) and biases on the raw activations."""
    x_mean, y_mean, cxx, cxy, _ = _centred(acc)
    std = np.sqrt(np.maximum(np.diag(cxx) / acc["n"], 0.0))
    scale = np.where(std > 1e-6, std, 1.0)
    gram = cxx / np.outer(scale, scale)
    w = np.linalg.solve(gram + l2 * np.eye(len(scale)), cxy / scale[:, None]) / scale[:, None]
    return w, y_mean - x_mean @ w


def _split_scores(acc: dict, binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy (binary) or R^2 (as ``probes._score``) and balanced accuracy (as
    ``probes._balanced``) per concept, from one split's counts and sums."""
    m = acc["m"]
    mean = acc["y"] / m
    var = acc["yy"] / m - mean**2  # labels are shifted by the training mean before summing
    r2 = 1.0 - acc["sq"] / m / np.maximum(var, 1e-12)
    score = np.where(binary, acc["hit"] / m, r2)
    n_pos, n_neg = acc["pos"], m - acc["pos"]
    tpr, tnr = acc["tp"] / np.maximum(n_pos, 1), acc["tn"] / np.maximum(n_neg, 1)
    balanced = np.where((n_pos > 0) & (n_neg > 0), 0.5 * (tpr + tnr), np.where(n_pos > 0, tpr, tnr))
    return score, np.where(binary, balanced, score)


def _score_update(acc: dict | None, pred: np.ndarray, y: np.ndarray, shift: np.ndarray) -> dict:
    hit, pos = (pred > 0.5) == (y > 0.5), y > 0.5
    part = {"m": len(y), "hit": hit.sum(0), "sq": ((pred - y) ** 2).sum(0), "y": (y - shift).sum(0),
            "yy": ((y - shift) ** 2).sum(0), "pos": pos.sum(0), "tp": (hit & pos).sum(0), "tn": (hit & ~pos).sum(0)}
    return part if acc is None else {k: acc[k] + v for k, v in part.items()}


def ridge_probe(
    store: ActivationStore,
    sites: str | Sequence[str],
    concepts: str | Sequence[str],
    l2: float = 1.0,
    key: jax.Array | None = None,
    test_fraction: float = 0.25,
    batch_size: int = 4096,
):
    """``probes.fit_probes(kind="ridge")`` over a store in two passes, with memory flat in the
    number of states: X^T X and X^T y of the training rows accumulated in float64, the
    same standardisation and closed form, then a pass scoring both splits. Same split as
    ``fit_probes`` for ``key`` (``probes.probe_split``, one index per state). Returns
    ``ProbeScores`` (NumPy float64; no bootstrap interval). Not bit-identical to the in-memory
    fit: sums run in another order and precision (float64 here, float32 there by default).
    Logistic and sparse probes are not streamed (they need many passes)."""
    from rljaxinterp.interp.probes import ProbeScores, _check_l2, probe_split

    sites = [sites] if isinstance(sites, str) else list(sites)
    concepts = [concepts] if isinstance(concepts, str) else list(concepts)
    l2 = _check_l2(l2, ())[0]
    if l2 == "cv":
        raise ValueError("l2='cv' is not streamed; pick l2 on a subsample with fit_probes(l2='cv') and pass it")
    for c in concepts:
        store._array("labels", c)  # unknown: KeyError naming the stored labels
        if store.labels[c] != ():
            raise ValueError(f"label {c!r} has per-state shape {store.labels[c]}; a probe needs one value per state")
    train, test = probe_split(jax.random.key(0) if key is None else key, store.states, test_fraction)
    is_test = np.zeros(store.states, bool)
    is_test[test] = True
    del train, test

    def read(batch):
        y = np.stack([np.asarray(batch.labels[c], np.float32) for c in concepts], 1).astype(np.float64)
        return y, is_test[batch.index]

    acc = {s: None for s in sites}
    binary, y_test_sum = np.ones(len(concepts), bool), np.zeros(len(concepts))
    for batch in store.batches(batch_size, sites, concepts):
        y, held = read(batch)
        binary &= np.all((y == 0) | (y == 1), axis=0)
        y_test_sum += y[held].sum(0)
        for s in sites:
            if (~held).any():
                acc[s] = _moments(acc[s], _flat64(batch.sites[s][~held]), y[~held], yy=False)
    fits = {s: _ridge_solution(acc[s], l2) for s in sites}
    shift = acc[sites[0]]["cy"] + acc[sites[0]]["sy"] / acc[sites[0]]["n"]
    scores = {(s, side): None for s in sites for side in ("train", "test")}
    for batch in store.batches(batch_size, sites, concepts):
        y, held = read(batch)
        for s in sites:
            pred = _flat64(batch.sites[s]) @ fits[s][0] + fits[s][1]
            for side, rows in (("test", held), ("train", ~held)):
                if rows.any():
                    scores[s, side] = _score_update(scores[s, side], pred[rows], y[rows], shift)
    test_scores, balanced = zip(*[_split_scores(scores[s, "test"], binary) for s in sites])
    train_scores = [_split_scores(scores[s, "train"], binary)[0] for s in sites]
    width = max(fits[s][0].shape[0] for s in sites)
    weights = np.stack([np.pad(fits[s][0].T, ((0, 0), (0, width - fits[s][0].shape[0]))) for s in sites])
    p = y_test_sum / is_test.sum()
    nan = np.full((len(sites), len(concepts)), np.nan)
    return ProbeScores(np.stack(test_scores), np.stack(train_scores), np.where(binary, np.maximum(p, 1 - p), 0.0),
                       weights, np.stack([fits[s][1] for s in sites]), tuple(sites), tuple(concepts),
                       balanced=np.stack(balanced), ci_low=nan, ci_high=nan.copy(),
                       l2=np.full((len(sites), len(concepts)), l2))


def linear_cka(store: ActivationStore, site_a: str, site_b: str, other: ActivationStore | None = None,
               batch_size: int = 4096) -> float:
    """``similarity.linear_cka`` of ``site_a`` and ``site_b`` (of ``other``, a store of the same
    states in the same order, e.g. another network; default ``store``) from centred
    cross-products accumulated in float64: memory grows with the widths, not the states."""
    if other is not None and len(other) != len(store):
        raise ValueError(f"CKA compares the same states: the stores hold {len(store)} and {len(other)}")
    if other is None:
        pairs = ((b.sites[site_a], b.sites[site_b]) for b in store.batches(batch_size, [site_a, site_b], []))
    else:
        pairs = ((a.sites[site_a], b.sites[site_b]) for a, b in zip(store.batches(batch_size, site_a, []),
                                                                   other.batches(batch_size, site_b, [])))
    acc = None
    for xa, xb in pairs:
        acc = _moments(acc, _flat64(xa), _flat64(xb))
    _, _, cxx, cxy, cyy = _centred(acc)
    return float(np.sum(cxy**2) / max(np.linalg.norm(cxx) * np.linalg.norm(cyy), 1e-30))


@dataclasses.dataclass(frozen=True)
class StreamedNMF:
    """``x ~= transform(x) @ components`` with unit-norm components, largest share first."""

    components: np.ndarray  # (rank, features)
    explained: np.ndarray  # (rank,) share of the squared norm per factor
    relative_error: float  # ||x - reconstruction||_F / ||x||_F over every row of the store

    def transform(self, x: np.ndarray, steps: int = 50) -> np.ndarray:
        """Non-negative weights (rows, rank) of rows ``x`` by multiplicative updates, components fixed."""
        return _nmf_weights(np.asarray(x, np.float64), self.components, steps, None)


_TINY = 1e-10


def _nmf_weights(x: np.ndarray, h: np.ndarray, steps: int, w: np.ndarray | None) -> np.ndarray:
    if w is None:  # the least-squares weights, clipped, are a good start for the updates
        w = np.maximum(np.linalg.lstsq(h.T, x.T, rcond=None)[0].T, 1e-3 * max(float(x.mean()), _TINY))
    hht, xht = h @ h.T, x @ h.T
    for _ in range(steps):
        w = w * xht / np.maximum(w @ hht, _TINY)
    return w


def online_nmf(store: ActivationStore, site: str, rank: int, epochs: int = 2, batch_size: int = 4096,
               seed: int = 0, per_position: bool = False, steps: int = 20, forget: float = 0.7) -> StreamedNMF:
    """Online NMF (Mairal et al. 2010; scikit-learn's ``MiniBatchNMF`` for the Frobenius loss):
    per minibatch, the rows' weights by ``steps`` multiplicative updates with the components
    fixed, then the components by multiplicative updates on accumulated statistics
    A = sum W^T W, B = sum W^T X (older batches discounted by ``forget`` per pass over the
    data). Memory: rank x features. ``per_position``: squares of a conv site are rows, as
    ``factorisation.per_position``. Not the same iterates as the in-memory ``nmf``."""
    if not 1 <= rank:
        raise ValueError(f"rank={rank} must be >= 1")
    rng = np.random.default_rng(seed)

    def rows(b):
        x = np.asarray(b.sites[site], np.float64)
        x = x.reshape(-1, x.shape[-1]) if per_position else x.reshape(len(x), -1)
        if x.size and x.min() < 0:
            raise ValueError(f"online_nmf needs non-negative activations; site {site!r} has {x.min():.4g}. "
                             "Factorise a post-ReLU site")
        return x

    total_rows = len(store) * (int(np.prod(store.sites[site][:-1])) if per_position else 1)
    h = a = b_stat = None
    for epoch in range(epochs):
        for batch in store.batches(batch_size, site, [], shuffle=True, seed=seed + epoch):
            x = rows(batch)
            if h is None:
                scale = np.sqrt(max(x.mean(), _TINY) / rank)
                h = scale * np.abs(rng.standard_normal((rank, x.shape[1])))
                a, b_stat = np.zeros((rank, rank)), np.zeros_like(h)
            w = _nmf_weights(x, h, steps, None)
            rho = forget ** (len(x) / total_rows)
            a, b_stat = rho * a + w.T @ w, rho * b_stat + w.T @ x
            for _ in range(steps):
                h = h * b_stat / np.maximum(a @ h, _TINY)
    norms = np.maximum(np.linalg.norm(h, axis=1), _TINY)
    h = h / norms[:, None]
    sq_error = total = 0.0
    share = np.zeros(rank)
    for batch in store.batches(batch_size, site, []):
        x = rows(batch)
        w = _nmf_weights(x, h, 4 * steps, None)
        sq_error += float(np.sum((x - w @ h) ** 2))
        total += float(np.sum(x**2))
        share += np.sum(w**2, axis=0)
    order = np.argsort(-share)
    return StreamedNMF(h[order], share[order] / max(total, _TINY), float(np.sqrt(sq_error / max(total, _TINY))))
