"""Edge-level truth and edge scores on the compiled tic-tac-toe MLP and the SIIT MLPs (issue #14).

An edge is one kernel entry of one Dense layer of ``compiled_ttt.CompiledRules``: sender
unit u (an element of the layer's input) -> receiver unit v (one pre-activation). The
candidates are every entry of every Dense on the path to the logits, zero or not, skip
inputs included (``DENSES``); the value head is left out, as the node truth leaves out the
units that feed only it.

**Truth.** The win circuit's edges are the nonzero entries whose sender and receiver are
both on the win path (``leaderboard.win_units``: ``two_own -> nothreat_own -> win ->
choice_win``), where the input planes count as on the path when they send and the logits
when they receive: a circuit of edges has to start at the board and end at a logit, or it
cannot be run or checked. The one exception is the direct input -> logits skip, the
legality term (-16 on an occupied square): it passes through no win unit and carries no win
computation, and the node truth has no unit on it either. Every hidden win unit then has an
edge in and an edge out.

**Methods** (``METHODS``), each ``fn(model, params, obs, corrupted, metric, data, key) ->
{layer: (inputs, units) scores}``: exact edge patching (only v's pre-activation gets u's
corrupted contribution, ``pre_v + W[u, v] (a_u(corrupt) - a_u(clean))``, everything else
clean), edge attribution patching (Syed et al. 2023, its first-order estimate from one
forward and one backward pass), the weight magnitude (reads no data: what the sparsity of
the hand-set weights alone gives), random scores and the oracle (the truth). Edges are
ranked by |score|.

**Faithfulness curve** (``faithfulness_curve``): keep the top-k edges, mean-ablate every
other edge (its sender's contribution to the receiver's pre-activation replaced by its mean
over the positions), at ``curve_fractions``; CPR and CMD from ``metrics``. **Untrained
control**: each method rerun at the leaderboard's random weights, against the same truth.

**SIIT MLPs** (``score_siit_edges``): the same methods and curve on a tier-2 network, whose
Dense layers are ``siit.DENSES`` and whose truth is ``siit.edge_truth``: the high-level
graph's win-path edges between the nodes' unit blocks (no weight is zero there).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import interp
from rljaxinterp.bench import compiled_ttt, metrics

# Each Dense of CompiledRules on the way to the logits: (receiver site, sender sites in
# kernel-row order), as ``CompiledRules.__call__`` concatenates them.
DENSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "lines": ("lines.pre", ("input",)),
    "singles": ("singles.pre", ("lines.post",)),
    "forks": ("forks.pre", ("singles.post",)),
    "rules": ("rules.pre", ("singles.post", "forks.post", "input")),
    "choice": ("choice.pre", ("rules.post",)),
    "policy": ("logits", ("choice.post", "input")),
}
ENDPOINTS = ("input", "logits")
CHUNK = 32  # edges patched per vmapped step of the exact sweep

Denses = Mapping[str, tuple[str, tuple[str, ...]]]
EdgeScores = dict[str, np.ndarray]  # layer -> (inputs, units), shaped like the layer's kernel


def _check_wiring(params, denses: Denses, widths: Mapping[str, int]) -> None:
    """Raise if a Dense's kernel does not read exactly its declared senders."""
    for layer, (receiver, senders) in denses.items():
        if layer not in params:
            raise ValueError(f"layer {layer!r} is not in params; allowed: {sorted(params)}")
        unknown = [s for s in (receiver, *senders) if s not in widths]
        if unknown:
            raise ValueError(f"layer {layer!r} names unknown site(s) {unknown}; allowed: {sorted(widths)}")
        want = (sum(widths[s] for s in senders), widths[receiver])
        if tuple(params[layer]["kernel"].shape) != want:
            raise ValueError(f"layer {layer!r} has kernel {tuple(params[layer]['kernel'].shape)}, but its senders "
                             f"{senders} and receiver {receiver!r} need {want}")


def _widths(model, params, obs) -> dict[str, int]:
    return {s: int(np.prod(shape)) for s, shape in interp.sites(model, obs[:1], params).items()}


def _receivers(model, params, obs, denses: Denses) -> tuple[tuple[str, int], ...]:
    """(site, units) of every layer's receiver, hashable for ``jit``."""
    widths = _widths(model, params, obs)
    return tuple((r, widths[r]) for r, _ in denses.values())


