"""The tic-tac-toe AlphaZero the tic-tac-toe experiments interpret: a residual conv tower
(so sites keep the 3x3 board layout), a checkpoint every 10 iterations. Trained into the
given folder, or resumed / reused when the folder already holds this run."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rljaxinterp.reporting import fresh_folder
from rljaxinterp.runs import Run, default_config, load_run, train

# Pinned so the experiments' agent stays the same when the library's defaults are retuned.
PINNED = {"exploration": 0.3, "num_simulations": 32, "updates_per_iteration": 32, "symmetries": False}
MODEL_KWARGS = {"conv": {"channels": 32, "blocks": 2}, "mlp": {"hidden": [128, 128]},
                "transformer": {"d_model": 32, "heads": 4, "layers": 2, "d_mlp": 64}}


def tic_tac_toe_agent(folder: str | Path, model: str = "conv", iterations: int = 150,
                      checkpoint_every: int = 10) -> Run:
    config = default_config("alphazero", "tic_tac_toe", model=model, model_kwargs=MODEL_KWARGS[model],
                            iterations=iterations, checkpoint_every=checkpoint_every, **PINNED)
    if (Path(folder) / "config.json").exists():
        run = load_run(folder)
        if run.config == config and run.steps and run.steps[-1] >= iterations:
            return run  # finished: no need to restore the whole training state
    t0 = time.perf_counter()
    train(config, folder)
    print(f"agent ready in {folder} ({time.perf_counter() - t0:.0f} s)")
    return load_run(folder)


def experiment_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The arguments every tic-tac-toe experiment takes: the agent's run folder, an output
    folder (never overwritten: ``out-N`` when taken) and a seed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/ttt_conv", help="tic-tac-toe conv run (trained if missing)")
    parser.add_argument("--out", default=out)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def open_experiment(args: argparse.Namespace) -> tuple[Run, Path]:
    """The trained agent and a fresh output folder."""
    return tic_tac_toe_agent(args.run), fresh_folder(Path(args.out), "report.md")


if __name__ == "__main__":
    import sys

    tic_tac_toe_agent(sys.argv[1] if len(sys.argv) > 1 else "runs/ttt_conv")
