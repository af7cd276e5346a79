"""The interpretability report of a tic-tac-toe run: concept probes across training with
controls, counterfactual patching and attribution drawn on the board, and how each site's
representation converges over training, written as Markdown + PNGs.

Every sentence under "Findings" is computed from the measurements in the same report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import interp
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.interp import concepts as concept_library
from rljaxinterp.interp.attribution import integrated_gradients, occlusion
from rljaxinterp.interp.dynamics import (
    plot_probe_table,
    plot_representation_dynamics,
    plot_what_when_where,
    probe_dynamics,
    representation_dynamics,
)
from rljaxinterp.interp.plots import plot_board_rows, plot_effects_by_unit
from rljaxinterp.reporting import pyplot, save_figure

DECODABLE = 0.9  # accuracy (binary) or R^2 counted as "linearly decodable"


def single_square_pairs(boards: np.ndarray, terminal: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each square, (positions, the same positions with the piece on that square
    removed), keeping only pairs where both positions are reachable and not over."""
    index = {tuple(b): i for i, b in enumerate(boards)}
    pairs = {}
    for square in range(9):
        clean, corrupted = [], []
        for i, b in enumerate(boards):
            if terminal[i] or b[square] < 0:
                continue
            c = b.copy()
            c[square] = -1
            j = index.get(tuple(c))
            if j is not None and not terminal[j]:
                clean.append(i)
                corrupted.append(j)
        pairs[square] = (np.asarray(clean), np.asarray(corrupted))
    return pairs


def square_patching(model, params, obs, pairs, sites) -> dict[str, np.ndarray]:
    """Per site: (removed square, site position) -> mean effect on the value of patching that
    position's activation from the position without the piece (noising)."""
    maps = {site: np.zeros((9, 3, 3)) for site in sites}
    for square, (clean, corrupted) in pairs.items():
        if len(clean) == 0:
            continue
        effects = interp.patching_sweep(
            model, params, obs[clean], obs[corrupted], interp.metrics.value, sites=sites, granularity="position"
        )
        for site in sites:
            maps[site][square] = np.asarray(effects[site]).reshape(3, 3)
    return maps