def _on_path(site: str, units: Mapping[str, np.ndarray], width: int) -> np.ndarray:
    """Which units of ``site`` are on the win path: every input plane and every logit (the
    endpoints); a hidden ``.pre`` site holds the same units as its ``.post``."""
    if site in ENDPOINTS:
        return np.ones(width, bool)
    return np.asarray(units[site.replace(".pre", ".post")], bool)


def edge_truth(params, units: Mapping[str, np.ndarray] | None = None, denses: Denses = DENSES) -> EdgeScores:
    """{layer: (inputs, units) bool}: the win circuit's edges (module docstring), from the
    weights and the node truth (``units``: site -> bool per unit; default ``win_units``)."""
    from rljaxinterp.bench import leaderboard  # leaderboard imports this module

    units = leaderboard.win_units() if units is None else units
    widths = {s: len(u) for s, u in units.items()} | {"input": 18, "logits": 9}
    widths |= {s.replace(".post", ".pre"): w for s, w in widths.items()}
    _check_wiring(params, denses, widths)
    out = {}
    for layer, (receiver, senders) in denses.items():
        send = np.concatenate([_on_path(s, units, widths[s]) for s in senders])
        hidden = np.concatenate([np.full(widths[s], s not in ENDPOINTS) for s in senders])
        recv = _on_path(receiver, units, widths[receiver])
        through_win = hidden[:, None] | (receiver not in ENDPOINTS)  # not the input -> logits skip
        out[layer] = (np.asarray(params[layer]["kernel"]) != 0) & send[:, None] & recv[None, :] & through_win
    return out


def unit_labels(site: str) -> tuple[str, ...]:
    """Names of a site's units: the hidden units' concepts, ``own_sq{s}``/``opp_sq{s}`` for
    the input planes, ``logit_sq{s}`` for the logits."""
    if site == "input":
        return tuple(f"{o}_sq{s}" for s in compiled_ttt.ALL_SQUARES for o in compiled_ttt.OWNERS)
    if site == "logits":
        return tuple(f"logit_sq{s}" for s in compiled_ttt.ALL_SQUARES)
    return compiled_ttt.unit_names()[site.split(".")[0]]


def edge_names(denses: Denses = DENSES) -> list[str]:
    """``"sender -> receiver"`` of every candidate edge, in ``flat`` order."""
    out = []
    for receiver, senders in denses.values():
        rows = [u for s in senders for u in unit_labels(s)]
        out += [f"{u} -> {v}" for u in rows for v in unit_labels(receiver)]
    return out


def flat(scores: Mapping[str, np.ndarray], denses: Denses = DENSES) -> np.ndarray:
    """All candidate edges in one vector: layer by layer, each kernel row-major."""
    return np.concatenate([np.ravel(scores[layer]) for layer in denses])


# -- the methods -------------------------------------------------------------------------------
def _deltas(model, params, obs, corrupted, denses: Denses) -> dict[str, jax.Array]:
    """Per layer, a_u(corrupt) - a_u(clean) of every sender, (states, inputs)."""
    _check_wiring(params, denses, _widths(model, params, obs))
    return _sender_deltas(model, params, obs, corrupted, tuple(denses.items()))


@functools.partial(jax.jit, static_argnames=("model", "denses"))
def _sender_deltas(model, params, obs, corrupted, denses) -> dict[str, jax.Array]:
    _, clean = interp.run_with_cache(model, params, obs)
    _, corrupt = interp.run_with_cache(model, params, corrupted)
    n = obs.shape[0]

    def senders(cache, sites):
        return jnp.concatenate([cache[s].reshape(n, -1) for s in sites], -1)

    return {layer: senders(corrupt, s) - senders(clean, s) for layer, (_, s) in denses}


@functools.partial(jax.jit, static_argnames=("model", "metric", "receivers"))
def _sweep(model, params, obs, data, metric, receivers, site_of, col, shift):
    """Mean metric change of each edge's run: edge e adds ``shift[e]`` (per state) to unit
    ``col[e]`` of receiver ``receivers[site_of[e]]``. Every run carries an ``add`` at every
    receiver, masked off except its own, so one compiled map covers all layers."""
    base = metric(interp.run_with_interventions(model, params, obs, []), data).mean()

    def one(edge):
        k, c, s = edge
        ivs = [interp.add(site, s[:, None] * jax.nn.one_hot(c, width)[None, :], (k == i).astype(jnp.float32))
               for i, (site, width) in enumerate(receivers)]
        return metric(interp.run_with_interventions(model, params, obs, ivs), data).mean() - base

    return jax.lax.map(one, (site_of, col, shift), batch_size=CHUNK)


