"""Sequence-model agents against their bars, one function per agent.

    .venv/bin/python benchmarks/sequence_agents.py [--only dt|ad] [--seeds 0 1 2] [--out BASE]
        [--ad-run BASE --ed-run BASE] [--figure PNG]

Each seed is trained (or loaded) and measured on its own and the bar is judged per seed; with
``--out``/``--ad-run``/``--ed-run`` the runs live in ``BASE/seed{k}`` (the folders the
experiments' seeded agent sets use), else in fresh temporary folders.

Decision transformer (``dt``, GraphPaths-v0 preset): trained offline on random walks through
the run layer (``runs.train``, so the time includes checkpoints and per-log evaluation), then
played greedily from every (start, goal) pair with a path, conditioned on the best return.
Bar: success >= 95%, mean path length (of the successful episodes) within 10% of their mean
BFS optimum, training <= 5 minutes on 2 CPU cores; the random-walk data's own figures are
printed beside it. The machine's load average is printed too: on a shared machine the wall
time is an upper bound.

Algorithm distillation (``ad``, DarkRoom-v0 preset) and its baseline expert distillation
(the same kind with ``data="expert"``): both trained through the run layer (or loaded from
``--ad-run``/``--ed-run``), then played on every held-out goal for as many episodes as the
context holds, the model's own episodes accumulating in its context, no weight update.
Bar: AD's mean return rises across episodes to >= 80% of the mean optimal return by the last
episode in context, ED's does not rise (last episode within 10% of the optimum of its
first), training <= 15 minutes each on 2 CPU cores. The source algorithm's own curve on
the same goals (fresh learners) is printed and drawn beside them (``--figure``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from rljaxinterp import reporting, runs
from rljaxinterp.agents import algorithm_distillation as ad
from rljaxinterp.agents.decision_transformer import evaluate, walk_figures

DT_BAR = {"success_rate": 0.95, "path_ratio": 1.10, "train_seconds": 300.0}
AD_BAR = {"last_ratio": 0.80, "ed_gain": 0.10, "train_seconds": 900.0}


def decision_transformer(seed: int = 0, out: str | None = None) -> dict:
    """Train the dt preset and measure it against ``DT_BAR``."""
    config = runs.default_config("dt", "GraphPaths-v0", seed=seed)
    folder = out or tempfile.mkdtemp(prefix="dt-bench-")
    t0 = time.perf_counter()
    runs.train(config, folder, progress=False)
    wall = time.perf_counter() - t0
    run = runs.load_run(folder)
    model = evaluate(run.agent, run.params())
    walks = walk_figures(run.agent.env, run.state()[0].data)
    result = {"agent": "dt", "seed": seed, "folder": str(folder), "pairs": len(run.agent.env.reachable_pairs()),
              "updates": config.num_updates, "train_seconds": wall,
              "train_seconds_logged": run.metrics()[-1]["wall_time"], "load_average": os.getloadavg()[0],
              "model": model, "random_walks": walks}
    result["passed"] = {
        "success_rate": model["success_rate"] >= DT_BAR["success_rate"],
        "path_ratio": model["path_ratio"] <= DT_BAR["path_ratio"],
        "train_seconds": wall <= DT_BAR["train_seconds"],
    }
    print(f"decision transformer on GraphPaths-v0 (seed {seed}, {result['pairs']} reachable pairs, "
          f"{config.num_updates} updates, load average {result['load_average']:.1f})")
    print(f"  {'':<22}{'success':>9}{'mean length':>13}{'BFS optimum':>13}{'ratio':>8}{'optimal':>9}")
    print(f"  {'DT (best return)':<22}{model['success_rate']:>9.3f}{model['mean_length']:>13.2f}"
          f"{model['mean_optimal']:>13.2f}{model['path_ratio']:>8.3f}{model['optimal_share']:>9.3f}")
    print(f"  {'random walks (data)':<22}{walks['success_rate']:>9.3f}{walks['mean_length']:>13.2f}"
          f"{walks['mean_optimal']:>13.2f}{walks['path_ratio']:>8.3f}{'':>9}")
    print(f"  training wall time {wall:.1f}s (bar <= {DT_BAR['train_seconds']:.0f}s); bar "
          f"{'met' if all(result['passed'].values()) else 'NOT met'}: {result['passed']}")
    return result


def _train_or_load(data: str, seed: int, folder: str | None) -> tuple[runs.Run, float | None]:
    """A trained ad run with ``data``: the given folder if it holds the finished preset
    (no training time then), else trained now (resuming whatever the folder holds)."""
    config = runs.default_config("ad", "DarkRoom-v0", seed=seed, data=data)
    if folder and os.path.exists(os.path.join(folder, "config.json")):
        run = runs.load_run(folder)
        if run.config == config and run.steps[-1] == config.num_updates:
            return run, None
    folder = folder or tempfile.mkdtemp(prefix=f"ad-{data}-bench-")
    t0 = time.perf_counter()
    runs.train(config, folder, progress=False)
    return runs.load_run(folder), time.perf_counter() - t0


def plot_in_context(path: str, curves: dict[str, list[float]], optimal: float, title: str) -> None:
    """Per-episode mean return of each learner, with the optimum and the 80% line."""
    plt = reporting.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for (name, values), style in zip(curves.items(), ("o-", "s-", "^--")):
        ax.plot(np.arange(1, len(values) + 1), values, style, label=name)
    ax.axhline(optimal, color="k", lw=1, label="optimal")
    ax.axhline(AD_BAR["last_ratio"] * optimal, color="k", lw=1, ls=":", label="80% of optimal")
    ax.set_xlabel("episode in context (no weight update)"), ax.set_ylabel("mean return, held-out goals")
    ax.set_title(title, fontsize=9), ax.legend(fontsize=8)
    reporting.save_figure(fig, path)


def algorithm_distillation(seed: int = 0, ad_run: str | None = None, ed_run: str | None = None,
                           figure: str | None = None) -> dict:
    """Train (or load) AD and ED and measure them against ``AD_BAR`` on the held-out goals."""
    (run, wall), (ed, ed_wall) = _train_or_load("history", seed, ad_run), _train_or_load("expert", seed, ed_run)
    agent = run.agent
    test = agent.goals()[1]
    curves = {"AD": ad.evaluate(agent, run.params()), "ED": ad.evaluate(ed.agent, ed.params()),
              "source (fresh learners)": ad.source_curve(agent, test)}
    optimal = curves["AD"]["optimal"]
    result = {"agent": "ad", "seed": seed, "folders": {"ad": str(run.folder), "ed": str(ed.folder)},
              "held_out_goals": test.tolist(), "updates": agent.config.num_updates,
              "train_seconds": {"ad": wall, "ed": ed_wall}, "load_average": os.getloadavg()[0],
              "optimal": optimal, "curves": {k: v["returns"] for k, v in curves.items()}}
    ratio, ed_curve = curves["AD"]["ratio"], curves["ED"]["returns"]
    result["passed"] = {
        "ad_rises_to_80pct": ratio[-1] >= AD_BAR["last_ratio"] and ratio[-1] > ratio[0],
        "ed_does_not_improve": ed_curve[-1] - ed_curve[0] <= AD_BAR["ed_gain"] * optimal,
        "train_seconds": all(w is None or w <= AD_BAR["train_seconds"] for w in (wall, ed_wall)),
    }
    episodes = len(ratio)
    print(f"algorithm distillation on DarkRoom-v0 (seed {seed}, {len(test)} held-out goals, {episodes} episodes "
          f"in context, {agent.config.num_updates} updates, load average {result['load_average']:.1f})")
    print(f"  {'mean return, episode':<26}" + "".join(f"{i + 1:>7}" for i in range(episodes)))
    for name, c in curves.items():
        print(f"  {name:<26}" + "".join(f"{v:>7.2f}" for v in c["returns"]))
    print(f"  {'optimal':<26}{optimal:>7.2f}; AD's last episode {ratio[-1]:.1%} of it (bar >= 80%), "
          f"ED's gain first -> last {ed_curve[-1] - ed_curve[0]:+.2f}")
    walls = ", ".join(f"{k} {'loaded' if w is None else f'{w:.1f}s'}" for k, w in result["train_seconds"].items())
    print(f"  training wall time {walls} (bar <= {AD_BAR['train_seconds']:.0f}s each); bar "
          f"{'met' if all(result['passed'].values()) else 'NOT met'}: {result['passed']}")
    if figure:
        plot_in_context(figure, {k: v["returns"] for k, v in curves.items()}, optimal,
                        f"Dark Room, {len(test)} held-out goals: in-context return per episode")
        result["figure"] = figure
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("dt", "ad"), help="run one agent's bar (default: both)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", help="base folder of the dt runs, BASE/seed{k} (default: fresh temporary ones)")
    ap.add_argument("--ad-run", help="base folder of the AD runs (loaded if they hold the finished preset, else trained)")
    ap.add_argument("--ed-run", help="base folder of the ED runs (likewise)")
    ap.add_argument("--figure", default="ad_in_context.png", help="AD/ED/source curve figure (PNG; seed{k} is added)")
    args = ap.parse_args()
    at = lambda base, seed: base and os.path.join(base, f"seed{seed}")
    results = []
    for seed in args.seeds:
        if args.only in (None, "dt"):
            results.append(decision_transformer(seed, at(args.out, seed)))
        if args.only in (None, "ad"):
            figure = args.figure.replace(".png", f"_seed{seed}.png") if len(args.seeds) > 1 else args.figure
            results.append(algorithm_distillation(seed, at(args.ad_run, seed), at(args.ed_run, seed), figure))
    for r in results:
        print(f"{r['agent']} seed {r['seed']}: bar {'met' if all(r['passed'].values()) else 'NOT met'} {r['passed']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
