"""Hilton et al. ("Understanding RL vision") on tic-tac-toe AlphaZero networks.

What counts as a finding (stated before any number; `ABLATION` and `READING` below), each in
every one of at least 3 independently seeded agents, empirical p <= 0.05 (one-sided, one test
per agent and rule, so no correction):

- ablation: zeroing each factor's main channels at its strongest square moves the value (mean
  |change| over factors and the positions where the factor is active) at least 1.5 times as
  much as zeroing as many random other channels there (effect: ratio to the random-channel
  null mean, minus 1, >= 0.5);
- reading: the concept each factor's weight separates best (ROC AUC, chosen on one half of the
  positions) still separates it on the other half: mean held-out |AUC - 0.5| over factors at
  least 0.1 above the same pipeline run on factor weights shuffled across positions.

Method per agent: integrated gradients of the value at a conv site over every non-terminal
reachable position; NMF of the attributions (rows: (position, square); columns: positive and
negative part of each channel). Readings are per-square concepts (own/opponent piece, empty,
winning, blocking, fork move) and binary position concepts of the concept library.

    python experiments/ttt_attribution_nmf.py --tier quick
    python experiments/ttt_attribution_nmf.py --agents 3 --out runs/ttt_nmf
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata

from rljaxinterp import findings
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.interp import Sizing, concepts, metrics, run_with_interventions, zero_ablate
from rljaxinterp.interp.attribution import integrated_gradients
from rljaxinterp.interp.concepts.tic_tac_toe import square_concepts
from rljaxinterp.interp.factorisation import nmf, nonnegative_parts, per_position, top_rows
from rljaxinterp.interp.plots import plot_board_rows

ABLATION = findings.Rule("ablating each NMF factor's main channels moves the value more than random channels",
                         min_effect=0.5, direction="increase", alpha=0.05, agreement=1.0, min_agents=3,
                         correction="none", statistic="mean |value change| / random-channel null mean - 1")
READING = findings.Rule("each NMF factor has a concept reading that holds on held-out positions",
                        min_effect=0.1, direction="increase", alpha=0.05, agreement=1.0, min_agents=3,
                        correction="none", statistic="mean held-out |AUC - 0.5| minus the shuffled-weights mean")


def aucs(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of ``scores`` (m,) for each column of ``labels`` (m, concepts) at once: the
    probability that a random positive outscores a random negative (ties half; NaN if one class)."""
    ranks = rankdata(scores)
    pos = labels.sum(0).astype(np.float64)
    neg = labels.shape[0] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (ranks @ labels - pos * (pos + 1) / 2) / (pos * neg)
    return np.where((pos > 0) & (neg > 0), out, np.nan)


def readings(weights, sq, whole, names, half_a, half_b):
    """Per factor: (best concept on half a, its AUC there, its AUC on half b). Per-square
    concepts compare squares (the factor's weight on each), position concepts compare
    positions (its total weight)."""
    def all_aucs(w, rows):
        return np.concatenate([aucs(w[rows].ravel(), sq[rows].reshape(-1, sq.shape[-1])), aucs(w[rows].sum(1), whole[rows])])

    out = []
    for f in range(weights.shape[-1]):
        a = all_aucs(weights[..., f], half_a)
        best = int(np.argmax(np.where(np.isfinite(a), np.abs(a - 0.5), -1)))
        out.append((names[best], float(a[best]), float(all_aucs(weights[..., f], half_b)[best])))
    return out


