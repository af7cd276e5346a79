"""Sequence-model agents against their bars, one function per agent.

    .venv/bin/python benchmarks/sequence_agents.py [--seed 0] [--out RUN]

Decision transformer (``dt``, GraphPaths-v0 preset): trained offline on random walks through
the run layer (``runs.train``, so the time includes checkpoints and per-log evaluation), then
played greedily from every (start, goal) pair with a path, conditioned on the best return.
Bar: success >= 95%, mean path length (of the successful episodes) within 10% of their mean
BFS optimum, training <= 5 minutes on 2 CPU cores; the random-walk data's own figures are
printed beside it. The machine's load average is printed too: on a shared machine the wall
time is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from rljaxinterp import runs
from rljaxinterp.agents.decision_transformer import evaluate, walk_figures

DT_BAR = {"success_rate": 0.95, "path_ratio": 1.10, "train_seconds": 300.0}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="run folder for the dt run (default: a fresh temporary one)")
    args = ap.parse_args()
    results = [decision_transformer(args.seed, args.out)]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
