"""Open problem 8.9: how does an algorithm-distillation transformer learn in context?

An AD transformer (run kind ``ad``, DarkRoom-v0 preset) is trained on learning histories of
a source RL algorithm and then improves on held-out goals from its own episodes, with no
weight update. Four measurements, each on ``--agents`` independently seeded AD transformers
(default 3; run folders ``<base>/seed{k}``, trained or reused) and against untrained networks
of the same architecture (``--null`` of them per agent):

1. Belief probes: ridge probes for the goal's row and column (and "goal already found in
   context", distance to goal) at every token of every site, fitted on the model's own
   trials on training goals and scored (R^2) on trials on held-out goals, per episode in
   context and split by whether the goal has been found yet.
2. Attention from the current step to earlier rewarded transitions (tokens whose previous
   reward is 1), per head, against what uniform attention over the visible tokens would give.
3. Patching between contexts that differ only in where reward was found: the same first
   episode (a fixed path passing cell A, then cell B on the opposite side of the start),
   rewarded at A (clean) or at B (corrupted); the metric is the logit of the first move
   toward A minus that toward B at the start of episode 2. Per head, and per token of the
   residual stream.
4. Mean ablations (over the model's own trials) of each head, each attention layer and each
   MLP, judged by the in-context curve on held-out goals and by the patching logit difference.

What counts as a finding (stated before any number; ``RULES`` below), in every one of at
least 3 agents, with an empirical p <= 0.05 against the untrained networks (Holm over the
tests of a rule):

* **learns in context**: the held-out goals' mean return rises from the first to the last
  episode in context by >= 0.3 of the optimal return beyond the untrained networks' rise;
* **belief**: at the best site, the goal row/column probe R^2 on held-out goals exceeds the
  untrained networks' by >= 0.1;
* **belief from reward**: at that site, the R^2's rise from before to after the goal was found
  in context exceeds the untrained networks' rise by >= 0.1 (their features hold the rewarded
  position too, so the rise alone says nothing);
* **attends to rewards**: the most reward-attending head's attention mass on earlier
  rewarded tokens, as a multiple of uniform attention, exceeds the untrained networks' by
  >= 1.0 (heads are matched by rank, not by name: seeds need not agree on which head);
* **reward place steers**: where reward was found in episode 1 moves the first move of
  episode 2 by >= 1 logit (clean minus corrupted logit difference) beyond the untrained
  networks.

Otherwise the report says "no effect found". Which heads carry the patching effect and what
the ablations do are reported per agent and as intervals across agents, without a rule.

    python experiments/algorithm_distillation.py --tier quick --readme experiments/README.md
    python experiments/algorithm_distillation.py [--agents 3] [--out runs/algorithm_distillation]
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import findings, interp, reporting, runs
from rljaxinterp.agents import algorithm_distillation as ad
from rljaxinterp.interp import sequence
from rljaxinterp.interp.metrics import clean_minus_corrupt
from rljaxinterp.interp.probes import fit_probes

ENV = "DarkRoom-v0"
UP, DOWN, LEFT, RIGHT, STAY = range(5)
CONCEPTS = ("goal_row", "goal_col", "goal_found_in_context", "distance_to_goal")


def trial_labels(agent, out) -> dict[str, np.ndarray]:
    """Per (trial, step) labels of the model's own trials, read off the rollout."""
    size, steps = agent.room.size, agent.env.max_steps
    goal = np.asarray(out["goal"])[:, None].repeat(steps, 1)
    pos, reward = np.asarray(out["pos"]), np.asarray(out["reward"])
    found = np.concatenate([np.zeros((pos.shape[0], 1)), np.maximum.accumulate(reward, 1)[:, :-1]], 1) > 0
    return {"goal_row": goal // size, "goal_col": goal % size, "goal_found_in_context": found.astype(np.float32),
            "distance_to_goal": np.abs(goal // size - pos // size) + np.abs(goal % size - pos % size),
            "episode": np.arange(steps)[None].repeat(pos.shape[0], 0) // agent.room.episode_steps,
            "rewarded_key": np.concatenate([np.zeros((pos.shape[0], 1)), reward[:, :-1]], 1) > 0}


def r2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1 - ((pred - y) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-9))


