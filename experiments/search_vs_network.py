"""What search adds to the network: AlphaZero's raw network against its own mctx search,
both judged by an exact solver, on tic-tac-toe and connect four.

Setup. Agents: `--agents` seeded AlphaZero agents per game (tic-tac-toe: the pinned agents
of the tic-tac-toe experiments, `findings.tic_tac_toe_agents`; connect four: the library's
preset, `findings.connect_four_agents`; the tier sets their training length). Positions:
tic-tac-toe, all 4,520 live reachable positions; connect four, the distinct positions of
games split over the agents, each played by one agent greedily or, with probability 0.3, by a
uniformly random move (`findings.play_positions`; the same positions for every agent), kept
where the exact solver
(`eval.connect_four`, node budget `C4_NODES`) finishes: those with at least `C4_MIN_PIECES`
pieces (openings are beyond a pure-Python solver; the report counts what was dropped).
Search: each agent's own noise-free search (`interp.search.search_trees`) at `REF_SIMS`
simulations, and its searched move at every budget of `BUDGETS`. Truth: the solver's game
value and set of optimal moves (`eval.truth`).

Measured per agent: how often the raw greedy move and the searched move are optimal; where
they disagree; how many moves search fixes and breaks; the value error of the raw network
and of the searched value against the true value; for every raw mistake, the smallest
budget from which search plays optimally at every larger budget (`simulations_to_fix`); the
same across training checkpoints; which concepts of the game's concept library predict
disagreement.

What counts as a finding (stated before any number):

S. Search helps. Per game, statistic: search's optimal-move rate at `REF_SIMS` simulations
   minus the raw network's, over the solved positions. Null: the same difference after
   swapping raw and searched move at random per position (`--draws` sign flips). Holds when
   the difference is >= +0.05 with empirical p <= 0.05 (Holm over the 2 games) in each of
   >= 3 agents.
D. A concept predicts where search overrules the network. Per concept of the game's library,
   statistic: AUROC of the concept's value for "searched move != raw move" over the
   positions (the piece count is among the concepts: the game's phase, which most concepts
   follow). Null: the same AUROC with the disagreement labels shuffled. Holds when
   |AUROC - null mean| >= 0.1 with empirical p <= 0.05 (two-sided, Holm over the game's
   concepts) in each of >= 3 agents.

    python experiments/search_vs_network.py --tier quick --readme experiments/README.md
    python experiments/search_vs_network.py --tier full
"""

from __future__ import annotations

import time

import jax
import numpy as np

from rljaxinterp import findings
from rljaxinterp.envs import EnvState
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.eval.truth import truth
from rljaxinterp.interp import concepts, search
from rljaxinterp.interp.feature_concepts import match_concepts
from rljaxinterp.reporting import echo_log, pyplot, save_figure
from rljaxinterp.reporting.search import plot_bars, plot_trees

GAMES = ("tic_tac_toe", "connect_four")
REF_SIMS = 64
BUDGETS = (1, 2, 4, 8, 16, 32, 64, 128)
C4_MIN_PIECES = 16
C4_NODES = 300_000
C4_GAMES = {"quick": 128, "full": 512}  # games of play whose distinct positions are studied
EXPLORATION = 0.3

RULE_S = findings.Rule(
    "the agent's search plays an optimal move more often than its raw network", min_effect=0.05,
    direction="increase", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
    statistic="search's optimal-move rate minus the raw network's (null: raw and search swapped at random)")
RULE_D = findings.Rule(
    "the concept predicts the positions where search overrules the raw network", min_effect=0.1,
    direction="either", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
    statistic="AUROC of the concept for disagreement minus its shuffled-label mean")


def take(states: EnvState, idx) -> EnvState:
    return jax.tree.map(lambda x: x[idx], states)


def positions(game: str, agents: findings.AgentSet, games: int, seed: int, log) -> tuple[EnvState, dict]:
    """The game's positions with their truth (value, optimal, solved)."""
    if game == "tic_tac_toe":
        states, _ = tic_tac_toe_reachable()
        states = take(states, np.flatnonzero(~np.asarray(states.terminated)))
        value, optimal, solved = truth(game, states)
        return states, {"value": value, "optimal": optimal, "solved": solved, "dropped": 0}
    states = findings.play_positions(agents, games, jax.random.key(seed), EXPLORATION)
    pieces = (np.asarray(game_state(states).board) >= 0).sum(1)
    t0 = time.perf_counter()
    value, optimal, solved = truth(game, states, max_nodes=C4_NODES, min_pieces=C4_MIN_PIECES)
    late = pieces >= C4_MIN_PIECES
    log(f"connect_four: {int(late.sum())} of {len(pieces)} distinct positions have >= {C4_MIN_PIECES} pieces; "
        f"the solver finished {int(solved.sum())} in {time.perf_counter() - t0:.0f} s")
    keep = np.flatnonzero(solved)
    return take(states, keep), {"value": value[keep], "optimal": optimal[keep], "solved": solved[keep],
                                "dropped": int((late & ~solved).sum()), "from_play": len(pieces)}


