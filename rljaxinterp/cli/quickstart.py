"""``rljaxinterp quickstart``: a tic-tac-toe AlphaZero agent trained in about a minute, its
activations over every reachable position, and an activation-patching sweep over every
site, written to a folder that never overwrites earlier results.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import interp
from rljaxinterp.cli import help_of
from rljaxinterp.cli.win_now import win_now_finding
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.eval.matches import tic_tac_toe_report
from rljaxinterp.interp.plots import plot_effects_by_unit, plot_effects_on_board
from rljaxinterp.models import make_model
from rljaxinterp.reporting import fresh_folder
from rljaxinterp.runs import default_config, load_run, train

BOARD = (3, 3)
STATE_CHUNK = 1024  # positions per jitted call: keeps activations cache-sized on a CPU


def train_agent(folder: Path, seed: int = 0):
    """(model, params, description) of the default tic-tac-toe AlphaZero, trained (or resumed)
    into ``folder`` and checked exhaustively before it is interpreted."""
    config = default_config("alphazero", "tic_tac_toe", preset="cpu", seed=seed)  # the README's agent
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


def agent(out: Path, seed: int, train: bool):
    """(model, params, description): the trained AlphaZero network, or random weights."""
    if train:
        return train_agent(out / "agent", seed)
    model = make_model("conv", 9, (3, 3, 2), channels=16, blocks=2, value_hidden=32)
    params = model.init(jax.random.key(seed), jnp.zeros((1, 3, 3, 2)))["params"]
    return model, params, "untrained ResTower (2 blocks x 16 channels), random initialisation"


def activation_stats(cache: dict) -> dict:
    return {
        name: {
            "mean": float(jnp.mean(a)),
            "std": float(jnp.std(a)),
            "fraction_nonzero": float(jnp.mean(a != 0)),
        }
        for name, a in cache.items()
    }


def top_elements(effects: dict, k: int = 10) -> list[dict]:
    rows = [
        {"site": site, "element": [int(i) for i in idx], "effect": float(v)}
        for site, e in effects.items()
        if site not in ("input", "value", "logits")
        for idx, v in np.ndenumerate(np.asarray(e))
    ]
    return sorted(rows, key=lambda r: -abs(r["effect"]))[:k]


def run_quickstart(out: Path, seed: int = 0, train: bool = True) -> Path:
    out = fresh_folder(Path(out))
    timings = {}
    t0 = time.perf_counter()
    model, params, description = agent(out, seed, train)
    timings["agent_s"] = time.perf_counter() - t0
    print(f"agent: {description}")

    states, boards = tic_tac_toe_reachable()
    obs = states.observation.astype(jnp.float32)
    legal = states.legal_action_mask
    print(f"positions: {obs.shape[0]} reachable tic-tac-toe positions")

    t = time.perf_counter()
    clean_out, cache = jax.jit(lambda p, o: interp.run_with_cache(model, p, o))(params, obs)
    jax.block_until_ready(cache)
    timings["cache_s"] = time.perf_counter() - t
    print(f"cache: {len(cache)} sites over {obs.shape[0]} positions in {timings['cache_s']:.2f} s")

    # Corrupted run: every position is paired with another reachable position at random.
    corrupted = obs[jax.random.permutation(jax.random.key(seed + 1), obs.shape[0])]
    metrics = ("value", "policy_kl")
    t = time.perf_counter()
    per_site = interp.patching_sweep(
        model, params, obs, corrupted,
        lambda out, data: {"value": out.value, "policy_kl": interp.metrics.policy_kl_to_reference(out, data)},
        sizing=interp.Sizing(states_per_call=STATE_CHUNK), metric_data={"reference_logits": clean_out.logits, "legal_mask": legal},
    )
    effects = {name: {site: np.asarray(e[name]) for site, e in per_site.items()} for name in metrics}
    timings["sweep_s"] = time.perf_counter() - t
    n = sum(int(np.size(e)) for e in effects["value"].values())
    print(f"patching sweep: {n} single-element patches x {obs.shape[0]} positions, "
          f"metrics {', '.join(metrics)}, in {timings['sweep_s']:.1f} s")

    files = []
    site_axes = interp.site_axes(model, obs[:1], params)
    for name in metrics:
        shown = {s: e for s, e in effects[name].items() if s not in ("value",)}
        if np.size(shown.get("input", ())) == int(np.prod(obs.shape[1:])):  # a flattened board
            shown["input"] = np.reshape(shown["input"], obs.shape[1:])
            site_axes["input"] = ("row", "col", "channel")
        files.append(plot_effects_by_unit(
            shown, out / f"patching_{name}_by_unit.png",
            f"Noising patch effect on {name} (mean over {obs.shape[0]} positions)"))
        board = plot_effects_on_board(
            shown, BOARD, out / f"patching_{name}_on_board.png",
            f"Effect on {name} of patching each square (summed over channels)", site_axes)
        if board:
            files.append(board)

    results = {
        "env": "tic_tac_toe",
        "agent": description,
        "num_positions": int(obs.shape[0]),
        "corruption": "each position paired with a uniformly drawn other reachable position (noising)",
        "sites": {name: list(shape) for name, shape in interp.sites(model, obs[:1]).items()},
        "activation_stats": activation_stats(cache),
        "patching": {
            name: {site: np.asarray(e).tolist() for site, e in per_site.items()}
            for name, per_site in effects.items()
        },
        "top_elements": {name: top_elements(per_site) for name, per_site in effects.items()},
        "timings_s": timings,
        "files": [f.name for f in files],
    }
    finding = win_now_finding(model, params, states, out, seed)
    results["finding"] = finding
    (out / "report.md").write_text(
        f"# Quickstart: {description.split(' (run folder')[0]}\n\n**Finding.** {finding['sentence']}\n\n"
        f"![occlusion and probes]({finding['figure']})\n\nHow it was measured (thresholds stated before the "
        f"numbers): `rljaxinterp/cli/win_now.py`. The patching sweep over every site with random position "
        f"pairs is in `results.json` and the `patching_*.png` figures.\n")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"finding: {finding['sentence']}")
    print(f"results written to {out}/ (report.md, results.json, {', '.join(f.name for f in files)}, "
          f"{finding['figure']})")
    return out


def add_parser(commands) -> None:
    p = commands.add_parser("quickstart", help=help_of("quickstart"))
    p.add_argument("--out", default="runs/quickstart", help="results folder (never overwritten)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-train", action="store_true", help="interpret an untrained network")
    p.set_defaults(run=lambda a: run_quickstart(Path(a.out), a.seed, not a.no_train) and 0)