def belief_probes(model, params, tables, labels, train) -> dict:
    """Ridge probes per site fitted on training-goal trials (every token), R^2 on held-out-goal
    trials: overall, per episode, and for the goal's row/column split by found / not found."""
    sites = [s for s in interp.sites(model, tables[:1], params) if s.endswith(("resid_post", "attn_out", "mlp_out"))]
    _, cache = interp.run_with_cache(model, params, tables, sites)
    n = tables.shape[0] * tables.shape[1]
    feats = {s: np.asarray(cache[s], np.float32).reshape(n, -1) for s in sites}
    y = {c: np.asarray(labels[c], np.float32).reshape(n) for c in CONCEPTS}
    mask = np.repeat(train, tables.shape[1])
    scores = fit_probes({s: jnp.asarray(f[mask]) for s, f in feats.items()}, {c: jnp.asarray(v[mask]) for c, v in y.items()},
                        "ridge", jax.random.key(0))
    w, b = np.asarray(scores.weights), np.asarray(scores.bias)
    episode, found = np.asarray(labels["episode"]).reshape(n)[~mask], np.asarray(labels["goal_found_in_context"]).reshape(n)[~mask]
    out = {}
    for i, s in enumerate(sites):
        x = feats[s][~mask]
        pred = {c: x @ w[i, j, : x.shape[1]] + b[i, j] for j, c in enumerate(CONCEPTS)}
        goal_r2 = lambda sel, pred=pred: float(np.mean([r2(pred[c][sel], y[c][~mask][sel]) for c in ("goal_row", "goal_col")]))
        out[s] = {"held_out": {c: r2(pred[c], y[c][~mask]) for c in CONCEPTS},
                  "goal_by_episode": [goal_r2(episode == k) for k in range(int(episode.max()) + 1)],
                  "goal_found": goal_r2(found > 0), "goal_not_found": goal_r2(found == 0)}
    return out


def attention_to_rewards(model, params, tables, labels) -> dict[str, np.ndarray]:
    """Per head (layer-major): mean attention mass from queries that have seen a reward to the
    rewarded tokens, and what uniform attention over the visible tokens would put there."""
    names = [n for n, i in interp.site_axes(model, tables[:1]).items() if i == ("head", "query", "key")]
    _, cache = interp.run_with_cache(model, params, tables, names)
    rewarded = np.asarray(labels["rewarded_key"], np.float32)  # (trials, keys)
    seen = np.cumsum(rewarded, 1)
    queries = seen > 0
    uniform = seen / np.arange(1, tables.shape[1] + 1)[None]
    mass = [np.einsum("thqk,tk->thq", np.asarray(cache[n]), rewarded) for n in names]
    attended = np.concatenate([np.array([m[:, h][queries].mean() for h in range(m.shape[1])]) for m in mass])
    return {"attention": attended, "uniform": np.full(attended.shape, uniform[queries].mean())}


def path_actions(rotation: int, a_dist: int, b_dist: int) -> tuple[list[int], int, int]:
    """A 20-step first episode from the centre: ``a_dist`` up (cell A), back down past the
    centre to ``b_dist`` below it (cell B), then left along that row and up the wall (no cell
    twice); rotated by quarter turns. Returns the actions and the cells A, B."""
    acts = [UP] * a_dist + [DOWN] * (a_dist + b_dist) + [LEFT] * 4
    acts += [UP] * (20 - len(acts))
    turn = {0: {UP: UP, DOWN: DOWN, LEFT: LEFT, RIGHT: RIGHT}, 1: {UP: RIGHT, DOWN: LEFT, LEFT: UP, RIGHT: DOWN},
            2: {UP: DOWN, DOWN: UP, LEFT: RIGHT, RIGHT: LEFT}, 3: {UP: LEFT, DOWN: RIGHT, LEFT: DOWN, RIGHT: UP}}[rotation]
    step = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}
    cells = {}
    r, c = 4, 4
    for i, a in enumerate(acts):
        dr, dc = step[turn[a]]
        r, c = min(max(r + dr, 0), 8), min(max(c + dc, 0), 8)
        cells.setdefault(i, r * 9 + c)
    return [turn[a] for a in acts], cells[a_dist - 1], cells[2 * a_dist + b_dist - 1]


