"""Do dictionary methods find the units a network is known to compute? Planted directions from
the compiled tic-tac-toe network, scored for SAEs beside neurons, PCA and NMF.

The compiled network's hidden units are sparse and each computes a known concept (a line
detector, a rule, a choice). In its own basis the answer is trivial (neurons are the truth),
so each site's activations are first turned by a random rotation ``Q``: unit ``j`` then writes
along row ``Q[j]``, a direction no single neuron holds. Those rows are the planted directions
(units with the same activation on every position, or constant ones, are merged or left out,
since no method could tell them apart). Every method is scored by the best |cosine| of any of
its directions with each planted one: the mean over planted directions, and the share
recovered at cosine >= ``RECOVERED``. Rotating the data and rotating the network are the same
for this question: the rotated network computes the same outputs from the rotated site.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.bench.compiled_ttt import _reachable, make_compiled
from rljaxinterp.bench.metrics import best_cosine

SITES = ("lines.post", "rules.post", "choice.post")
RECOVERED = 0.9
TIERS = {"quick": {"steps": 1500, "widths": (2,), "topk": (4, 8), "relu": (1.0,)},
         "default": {"steps": 3000, "widths": (2, 4), "topk": (4, 8, 16), "relu": (0.3, 1.0, 3.0)}}


def planted_sites(seed: int = 0, sites=SITES) -> dict[str, dict[str, np.ndarray]]:
    """Per site: ``x``, the rotated activations over every reachable position ``(positions, d)``;
    ``planted``, the planted directions ``(units, d)`` (distinct, non-constant units only);
    ``units``, their indices at the site; ``rotation``, ``Q`` (rotated = original @ Q)."""
    from rljaxinterp.interp import run_with_cache

    model, params, _ = make_compiled()
    _, obs, _, _ = _reachable()
    _, cache = run_with_cache(model, params, jnp.asarray(obs), list(sites))
    rng = np.random.default_rng(seed)
    out = {}
    for site in sites:
        x = np.asarray(cache[site], np.float64).reshape(len(obs), -1)
        q, _ = np.linalg.qr(rng.normal(size=(x.shape[1], x.shape[1])))
        _, first = np.unique(x.T, axis=0, return_index=True)
        units = np.sort([j for j in first if np.ptp(x[:, j]) > 0])
        out[site] = {"x": (x @ q).astype(np.float32), "planted": q[units], "units": units, "rotation": q}
    return out


def interchange_accuracy(site: str, rotation: np.ndarray, units: np.ndarray, directions: np.ndarray,
                         pairs: int = 512, seed: int = 0) -> float:
    """Interchange intervention accuracy of a method's directions for the planted units: for each
    unit, swap the component along the method's direction (``directions[i]`` for ``units[i]``, in
    the rotated basis) from a source position into a base position, and count the pairs whose
    chosen move then equals the move chosen when the unit itself is swapped (Geiger et al. 2021).
    Only pairs where swapping the unit changes the move are counted, so doing nothing scores 0."""
    from rljaxinterp.bench.metrics import interchange_intervention_accuracy
    from rljaxinterp.interp import run_with_cache, run_with_interventions, subspace_patch

    model, params, _ = make_compiled()
    _, obs, _, _ = _reachable()
    rng = np.random.default_rng(seed)
    base, source = (jnp.asarray(obs[rng.integers(0, len(obs), pairs)]) for _ in range(2))
    _, cache = run_with_cache(model, params, source, [site])
    src = cache[site]
    d = rotation.shape[0]
    truth_basis = np.eye(d)[units][:, :, None]  # (units, d, 1): the unit's own axis
    v = directions @ rotation.T  # back to the network's basis: rotated x' = x Q, so x-direction = Q d'
    method_basis = (v / np.linalg.norm(v, axis=1, keepdims=True))[:, :, None]

    @jax.jit
    def moves(bases):
        run = lambda b: jnp.argmax(run_with_interventions(model, params, base, subspace_patch(site, b, src)).logits, -1)
        return jax.lax.map(run, bases)

    clean = np.asarray(jnp.argmax(model.apply({"params": params}, base).logits, -1))
    expected = np.asarray(moves(jnp.asarray(truth_basis, jnp.float32)))  # (units, pairs)
    predicted = np.asarray(moves(jnp.asarray(method_basis, jnp.float32)))
    changing = expected != clean[None]
    if not changing.any():
        raise ValueError(f"swapping no unit of site {site!r} changes a move on {pairs} pairs; use more pairs")
    return interchange_intervention_accuracy(predicted[changing], expected[changing])


def _best_match(found: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """For each planted direction, the found direction with the largest |cosine|."""
    f = found / np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
    return f[np.abs(planted @ f.T).argmax(1)]


def _score(found: np.ndarray, site: dict, iia: bool = True) -> dict:
    cos = best_cosine(found, site["planted"])
    scores = {"mean_best_cosine": float(cos.mean()), "recovered": float(np.mean(cos >= RECOVERED))}
    if iia:
        scores["iia"] = interchange_accuracy(site["name"], site["rotation"], site["units"],
                                             _best_match(found, site["planted"]))
    return scores


def baselines(sites: dict[str, dict], nmf_iterations: int = 500, iia: bool = True) -> dict:
    """Neurons (the rotated axes), PCA (every component) and NMF (of the signed data split into
    positive and negative parts, rank = the number of planted units) per site."""
    from rljaxinterp.interp.factorisation import nmf, nonnegative_parts, pca

    out = {}
    for name, site in sites.items():
        x, planted = site["x"], site["planted"]
        d = x.shape[1]
        fit = nmf(nonnegative_parts(x), len(planted), nmf_iterations)
        c = np.asarray(fit.components)
        site = {**site, "name": name}
        out[name] = {"neurons": _score(np.eye(d), site, iia), "pca": _score(np.asarray(pca(x, d).components), site, iia),
                     "nmf": _score(c[:, :d] - c[:, d:], site, iia)}
    return out


def feature_recovery(tier: str = "quick", seed: int = 0, progress: bool = False) -> dict:
    """SAE members (topk and relu, widths as multiples of the site size) against the baselines,
    per site: recovery of the planted directions and the SAE's variance explained and L0."""
    from rljaxinterp.interp import sae

    if tier not in TIERS:
        raise ValueError(f"tier={tier!r} is not allowed; use one of {tuple(TIERS)}")
    settings = TIERS[tier]
    start = time.time()
    sites = planted_sites(seed)
    result = {"tier": tier, "seed": seed, "sites": {}, "recovered_at": RECOVERED}
    for site, scores in baselines(sites).items():
        result["sites"][site] = {"units": len(sites[site]["planted"]), "d": sites[site]["x"].shape[1],
                                 "methods": scores}
    config = sae.SAEConfig(steps=settings["steps"], batch_size=512, learning_rate=1e-3, seed=seed)
    sae_start = time.time()
    for kind in ("topk", "relu"):
        for site, planted in sites.items():
            x = planted["x"]
            widths = [m * x.shape[1] for m in settings["widths"]]
            grid = sae.fit_saes({site: x}, kind, widths, settings[kind], config, progress=progress)
            quality = sae.evaluate_saes(grid, {site: x})
            for i, member in enumerate(grid.members):
                name = (f"sae {kind} {member.width // x.shape[1]}x width, "
                        f"{sae.SPARSITY_MEANING[kind].split()[0]}={member.sparsity:g}")
                result["sites"][site]["methods"][name] = {
                    **_score(np.asarray(grid[i].w_dec), {**planted, "name": site}),
                    "fve": quality[i]["fve"], "l0": quality[i]["l0"], "dead": quality[i]["dead"]}
    result["sae_seconds"] = time.time() - sae_start
    result["wall_s"] = time.time() - start
    return result


def table(result: dict) -> list[str]:
    """Markdown: one row per method, per site its mean best cosine, recovered share and IIA."""
    sites = list(result["sites"])
    methods = list(dict.fromkeys(m for s in sites for m in result["sites"][s]["methods"]))
    head = "| method | " + " | ".join(f"{s} ({result['sites'][s]['units']} units)" for s in sites) + " |"
    lines = [head, "|---|" + "---|" * len(sites)]
    for m in methods:
        cells = []
        for s in sites:
            r = result["sites"][s]["methods"].get(m)
            extra = f", FVE {r['fve']:.3f}, L0 {r['l0']:.1f}" if r and "fve" in r else ""
            iia = f", IIA {r['iia']:.2f}" if r and "iia" in r else ""
            cells.append("—" if r is None else f"{r['mean_best_cosine']:.3f} ({100 * r['recovered']:.0f}%{iia}{extra})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines
