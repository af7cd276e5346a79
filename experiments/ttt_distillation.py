"""Open problem 8.19: distil the tic-tac-toe AlphaZero network into a student half its width
and compare the two with the same tools.

1. States from the teacher's own play (its policy sampled at temperature 1, both sides),
   and a second data set where 30% of the moves are uniformly random: a strong teacher's
   own play visits few positions, and the student's strength depends on that coverage.
2. A student per data set (same architecture, every width halved) trained on the teacher's
   legal-move policy and value (KL + squared error), held-out states kept aside.
3. Strength of both, exactly: every opponent line in both seats, and the optimal-move share
   over all 4,520 non-terminal positions (most of which the teacher's play never visits).
4. Activation similarity for every (teacher site, student site) pair (linear CKA) and, per
   teacher channel, how much of it a ridge regression from the student's matching site
   recovers on held-out positions: channels it cannot recover have no counterpart.
5. One-square counterfactual patching maps of the networks side by side.

    python experiments/ttt_distillation.py --run runs/ttt_conv --out runs/ttt_distillation
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from rljaxinterp import interp, runs
from rljaxinterp.agents.distill import scale_width
from rljaxinterp.runs.distill import DistillConfig, teacher_play
from rljaxinterp.cli.report import plot_square_maps, single_square_pairs, square_patching
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.envs.pgx_games import game_state
from rljaxinterp.findings.cli import open_single_agent as open_experiment
from rljaxinterp.findings.cli import single_agent_parser as experiment_parser
from rljaxinterp.eval.matches import tic_tac_toe_report
from rljaxinterp.interp.probes import site_features
from rljaxinterp.interp.similarity import regression_similarity, similarity_matrix

RECOVERED = 0.5  # held-out R^2 below which a teacher channel counts as having no counterpart


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


def main() -> None:
    parser = experiment_parser(__doc__, "runs/ttt_distillation")
    parser.add_argument("--width", type=float, default=0.5, help="student width / teacher width")
    parser.add_argument("--games", type=int, default=2048, help="teacher self-play games for the data")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--epsilon", type=float, default=0.3, help="random-move share for the second student")
    args = parser.parse_args()
    t0 = time.perf_counter()
    run, out = open_experiment(args)
    teacher_params = run.params()

    states, boards = tic_tac_toe_reachable()
    terminal = np.asarray(states.terminated)
    live = np.flatnonzero(~terminal)
    obs = states.observation.astype(jnp.float32)
    skip = ("input", "tokens")
    t_feat = {k: v for k, v in site_features(run.model, teacher_params, obs[live]).items() if k not in skip}
    _, t_cache = interp.run_with_cache(run.model, teacher_params, obs[live])
    pairs = single_square_pairs(boards, terminal)
    spatial = [s for s, axes in interp.site_axes(run.model, obs[:1]).items()
               if (axes or ())[:2] == ("row", "col") and s.endswith(("stem.post", "resid_post", "conv1.post"))]
    teacher_maps = square_patching(run.model, teacher_params, obs, pairs, spatial)
    plot_square_maps(teacher_maps, out / "patching_teacher.png")
    n_teacher = sum(x.size for x in jax.tree.leaves(teacher_params))
    strength = {"teacher": tic_tac_toe_report(run.agent, teacher_params)}
    print(strength_line("teacher", strength["teacher"]))
    students = {}
    for label, epsilon in (("own play", 0.0), (f"own play + {args.epsilon:.0%} random moves", args.epsilon)):
        # 1-2. data from the teacher's play; the student, trained in its own run folder
        tag = "student_random" if epsilon else "student"
        config = DistillConfig(teacher=str(run.folder), teacher_step=run.steps[-1], width=args.width,
                               games=args.games, epsilon=epsilon, steps=args.steps, seed=args.seed)
        runs.train(config, out / tag)
        student = runs.load_run(out / tag)
        student_agent, params, fit = student.agent.agent, student.params(), student.metrics()[-1]
        held_out = {k: fit[k] for k in ("policy_kl", "top1_agreement", "value_mse")}
        played, _ = teacher_play(config)
        distinct = np.unique(np.asarray(game_state(played).board), axis=0).shape[0]
        # 3. exact strength
        strength[label] = tic_tac_toe_report(student_agent, params)
        # 4. similarity over all non-terminal reachable positions
        s_feat = {k: v for k, v in site_features(student_agent.model, params, obs[live]).items() if k not in skip}
        cka = similarity_matrix(t_feat, s_feat, "cka")
        recovered, unmatched = {}, {}
        for site in spatial:
            per_channel = t_cache[site].reshape(len(live), -1, t_cache[site].shape[-1])
            r2 = np.array([float(regression_similarity(s_feat[site], per_channel[..., c]))
                           for c in range(per_channel.shape[-1])])
            recovered[site], unmatched[site] = r2.tolist(), np.flatnonzero(r2 < RECOVERED).tolist()
        # 5. patching maps
        maps = square_patching(student_agent.model, params, obs, pairs, spatial)
        plot_square_maps(maps, out / f"patching_{tag}.png")
        plot_cka(cka, list(t_feat), list(s_feat), out / f"cka_{tag}.png", label)
        students[label] = {
            "tag": tag, "states": int(played.observation.shape[0]), "distinct": distinct, "held_out": held_out,
            "cka_same_site": {s: float(cka[i, list(s_feat).index(s)]) for i, s in enumerate(t_feat) if s in s_feat},
            "recovered_r2": recovered, "unmatched": unmatched,
            "map_corr": {s: float(np.corrcoef(teacher_maps[s].ravel(), maps[s].ravel())[0, 1]) for s in spatial},
        }
        print(f"{label}: {played.observation.shape[0]} states ({distinct} distinct positions); held-out {held_out}")
        print(strength_line(label, strength[label]))
    n_student = sum(x.size for x in jax.tree.leaves(params))

    elapsed = time.perf_counter() - t0
    md = [
        "# Distilling the tic-tac-toe AlphaZero network into a half-width student (open problem 8.19)",
        "",
        f"Teacher: run `{run.folder}` step {run.steps[-1]}, `{run.config.model}` {dict(run.config.model_kwargs)}, "
        f"{n_teacher:,} parameters. Students (run folders `student`, `student_random`): `{run.config.model}` {scale_width(run.config.model, dict(run.config.model_kwargs), args.width)}, "
        f"{n_student:,} parameters each, trained for {args.steps} Adam steps on the teacher's policy (KL over legal "
        f"moves) and value (squared error) over the positions of {args.games} games of the teacher's play (its "
        f"policy sampled at temperature 1), once as it plays and once with {args.epsilon:.0%} of the moves uniformly "
        f"random. Written in {elapsed:.0f} s.",
        "",
        "## Strength (exact referee)",
        *[f"- {strength_line(name, r)}" for name, r in strength.items()],
        "",
    ]
    for label, st in students.items():
        md += [
            f"## Student trained on {label}",
            f"{st['states']} training states, {st['distinct']} distinct positions. Held-out states of the same play: "
            f"policy KL {st['held_out']['policy_kl']:.4f}, same greedy move {100 * st['held_out']['top1_agreement']:.1f}%, "
            f"value MSE {st['held_out']['value_mse']:.4f}.",
            "",
            "Linear CKA with the teacher's same-named site (all 4,520 non-terminal positions): "
            + ", ".join(f"`{s}` {v:.2f}" for s, v in st["cka_same_site"].items()) + ".",
            "",
            f"Teacher channels without a counterpart (held-out R^2 < {RECOVERED} of a ridge regression from the "
            "student's same site): "
            + "; ".join(f"`{s}` {len(v)} of {len(st['recovered_r2'][s])}" + (f" {v}" if v else "")
                        for s, v in st["unmatched"].items()) + ". Least recovered teacher channels (R^2): "
            + "; ".join(f"`{s}` " + ", ".join(f"#{c} {r2[c]:.2f}" for c in np.argsort(r2)[:3])
                        for s, r2 in st["recovered_r2"].items()) + ".",
            "",
            "Correlation of the one-square patching maps with the teacher's: "
            + ", ".join(f"`{s}` {v:.2f}" for s, v in st["map_corr"].items()) + ".",
            "",
            f"![cka](cka_{st['tag']}.png)",
            "",
            f"![patching](patching_{st['tag']}.png)",
            "",
        ]
    md += ["## Teacher's patching maps", "![teacher patching](patching_teacher.png)"]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps({"strength": strength, "students": students}, indent=1, default=str))
    print(f"report: {out / 'report.md'} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
