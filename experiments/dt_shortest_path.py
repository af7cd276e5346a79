"""Open problem 8.8: what does a decision transformer compute when it finds shortest paths?

A DT (run kind ``dt``, GraphPaths-v0 preset) is trained on random walks and conditioned on the
best return, -(BFS distance). Five measurements, each against an untrained network of the
same architecture where that is meaningful:

1. Probes at the current state token of every site (ridge, held-out 25%): BFS distance to the
   goal, the return-to-go, and "next node on a shortest path" (one probe per node; decoded as
   the argmax over nodes, scored by how often it is a shortest-path successor). States come
   from uniformly random play, so distance and return-to-go are not the same number.
2. Head patching between (start, goal) pairs that differ only in the goal (same distance, so
   the same return-to-go; disjoint shortest-path moves): the share of the clean-vs-corrupted
   logit difference (clean move minus corrupted move) that each head's output carries.
3. Attention from the current state token to the return-to-go tokens, per head.
4. Mean ablations (over random-play activations) of each head, each MLP and of the
   return-to-go token's embedding, judged by replaying every reachable pair.

5. Conditioning on a worse return than the best, -(distance + k) for k = 0..3.

Every measurement is taken on ``--agents`` independently seeded DTs (default 3; run folders
``<base>/seed{k}``, trained or reused) and reported as mean, 95% t-interval across agents and
per agent. What counts as a finding (stated before any number; ``RULES`` below), in every one
of at least 3 agents, with an empirical p <= 0.05 against ``--null`` untrained DTs of the same
architecture (best site each, the same states and split):

* **probes**: the best-site held-out probe score (R^2 for distance and return-to-go, decoding
  rate for the next node) exceeds the untrained networks' mean by >= 0.05 (Holm over the 3
  concepts);
* **return steers**: asking for 3 steps more than the optimum lengthens the successful paths
  by >= 1 step more than it does for the untrained networks.

Otherwise the report says "no effect found". Head patching, attention and ablations are
reported as intervals across agents without a rule.

    python experiments/dt_shortest_path.py --tier quick --readme experiments/README.md
    python experiments/dt_shortest_path.py [--agents 3] [--out runs/dt_shortest_path]
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import findings, interp, reporting, runs
from rljaxinterp.agents.decision_transformer import evaluate, walk_figures
from rljaxinterp.envs.sampling import random_play_states
from rljaxinterp.interp import concepts, sequence
from rljaxinterp.interp.metrics import clean_minus_corrupt
from rljaxinterp.interp.probes import fit_probes, probe_split

ENV = "GraphPaths-v0"


def probe_table(model, params, obs, pos, labels, key, n_nodes):
    """Per site: R^2 of distance / return-to-go, and the next-node decoding rate on held-out states."""
    feats = sequence.token_features(model, params, obs, pos)
    feats = {k: v for k, v in feats.items() if k not in ("logits", "value")}
    scores = fit_probes(feats, labels, "ridge", key)
    _, test = probe_split(key, obs.shape[0])
    names = list(labels)
    nxt = [names.index(f"shortest_next_{i}") for i in range(n_nodes)]
    truth = np.stack([np.asarray(labels[names[j]]) for j in nxt], 1)[test] > 0.5
    rows, weights, bias = {}, np.asarray(scores.weights), np.asarray(scores.bias)
    for s, site in enumerate(scores.sites):
        x = np.asarray(feats[site])[test]
        pred = x @ weights[s][nxt, : x.shape[1]].T + bias[s][nxt]
        rows[site] = {"distance_to_goal": float(scores.test[s, names.index("distance_to_goal")]),
                      "return_to_go": float(scores.test[s, names.index("return_to_go")]),
                      "next_node": float(truth[np.arange(len(test)), pred.argmax(1)].mean())}
    return rows


def goal_pairs(env):
    """(start, clean goal, corrupted goal, clean move, corrupted move): same distance, disjoint moves."""
    d, adj, out = env.distances_np, env.adjacency_np, []
    for s in range(env.num_nodes):
        for g1 in range(env.num_nodes):
            for g2 in range(g1 + 1, env.num_nodes):
                if d[s, g1] > 0 and d[s, g1] == d[s, g2]:
                    m1 = np.flatnonzero(adj[s] & (d[:, g1] == d[s, g1] - 1))
                    m2 = np.flatnonzero(adj[s] & (d[:, g2] == d[s, g2] - 1))
                    if not set(m1) & set(m2):
                        out += [(s, g1, g2, m1[0], m2[0]), (s, g2, g1, m2[0], m1[0])]
    return np.asarray(out, np.int32)


RULES = {
    "probes": findings.Rule(
        "the trained DT represents the concept at its current state token beyond an untrained DT", min_effect=0.05,
        direction="increase", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
        statistic="best-site held-out probe score minus the untrained-network mean"),
    "return steers": findings.Rule(
        "asking for a longer path (a worse return) makes the DT walk a longer path", min_effect=1.0,
        direction="increase", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
        statistic="extra steps when asked for 3 more than the optimum, minus the untrained-network mean"),
}
CONCEPTS = ("distance_to_goal", "return_to_go", "next_node")
TIERS = {"quick": 2000, "full": 4000}  # probe states (both tiers interpret the preset's agents: shorter
# training leaves DTs below the bar, e.g. success 0.58 after 500 updates, 0.89 for seed 1 after 1,500)


def policies(model):
    """The two replacement policies (one closure each, so every agent shares their compile):
    the network under interventions, and the network conditioned on a return ``extra`` worse."""
    ablated = lambda pv, o: interp.run_with_interventions(model, pv[0], o, pv[1]).logits
    shifted = lambda p, o: model.apply({"params": p[0]}, o.at[..., 1].add(-p[1] * o[..., 0])).logits
    return ablated, shifted


def extra_steps(agent, params, shifted, extra: int) -> float:
    """Mean steps beyond the optimum on the pairs reached when asked for ``extra`` more."""
    v = evaluate(agent, (params, jnp.float32(extra)), shifted)
    return v["mean_length"] - v["mean_optimal"]


def best_probe_scores(rows: dict) -> np.ndarray:
    return np.array([max(r[c] for r in rows.values()) for c in CONCEPTS])


def measure(run, obs, pos, labels, key, ablated, shifted) -> dict:
    """Every measurement of one trained agent (see the module docstring)."""
    agent, model, env, params = run.agent, run.model, run.env, run.params()
    res = {"run": str(run.folder), "bar": evaluate(agent, params), "random_walks": walk_figures(env, run.state()[0].data)}
    res["probes"] = probe_table(model, params, obs, pos, labels, key, env.num_nodes)
    # 2. head patching between goals
    pairs = goal_pairs(env)
    clean = jax.vmap(env.reset_to)(pairs[:, 0], pairs[:, 1]).observation
    corrupt = jax.vmap(env.reset_to)(pairs[:, 0], pairs[:, 2]).observation
    data = {"clean": jnp.asarray(pairs[:, 3]), "corrupt": jnp.asarray(pairs[:, 4])}
    z_sites = sequence.head_sites(model, clean, params)
    heads, ld_clean, ld_corrupt = interp.gap_shares(model, params, clean, corrupt, clean_minus_corrupt, z_sites, "head",
                                                    data)
    resid, _, _ = interp.gap_shares(model, params, clean, corrupt, clean_minus_corrupt,
                                    [f"blocks.{i}.resid_pre" for i in range(model.layers)], "position", data)
    res["goal_patching"] = {"pairs": len(pairs), "logit_diff_clean": ld_clean, "logit_diff_corrupt": ld_corrupt,
                            "head_share": np.concatenate([heads[s] for s in z_sites]).tolist(),
                            "resid_pre_share_by_token": {k: v[:3].tolist() for k, v in resid.items()}}
    # 3. attention to the return-to-go tokens
    rtg = sequence.kind_mask(model, obs.shape[1] * len(model.token_types), ["return_to_go"])
    res["attention_to_rtg"] = np.concatenate([np.asarray(v.mean(0)) for v in sequence.attention_from(
        model, params, obs, pos, rtg).values()]).tolist()
    # 4. mean ablations, replaying every reachable pair
    _, cache = interp.run_with_cache(model, params, obs)
    tokens = obs.shape[1] * len(model.token_types)
    ablations = {f"L{i}H{h}": interp.mean_ablate(z_sites[i], cache[z_sites[i]], jnp.zeros((1, model.heads, 1)).at[
        :, h].set(1.0)) for i in range(len(z_sites)) for h in range(model.heads)}
    ablations |= {f"L{i} MLP": interp.mean_ablate(f"blocks.{i}.mlp_out", cache[f"blocks.{i}.mlp_out"])
                  for i in range(model.layers)}
    ablations |= {f"L{i} attention": interp.mean_ablate(f"blocks.{i}.attn_out", cache[f"blocks.{i}.attn_out"])
                  for i in range(model.layers)}
    ablations["return-to-go embedding (= mean return)"] = interp.mean_ablate("embed", cache["embed"], rtg[:tokens, None])
    res["ablations"] = {k: evaluate(agent, (params, iv), ablated) for k, iv in ablations.items()}
    # 5. conditioning on a worse return than the best: -(distance + extra) at every step
    res["worse_returns"] = {k: evaluate(agent, (params, jnp.float32(k)), shifted) for k in (0, 1, 2, 3)}
    return res


def untrained_null(run, obs, pos, labels, key, shifted, draws: int, seed: int) -> dict:
    """Best-site probe scores and the worse-return statistic of ``draws`` untrained DTs."""
    agent, model, env = run.agent, run.model, run.env
    params = findings.untrained_params(model, jnp.zeros((1, *env.observation_shape)), jax.random.PRNGKey(10_000 + seed),
                                       draws)
    probes = np.stack([best_probe_scores(probe_table(model, p, obs, pos, labels, key, env.num_nodes)) for p in params])
    steers = np.array([extra_steps(agent, p, shifted, 3) - extra_steps(agent, p, shifted, 0) for p in params])
    return {"probes": probes, "return steers": steers, "bar": [evaluate(agent, p) for p in params[:5]]}


def main() -> None:
    ap = findings.experiment_parser(__doc__, "runs/dt_shortest_path")
    ap.add_argument("--states", type=int, default=None,
                    help="random-play states for probes and mean ablations (default by tier: " + str(TIERS) + ")")
    ap.add_argument("--null", type=int, default=None, help="untrained DTs (default: fewest for Holm + 20)")
    args = ap.parse_args()
    args.states = args.states or TIERS[args.tier]
    out = findings.output_folder(args)
    log, lines = reporting.echo_log(out / "log.txt")
    log(f"writing to {out}")
    agents = findings.seeded_runs(runs.default_config("dt", ENV), Path(args.base or "runs/dt_agents"), args.agents,
                                  log=log, progress=False)
    report = findings.Report("Decision transformer on shortest paths: what it computes (8.8)", agents.seeds, args.tier)
    first = agents.runs[0]
    model, env = first.model, first.env
    ablated, shifted = policies(model)

    # probe states: uniformly random play, shared by every agent and the null
    states = random_play_states(env, args.states // env.max_steps + 1, env.max_steps, jax.random.key(args.seed))
    states = jax.tree.map(lambda x: x[np.flatnonzero(np.asarray(states.inner.distance) > 0)[: args.states]], states)
    obs = states.observation
    pos = sequence.positions_of(model, obs, "state")
    labels = {k: jnp.asarray(v, jnp.float32) for k, v in concepts.compute(ENV, states).items()}
    key = jax.random.key(args.seed)
    corr = np.corrcoef(np.asarray(labels["distance_to_goal"]), np.asarray(labels["return_to_go"]))[0, 1]
    log(f"probe states: {obs.shape[0]}; corr(distance, return-to-go) = {corr:.2f}")
    res = []
    for run in agents:
        res.append(measure(run, obs, pos, labels, key, ablated, shifted))
        log(f"{run.folder}: bar {json.dumps(res[-1]['bar'])}")
    draws = args.null or max(r.required_draws(n) for r, n in zip(RULES.values(), (len(CONCEPTS), 1))) + 20
    null = untrained_null(first, obs, pos, labels, key, shifted, draws, args.seed)
    log(f"null: {draws} untrained DTs")

    probes = np.stack([best_probe_scores(r["probes"]) for r in res])
    report.finding(RULES["probes"], findings.evidence(probes, null["probes"], CONCEPTS, "greater", "holm"),
                   "Probes beyond an untrained DT (pre-stated rule)")
    steers = np.array([r["worse_returns"][3]["mean_length"] - r["worse_returns"][3]["mean_optimal"]
                       - r["worse_returns"][0]["mean_length"] + r["worse_returns"][0]["mean_optimal"] for r in res])
    report.finding(RULES["return steers"], findings.evidence(steers, null["return steers"], ["extra 3 vs 0"],
                                                             "greater", "holm"),
                   "The return token steers path length (pre-stated rule)")

    heads = [f"L{i}H{h}" for i in range(model.layers) for h in range(model.heads)]
    sites = list(res[0]["probes"])
    walks = res[0]["random_walks"]
    report.add(f"Agents: {agents.describe()}. Probe states: {obs.shape[0]} from uniformly random play "
               f"(corr(distance, return-to-go) = {corr:.2f}), ridge, 75%/25% split (seed {args.seed}). Null: {draws} "
               f"untrained DTs of the same architecture.", "",
               "### The bar: greedy, best-return-conditioned play from every reachable pair", "",
               "| | figure | mean [95% t-interval] (per agent) |", "|---|---|---|")
    for m in ("success_rate", "path_ratio", "optimal_share"):
        report.add(f"| DT | {m} | {findings.fmt_interval([r['bar'][m] for r in res])} |")
    report.add(*[f"| untrained DT (first 5 of the null) | {m} | {findings.fmt_interval([b[m] for b in null['bar']])} |"
                 for m in ("success_rate", "path_ratio")],
               f"| random-walk data | success_rate, path_ratio | {walks['success_rate']:.3f}, {walks['path_ratio']:.3f} |",
               "", "### Probes at the current state token: held-out score per site", "",
               "| site | " + " | ".join(CONCEPTS) + " |", "|---|---|---|---|")
    for s in sites:
        report.add(f"| `{s}` | " + " | ".join(findings.fmt_interval([r["probes"][s][c] for r in res]) for c in CONCEPTS) + " |")
    report.add(f"| untrained, best site (mean of {draws}) | "
               + " | ".join(f"{x:.3f}" for x in null["probes"].mean(0)) + " |", "",
               f"### Head patching between goals ({res[0]['goal_patching']['pairs']} pairs; share of the clean - "
               "corrupted logit difference each head's output carries) and attention to return-to-go tokens", "",
               "| head | share of logit diff | attention from the state token to rtg tokens |", "|---|---|---|")
    for i, h in enumerate(heads):
        report.add(f"| {h} | {findings.fmt_interval([r['goal_patching']['head_share'][i] for r in res])} | "
                   f"{findings.fmt_interval([r['attention_to_rtg'][i] for r in res])} |")
    report.add("", "### Mean ablations (every reachable pair, greedy, best return)", "",
               "| ablated | success | path ratio |", "|---|---|---|")
    for k in res[0]["ablations"]:
        report.add(f"| {k} | {findings.fmt_interval([r['ablations'][k]['success_rate'] for r in res])} | "
                   f"{findings.fmt_interval([r['ablations'][k]['path_ratio'] for r in res])} |")
    report.add("", "### Conditioning on worse returns, -(BFS distance + extra)", "",
               "| extra steps asked | success | excess steps on reached pairs |", "|---|---|---|")
    for k in (0, 1, 2, 3):
        report.add(f"| {k} | {findings.fmt_interval([r['worse_returns'][k]['success_rate'] for r in res])} | "
                   f"{findings.fmt_interval([r['worse_returns'][k]['mean_length'] - r['worse_returns'][k]['mean_optimal'] for r in res])} |")

    # figures: mean over agents
    mean_probe = {c: [np.mean([r["probes"][s][c] for r in res]) for s in sites] for c in CONCEPTS}
    for c in ("distance_to_goal", "next_node"):
        reporting.bar_chart(out / f"probe_{c}.png", sites, {f"trained (mean of {len(res)})": mean_probe[c],
                                                  f"untrained best site (mean of {draws})": [null["probes"][:, CONCEPTS.index(c)].mean()] * len(sites)},
                  f"probe at the current state token: {c}", "held-out R^2" if c != "next_node"
                  else "decoded move is a shortest-path move")
    reporting.bar_chart(out / "goal_patching.png", heads, {f"agent {s}": r["goal_patching"]["head_share"] for s, r in zip(agents.seeds, res)},
              "patching each head's output from the other goal", "share of clean-corrupted logit diff")
    reporting.bar_chart(out / "ablations.png", list(res[0]["ablations"]), {f"agent {s}": [v["success_rate"] for v in r["ablations"].values()]
              for s, r in zip(agents.seeds, res)}, "mean ablations, every reachable pair", "success rate")
    report.add("", *[f"![{n}]({n}.png)" for n in ("probe_distance_to_goal", "probe_next_node", "goal_patching", "ablations")],
               "", "## Log", "", "```", *lines, "```")
    report.data.update(agents=res, null={k: np.asarray(v).tolist() if k != "bar" else v for k, v in null.items()})
    path = report.write(out, args.readme, f"dt_shortest_path.{args.tier}")
    print("\n".join(report.conclusions))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
