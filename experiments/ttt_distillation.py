"""Open problem 8.19: distil each tic-tac-toe AlphaZero network into a student half its width
and compare the two with the same tools, over 3 independently seeded teachers.

1. States from the teacher's own play (its policy sampled at temperature 1, both sides),
   and a second data set where 30% of the moves are uniformly random: a strong teacher's
   own play visits few positions, and the student's strength depends on that coverage.
2. A student per data set (same architecture, every width halved) trained on the teacher's
   legal-move policy and value (KL + squared error), held-out states kept aside.
3. Strength of all three, exactly: every opponent line in both seats, and the optimal-move
   share over all 4,520 non-terminal positions (most of which the teacher's play never visits).
4. Activation similarity for every (teacher site, student site) pair (linear CKA) and, per
   teacher channel, how much of it a ridge regression from the student's matching site
   recovers on held-out positions: channels it cannot recover have no counterpart.
5. One-square counterfactual patching maps of the networks side by side.

What counts as a finding (stated before any number; ``RULE`` below): at a spatial site of the
board (tests: the two students x the sites), the linear CKA between the teacher and the
student's same-named site exceeds the mean CKA between the teacher and ``--null`` untrained
students by >= 0.1, with an empirical p <= 0.05 against those untrained students (Holm over
the tests), in every one of at least 3 teachers. Otherwise the report says "no effect found".
Strength, channel recovery and patching-map agreement are reported as mean, 95% t-interval
across teachers and per teacher, without a rule.

    python experiments/ttt_distillation.py --tier quick --readme experiments/README.md
    python experiments/ttt_distillation.py --agents 3 --out runs/ttt_distillation
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from rljaxinterp import findings, interp, runs
from rljaxinterp.agents.distill import scale_width
from rljaxinterp.reporting.tic_tac_toe import plot_square_maps, single_square_pairs, square_patching
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.eval.matches import tic_tac_toe_report
from rljaxinterp.interp.probes import site_features
from rljaxinterp.interp.similarity import linear_cka, regression_similarity, similarity_matrix
from rljaxinterp.runs.distill import DistillConfig, teacher_play

RECOVERED = 0.5  # held-out R^2 below which a teacher channel counts as having no counterpart
RULE = findings.Rule(
    "the student's site holds what the teacher's same-named site holds, beyond an untrained student",
    min_effect=0.1, direction="increase", alpha=0.05, agreement=1.0, min_agents=3, correction="holm",
    statistic="linear CKA with the teacher's same site minus the untrained-student mean")
TIERS = {"quick": {"games": 512, "steps": 1000}, "full": {"games": 2048, "steps": 4000}}
SKIP = ("input", "tokens")


def plot_cka(cka: np.ndarray, teacher_sites: list, student_sites: list, path: Path, label: str) -> None:
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(student_sites), 1 + 0.4 * len(teacher_sites)))
    im = ax.imshow(cka, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(student_sites)), student_sites, rotation=90, fontsize=7)
    ax.set_yticks(range(len(teacher_sites)), teacher_sites, fontsize=7)
    ax.set_xlabel(f"student site ({label})")
    ax.set_ylabel("teacher site")
    ax.set_title("linear CKA over 4,520 positions", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def strength_line(name: str, r: dict) -> str:
    losses = {seat: v["loss"] for seat, v in r["raw"].items()}
    return (f"{name}: raw network unbeatable={r['unbeatable']} (losing lines by seat {losses}), optimal move in "
            f"{100 * r['optimal_move_share']:.1f}% of the 4,520 non-terminal positions, value sign right on "
            f"{100 * r['decisive_sign_agreement']:.1f}% of won/lost positions; with search unbeatable="
            f"{r['search_unbeatable']}")


def distil_teacher(run: runs.Run, out: Path, args, obs, live: np.ndarray, pairs, spatial: list[str],
                   null_key: jax.Array) -> dict:
    """One teacher: its strength and patching maps; a student per data set with its strength,
    similarity to the teacher and maps; and the CKA of ``args.null`` untrained students."""
    out.mkdir(parents=True, exist_ok=True)
    teacher_params = run.params()
    t_feat = {k: v for k, v in site_features(run.model, teacher_params, obs[live]).items() if k not in SKIP}
    _, t_cache = interp.run_with_cache(run.model, teacher_params, obs[live])
    teacher_maps = square_patching(run.model, teacher_params, obs, pairs, spatial)
    plot_square_maps(teacher_maps, out / "patching_teacher.png")
    res = {"teacher": {"strength": tic_tac_toe_report(run.agent, teacher_params)}, "students": {}}
    print(strength_line(f"{run.folder} teacher", res["teacher"]["strength"]), flush=True)
    for tag, epsilon in (("student", 0.0), ("student_random", args.epsilon)):
        # 1-2. data from the teacher's play; the student, trained in its own run folder
        config = DistillConfig(teacher=str(run.folder), teacher_step=run.steps[-1], width=args.width,
                               games=args.games, epsilon=epsilon, steps=args.steps, seed=run.config.seed)
        runs.train(config, out / tag, progress=False)
        student = runs.load_run(out / tag)
        agent, params, fit = student.agent.agent, student.params(), student.metrics()[-1]
        played, _ = teacher_play(config)
        s_feat = {k: v for k, v in site_features(agent.model, params, obs[live]).items() if k not in SKIP}
        # 4. similarity over all non-terminal reachable positions
        cka = similarity_matrix(t_feat, s_feat, "cka")
        recovered = {}
        for site in spatial:
            per_channel = t_cache[site].reshape(len(live), -1, t_cache[site].shape[-1])
            recovered[site] = [float(regression_similarity(s_feat[site], per_channel[..., c]))
                               for c in range(per_channel.shape[-1])]
        # 5. patching maps
        maps = square_patching(agent.model, params, obs, pairs, spatial)
        plot_square_maps(maps, out / f"patching_{tag}.png")
        plot_cka(cka, list(t_feat), list(s_feat), out / f"cka_{tag}.png", tag)
        res["students"][tag] = {
            "states": int(played.observation.shape[0]),
            "distinct": int(np.unique(np.asarray(game_state(played).board), axis=0).shape[0]),
            "held_out": {k: fit[k] for k in ("policy_kl", "top1_agreement", "value_mse")},
            "strength": tic_tac_toe_report(agent, params),  # 3. exact strength
            "cka_same_site": {s: float(cka[i, list(s_feat).index(s)]) for i, s in enumerate(t_feat) if s in s_feat},
            "recovered_r2": recovered,
            "map_corr": {s: float(np.corrcoef(teacher_maps[s].ravel(), maps[s].ravel())[0, 1]) for s in spatial},
            "parameters": sum(x.size for x in jax.tree.leaves(params)),
        }
        print(strength_line(f"  {tag}", res["students"][tag]["strength"]), flush=True)
    # the null: untrained students of the same architecture against this teacher
    features = jax.jit(lambda p: site_features(agent.model, p, obs[live], spatial))
    res["untrained_cka"] = np.array([[float(linear_cka(t_feat[s], f[s])) for s in spatial]
                                     for f in map(features, findings.untrained_params(agent.model, obs, null_key, args.null))])
    res["teacher"]["parameters"] = sum(x.size for x in jax.tree.leaves(teacher_params))
    return res


def interval_row(name: str, values) -> str:
    return f"| {name} | {findings.fmt_interval(values)} |"


def main() -> None:
    parser = findings.experiment_parser(__doc__, "runs/ttt_distillation")
    parser.add_argument("--width", type=float, default=0.5, help="student width / teacher width")
    parser.add_argument("--games", type=int, default=None, help="teacher self-play games for the data (default by tier)")
    parser.add_argument("--steps", type=int, default=None, help="student Adam steps (default by tier)")
    parser.add_argument("--epsilon", type=float, default=0.3, help="random-move share for the second student")
    parser.add_argument("--null", type=int, default=None, help="untrained students per teacher (default: fewest for Holm + 20)")
    args = parser.parse_args()
    args.games = args.games or TIERS[args.tier]["games"]
    args.steps = args.steps or TIERS[args.tier]["steps"]
    agents, out = findings.open_agents(args)
    report = findings.Report("Distilling tic-tac-toe AlphaZero networks into half-width students (8.19)",
                             agents.seeds, args.tier)
    states, boards = tic_tac_toe_reachable()
    terminal = np.asarray(states.terminated)
    live = np.flatnonzero(~terminal)
    obs = states.observation.astype(jnp.float32)
    pairs = single_square_pairs(boards, terminal)
    model = agents.runs[0].model
    spatial = [s for s, axes in interp.site_axes(model, obs[:1]).items()
               if (axes or ())[:2] == ("row", "col") and s.endswith(("stem.post", "resid_post", "conv1.post"))]
    tags = ("student", "student_random")
    tests = [f"{t}:{s}" for t in tags for s in spatial]
    args.null = args.null or RULE.required_draws(len(tests)) + 20
    keys = jax.random.split(jax.random.PRNGKey(args.seed), len(agents))
    res = [distil_teacher(run, out / f"seed{s}", args, obs, live, pairs, spatial, k)
           for run, s, k in zip(agents, agents.seeds, keys)]

    observed = np.array([[r["students"][t]["cka_same_site"][s] for t in tags for s in spatial] for r in res])
    null = np.stack([np.concatenate([r["untrained_cka"]] * len(tags), 1) for r in res])  # (agents, draws, tests)
    ev = findings.evidence(observed, null, tests, RULE.alternative, RULE.correction)
    first = agents.runs[0]
    report.add(
        f"Teachers: {agents.describe()}; {res[0]['teacher']['parameters']:,} parameters. Students (run folders "
        f"`seed{{k}}/student`, `seed{{k}}/student_random`): `{first.config.model}` "
        f"{scale_width(first.config.model, dict(first.config.model_kwargs), args.width)}, "
        f"{res[0]['students']['student']['parameters']:,} parameters, {args.steps} Adam steps on the teacher's policy "
        f"(KL over legal moves) and value (squared error) over the positions of {args.games} games of the teacher's "
        f"play (its policy sampled at temperature 1), once as it plays (`student`) and once with {args.epsilon:.0%} "
        f"of the moves uniformly random (`student_random`). Null: {args.null} untrained students per teacher; "
        f"spatial sites compared: {', '.join(f'`{s}`' for s in spatial)}.", "")
    report.finding(RULE, ev, "Students hold the teacher's representation (pre-stated rule)")
    report.add("### Strength (exact referee), across teachers", "",
               "| figure | mean [95% t-interval] (per teacher) |", "|---|---|")
    who = {"teacher": [r["teacher"]["strength"] for r in res],
           **{t: [r["students"][t]["strength"] for r in res] for t in tags}}
    for name, rs in who.items():
        report.add(interval_row(f"{name}: optimal-move share (4,520 positions)", [r["optimal_move_share"] for r in rs]),
                   interval_row(f"{name}: raw network unbeatable (1/0)", [float(r["unbeatable"]) for r in rs]),
                   interval_row(f"{name}: with search unbeatable (1/0)", [float(r["search_unbeatable"]) for r in rs]))
    for t in tags:
        st = [r["students"][t] for r in res]
        report.add(interval_row(f"{t}: distinct training positions", [x["distinct"] for x in st]),
                   interval_row(f"{t}: held-out policy KL", [x["held_out"]["policy_kl"] for x in st]),
                   interval_row(f"{t}: held-out same greedy move", [x["held_out"]["top1_agreement"] for x in st]))
    report.add("", "### Channels and patching maps, across teachers", "",
               f"Share of teacher channels a ridge regression from the student's same site recovers (held-out "
               f"R^2 >= {RECOVERED}), and correlation of the one-square patching maps with the teacher's.", "",
               "| figure | mean [95% t-interval] (per teacher) |", "|---|---|")
    for t in tags:
        for s in spatial:
            report.add(interval_row(f"{t} `{s}`: channels recovered",
                                    [np.mean(np.asarray(r["students"][t]["recovered_r2"][s]) >= RECOVERED) for r in res]),
                       interval_row(f"{t} `{s}`: patching-map correlation", [r["students"][t]["map_corr"][s] for r in res]))
    report.add("", "### Figures (teacher seed " + str(agents.seeds[0]) + ")", "",
               *[f"![{n}](seed{agents.seeds[0]}/{n}.png)" for n in ("cka_student", "cka_student_random",
                                                                     "patching_teacher", "patching_student",
                                                                     "patching_student_random")])
    report.data.update(spatial=spatial, per_teacher=[{**r, "untrained_cka": r["untrained_cka"].tolist()} for r in res])
    path = report.write(out, args.readme, f"ttt_distillation.{args.tier}")
    print("\n".join(report.conclusions))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