def reward_place_pairs(agent):
    """Clean / corrupted tables (first episode rewarded at A / at B, then the first step of
    episode 2) and the first moves toward A and toward B."""
    clean, corrupt, toward_a, toward_b = [], [], [], []
    play = jax.jit(lambda goal, actions: jax.lax.scan(
        lambda s, a: (agent.env.step(s, a, jax.random.key(0)), None), agent.env.reset_to(goal), actions)[0])
    for rotation in range(4):
        for a_dist, b_dist in ((2, 2), (3, 2), (2, 3), (3, 3), (4, 2), (2, 4)):
            acts, a, b = path_actions(rotation, a_dist, b_dist)
            for x, y, first_x, first_y in ((a, b, acts[0], acts[a_dist]), (b, a, acts[a_dist], acts[0])):
                clean.append(play(x, jnp.asarray(acts)).observation)
                corrupt.append(play(y, jnp.asarray(acts)).observation)
                toward_a.append(first_x), toward_b.append(first_y)
    data = {"clean": jnp.asarray(toward_a), "corrupt": jnp.asarray(toward_b)}
    return jnp.stack(clean), jnp.stack(corrupt), data


def line_chart(path, series, title, xlabel, ylabel):
    plt = reporting.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, values in series.items():
        ax.plot(np.arange(1, len(values) + 1), values, "o-", label=name)
    ax.set_title(title, fontsize=9), ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.legend(fontsize=7)
    reporting.save_figure(fig, path)


RULES = {
    "learns in context": findings.Rule(
        "on held-out goals the return rises across episodes in context, with no weight update", min_effect=0.3,
        direction="increase", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
        statistic="(last - first episode's mean return) / optimal return, minus the untrained-network mean"),
    "belief": findings.Rule(
        "the goal's location is decodable on held-out goals", min_effect=0.1, direction="increase", alpha=0.05,
        agreement=1.0, min_agents=3, correction="holm",
        statistic="best-site goal row/column probe R^2 on held-out goals, minus the untrained mean"),
    "belief from reward": findings.Rule(
        "the goal becomes more decodable once reward was found in context, beyond what the input gives",
        min_effect=0.1, direction="increase", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
        statistic="goal R^2 after minus before the goal was found (best site), minus the untrained mean"),
    "attends to rewards": findings.Rule(
        "a head attends to earlier rewarded transitions beyond uniform attention", min_effect=1.0,
        direction="increase", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
        statistic="largest per-head attention mass on rewarded tokens / uniform, minus the untrained mean"),
    "reward place steers": findings.Rule(
        "where reward was found in episode 1 steers the first move of episode 2", min_effect=1.0,
        direction="increase", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
        statistic="clean minus corrupted logit difference (toward the rewarded cell), minus the untrained mean"),
}
TIERS = {"quick": 1, "full": 4}  # sampled trials per goal for probes and attention (both tiers interpret the
# preset's agents: AD needs its full training to learn in context)


def own_trials(agent, params, samples: int, seed: int):
    """The model's own sampled trials on every goal, their labels and the training-goal mask."""
    goals = jnp.arange(agent.room.num_cells)
    trials = jax.jit(lambda p, k: agent.rollouts(p, goals, k, samples))(params, jax.random.PRNGKey(seed))
    return trials["table"], trial_labels(agent, trials), np.isin(np.asarray(trials["goal"]), agent.goals()[0])


def statistics(curve, probes, attention, logit_diffs) -> dict[str, np.ndarray]:
    """Each rule's statistic(s) for one network (trained or untrained)."""
    goal = {s: np.mean([v["held_out"][c] for c in ("goal_row", "goal_col")]) for s, v in probes.items()}
    best = max(goal, key=goal.get)
    return {"learns in context": np.array([curve["ratio"][-1] - curve["ratio"][0]]),
            "belief": np.array([goal[best]]),
            "belief from reward": np.array([probes[best]["goal_found"] - probes[best]["goal_not_found"]]),
            "attends to rewards": np.array([(attention["attention"] / attention["uniform"]).max()]),
            "reward place steers": np.array([logit_diffs[0] - logit_diffs[1]])}


def logit_diffs(model, params, pairs) -> tuple[float, float]:
    clean, corrupt, data = pairs
    return tuple(float(clean_minus_corrupt(model.apply({"params": params}, x), data).mean()) for x in (clean, corrupt))