def edge_patching(model, params, obs, corrupted, metric, data, key=None, denses: Denses = DENSES) -> EdgeScores:
    """Exact edge patching: the mean change of ``metric(out, data)`` when only the receiver's
    pre-activation gets the sender's corrupted contribution. A zero-weight edge contributes
    W (a(corrupt) - a(clean)) = 0 whatever the data, so only the nonzero entries are run."""
    deltas = _deltas(model, params, obs, corrupted, denses)
    receivers = _receivers(model, params, obs, denses)
    kernels = {layer: np.asarray(params[layer]["kernel"]) for layer in denses}
    wired = {layer: np.nonzero(k) for layer, k in kernels.items()}
    site_of = np.concatenate([np.full(len(wired[layer][0]), i) for i, layer in enumerate(denses)])
    col = np.concatenate([wired[layer][1] for layer in denses])
    shift = jnp.concatenate([deltas[layer][:, rows] * kernels[layer][rows, cols]
                             for layer, (rows, cols) in wired.items()], -1).T  # (edges, states)
    effects = np.asarray(_sweep(model, params, obs, data, metric, receivers, jnp.asarray(site_of),
                                jnp.asarray(col), shift))
    out, start = {}, 0
    for layer, (rows, cols) in wired.items():
        out[layer] = np.zeros(kernels[layer].shape)
        out[layer][rows, cols] = effects[start:start + len(rows)]
        start += len(rows)
    return out


def edge_attribution_patching(model, params, obs, corrupted, metric, data, key=None,
                              denses: Denses = DENSES) -> EdgeScores:
    """EAP (Syed et al. 2023): mean over states of (a_u(corrupt) - a_u(clean)) W[u, v]
    d metric / d pre_v, the gradient taken once at the clean run through a zero ``add`` at
    every receiver. Blind where the receiver's ReLU is flat at the clean point."""
    deltas = _deltas(model, params, obs, corrupted, denses)
    grads = _receiver_grads(model, params, obs, data, metric, _receivers(model, params, obs, denses))
    n = obs.shape[0]
    return {layer: np.asarray(params[layer]["kernel"]) * np.asarray(deltas[layer].T @ grads[r] / n)
            for layer, (r, _) in denses.items()}


@functools.partial(jax.jit, static_argnames=("model", "metric", "receivers"))
def _receiver_grads(model, params, obs, data, metric, receivers) -> dict[str, jax.Array]:
    """d metric / d pre_v per state at the clean run, for every receiver site at once."""
    zeros = {site: jnp.zeros((obs.shape[0], width)) for site, width in receivers}

    def total(shifts):
        ivs = [interp.add(site, v) for site, v in shifts.items()]
        return metric(interp.run_with_interventions(model, params, obs, ivs), data).sum()

    return jax.grad(total)(zeros)


def weight_magnitude(model, params, obs, corrupted, metric, data, key=None, denses: Denses = DENSES) -> EdgeScores:
    """|W[u, v]|: reads no data, so it measures what the weights' sparsity alone gives."""
    return {layer: np.abs(np.asarray(params[layer]["kernel"])) for layer in denses}


def random_scores(model, params, obs, corrupted, metric, data, key=None, denses: Denses = DENSES) -> EdgeScores:
    shapes = [params[layer]["kernel"].shape for layer in denses]
    u = np.asarray(jax.random.uniform(key, (sum(a * b for a, b in shapes),)))  # one draw, one compile
    parts = np.split(u, np.cumsum([a * b for a, b in shapes])[:-1])
    return {layer: part.reshape(shape) for layer, part, shape in zip(denses, parts, shapes, strict=True)}


ORACLE = "oracle (edges)"
METHODS: dict[str, Callable[..., EdgeScores] | None] = {
    "edge patching (exact)": edge_patching,
    "edge attribution patching": edge_attribution_patching,
    "weight magnitude": weight_magnitude,
    "random": random_scores,
    ORACLE: None,  # scores the truth itself
}


