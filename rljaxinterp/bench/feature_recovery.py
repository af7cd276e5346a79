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

import jax.numpy as jnp
import numpy as np

from rljaxinterp.bench.compiled_ttt import _reachable, make_compiled
from rljaxinterp.bench.metrics import best_cosine

SITES = ("lines.post", "rules.post", "choice.post")
RECOVERED = 0.9
TIERS = {"quick": {"steps": 1500, "widths": (2,), "topk": (4, 8), "relu": (1.0,)},
         "default": {"steps": 3000, "widths": (2, 4), "topk": (4, 8, 16), "relu": (0.3, 1.0, 3.0)}}


def planted_sites(seed: int = 0, sites=SITES) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per site, the rotated activations over every reachable position ``(positions, d)`` and the
    planted directions ``(units, d)`` (distinct, non-constant units only)."""
    from rljaxinterp.interp import run_with_cache

    model, params, _ = make_compiled()
    _, obs, _, _ = _reachable()
    _, cache = run_with_cache(model, params, jnp.asarray(obs), list(sites))
    rng = np.random.default_rng(seed)
    data, planted = {}, {}
    for site in sites:
        x = np.asarray(cache[site], np.float64).reshape(len(obs), -1)
        q, _ = np.linalg.qr(rng.normal(size=(x.shape[1], x.shape[1])))
        _, first = np.unique(x.T, axis=0, return_index=True)
        units = np.sort([j for j in first if np.ptp(x[:, j]) > 0])
        data[site] = (x @ q).astype(np.float32)
        planted[site] = q[units]
    return data, planted


def _score(found: np.ndarray, planted: np.ndarray) -> dict:
    cos = best_cosine(found, planted)
    return {"mean_best_cosine": float(cos.mean()), "recovered": float(np.mean(cos >= RECOVERED))}


def baselines(data: dict[str, np.ndarray], planted: dict[str, np.ndarray], nmf_iterations: int = 500) -> dict:
    """Neurons (the rotated axes), PCA (every component) and NMF (of the signed data split into
    positive and negative parts, rank = the number of planted units) per site."""
    from rljaxinterp.interp.factorisation import nmf, nonnegative_parts, pca

    out = {}
    for site, x in data.items():
        d = x.shape[1]
        fit = nmf(nonnegative_parts(x), len(planted[site]), nmf_iterations)
        c = np.asarray(fit.components)
        out[site] = {"neurons": _score(np.eye(d), planted[site]),
                     "pca": _score(np.asarray(pca(x, d).components), planted[site]),
                     "nmf": _score(c[:, :d] - c[:, d:], planted[site])}
    return out


def feature_recovery(tier: str = "quick", seed: int = 0, progress: bool = False) -> dict:
    """SAE members (topk and relu, widths as multiples of the site size) against the baselines,
    per site: recovery of the planted directions and the SAE's variance explained and L0."""
    from rljaxinterp.interp import sae

    if tier not in TIERS:
        raise ValueError(f"tier={tier!r} is not allowed; use one of {tuple(TIERS)}")
    settings = TIERS[tier]
    start = time.time()
    data, planted = planted_sites(seed)
    result = {"tier": tier, "seed": seed, "sites": {}, "recovered_at": RECOVERED}
    for site, scores in baselines(data, planted).items():
        result["sites"][site] = {"units": len(planted[site]), "d": data[site].shape[1], "methods": scores}
    config = sae.SAEConfig(steps=settings["steps"], batch_size=512, learning_rate=1e-3, seed=seed)
    sae_start = time.time()
    for kind in ("topk", "relu"):
        for site, x in data.items():
            widths = [m * x.shape[1] for m in settings["widths"]]
            grid = sae.fit_saes({site: x}, kind, widths, settings[kind], config, progress=progress)
            quality = sae.evaluate_saes(grid, {site: x})
            for i, member in enumerate(grid.members):
                name = f"sae {kind} m={member.width} {sae.SPARSITY_MEANING[kind].split()[0]}={member.sparsity:g}"
                result["sites"][site]["methods"][name] = {
                    **_score(np.asarray(grid[i].w_dec), planted[site]),
                    "fve": quality[i]["fve"], "l0": quality[i]["l0"], "dead": quality[i]["dead"]}
    result["sae_seconds"] = time.time() - sae_start
    result["wall_s"] = time.time() - start
    return result


def table(result: dict) -> list[str]:
    """Markdown: one row per method, per site its mean best cosine and recovered share."""
    sites = list(result["sites"])
    methods = list(dict.fromkeys(m for s in sites for m in result["sites"][s]["methods"]))
    head = "| method | " + " | ".join(f"{s} ({result['sites'][s]['units']} units)" for s in sites) + " |"
    lines = [head, "|---|" + "---|" * len(sites)]
    for m in methods:
        cells = []
        for s in sites:
            r = result["sites"][s]["methods"].get(m)
            extra = f", FVE {r['fve']:.3f}, L0 {r['l0']:.1f}" if r and "fve" in r else ""
            cells.append("—" if r is None else f"{r['mean_best_cosine']:.3f} ({100 * r['recovered']:.0f}%{extra})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines
