"""The quickstart's agent: the default tic-tac-toe AlphaZero, trained (or resumed) into a
run folder and checked exhaustively before it is interpreted."""

from __future__ import annotations

from pathlib import Path

from rljaxinterp.agents.configs import default_config
from rljaxinterp.agents.evaluate import tic_tac_toe_report
from rljaxinterp.agents.runs import load_run, train


def train_quickstart_agent(folder: Path, seed: int = 0):
    """(model, params, description) of a trained tic-tac-toe AlphaZero network."""
    config = default_config("tic_tac_toe", seed=seed)
    train(config, folder)
    run = load_run(folder)
    params = run.params()
    strength = tic_tac_toe_report(run.agent, params, with_search=False)
    losses = {seat: r["loss"] for seat, r in strength["raw"].items()}
    description = (
        f"AlphaZero tic-tac-toe, {config.model} {dict(config.model_kwargs)}, {run.steps[-1]} iterations "
        f"(run folder {folder}); raw network: unbeatable={strength['unbeatable']} (losing lines by seat "
        f"{losses}), optimal move in {100 * strength['optimal_move_share']:.1f}% of non-terminal positions, "
        f"value sign right on {100 * strength['decisive_sign_agreement']:.1f}% of won or lost positions"
    )
    return run.model, params, description