# -- the edge faithfulness curve --------------------------------------------------------------
def curve_fractions(candidates: int, true_edges: int, steps: int = 33, linear_step: float = 0.05) -> np.ndarray:
    """The circuit sizes (fractions of the candidates, each an exact k / candidates) at which
    the edge curve is evaluated: 0, the true circuit's share, ``steps`` geometric sizes from
    one edge to all, and a linear grid of ``linear_step``.

    Why not every k (the node curve's choice): ~20k forward passes per method. CPR and CMD
    are areas in linear x (MIB's definition, the node curve's), so most of the area lies at
    large k, where the linear grid bounds the trapezoid's error; but the true circuit is
    under 1% of the candidates and the nonzero-weight edges about 5%, so a method's curve
    rises within a few hundred edges, which only the geometric part (ratio ~1.4) resolves.
    The true share is a point, so f at the true size is measured, not interpolated.
    """
    if not 0 < true_edges <= candidates:
        raise ValueError(f"need 0 < true_edges <= candidates: got {true_edges} of {candidates}")
    ks = np.concatenate([[0, true_edges], np.geomspace(1, candidates, steps),
                         np.arange(1, round(1 / linear_step) + 1) * linear_step * candidates])
    return np.unique(np.round(ks).astype(int)) / candidates


def _sender_means(model, params, obs, denses: Denses) -> dict[str, jax.Array]:
    """Per layer, the mean over ``obs`` of every sender's clean activation, (inputs,)."""
    _, cache = interp.run_with_cache(model, params, obs)
    n = obs.shape[0]
    return {layer: jnp.concatenate([cache[s].reshape(n, -1) for s in senders], -1).mean(0)
            for layer, (_, senders) in denses}


@functools.partial(jax.jit, static_argnames=("model", "metric", "denses"))
def _kept_edges_metric(model, params, obs, data, metric, keep, denses) -> jax.Array:
    """Mean metric with the edges ``keep[layer] == 1`` kept and every other edge
    mean-ablated; ``keep`` has a leading axis of circuits, all run in one vmapped program.

    Ablating edge (u, v) replaces W[u, v] a_u in v's pre-activation by W[u, v] mean(a_u), so
    a Dense with kept edges K computes a (W K) + b + mean(a) (W (1 - K)): the kernel W K and
    a shifted bias. A kept edge carries its sender's activation in the edited run (as in
    ACDC and MIB), so ablations upstream reach it.
    """
    means = _sender_means(model, params, obs, denses)

    def one(mask):
        edited = dict(params)
        for layer, _ in denses:
            w, b = params[layer]["kernel"], params[layer]["bias"]
            edited[layer] = {**params[layer], "kernel": w * mask[layer], "bias": b + means[layer] @ (w * (1 - mask[layer]))}
        return metric(interp.run_with_interventions(model, edited, obs, []), data).mean()

    return jax.vmap(one)(keep)


def kept_edges_metric(model, params, obs, metric, data, keep: Mapping[str, np.ndarray],
                      denses: Denses = DENSES) -> np.ndarray:
    """m(C) of each circuit: ``keep`` is {layer: (circuits, inputs, units)} 0/1 masks."""
    _check_wiring(params, denses, _widths(model, params, obs))
    masks = {layer: jnp.asarray(keep[layer], jnp.float32) for layer in denses}
    return np.asarray(_kept_edges_metric(model, params, obs, data, metric, masks, tuple(denses.items())), np.float64)


def faithfulness_curve(model, params, obs, metric, data, scores: Mapping[str, np.ndarray], fractions,
                       denses: Denses = DENSES) -> dict:
    """f(C_k) for the top-k edges by |score| at each fraction (``curve_fractions``), the rest
    mean-ablated over ``obs``; CPR and CMD over those points. The grid must start at 0 (m of
    the empty circuit: every edge at its mean, the logits their mean) and end at 1 (the
    unedited network), so f runs from exactly 0 to exactly 1."""
    fractions = np.asarray(fractions, float)
    if fractions.ndim != 1 or fractions.size < 2 or fractions[0] != 0 or fractions[-1] != 1:
        raise ValueError("fractions must be a 1-D grid from 0 (the empty circuit) to 1 (the full network)")
    masks = metrics.ranked_circuits(flat(scores, denses), fractions, absolute=True)
    shapes = [tuple(np.shape(params[layer]["kernel"])) for layer in denses]
    parts = np.split(masks, np.cumsum([a * b for a, b in shapes])[:-1], axis=1)
    keep = {layer: part.reshape(-1, *shape) for layer, part, shape in zip(denses, parts, shapes, strict=True)}
    m = kept_edges_metric(model, params, obs, metric, data, keep, denses)
    f = metrics.faithfulness(m, m[0], m[-1])
    return {**metrics.faithfulness_curve_areas(fractions, f), "curve": f.tolist()}


