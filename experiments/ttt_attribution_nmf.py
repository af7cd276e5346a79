"""Hilton et al. ("Understanding RL vision") on the tic-tac-toe AlphaZero network.

Integrated gradients of the value at a hidden conv site, over every non-terminal reachable
position; NMF of the attributions (squares as rows, the positive and negative part of each
channel as columns), so each factor is a group of channels whose attribution rises and
falls together, with a weight on every square of every position. Each factor is drawn on
the boards where it is strongest, and read against per-square concepts:

- reading: the per-square concept that the factor's weight separates best (ROC AUC),
  chosen on half of the positions and checked on the other half;
- ablation: zero the factor's main channels at the square where the factor is strongest;
  the value should move by the attribution the factor assigns there (correlation across
  positions), and more than when as many other channels are zeroed at the same square.

    python experiments/ttt_attribution_nmf.py --run runs/ttt_conv --out runs/ttt_nmf
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import rankdata
from tic_tac_toe_agent import experiment_parser, open_experiment

from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.interp import Sizing, concepts, metrics, run_with_interventions, zero_ablate
from rljaxinterp.interp.attribution import integrated_gradients
from rljaxinterp.interp.concepts.tic_tac_toe import square_concepts
from rljaxinterp.interp.factorisation import nmf, nonnegative_parts, per_position, top_rows
from rljaxinterp.interp.plots import plot_board_rows

SQUARE_NAMES = ["top-left", "top", "top-right", "left", "centre", "right", "bottom-left", "bottom", "bottom-right"]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive square outscores a random negative one (ties half)."""
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
    parser = experiment_parser(__doc__, "runs/ttt_nmf")
    parser.add_argument("--site", default="block0.resid_post")
    parser.add_argument("--rank", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--channels", type=int, default=4, help="channels ablated per factor")
    args = parser.parse_args()
    t0 = time.perf_counter()
    run, out = open_experiment(args)
    model, params = run.model, run.params()

    states, _ = tic_tac_toe_reachable()
    live = np.flatnonzero(~np.asarray(states.terminated))
    states = jax.tree.map(lambda x: x[live], states)
    obs = states.observation.astype(jnp.float32)
    n = obs.shape[0]

    # 1. integrated gradients of the value at the site, zero-activation baseline
    attr, gap = integrated_gradients(model, params, obs, metrics.value, site=args.site, steps=32,
                                     return_delta=True, sizing=Sizing(states_per_call=512))
    if attr.shape[1:3] != (3, 3):
        raise SystemExit(f"site {args.site!r} has shape {attr.shape[1:]}; pick a conv site laid out on the board")
    channels = attr.shape[-1]
    print(f"integrated gradients at {args.site}: {n} positions, completeness gap max {float(jnp.abs(gap).max()):.2e}")

    # 2. NMF of the attributions, one row per (position, square)
    fit = nmf(nonnegative_parts(per_position(attr)), args.rank, args.iterations, jax.random.key(args.seed))
    weights = np.asarray(fit.weights).reshape(n, 9, args.rank)
    comps = np.asarray(fit.components)
    signed = comps[:, :channels] - comps[:, channels:]  # + : raises the value, - : lowers it
    print(f"NMF rank {args.rank}: relative reconstruction error {float(fit.relative_error):.3f}")

    # 3. readings against per-square concepts, chosen on one half and checked on the other
    sq = {k: np.asarray(v) for k, v in square_concepts(states).items()}
    whole = {k: np.asarray(v).reshape(n) > 0.5 for k, v in concepts.compute("tic_tac_toe", states).items()
             if set(np.unique(np.asarray(v))) <= {0, 1}}  # binary position-level concepts
    perm = np.random.default_rng(args.seed).permutation(n)
    half_a, half_b = perm[: n // 2], perm[n // 2:]
    base_value = np.asarray(run_with_interventions(model, params, obs, None).value)
    factors = []
    for f in range(args.rank):
        w = weights[..., f]
        total = w.sum(1)  # the factor's strength in a position

        def score(concept, rows):
            if concept in sq:  # per-square reading: compare squares
                return auc(w[rows].ravel(), sq[concept][rows].ravel())
            return auc(total[rows], whole[concept][rows])  # per-position reading: compare positions

        aucs_a = {c: score(c, half_a) for c in (*sq, *whole)}
        best = max(aucs_a, key=lambda c: abs(aucs_a[c] - 0.5) if np.isfinite(aucs_a[c]) else -1)
        held_out = score(best, half_b)
        location = int(np.argmax(w.mean(0)))  # where on the board the factor lives
        at_location = float(w[:, location].sum() / w.sum())
        # ablation: zero the factor's main channels at its strongest square, per position
        top_channels = np.argsort(-np.abs(signed[f]))[: args.channels]
        rng = np.random.default_rng(args.seed + f)
        others = rng.choice(np.setdiff1d(np.arange(channels), top_channels), args.channels, replace=False)
        square = w.argmax(1)
        where = jax.nn.one_hot(square, 9).reshape(n, 3, 3, 1)

        def ablated_value(chs):
            mask = where * jnp.zeros(channels).at[chs].set(1.0)
            return np.asarray(run_with_interventions(model, params, obs, zero_ablate(args.site, mask)).value)

        change = ablated_value(top_channels) - base_value
        control = ablated_value(others) - base_value
        attributed = np.asarray(attr).reshape(n, 9, channels)[np.arange(n), square][:, top_channels].sum(1)
        active = w.max(1) > np.quantile(w.max(1), 0.5)
        factors.append({
            "factor": f, "explained": float(fit.explained[f]),
            "direction": "raises" if signed[f].sum() > 0 else "lowers",
            "square": location, "share_on_square": at_location,
            "reading": best, "reading_level": "square" if best in sq else "position", "auc_chosen_half": aucs_a[best], "auc_held_out_half": held_out,
            "top_channels": top_channels.tolist(),
            "ablation_mean_abs_change": float(np.abs(change[active]).mean()),
            "control_mean_abs_change": float(np.abs(control[active]).mean()),
            "ablation_vs_attribution_corr": float(np.corrcoef(change[active], -attributed[active])[0, 1]),
            "top_positions": top_rows(w.max(1)[:, None], 6)[0].tolist(),
        })

    # 4. figures: each factor on its strongest positions, its mean map, and the readings
    rows, labels = [], []
    for fa in factors:
        f = fa["factor"]
        rows.append([{"heat": weights[i, :, f].reshape(3, 3), "own": np.asarray(obs[i, ..., 0]),
                      "opponent": np.asarray(obs[i, ..., 1]), "title": f"v={base_value[i]:+.2f}"}
                     for i in fa["top_positions"]])
        labels.append(f"factor {f}\n{fa['reading']}")
    boards_png = plot_board_rows(rows, out / "factors_on_boards.png",
                                 f"NMF factors of IG attributions at {args.site} (weight per square; "
                                 "dot = side to move, ring = opponent)", labels, cmap="viridis")
    fig, axes = plt.subplots(1, args.rank, figsize=(2.0 * args.rank, 2.4))
    for f, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(weights[..., f].mean(0).reshape(3, 3), cmap="viridis")
        ax.set_title(f"factor {f}: mean weight", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "factor_mean_maps.png", dpi=110)
    plt.close(fig)

    sentences = []
    for fa in factors:
        margin = abs(fa["auc_held_out_half"] - 0.5)
        verdict = ("a clear reading on held-out positions" if margin >= 0.2 else
                   "a moderate reading, confirmed on held-out positions" if margin >= 0.1 else "a weak reading")
        effect = (f"zeroing its {args.channels} main channels at its strongest square moves the value by "
                  f"{fa['ablation_mean_abs_change']:.3f} on average (as many other channels: "
                  f"{fa['control_mean_abs_change']:.3f}); the change tracks the attribution with r = "
                  f"{fa['ablation_vs_attribution_corr']:.2f}")
        where = "squares that are" if fa["reading_level"] == "square" else "positions with"
        kind = "strong on" if fa["auc_held_out_half"] >= 0.5 else "weak on"
        sentences.append(
            f"**Factor {fa['factor']}** ({100 * fa['explained']:.1f}% of the squared attribution, "
            f"{fa['direction']} the value) lives on square {fa['square']} ({SQUARE_NAMES[fa['square']]}; "
            f"{100 * fa['share_on_square']:.0f}% of its weight) and is {kind} {where} `{fa['reading']}` (AUC "
            f"{fa['auc_chosen_half']:.2f} on the half used to choose the reading, {fa['auc_held_out_half']:.2f} on "
            f"the other half: {verdict}); {effect}.")
    elapsed = time.perf_counter() - t0
    md = [
        "# Integrated gradients + NMF on the tic-tac-toe AlphaZero network",
        "",
        f"Run `{run.folder}` (step {run.steps[-1]}, model `{run.config.model}` {dict(run.config.model_kwargs)}). "
        f"Integrated gradients of the value at `{args.site}` (zero baseline, 32 Gauss-Legendre points) over all "
        f"{n} non-terminal reachable positions; largest completeness gap {float(jnp.abs(gap).max()):.1e}. NMF rank "
        f"{args.rank}, {args.iterations} multiplicative updates on the {n * 9} x {2 * channels} matrix of "
        f"(position, square) x (positive, negative part of each channel): relative reconstruction error "
        f"{float(fit.relative_error):.3f}. Written in {elapsed:.0f} s.",
        "",
        "Readings are machine-chosen: for each factor, the concept its weight separates best (ROC AUC, 0.5 = chance), "
        "among per-square concepts (own piece, opponent piece, empty, winning move, blocking move, fork move; the "
        "factor's weight on each square) and binary position concepts of the concept library (the factor's total "
        "weight in each position).",
        "",
        "## Factors",
        *[f"- {s}" for s in sentences],
        "",
        f"![factors on boards]({boards_png.name})",
        "",
        "![mean maps](factor_mean_maps.png)",
    ]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps({"site": args.site, "rank": args.rank, "positions": n,
                                                  "relative_error": float(fit.relative_error),
                                                  "factors": factors}, indent=1))
    print("\n".join(sentences))
    print(f"report: {out / 'report.md'} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