def measure(run, pairs, samples: int, seed: int, policy, log) -> tuple[dict, tuple]:
    """Every measurement of one trained agent (see the module docstring), and its own trials
    (the untrained networks are probed on the same ones)."""
    agent, model, params = run.agent, run.model, run.params()
    res = {"run": str(run.folder), "curve": ad.evaluate(agent, params)}
    tables, labels, train = own_trials(agent, params, samples, seed)
    res["trials"] = {"all": int(tables.shape[0]), "training_goals": int(train.sum()), "steps": int(tables.shape[1])}
    res["probes"] = belief_probes(model, params, tables, labels, train)
    res["attention"] = attention_to_rewards(model, params, tables, labels)
    # patching contexts that differ only in where reward was found
    clean, corrupt, data = pairs
    z_sites = sequence.head_sites(model, clean, params)
    heads, ld_clean, ld_corrupt = interp.gap_shares(model, params, clean, corrupt, clean_minus_corrupt, z_sites, "head",
                                                    data)
    resid, _, _ = interp.gap_shares(model, params, clean, corrupt, clean_minus_corrupt,
                                    [f"blocks.{i}.resid_pre" for i in range(model.layers)] + ["ln_final"], "position", data)
    differs = np.flatnonzero(np.asarray(jnp.any(clean != corrupt, axis=(0, 2))))
    query = int(np.asarray(sequence.decision_positions(model, clean))[0])
    res["patching"] = {"logit_diff_clean": ld_clean, "logit_diff_corrupt": ld_corrupt,
                       "head_share": np.concatenate([heads[s] for s in z_sites]), "differing_tokens": differs.tolist(),
                       "query_token": query,
                       "resid_share_at_differing_tokens": {k: v[differs].tolist() for k, v in resid.items()},
                       "resid_share_at_query": {k: float(v[query]) for k, v in resid.items()},
                       "resid_share_elsewhere_max": {k: float(np.delete(v, [*differs, query]).max(initial=0.0))
                                                     for k, v in resid.items()}}
    # mean ablations over the model's own trials
    _, cache = interp.run_with_cache(model, params, tables)
    ablations = {f"L{i}H{h}": interp.mean_ablate(z_sites[i], cache[z_sites[i]], jnp.zeros((1, model.heads, 1)).at[
        :, h].set(1.0)) for i in range(len(z_sites)) for h in range(model.heads)}
    ablations |= {f"L{i} attention": interp.mean_ablate(f"blocks.{i}.attn_out", cache[f"blocks.{i}.attn_out"])
                  for i in range(model.layers)}
    ablations |= {f"L{i} MLP": interp.mean_ablate(f"blocks.{i}.mlp_out", cache[f"blocks.{i}.mlp_out"])
                  for i in range(model.layers)}
    del cache
    res["ablations"] = {}
    for k, iv in ablations.items():
        curve = ad.evaluate(agent, (params, iv), policy)
        ld = float(clean_minus_corrupt(interp.run_with_interventions(model, params, clean, iv), data).mean())
        res["ablations"][k] = {"returns": curve["returns"], "last_ratio": curve["last_ratio"], "logit_diff": ld}
    res["statistics"] = statistics(res["curve"], res["probes"], res["attention"], (ld_clean, ld_corrupt))
    log(f"{run.folder}: in-context returns {' '.join(f'{v:.2f}' for v in res['curve']['returns'])} "
        f"(optimal {res['curve']['optimal']:.2f}); reward-place logit diff {ld_clean:.2f} clean, {ld_corrupt:.2f} corrupted")
    return res, (tables, labels, train)


def untrained_null(run, own, pairs, draws: int, seed: int) -> dict[str, np.ndarray]:
    """Every rule's statistic for ``draws`` untrained networks, on this agent's held-out goals
    and own trials: ``{rule: (draws, tests)}``."""
    agent, model = run.agent, run.model
    tables, labels, train = own
    params = findings.untrained_params(model, tables[:1], jax.random.PRNGKey(10_000 + seed), draws)
    stats = [statistics(ad.evaluate(agent, p), belief_probes(model, p, tables, labels, train),
                        attention_to_rewards(model, p, tables, labels), logit_diffs(model, p, pairs)) for p in params]
    return {k: np.stack([s[k] for s in stats]) for k in RULES}


