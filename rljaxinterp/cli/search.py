"""``rljaxinterp search RUN``: an AlphaZero run's search trees over positions, summarised and
drawn on the board, with the raw network and (for solved games) the solver beside them
(connect four: positions with at least 16 pieces; earlier ones stay unsolved)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from rljaxinterp.cli import help_of


def run_search(args) -> int:

    from rljaxinterp.cli.interp import choose_states
    from rljaxinterp.envs.boards import from_actions
    from rljaxinterp.eval.truth import QUICK_MIN_PIECES, SOLVED_GAMES, truth
    from rljaxinterp.interp import search
    from rljaxinterp.reporting.search import SHAPES, plot_trees
    from rljaxinterp.runs import load_run

    start = time.time()
    run = load_run(args.run_dir)
    search.searching_agent(run)  # a clear error for runs without search, before any work
    step = args.step if args.step is not None else run.steps[-1]
    env_name = run.config.env
    if args.moves:
        seqs = [[int(m) for m in s.split(",") if m != ""] for s in args.moves]
        width = max(len(s) for s in seqs)
        states = from_actions(env_name, np.array([s + [-1] * (width - len(s)) for s in seqs]))
    else:
        states, _ = choose_states(run, run.env, run.params(step), "auto", args.states, args.seed, 0.0)
    tree = search.search_trees(run, run.params(step), states, num_simulations=args.simulations)
    stats = search.summarise(search.tree_statistics(tree))
    summary = {"run": str(args.run_dir), "step": step, "positions": len(tree.search_move),
               "simulations": args.simulations, "tree": stats}
    if env_name in SOLVED_GAMES:
        value, optimal, solved = truth(env_name, states, min_pieces=QUICK_MIN_PIECES[env_name])
        summary["versus_solver"] = search.network_vs_search(tree, value, optimal, solved).summary()
    out = Path(args.out or Path(args.run_dir) / f"search-{step}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    pv, length = np.asarray(tree.pv), np.asarray(tree.pv_length)
    for i in range(min(len(pv), args.show)):
        print(f"position {i}: raw move {int(tree.raw_move[i])} (value {float(tree.raw_root_value[i]):+.2f}), search "
              f"move {int(tree.search_move[i])} (value {float(tree.search_value[i]):+.2f}), PV {pv[i, :length[i]].tolist()}")
    if env_name in SHAPES:
        picks = list(range(min(len(pv), args.show)))
        plot_trees(run.env, env_name, tree, states, picks, [f"position {i}" for i in picks], out / "trees.png")
    print(" ".join(f"{k} {v:.3f}" for k, v in stats.items()))
    if "versus_solver" in summary:
        print(" ".join(f"{k} {v:.3f}" for k, v in summary["versus_solver"].items()))
    print(f"written to {out}/ ({time.time() - start:.0f} s)")
    return 0


def add_parsers(commands) -> None:
    p = commands.add_parser("search", help=help_of("search"),
                            description=__doc__)
    p.add_argument("run_dir", metavar="RUN", help="run folder of an AlphaZero run")
    p.add_argument("--step", type=int, help="checkpoint (default: latest)")
    p.add_argument("--simulations", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--moves", nargs="+", help="positions as comma-separated moves from the start, e.g. 3,3,4 "
                   "(default: --states positions from random play)")
    p.add_argument("--states", type=int, default=1024, help="positions from random play (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--show", type=int, default=4, help="positions printed and drawn (default: %(default)s)")
    p.add_argument("--out", help="output folder (default: <run>/search-<step>)")
    p.set_defaults(run=run_search)