def plot_square_maps(maps: dict[str, np.ndarray], path: Path) -> Path:
    import matplotlib.patches

    plt = pyplot()
    fig, axes = plt.subplots(len(maps), 9, figsize=(13, 1.6 * len(maps)), squeeze=False)
    for r, (site, m) in enumerate(maps.items()):
        bound = np.abs(m).max() or 1.0
        for s in range(9):
            ax = axes[r, s]
            ax.imshow(m[s], cmap="RdBu_r", vmin=-bound, vmax=bound)
            ax.add_patch(matplotlib.patches.Rectangle((s % 3 - 0.5, s // 3 - 0.5), 1, 1, fill=False, lw=2))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"square {s} emptied", fontsize=7)
            if s == 0:
                ax.set_ylabel(site, fontsize=7)
    fig.suptitle("Effect on value of patching one position of a site from the position without the piece "
                 "(outlined: the emptied square)", fontsize=9)
    return save_figure(fig, path)


def findings(dyn: dict[str, Any]) -> list[str]:
    lines = []
    final = dyn["test"][-1]
    for j, concept in enumerate(dyn["concepts"]):
        i = int(np.argmax(final[:, j]))
        score = float(final[i, j])
        control = float(np.max(dyn["random_network"][:, j])) if "random_network" in dyn else float("nan")
        shuffled = float(np.max(dyn["shuffled_labels"][:, j]))
        above = np.flatnonzero(dyn["test"][:, i, j] >= DECODABLE)
        when = f", first reaching {DECODABLE} at step {int(dyn['step'][above[0]])}" if above.size else ""
        verdict = (
            "linearly decodable" if score >= DECODABLE and score - control > 0.02
            else "no better decoded than from a random network" if score - control <= 0.02
            else "partly decodable"
        )
        lines.append(
            f"`{concept}` is {verdict}: best site `{dyn['sites'][i]}` scores {score:.3f} "
            f"(random network {control:.3f}, shuffled labels {shuffled:.3f}, majority/zero baseline "
            f"{float(dyn['baseline'][j]):.3f}){when}."
        )
    return lines


def write_report(run, out: Path, probe_kind: str = "ridge", seed: int = 0) -> Path:
    """Probe every site for every tic-tac-toe concept at every checkpoint, patch one-square
    counterfactual pairs on the final network, and write ``report.md``."""
    if run.config.env != "tic_tac_toe":
        raise ValueError(f"the report is written for tic_tac_toe runs; this run plays {run.config.env!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    states, boards = tic_tac_toe_reachable()
    live = np.flatnonzero(~np.asarray(states.terminated))
    obs = states.observation.astype(jnp.float32)
    values = concept_library.compute("tic_tac_toe", jax.tree.map(lambda x: x[live], states))
    sites = [s for s in interp.sites(run.model, obs[:1]) if s not in ("input", "tokens")]
    random_params = run.model.init(jax.random.key(seed + 12345), obs[:1])["params"]
    dyn = probe_dynamics(run, obs[live], values, sites, probe_kind, random_params=random_params)
    figures = [
        plot_what_when_where(dyn, out / "what_when_where.png",
                             ["can_win_now", "opponent_threatens_win", "fork_available", "game_value",
                              "centre_own", "centre_opponent", "winning", "losing"]),
        plot_probe_table(dyn["test"][-1], dyn["sites"], dyn["concepts"], out / "probes_final.png",
                         f"{probe_kind} probe, held-out score, final checkpoint (step {int(dyn['step'][-1])})"),
        plot_probe_table(dyn["random_network"], dyn["sites"], dyn["concepts"], out / "probes_random_network.png",
                         "same probes on a randomly initialised network (control)"),
    ]
    params = run.params()
    spatial = [s for s, axes in interp.site_axes(run.model, obs[:1]).items()
               if (axes or ())[:2] == ("row", "col") and s != "input"]
    maps = {}
    if spatial:
        solution_terminal = np.asarray(states.terminated)
        maps = square_patching(run.model, params, obs, single_square_pairs(boards, solution_terminal), spatial)
        figures.append(plot_square_maps(maps, out / "square_patching.png"))
    else:
        corrupted = obs[live][jax.random.permutation(jax.random.key(seed), live.size)]
        effects = interp.patching_sweep(run.model, params, obs[live], corrupted, interp.metrics.value, sites=sites)
        figures.append(plot_effects_by_unit(
            effects, out / "patching_by_unit.png", "Effect on value of resample-patching each unit"))

    # Attribution: which squares the value depends on, by two independent methods.
    ig = np.abs(np.asarray(integrated_gradients(run.model, params, obs[live], interp.metrics.value, steps=16)))
    occ = np.abs(np.asarray(occlusion(run.model, params, obs[live], interp.metrics.value)))
    ig_map, occ_map = ig.sum(-1).mean(0), occ.mean(0)
    figures.append(plot_board_rows([[{"heat": ig_map, "title": "mean |integrated gradients|"},
                                     {"heat": occ_map, "title": "mean |occlusion effect|"}]],
                                   out / "attribution_by_square.png", "What the value depends on, per square",
                                   cmap="viridis"))
    rep = representation_dynamics(run, obs[live], sites)
    figures.append(plot_representation_dynamics(rep, out / "representation_dynamics.png"))
    found = findings(dyn)
    agree = float(np.corrcoef(ig_map.ravel(), occ_map.ravel())[0, 1])
    found.append(f"The value depends most on square {int(ig_map.argmax())} by integrated gradients and on square "
                 f"{int(occ_map.argmax())} by occlusion (the two per-square maps correlate at r = {agree:.2f}).")
    settled = {s: int(rep["step"][np.argmax(rep["cka"][:, i] >= 0.9)]) if (rep["cka"][:, i] >= 0.9).any() else None
               for i, s in enumerate(rep["sites"])}
    first_settled = [s for s, v in settled.items() if v is not None]
    if first_settled:
        early = min(first_settled, key=lambda s: settled[s])
        found.append(f"Representations settle (CKA >= 0.9 with the final checkpoint) first at `{early}` "
                     f"(step {settled[early]}); " + ", ".join(f"`{s}` {v}" for s, v in settled.items()) + ".")
    elapsed = time.perf_counter() - t0
    md = [
        f"# Interpretability report: {run.folder}",
        "",
        f"Agent: AlphaZero on tic-tac-toe, model `{run.config.model}` {dict(run.config.model_kwargs)}, "
        f"{len(dyn['step'])} checkpoints (steps {int(dyn['step'][0])}..{int(dyn['step'][-1])}). "
        f"Probes: {probe_kind}, trained on 75% of the {live.size} non-terminal reachable positions, "
        f"scored on the other 25% (accuracy for binary concepts, R^2 otherwise). Report written in {elapsed:.0f} s.",
        "",
        "## Findings",
        *[f"- {line}" for line in found],
        "",
        "## Figures",
        *[f"![{f.stem}]({f.name})" for f in figures],
        "",
        "Controls: the same probe on a randomly initialised network of the same architecture "
        "(McGrath et al.), and on labels shuffled across positions (selectivity).",
    ]
    (out / "report.md").write_text("\n".join(md) + "\n")
    summary = {
        "steps": dyn["step"].tolist(), "sites": list(dyn["sites"]), "concepts": list(dyn["concepts"]),
        "probe_test": dyn["test"].tolist(), "random_network": dyn["random_network"].tolist(),
        "shuffled_labels": dyn["shuffled_labels"].tolist(), "findings": found,
        "square_patching": {k: v.tolist() for k, v in maps.items()},
        "attribution_by_square": {"integrated_gradients": ig_map.tolist(), "occlusion": occ_map.tolist()},
        "representation_cka_to_final": rep["cka"].tolist(),
    }
    (out / "report.json").write_text(json.dumps(summary))
    return out / "report.md"