def sign_flip_null(raw_ok: np.ndarray, search_ok: np.ndarray, key: jax.Array, draws: int) -> np.ndarray:
    """Mean of (search - raw) with each position's pair swapped at random: (draws,)."""
    d = search_ok.astype(np.float64) - raw_ok.astype(np.float64)
    signs = np.where(np.asarray(jax.random.bernoulli(key, 0.5, (draws, d.size))), 1.0, -1.0)
    return (signs * d).mean(1)


def concept_aurocs(values: dict[str, np.ndarray], label: np.ndarray, key: jax.Array, draws: int):
    """AUROC of every concept for ``label`` and its shuffled-label null (draws, concepts)."""
    names = list(values)
    x = np.stack([np.asarray(values[n], np.float64) for n in names], 1)
    observed = match_concepts(x, {"y": label}).score[:, 0]
    shuffled = np.asarray(findings.shuffled_labels(key, label, draws))
    null = np.stack([match_concepts(x, {"y": y}).score[:, 0] for y in shuffled])
    return observed, null, names


def main() -> None:
    parser = findings.experiment_parser(__doc__, "runs/search_vs_network")
    parser.add_argument("--draws", type=int, default=None, help="null draws (default: fewest for Holm + 20)")
    parser.add_argument("--games", nargs="+", choices=GAMES, default=list(GAMES))
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS),
                        help="simulation budgets, increasing (default: %(default)s)")
    parser.add_argument("--c4-base", default=None, help="connect-four agents' folders (default runs/c4_agents_<tier>)")
    findings.cli.add_play_options(parser)
    args = parser.parse_args()
    out = findings.output_folder(args)
    log, _ = echo_log(out / "log.txt")
    t_start = time.perf_counter()
    report = findings.Report("Network versus search in AlphaZero", tuple(range(args.agents)), args.tier)
    key = jax.random.key(args.seed)
    changes = findings.cli.training_changes(args)
    results: dict[str, dict] = {}
    ev_s_obs, ev_s_null = [], []
    for g, game in enumerate(args.games):
        if game == "tic_tac_toe":
            agents = findings.tic_tac_toe_agents(args.base or f"runs/ttt_agents_{args.tier}", args.agents, args.tier,
                                                 log=log, **changes)
        else:
            agents = findings.connect_four_agents(args.c4_base or f"runs/c4_agents_{args.tier}", args.agents,
                                                  args.tier, log=log, **changes)
        log(agents.describe())
        states, t = positions(game, agents, args.play_games or C4_GAMES[args.tier], args.seed, log)
        n = len(t["value"])
        names = concepts.available(game)
        concept_values = {k: np.asarray(v, np.float64) for k, v in concepts.compute(game, states, names).items()}
        concept_values = {k: v for k, v in concept_values.items() if v.ndim == 1 and np.ptp(v) > 0}
        # the game's phase, as a baseline concept: disagreement depends on it, and so do most concepts
        concept_values["pieces_on_board"] = (np.asarray(game_state(states).board) >= 0).sum(1).astype(np.float64)
        d_draws = args.draws or RULE_D.required_draws(len(concept_values)) + 20
        s_draws = args.draws or RULE_S.required_draws(len(args.games)) + 20
        per_agent, d_obs, d_null, trees = [], [], [], []
        for a, run in enumerate(agents):
            params = run.params()
            t0 = time.perf_counter()
            tree = search.search_trees(run, params, states, num_simulations=REF_SIMS)
            gap = search.network_vs_search(tree, t["value"], t["optimal"], t["solved"])
            moves = search.search_moves_by_budget(run, params, states, args.budgets)
            fix = search.simulations_to_fix(moves, t["optimal"], args.budgets)
            mistakes = ~gap.raw_optimal
            stats = search.summarise(search.tree_statistics(tree))
            budget_rate = np.take_along_axis(t["optimal"], moves, 1).mean(0)
            obs_d, null_d, dnames = concept_aurocs(concept_values, gap.disagree, jax.random.fold_in(key, 100 * g + a),
                                                   d_draws)
            d_obs.append(obs_d)
            d_null.append(null_d)
            ev_s_null.append(sign_flip_null(gap.raw_optimal, gap.search_optimal,
                                             jax.random.fold_in(key, 1000 + 100 * g + a), s_draws))
            # training dynamics: the same comparison at every checkpoint
            dynamics = []
            for step in run.steps:
                tr = search.search_trees(run, run.params(step), states, num_simulations=REF_SIMS, max_depth=1)
                gs = search.network_vs_search(tr, t["value"], t["optimal"], t["solved"]).summary()
                dynamics.append({"step": step, **{k: gs[k] for k in ("raw_optimal_rate", "search_optimal_rate",
                                                                     "raw_value_mae", "search_value_mae")}})
            per_agent.append({
                "seed": agents.seeds[a], "gap": gap.summary(), "tree": stats,
                "optimal_rate_by_budget": dict(zip(map(str, args.budgets), budget_rate.tolist())),
                "mistakes": int(mistakes.sum()),
                "fixed_by_budget": {str(b): int(((fix > 0) & (fix <= b) & mistakes).sum()) for b in args.budgets},
                "never_fixed": int(((fix < 0) & mistakes).sum()), "dynamics": dynamics})
            trees.append((tree, gap))
            log(f"{game} agent {a}: raw optimal {gap.summary()['raw_optimal_rate']:.3f}, search "
                f"{gap.summary()['search_optimal_rate']:.3f}, disagree {gap.summary()['disagree_rate']:.3f} "
                f"({time.perf_counter() - t0:.0f} s)")
        ev_s_obs.append([p["gap"]["search_optimal_rate"] - p["gap"]["raw_optimal_rate"] for p in per_agent])
        ev_d = findings.evidence(np.stack(d_obs), np.stack(d_null), dnames, RULE_D.alternative, RULE_D.correction)
        results[game] = {"positions": n, "truth": {k: v for k, v in t.items() if k in ("dropped", "from_play")},
                         "agents": per_agent, "agent_set": agents.describe(), "concepts_d": ev_d}
        figures(game, out, run.env, states, per_agent, trees[0], t, args.budgets)

    # -- findings -------------------------------------------------------------------------------
    null_s = np.stack([np.stack(ev_s_null[g * args.agents:(g + 1) * args.agents]) for g in range(len(args.games))], -1)
    ev_s = findings.evidence(np.array(ev_s_obs).T, null_s, args.games, RULE_S.alternative, RULE_S.correction)
    report.add("## Setup", "", __doc__.split("What counts")[0].strip(), "")
    report.finding(RULE_S, ev_s, "S: search helps")
    for game in args.games:
        report.finding(RULE_D, results[game]["concepts_d"], f"D ({game}): concepts predicting disagreement")
    write_tables(report, results, args.games)
    for game in args.games:  # the measured numbers beside the conclusions (and in the README block)
        gaps = [p["gap"] for p in results[game]["agents"]]
        rng = lambda k, gaps=gaps: f"{min(x[k] for x in gaps):.3f}-{max(x[k] for x in gaps):.3f}"
        report.conclusions.append(
            f"Measured ({game}, {results[game]['positions']} solved positions, {len(gaps)} agents, {REF_SIMS} "
            f"simulations): optimal move raw {rng('raw_optimal_rate')} vs search {rng('search_optimal_rate')} "
            f"(where some move loses value: raw {rng('raw_optimal_rate_decisive')} vs search "
            f"{rng('search_optimal_rate_decisive')}); "
            f"search changes the raw move in {rng('disagree_rate')} of positions; value MAE against the truth raw "
            f"{rng('raw_value_mae')} vs searched {rng('search_value_mae')}.")
    report.data["results"] = {g: {k: v for k, v in r.items() if k != "concepts_d"} for g, r in results.items()}
    report.add("", f"Wall time {time.perf_counter() - t_start:.0f} s.")
    path = report.write(out, args.readme, key=f"search_vs_network.{args.tier}")
    log(f"report: {path}")


