"""Open problem 8.19: distil the tic-tac-toe AlphaZero network into a student half its width
and compare the two with the same tools.

1. States from the teacher's own play (its policy sampled at temperature 1, both sides).
2. The student (same architecture, every width halved) trained on the teacher's legal-move
   policy and value (KL + squared error), held-out states kept aside.
3. Strength of both, exactly: every opponent line in both seats, and the optimal-move share
   over all 4,520 non-terminal positions (most of which the teacher's play never visits).
4. Activation similarity for every (teacher site, student site) pair (linear CKA) and, per
   teacher channel, how much of it a ridge regression from the student's matching site
   recovers on held-out positions: channels it cannot recover have no counterpart.
5. One-square counterfactual patching maps of both networks side by side.

    python experiments/ttt_distillation.py --run runs/ttt_conv --out runs/ttt_distillation
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from tic_tac_toe_agent import tic_tac_toe_agent

from rljaxinterp import interp
from rljaxinterp.agents.alphazero import make_agent
from rljaxinterp.agents.distill import distil, sampling_player, scale_width
from rljaxinterp.agents.evaluate import tic_tac_toe_report
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.envs.sampling import random_play_states
from rljaxinterp.interp.probes import site_features
from rljaxinterp.interp.report import plot_square_maps, single_square_pairs, square_patching
from rljaxinterp.interp.similarity import regression_similarity, similarity_matrix
from rljaxinterp.quickstart import fresh_folder

RECOVERED = 0.5  # held-out R^2 below which a teacher channel counts as having no counterpart


def strength_line(name: str, r: dict) -> str:
    losses = {seat: v["loss"] for seat, v in r["raw"].items()}
    return (f"{name}: raw network unbeatable={r['unbeatable']} (losing lines by seat {losses}), optimal move in "
            f"{100 * r['optimal_move_share']:.1f}% of the 4,520 non-terminal positions, value sign right on "
            f"{100 * r['decisive_sign_agreement']:.1f}% of won/lost positions; with search unbeatable="
            f"{r['search_unbeatable']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/ttt_conv", help="teacher run (trained if missing)")
    parser.add_argument("--out", default="runs/ttt_distillation")
    parser.add_argument("--width", type=float, default=0.5, help="student width / teacher width")
    parser.add_argument("--games", type=int, default=2048, help="teacher self-play games for the data")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    run = tic_tac_toe_agent(args.run)
    out = fresh_folder(Path(args.out), "report.md")
    teacher_params = run.params()
    teacher = lambda o: run.policy_value(teacher_params, o)  # noqa: E731

    # 1-2. data from the teacher's own play; the student
    key = jax.random.key(args.seed)
    k_play, k_fit = jax.random.split(key)
    played = random_play_states(run.env, args.games, 9, k_play, sampling_player(teacher, 1.0))
    boards_seen = np.unique(np.asarray(played.inner._x.board), axis=0).shape[0]
    student_config = dataclasses.replace(
        run.config, model_kwargs=scale_width(run.config.model, dict(run.config.model_kwargs), args.width))
    student_agent = make_agent(student_config)
    fit = distil(teacher, student_agent.model, played.observation.astype(jnp.float32), played.legal_action_mask,
                 k_fit, steps=args.steps)
    student_params = fit.params
    n_teacher = sum(x.size for x in jax.tree.leaves(teacher_params))
    n_student = sum(x.size for x in jax.tree.leaves(student_params))
    print(f"{played.observation.shape[0]} states from teacher play ({boards_seen} distinct positions); "
          f"student {dict(student_config.model_kwargs)} ({n_student:,} parameters vs {n_teacher:,}); "
          f"held-out: {fit.held_out}")

    # 3. exact strength of both
    strength = {"teacher": tic_tac_toe_report(run.agent, teacher_params),
                "student": tic_tac_toe_report(student_agent, student_params)}
    for name, r in strength.items():
        print(strength_line(name, r))

    # 4. similarity over all non-terminal reachable positions
    states, boards = tic_tac_toe_reachable()
    terminal = np.asarray(states.terminated)
    live = np.flatnonzero(~terminal)
    obs = states.observation.astype(jnp.float32)
    skip = ("input", "tokens")
    t_feat = {k: v for k, v in site_features(run.model, teacher_params, obs[live]).items() if k not in skip}
    s_feat = {k: v for k, v in site_features(student_agent.model, student_params, obs[live]).items() if k not in skip}
    cka = similarity_matrix(t_feat, s_feat, "cka")
    _, t_cache = interp.run_with_cache(run.model, teacher_params, obs[live])
    unmatched = {}
    recovered = {}
    for site in t_feat:
        if site not in s_feat or t_cache[site].ndim < 2:
            continue
        acts = t_cache[site]
        per_channel = acts.reshape(acts.shape[0], -1, acts.shape[-1])
        r2 = np.array([float(regression_similarity(s_feat[site], per_channel[..., c])) for c in range(acts.shape[-1])])
        recovered[site] = r2.tolist()
        unmatched[site] = np.flatnonzero(r2 < RECOVERED).tolist()
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(s_feat), 1 + 0.4 * len(t_feat)))
    im = ax.imshow(cka, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(s_feat)), list(s_feat), rotation=90, fontsize=7)
    ax.set_yticks(range(len(t_feat)), list(t_feat), fontsize=7)
    ax.set_xlabel("student site")
    ax.set_ylabel("teacher site")
    ax.set_title("linear CKA over 4,520 positions", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(out / "cka.png", dpi=110)
    plt.close(fig)

    # 5. patching maps side by side
    pairs = single_square_pairs(boards, terminal)
    maps = {}
    for name, model, params in (("teacher", run.model, teacher_params), ("student", student_agent.model, student_params)):
        spatial = [s for s, shape in interp.sites(model, obs[:1]).items() if shape[:2] == (3, 3) and s != "input"]
        m = square_patching(model, params, obs, pairs, spatial)
        maps[name] = m
        plot_square_maps(m, out / f"patching_{name}.png")

    elapsed = time.perf_counter() - t0
    diag = [(s, float(cka[i, list(s_feat).index(s)])) for i, s in enumerate(t_feat) if s in s_feat]
    map_corr = {s: float(np.corrcoef(maps["teacher"][s].ravel(), maps["student"][s].ravel())[0, 1])
                for s in maps["teacher"] if s in maps["student"]}
    n_channels = {s: len(v) for s, v in recovered.items()}
    md = [
        "# Distilling the tic-tac-toe AlphaZero network into a half-width student (open problem 8.19)",
        "",
        f"Teacher: run `{run.folder}` step {run.steps[-1]}, `{run.config.model}` {dict(run.config.model_kwargs)}, "
        f"{n_teacher:,} parameters. Student: `{student_config.model}` {dict(student_config.model_kwargs)}, "
        f"{n_student:,} parameters, trained for {args.steps} Adam steps on the teacher's policy (KL) and value "
        f"(squared error) over {played.observation.shape[0]} states from {args.games} games of the teacher's own "
        f"play ({boards_seen} distinct positions). Written in {elapsed:.0f} s.",
        "",
        f"Held-out states of the teacher's play: policy KL {fit.held_out['policy_kl']:.4f}, same greedy move "
        f"{100 * fit.held_out['top1_agreement']:.1f}%, value MSE {fit.held_out['value_mse']:.4f}.",
        "",
        "## Strength (exact referee)",
        f"- {strength_line('Teacher', strength['teacher'])}",
        f"- {strength_line('Student', strength['student'])}",
        "",
        "## Representations",
        "Linear CKA of same-named sites: " + ", ".join(f"`{s}` {v:.2f}" for s, v in diag) + ".",
        "",
        "Teacher channels a ridge regression from the student's matching site recovers with held-out R^2 < "
        f"{RECOVERED} (no counterpart in the student):",
        *[f"- `{s}`: {len(unmatched[s])} of {n_channels[s]} channels {unmatched[s]}" for s in unmatched],
        "",
        "Correlation of the one-square patching maps (teacher vs student, same site): "
        + ", ".join(f"`{s}` {v:.2f}" for s, v in map_corr.items()) + ".",
        "",
        "![cka](cka.png)",
        "",
        "Teacher:",
        "![teacher patching](patching_teacher.png)",
        "",
        "Student:",
        "![student patching](patching_student.png)",
    ]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps({
        "held_out": fit.held_out, "strength": strength, "cka": cka.tolist(), "teacher_sites": list(t_feat),
        "student_sites": list(s_feat), "recovered_r2": recovered, "unmatched": unmatched, "map_corr": map_corr,
    }, indent=1, default=str))
    print("\n".join(md[8:-8]))
    print(f"report: {out / 'report.md'} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
