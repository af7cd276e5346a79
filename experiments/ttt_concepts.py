"""Open problem 8.3: train a small AlphaZero on tic-tac-toe and interpret it.

Trains (or resumes) an AlphaZero run with a residual conv tower, keeping a checkpoint every
few iterations, then writes the report of `rljaxinterp report`: every site probed for every
tic-tac-toe concept at every checkpoint (random-network and shuffled-label controls, the
what-when-where plot) and one-square counterfactual patching drawn on the board.

    python experiments/ttt_concepts.py --out runs/ttt_concepts
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rljaxinterp.agents.configs import default_config
from rljaxinterp.agents.evaluate import evaluate_run
from rljaxinterp.agents.runs import load_run, train
from rljaxinterp.interp.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/ttt_concepts")
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--model", default="conv", choices=["mlp", "conv", "transformer"])
    parser.add_argument("--probe", default="ridge", choices=["ridge", "logistic", "sparse"])
    args = parser.parse_args()

    kwargs = {"conv": {"channels": 32, "blocks": 2}, "mlp": {"hidden": [128, 128]},
              "transformer": {"d_model": 32, "heads": 4, "layers": 2, "d_mlp": 64}}[args.model]
    config = default_config("tic_tac_toe", model=args.model, model_kwargs=kwargs,
                            iterations=args.iterations, checkpoint_every=args.checkpoint_every)
    t0 = time.perf_counter()
    train(config, args.out)
    print(f"trained in {time.perf_counter() - t0:.0f} s")
    strength = evaluate_run(args.out)
    print("strength of the final checkpoint:", strength)
    report = write_report(load_run(args.out), Path(args.out) / "report", args.probe)
    with open(report, "a") as f:
        f.write(f"\n## Strength of the final checkpoint\n\n```\n{strength}\n```\n")
    print(f"report: {report}")


if __name__ == "__main__":
    main()