def write_tables(report: findings.Report, results: dict, games) -> None:
    report.add("## Measurements", "")
    report.add("| game | agent | positions | raw optimal | search optimal | decisive positions: raw / search | "
               "disagree | fixed | broken | raw value MAE | search value MAE | raw mistakes never fixed within the "
               "budgets |", "|" + "---|" * 12)
    for game in games:
        r = results[game]
        for p in r["agents"]:
            gp = p["gap"]
            report.add(f"| {game} | {p['seed']} | {r['positions']} | {gp['raw_optimal_rate']:.3f} | "
                       f"{gp['search_optimal_rate']:.3f} | {gp['decisive']:.0f}: {gp['raw_optimal_rate_decisive']:.3f} / "
                       f"{gp['search_optimal_rate_decisive']:.3f} | {gp['disagree_rate']:.3f} | {gp['search_fixes']:.0f} | "
                       f"{gp['search_breaks']:.0f} | {gp['raw_value_mae']:.3f} | {gp['search_value_mae']:.3f} | "
                       f"{p['never_fixed']} of {p['mistakes']} |")
    report.add("", "Tree statistics at the reference budget (means over positions, agent seed 0):", "")
    report.add("| game | max depth | PV length | root moves visited | top-move share | visit entropy |",
               "|---|---|---|---|---|---|")
    for game in games:
        s = results[game]["agents"][0]["tree"]
        report.add(f"| {game} | {s['max_depth']:.2f} | {s['pv_length']:.2f} | {s['root_children_visited']:.2f} | "
                   f"{s['top_move_share']:.3f} | {s['visit_entropy']:.3f} |")
    for game in games:
        r = results[game]
        if "from_play" in r["truth"]:
            report.add("", f"{game}: {r['positions']} solved positions of {r['truth']['from_play']} distinct positions "
                       f"from play; {r['truth']['dropped']} with >= {C4_MIN_PIECES} pieces were beyond the solver's "
                       "budget and dropped.")
    report.add("", "Figures: `search_<game>.png` (optimal-move rate by simulation budget; share of raw mistakes "
               "fixed for good by each budget; both over training), `value_error_<game>.png`, `trees_<game>.png` "
               "(example trees: visits and prior on the board, PV numbered).")