def main() -> None:
    ap = findings.experiment_parser(__doc__, "runs/algorithm_distillation")
    ap.add_argument("--samples", type=int, default=None,
                    help="sampled trials per goal for probes and attention (default by tier: " + str(TIERS) + ")")
    ap.add_argument("--null", type=int, default=None, help="untrained networks per agent (default: fewest for Holm + 20)")
    args = ap.parse_args()
    args.samples = args.samples or TIERS[args.tier]
    out = findings.output_folder(args)
    log, lines = reporting.echo_log(out / "log.txt")
    log(f"writing to {out}")
    agents = findings.seeded_runs(runs.default_config("ad", ENV), Path(args.base or "runs/ad_agents"), args.agents,
                                  log=log, progress=False)
    report = findings.Report("Algorithm distillation on Dark Room: how it learns in context (8.9)", agents.seeds,
                             args.tier)
    first = agents.runs[0]
    model = first.model
    policy = lambda pv, o: interp.run_with_interventions(model, pv[0], o, pv[1]).logits  # one closure: one compile
    pairs = reward_place_pairs(first.agent)
    draws = args.null or max(r.required_draws(1) for r in RULES.values()) + 20
    res, null = [], []
    for run in agents:
        measured, own = measure(run, pairs, args.samples, args.seed, policy, log)
        res.append(measured)
        null.append(untrained_null(run, own, pairs, draws, args.seed))
        log(f"{run.folder}: {draws} untrained networks drawn")
    tests = {"learns in context": ["last - first episode"], "belief": ["goal R^2"],
             "belief from reward": ["found minus not found"], "attends to rewards": ["best head"],
             "reward place steers": ["logit diff"]}
    for name, rule in RULES.items():
        report.finding(rule, findings.evidence(np.stack([r["statistics"][name] for r in res]),
                                               np.stack([n[name] for n in null]), tests[name], "greater", "holm"),
                       f"{name.capitalize()} (pre-stated rule)")

    heads = [f"L{i}H{h}" for i in range(model.layers) for h in range(model.heads)]
    sources = [ad.source_curve(run.agent, run.agent.goals()[1]) for run in agents]
    episodes = len(res[0]["curve"]["returns"])
    report.add(f"Agents: {agents.describe()}. Held-out goals: {len(first.agent.goals()[1])} per agent (drawn from its "
               f"seed). Own trials for probes and attention: {res[0]['trials']['all']} per agent ({args.samples} sampled "
               f"per goal), {res[0]['trials']['steps']} steps each. Null: {draws} untrained networks of the same "
               "architecture per agent, on that agent's goals and trials.", "",
               "### In-context curve on the held-out goals (greedy, no weight update): return / optimal", "",
               "| | " + " | ".join(f"ep {i + 1}" for i in range(episodes)) + " |", "|---|" + "---|" * episodes)
    for name, curves in (("AD", [r["curve"] for r in res]), ("source algorithm, fresh learners", sources)):
        report.add(f"| {name} | " + " | ".join(findings.fmt_interval([c["ratio"][i] for c in curves]) for i in range(episodes))
                   + " |")
    report.add(f"| untrained (mean of {draws} per agent), last - first | "
               f"{findings.fmt_interval([n['learns in context'].mean() for n in null])} |", "", "![](in_context.png)", "",
               "### Belief probes: held-out-goal R^2 per site (fit on training-goal trials, every token)", "",
               "| site | goal row | goal col | found in context | distance to goal | goal row/col, found | "
               "goal row/col, not found |", "|---|---|---|---|---|---|---|")
    sites = list(res[0]["probes"])
    for s in sites:
        cells = [findings.fmt_interval([r["probes"][s]["held_out"][c] for r in res]) for c in CONCEPTS]
        cells += [findings.fmt_interval([r["probes"][s][k] for r in res]) for k in ("goal_found", "goal_not_found")]
        report.add(f"| `{s}` | " + " | ".join(cells) + " |")
    report.add(f"| untrained, best site (mean of {draws} per agent): goal R^2, found - not found | "
               f"{findings.fmt_interval([n['belief'].mean() for n in null])} | "
               f"{findings.fmt_interval([n['belief from reward'].mean() for n in null])} |", "", "![](belief_by_episode.png)", "",
               "### Attention to earlier rewarded transitions and patching where reward was found (per head)", "",
               "Heads are named by layer and index; seeds need not use the same head for the same job, so the "
               "per-agent values matter more than the interval.", "",
               "| head | attention to rewarded tokens / uniform | share of the reward-place logit diff |", "|---|---|---|")
    ratio = [np.asarray(r["attention"]["attention"]) / np.asarray(r["attention"]["uniform"]) for r in res]
    for i, h in enumerate(heads):
        report.add(f"| {h} | {findings.fmt_interval([x[i] for x in ratio])} | "
                   f"{findings.fmt_interval([r['patching']['head_share'][i] for r in res])} |")
    p0 = res[0]["patching"]
    report.add("", f"Logit diff clean / corrupted: {findings.fmt_interval([r['patching']['logit_diff_clean'] for r in res])} / "
               f"{findings.fmt_interval([r['patching']['logit_diff_corrupt'] for r in res])} ({pairs[0].shape[0]} pairs). "
               f"Residual stream patched one token at a time (share of the gap; tokens that differ "
               f"{p0['differing_tokens']}, query token {p0['query_token']}):", "",
               "| site | at the differing tokens (max) | at the query token | anywhere else (max) |", "|---|---|---|---|")
    for k in p0["resid_share_at_query"]:
        report.add(f"| `{k}` | {findings.fmt_interval([max(r['patching']['resid_share_at_differing_tokens'][k]) for r in res])} | "
                   f"{findings.fmt_interval([r['patching']['resid_share_at_query'][k] for r in res])} | "
                   f"{findings.fmt_interval([r['patching']['resid_share_elsewhere_max'][k] for r in res])} |")
    report.add("", "![](reward_place_patching.png)", "",
               "### Mean ablations (over each agent's own trials; greedy, held-out goals)", "",
               "| ablated | last episode / optimal | reward-place logit diff / intact |", "|---|---|---|",
               f"| none | {findings.fmt_interval([r['curve']['last_ratio'] for r in res])} | 1 |")
    for k in res[0]["ablations"]:
        report.add(f"| {k} | {findings.fmt_interval([r['ablations'][k]['last_ratio'] for r in res])} | "
                   f"{findings.fmt_interval([r['ablations'][k]['logit_diff'] / r['patching']['logit_diff_clean'] for r in res])} |")
    report.add("", "![](ablations.png)", "",
               ("Limits: linear probes show decodability, not use; the patching contexts are hand-made first episodes "
                "the model never produced itself; ablation curves come from one greedy trial per held-out goal."),
               "", "## Log", "", "```", *lines, "```")

    # figures: per agent where heads are involved, else mean over agents
    mean = lambda f: np.mean([f(r) for r in res], 0)
    line_chart(out / "in_context.png", {"AD (mean of agents)": mean(lambda r: r["curve"]["returns"]),
                                        "source, fresh learners": np.mean([s["returns"] for s in sources], 0),
                                        "optimal": [np.mean([r["curve"]["optimal"] for r in res])] * episodes},
               "held-out goals: mean return per episode in context", "episode", "mean return")
    line_chart(out / "belief_by_episode.png", {s: mean(lambda r, s=s: r["probes"][s]["goal_by_episode"]) for s in sites},
               "goal row/col probe R^2 on held-out goals, by episode in context (mean of agents)", "episode", "R^2")
    reporting.bar_chart(out / "reward_place_patching.png", heads,
                        {f"agent {s}": r["patching"]["head_share"] for s, r in zip(agents.seeds, res)},
                        "patching each head from the context rewarded elsewhere", "share of clean-corrupted logit diff")
    reporting.bar_chart(out / "ablations.png", list(res[0]["ablations"]),
                        {f"agent {s}": [v["last_ratio"] for v in r["ablations"].values()] for s, r in zip(agents.seeds, res)},
                        "mean ablations", "last in-context episode / optimal")
    report.data.update(agents=res, sources=sources, null=null)
    path = report.write(out, args.readme, f"algorithm_distillation.{args.tier}")
    print("\n".join(report.conclusions))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
