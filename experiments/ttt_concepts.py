"""Open problem 8.3: train a small AlphaZero on tic-tac-toe and interpret it.

Trains (or resumes) an AlphaZero run with a residual conv tower, keeping a checkpoint every
few iterations, then writes the report of `rljaxinterp report`: every site probed for every
tic-tac-toe concept at every checkpoint (random-network and shuffled-label controls, the
what-when-where plot) and one-square counterfactual patching drawn on the board.

    python experiments/ttt_concepts.py --out runs/ttt_concepts
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tic_tac_toe_agent import tic_tac_toe_agent

from rljaxinterp.cli.report import write_report
from rljaxinterp.eval.matches import evaluate_run
from rljaxinterp.runs import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/ttt_concepts")
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--model", default="conv", choices=["mlp", "conv", "transformer"])
    parser.add_argument("--probe", default="ridge", choices=["ridge", "logistic", "sparse"])
    args = parser.parse_args()

    tic_tac_toe_agent(args.out, args.model, args.iterations, args.checkpoint_every)
    strength = evaluate_run(load_run(args.out))
    print("strength of the final checkpoint:", strength)
    report = write_report(load_run(args.out), Path(args.out) / "report", args.probe)
    with open(report, "a") as f:
        f.write(f"\n## Strength of the final checkpoint\n\n```\n{strength}\n```\n")
    print(f"report: {report}")


if __name__ == "__main__":
    main()