def figures(game, out, env, states, per_agent, first, t, budgets) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for i, p in enumerate(per_agent):
        rate = [p["optimal_rate_by_budget"][str(b)] for b in budgets]
        axes[0].plot(budgets, rate, marker="o", color=f"C{i}", label=f"seed {p['seed']}")
        axes[0].axhline(p["gap"]["raw_optimal_rate"], ls="--", lw=0.8, color=f"C{i}")
        fixed = [p["fixed_by_budget"][str(b)] / max(p["mistakes"], 1) for b in budgets]
        axes[1].plot(budgets, fixed, marker="o", color=f"C{i}", label=f"seed {p['seed']}")
        steps = [d["step"] for d in p["dynamics"]]
        axes[2].plot(steps, [d["raw_optimal_rate"] for d in p["dynamics"]], "--", color=f"C{i}",
                     label=f"raw, seed {p['seed']}")
        axes[2].plot(steps, [d["search_optimal_rate"] for d in p["dynamics"]], color=f"C{i}",
                     label=f"search, seed {p['seed']}")
    axes[0].set(xscale="log", xlabel="simulations", ylabel="optimal-move rate",
                title=f"{game}: search by budget (dashed: raw network)")
    axes[1].set(xscale="log", xlabel="simulations", ylabel="share of raw mistakes",
                title="raw mistakes fixed for good by this budget")
    axes[2].set(xlabel="training iteration", ylabel="optimal-move rate", title=f"over training ({REF_SIMS} sims)")
    for ax in axes:
        ax.legend(fontsize=7)
    save_figure(fig, out / f"search_{game}.png")
    tree, gap = first
    picks, captions = [], []
    for label, mask in (("search fixes a raw mistake", ~gap.raw_optimal & gap.search_optimal),
                        ("search breaks a raw optimal move", gap.raw_optimal & ~gap.search_optimal),
                        ("both optimal, different moves", gap.raw_optimal & gap.search_optimal & gap.disagree)):
        idx = np.flatnonzero(mask)
        if idx.size:
            picks.append(int(idx[0]))
            captions.append(f"{label}\nraw {gap.raw_move[idx[0]]}, search {gap.search_move[idx[0]]}, "
                            f"true value {t['value'][idx[0]]:+d}")
    if picks:
        plot_trees(env, game, tree, states, picks, captions, out / f"trees_{game}.png")
    plot_bars({"raw network": {f"seed {p['seed']}": p["gap"]["raw_value_mae"] for p in per_agent},
               f"search ({REF_SIMS} sims)": {f"seed {p['seed']}": p["gap"]["search_value_mae"] for p in per_agent}},
              f"{game}: |value - true value|", "mean absolute error", out / f"value_error_{game}.png")


if __name__ == "__main__":
    main()
