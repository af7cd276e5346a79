"""SIIT ResTowers (tier 2 of the ground-truth benchmark): train and verify towers of the given
channels and seeds, report each step's cost against the SIIT MLP's, and (``--score``) score
every registered circuit method on them against an untrained tower.

The 16-channel figures in docs/BENCH.md ("ResTower") were measured with these library calls
(``siit.train`` + ``siit.verify``; ``siit.score_circuit_methods``) on 4 December 2026; the
20-channel ones by this script (``--score``) on 5 December 2026. Towers are trained once into run
folders under the user cache (``siit.cached_train``) and read back by every later run.

    .venv/bin/python benchmarks/siit_restower.py --channels 16 --seeds 0 1 2 3 4 --score
    .venv/bin/python benchmarks/siit_restower.py --channels 20 --seeds 3 4 0 1 2 --score
    .venv/bin/python benchmarks/siit_restower.py --step-cost
    .venv/bin/python benchmarks/siit_restower.py --tables result.json  # a saved --score JSON line
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rljaxinterp.bench import leaderboard, metrics, siit


def step_cost(width_mlp: int = 128, channels: int = 16) -> dict[str, float]:
    """Seconds per training step of each architecture: the difference between a 120- and a
    20-step run (compilation cancels out), one after the other in this process."""
    out = {}
    for arch, width in (("restower", channels), ("mlp", width_mlp)):
        short, long = (siit.train(width, 0, steps=n, arch=arch).train_s for n in (20, 120))
        out[f"{arch} {width}"] = (long - short) / 100
    return out


def tables(result: dict) -> str:
    """The markdown tables of docs/BENCH.md from ``--score``'s JSON: each tower's verify numbers,
    then each method's node AUROC and precision, mean ± population std over the towers."""
    lines = [("| channels | seed | behaviour accuracy | IIA | IIA where the output changes | lowest node IIA | "
             "argmax changed by strict ablation | training (s) |"), "|---|---|---|---|---|---|---|---|"]
    for n in sorted(result["networks"], key=lambda n: (n["width"], n["seed"])):
        lines.append(f"| {n['width']} | {n['seed']} | {n['accuracy']:.4f} | {n['iia']:.4f} | {n['iia_changed']:.4f} | "
                     f"{n['iia_min_node']:.4f} | {n['argmax_changed']:.4f} | {n['train_s']:.0f} |")
    lines += ["", ("| method | ResTower: node AUROC | ResTower: precision at true size | untrained ResTower: node AUROC "
              "| untrained: precision |"), "|---|---|---|---|---|"]
    for name, rows in result["methods"].items():
        stats = {g: metrics.over_seeds(rows[g]) for g in ("siit", "untrained")}
        cells = [metrics.mean_std(stats[g][k]) for g in stats for k in ("auroc", "precision")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=siit.RESTOWER_CHANNELS[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--score", action="store_true", help="also score every circuit method on the towers")
    parser.add_argument("--step-cost", action="store_true", help="only measure the cost of a step")
    parser.add_argument("--tables", metavar="JSON", help="only print the markdown tables of a saved --score result")
    args = parser.parse_args()
    if args.tables:
        print(tables(json.loads(Path(args.tables).read_text())))
        return
    if args.step_cost:
        print(json.dumps(step_cost(channels=args.channels)))
        return
    if args.score:
        siit.RESTOWER_TIERS["default"] = {"seeds": tuple(args.seeds), "widths": (args.channels,)}
        methods = [n for n, m in leaderboard.METHODS.items() if m.family == "circuit"]
        result = siit.score_circuit_methods(methods, "default", arch="restower", log=lambda s: print(s, flush=True))
        print(json.dumps(result, default=float))
        print(tables(result))
        return
    for seed in args.seeds:
        trained = siit.cached_train(args.channels, seed, arch="restower")
        try:
            checked, verdict = siit.verify(trained.model, trained.params, args.channels, arch="restower"), "passes"
        except ValueError as error:
            checked, verdict = str(error), "fails"
        print(json.dumps({"channels": args.channels, "seed": seed, "train_s": trained.train_s,
                          "cached": trained.cached, verdict: checked}),
              flush=True)


if __name__ == "__main__":
    main()
