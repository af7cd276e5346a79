"""Open problem 8.3: which tic-tac-toe concepts does a trained AlphaZero network represent
linearly, beyond what an untrained network of the same architecture already gives?

What counts as a finding (stated before any number; `RULE` below): for a concept, the
held-out score of a ridge probe at the best site (accuracy for binary concepts, R^2 for the
rest; best of all sites, so the site search is inside the statistic) exceeds the mean
best-site score of untrained networks by at least 0.05, with an empirical p <= 0.05 against
those untrained networks (one-sided, Holm-corrected over the concepts tested), in every one of
at least 3 independently seeded agents. Otherwise the report says "no effect found" for it.

Probes are trained on 75% of the non-terminal reachable positions and scored on the other 25%
(one split, the same for every network). The null: `--null` freshly initialised networks of
the agents' architecture, shared by all agents. Shuffled-label probes (labels permuted across
positions) are reported as a second control. The per-checkpoint report (what-when-where,
square patching) of one agent is `rljaxinterp report <run folder>`.

    python experiments/ttt_concepts.py --tier quick
    python experiments/ttt_concepts.py --agents 3 --out runs/ttt_concepts
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import findings, interp
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.interp import concepts
from rljaxinterp.interp.probes import fit_probes, site_features

CONCEPTS = ["can_win_now", "opponent_threatens_win", "fork_available", "game_value", "centre_own",
            "centre_opponent", "winning", "losing"]
RULE = findings.Rule(
    "the trained network represents the concept linearly beyond an untrained network", min_effect=0.05,
    direction="increase", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
    statistic="best-site held-out probe score minus the untrained-network mean")


def best_scores(model, params, obs, labels, sites, key, shuffle=False) -> np.ndarray:
    """Best-site held-out probe score per concept, shape (concepts,)."""
    scores = fit_probes(site_features(model, params, obs, sites), labels, "ridge", key, shuffle_labels=shuffle)
    return np.asarray(scores.test).max(0)


def main() -> None:
    parser = findings.experiment_parser(__doc__, "runs/ttt_concepts")
    parser.add_argument("--null", type=int, default=None, help="untrained networks (default: fewest for Holm + 20)")
    parser.add_argument("--shuffles", type=int, default=5, help="shuffled-label draws per agent")
    args = parser.parse_args()
    agents, out = findings.open_agents(args)
    report = findings.Report("Linear probes for tic-tac-toe concepts", agents.seeds, args.tier)
    states, _ = tic_tac_toe_reachable()
    live = np.flatnonzero(~np.asarray(states.terminated))
    obs = states.observation[live].astype(jnp.float32)
    values = concepts.compute("tic_tac_toe", jax.tree.map(lambda x: x[live], states), CONCEPTS)
    labels = {c: jnp.asarray(values[c], jnp.float32) for c in CONCEPTS}
    model = agents.runs[0].model
    sites = [s for s in interp.sites(model, obs[:1]) if s not in ("input", "tokens")]
    key = jax.random.key(args.seed)
    split_key, null_key, shuffle_key = jax.random.split(key, 3)
    n_null = args.null or RULE.required_draws(len(CONCEPTS)) + 20

    observed = np.stack([best_scores(r.model, r.params(), obs, labels, sites, split_key) for r in agents])
    print("trained:", {c: [round(float(x), 3) for x in observed[:, j]] for j, c in enumerate(CONCEPTS)}, flush=True)
    shuffled = np.stack([[best_scores(r.model, r.params(), obs, labels, sites, k, shuffle=True) for k in jax.random.split(jax.random.fold_in(shuffle_key, a), args.shuffles)]
                         for a, r in enumerate(agents)])  # (agents, shuffles, concepts)
    untrained = np.stack([best_scores(model, p, obs, labels, sites, split_key)
                          for p in findings.untrained_params(model, obs, null_key, n_null)])  # (draws, concepts)
    ev = findings.evidence(observed, untrained, CONCEPTS, RULE.alternative, RULE.correction)

    quick = (" Quick tier: small agents (conv 16 channels, 1 block, 30 AlphaZero iterations); the full tier's "
             "agents are the ones earlier reports used." if args.tier == "quick" else "")
    report.add(
        f"Agents: {agents.describe()}. Ridge probes at {len(sites)} sites on {live.size} non-terminal reachable "
        f"positions (75% train / 25% held out, split seed {args.seed}). Null: {n_null} untrained networks of the "
        f"same architecture (best site each); {len(CONCEPTS)} concepts tested.{quick}", "")
    report.finding(RULE, ev, "Concepts beyond an untrained network (pre-stated rule)")
    rows = [("| concept | trained: best-site score per agent | untrained: mean [2.5%, 97.5%] | shuffled labels "
            "(mean per agent) |"), "|---|---|---|---|"]
    for j, c in enumerate(CONCEPTS):
        lo, hi = np.quantile(untrained[:, j], [0.025, 0.975])
        rows.append(f"| `{c}` | {', '.join(f'{x:.3f}' for x in observed[:, j])} | {untrained[:, j].mean():.3f} "
                    f"[{lo:.3f}, {hi:.3f}] | {', '.join(f'{x:.3f}' for x in shuffled[:, :, j].mean(1))} |")
    report.add("### Scores", "", *rows)
    report.data.update(concepts=CONCEPTS, sites=sites, trained=observed.tolist(), untrained=untrained.tolist(),
                       shuffled=shuffled.tolist())
    path = report.write(out, args.readme, f"ttt_concepts.{args.tier}")
    print("\n".join(report.conclusions))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