# -- scoring -------------------------------------------------------------------------------------
def score(scores: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray], params,
          denses: Denses = DENSES) -> dict[str, float]:
    """Edge AUROC over all candidates, precision at the true number of edges, and AUROC over
    the wired (nonzero-weight) candidates only, where sparsity gives a method nothing."""
    s, t = np.abs(flat(scores, denses)), flat(truth, denses)
    wired = flat({layer: np.asarray(params[layer]["kernel"]) != 0 for layer in denses}, denses)
    return {"auroc": metrics.auroc(s, t), "precision": metrics.precision_at_k(s, t),
            "auroc_wired": metrics.auroc(s[wired], t[wired])}


def score_edges(seed: int, positions: int, methods=None, task=None) -> dict[str, dict]:
    """{method: {"auroc", "precision", "auroc_wired", "cpr", "cmd", "f_true_size", "curve",
    "auroc_untrained", "wall_s"}} on the leaderboard's circuit task of ``seed`` (the win
    positions, the rule-move logit as the metric, the corrupted inputs the permutation of the
    positions that node patching uses). ``curve``: f at ``curve_fractions``; ``f_true_size``:
    f with the method's top (true number of) edges kept. ``auroc_untrained``: the method rerun
    on the same architecture at the leaderboard's random weights of ``seed``, scored against
    the same true edges (the control: what a method scores there it reads from the architecture,
    e.g. each layer's weight scale, not from the mechanism).
    ``task``: that task, when the caller has already drawn it. ``wall_s``: both networks'
    scores and the curve."""
    from rljaxinterp.bench import leaderboard  # leaderboard imports this module

    model, params = compiled_ttt.CompiledRules(), compiled_ttt.compiled_params()
    task = leaderboard.make_tasks(positions, seed)["circuit"] if task is None else task
    return score_edges_of(model, params, leaderboard.untrained_params(model, seed, task.obs), task,
                         edge_truth(params, task.units), seed, methods)


def score_siit_edges(trained, task, untrained, methods=None) -> dict[str, dict]:
    """``score_edges`` on a SIIT MLP of tier 2 (a ``siit.Trained``) and its win task
    (``siit.win_task``), against ``siit.edge_truth`` (the graph's win-path edges between the
    nodes' unit blocks); ``untrained``: the same MLP at random weights, the control."""
    from rljaxinterp.bench import siit

    if trained.arch != "mlp":
        raise ValueError(f"edge scores need Dense layers: arch {trained.arch!r} is not allowed; use a SIIT 'mlp'")
    return score_edges_of(trained.model, trained.params, untrained, task, siit.edge_truth(trained.width), trained.seed,
                         methods, siit.DENSES)


def score_edges_of(model, params, untrained, task, truth: EdgeScores, seed: int, methods=None,
                  denses: Denses = DENSES) -> dict[str, dict]:
    """Every edge method on one network's circuit task against ``truth`` (``score_edges``)."""
    from rljaxinterp.bench import leaderboard  # leaderboard imports this module

    names = list(METHODS) if methods is None else list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown edge method(s) {unknown}; allowed: {list(METHODS)}")
    key = jax.random.key(seed)
    corrupted = task.obs[jax.random.permutation(key, task.obs.shape[0])]
    t = flat(truth, denses)
    fractions = curve_fractions(t.size, int(t.sum()))
    at_true = int(np.flatnonzero(np.isclose(fractions, t.sum() / t.size))[0])
    out = {}
    for name in names:
        t0 = time.perf_counter()
        fn = METHODS[name]
        args = (task.obs, corrupted, leaderboard.rule_logit, task.data, key)
        found = truth if fn is None else fn(model, params, *args, denses=denses)
        found_untrained = truth if fn is None else fn(model, untrained, *args, denses=denses)
        scored = {**score(found, truth, params, denses),
                  "auroc_untrained": score(found_untrained, truth, untrained, denses)["auroc"]}
        curve = faithfulness_curve(model, params, task.obs, leaderboard.rule_logit, task.data, found, fractions,
                                   denses)
        out[name] = {**scored, **curve, "f_true_size": curve["curve"][at_true], "wall_s": time.perf_counter() - t0}
    return out