def analyse(run, obs, sq, whole, names, args, key):
    """One agent: attributions, factors, readings and ablations with their nulls."""
    model, params = run.model, run.params()
    n = obs.shape[0]
    attr = integrated_gradients(model, params, obs, metrics.value, site=args.site, steps=32,
                                sizing=Sizing(states_per_call=512))
    if attr.shape[1:3] != (3, 3):
        raise SystemExit(f"site {args.site!r} has shape {attr.shape[1:]}; pick a conv site laid out on the board")
    channels = attr.shape[-1]
    fit = nmf(nonnegative_parts(per_position(attr)), args.rank, args.iterations, jax.random.fold_in(key, 0))
    weights = np.asarray(fit.weights).reshape(n, 9, args.rank)
    comps = np.asarray(fit.components)
    signed = comps[:, :channels] - comps[:, channels:]
    perm = np.random.default_rng(args.seed).permutation(n)
    half_a, half_b = perm[: n // 2], perm[n // 2:]
    read = readings(weights, sq, whole, names, half_a, half_b)
    shuffles = [np.random.default_rng(args.seed + 1 + d).permutation(n) for d in range(args.null)]
    read_null = [np.mean([abs(r[2] - 0.5) for r in readings(weights[order], sq, whole, names, half_a, half_b)])
                 for order in shuffles]

    base = run_with_interventions(model, params, obs, None).value
    # params, obs and base are arguments, not constants (XLA would constant-fold the whole network)
    ablate_at = jax.jit(lambda p, x, b, where, chs: jnp.abs(run_with_interventions(
        model, p, x, zero_ablate(args.site, where * jnp.zeros(channels).at[chs].set(1.0))).value - b))
    ablate = lambda where, chs: ablate_at(params, obs, base, where, chs)
    top = [np.argsort(-np.abs(signed[f]))[: args.channels] for f in range(args.rank)]
    observed, null = [], np.zeros((args.null, args.rank))
    for f in range(args.rank):
        w = weights[..., f]
        where = jax.nn.one_hot(w.argmax(1), 9).reshape(n, 3, 3, 1)
        active = w.max(1) > np.quantile(w.max(1), 0.5)
        observed.append(float(ablate(where, jnp.asarray(top[f]))[active].mean()))
        randoms = findings.random_units(jax.random.fold_in(key, 1 + f), channels, args.channels, args.null, top[f])
        null[:, f] = [float(ablate(where, jnp.asarray(r))[active].mean()) for r in randoms]
    factors = [{"factor": f, "explained": float(fit.explained[f]), "reading": r[0], "auc_chosen_half": r[1],
                "auc_held_out_half": r[2], "square": int(np.argmax(weights[..., f].mean(0))),
                "top_channels": top[f].tolist(), "ablation_mean_abs_change": observed[f],
                "random_channels_mean_abs_change": float(null[:, f].mean())} for f, r in enumerate(read)]
    return {"weights": weights, "base": np.asarray(base), "factors": factors, "error": float(fit.relative_error),
            "ablation": float(np.mean(observed)), "ablation_null": null.mean(1),
            "reading": float(np.mean([abs(r[2] - 0.5) for r in read])), "reading_null": np.asarray(read_null)}


def main() -> None:
    parser = findings.experiment_parser(__doc__, "runs/ttt_nmf")
    parser.add_argument("--site", default="block0.resid_post")
    parser.add_argument("--rank", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--channels", type=int, default=4, help="channels ablated per factor")
    parser.add_argument("--null", type=int, default=None, help="null draws (default: 29 quick, 99 full)")
    args = parser.parse_args()
    args.null = args.null or (29 if args.tier == "quick" else 99)
    agents, out = findings.open_agents(args)
    report = findings.Report("Integrated gradients + NMF on tic-tac-toe AlphaZero networks", agents.seeds, args.tier)
    states, _ = tic_tac_toe_reachable()
    live = np.flatnonzero(~np.asarray(states.terminated))
    states = jax.tree.map(lambda x: x[live], states)
    obs = states.observation.astype(jnp.float32)
    per_square = {k: np.asarray(v) for k, v in square_concepts(states).items()}  # (positions, 9) each
    binary = {k: np.asarray(v).reshape(live.size) > 0.5 for k, v in concepts.compute("tic_tac_toe", states).items()
              if set(np.unique(np.asarray(v))) <= {0, 1}}
    sq, whole = np.stack(list(per_square.values()), -1), np.stack(list(binary.values()), -1)
    names = [*per_square, *binary]
    results = []
    for a, run in enumerate(agents):
        results.append(analyse(run, obs, sq, whole, names, args, jax.random.fold_in(jax.random.key(args.seed), a)))
        r = results[-1]
        print(f"agent seed {agents.seeds[a]}: ablation {r['ablation']:.3f} (random {r['ablation_null'].mean():.3f}), "
              f"held-out |AUC-0.5| {r['reading']:.3f} (shuffled {r['reading_null'].mean():.3f})", flush=True)

    abl_obs = np.array([r["ablation"] for r in results])
    abl_null = np.stack([r["ablation_null"] for r in results])[..., None]
    ratio = abl_obs[:, None] / abl_null.mean(1) - 1
    ablation = findings.evidence(abl_obs, abl_null, ["ablation"], ABLATION.alternative, ABLATION.correction, ratio)
    reading = findings.evidence(np.array([r["reading"] for r in results]),
                                np.stack([r["reading_null"] for r in results])[..., None], ["reading"],
                                READING.alternative, READING.correction)

    first = results[0]
    rows = [[{"heat": first["weights"][i, :, fa["factor"]].reshape(3, 3), "own": np.asarray(obs[i, ..., 0]),
              "opponent": np.asarray(obs[i, ..., 1]), "title": f"v={first['base'][i]:+.2f}"}
             for i in top_rows(first["weights"][..., fa["factor"]].max(1)[:, None], 6)[0].tolist()]
            for fa in first["factors"]]
    boards = plot_board_rows(rows, out / "factors_on_boards.png",
                             f"seed {agents.seeds[0]}: NMF factors of IG attributions at {args.site}",
                             [f"factor {fa['factor']}\n{fa['reading']}" for fa in first["factors"]], cmap="viridis")
    errors = [r["error"] for r in results]
    quick = (" Quick tier: small agents (conv 16 channels, 1 block, 30 AlphaZero iterations) and "
             f"{args.null} null draws." if args.tier == "quick" else "")
    report.add(f"Agents: {agents.describe()}. Integrated gradients of the value at `{args.site}` (zero baseline, "
               f"32 points) over {live.size} non-terminal positions; NMF rank {args.rank}, {args.iterations} updates "
               f"(relative error per agent: {', '.join(f'{e:.3f}' for e in errors)}); {args.channels} "
               f"channels ablated per factor; {args.null} null draws per agent.{quick}", "")
    report.finding(ABLATION, ablation, "Factor ablations (pre-stated rule)")
    report.finding(READING, reading, "Factor readings (pre-stated rule)")
    report.add("### Factors per agent", "")
    for seed, r in zip(agents.seeds, results):
        report.add(f"Seed {seed}:", "", "| factor | explained | reading | AUC chosen / held out | |value change|: "
                   "factor / random channels |", "|---|---|---|---|---|",
                   *[f"| {fa['factor']} | {100 * fa['explained']:.1f}% | `{fa['reading']}` | "
                     f"{fa['auc_chosen_half']:.2f} / {fa['auc_held_out_half']:.2f} | "
                     f"{fa['ablation_mean_abs_change']:.3f} / {fa['random_channels_mean_abs_change']:.3f} |"
                     for fa in r["factors"]], "")
    report.add(f"![factors on boards]({boards.name})")
    report.data.update(site=args.site, rank=args.rank, factors=[r["factors"] for r in results])
    path = report.write(out, args.readme, f"ttt_attribution_nmf.{args.tier}")
    print("\n".join(report.conclusions))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
