"""Search-tree extraction against plain self-play search, connect four (issue #18).

``interp.search.search_trees`` runs the AlphaZero agent's mctx search from every position
in one compiled call and returns the whole tree as data (visits, values, parents, depths,
child Q, principal variation). This script times it on ``--positions`` (10,000) non-terminal
connect-four positions from uniformly random play at ``--simulations`` (64) simulations,
and beside it, in the same process and on the same positions:

* plain search: ``agent.search(params, states, key, num_simulations=64, deterministic=True)``
  jitted, returning what self-play takes from a search (move, improved policy, root value):
  the work self-play does per move, without our extraction of PV, depths and Q;
* self-play: ``agent.self_play`` of the preset (its 32 games x 8 moves per call, the preset's
  exploration) at 64 simulations, called as often as it takes to play ``--positions``
  positions, the live games carried from call to call as in training. Its searches are
  32 positions wide, not 10,000, and with Gumbel noise;
* ours with ``keep_states=True`` (every node's env state returned too), unless
  ``--no-keep-states``.

The agent is the connect-four conv tower (``presets.CONNECT_FOUR_CONV``: ResTower 32
channels x 2 blocks, Gumbel search) with ``num_simulations``
set to ``--simulations``; parameters from ``--run FOLDER`` (that run's config, simulations
overridden) or freshly initialised. The network's weights do not change the work: every
search runs exactly ``simulations`` expansions whatever the values.

Timing: each program's first call is reported apart (compilation read from JAX's own
compile events, and the whole first call), then ``--repeats`` further calls of each,
interleaved (ours, plain, self-play, ours with states, then again) so that load from other
jobs falls on all of them alike; reported are the median wall time, its process CPU time and
positions per second. Memory: the bytes of the returned tree (sum of its leaves' ``nbytes``)
and the process's peak RSS (``resource.getrusage``) after each program's first call, in the
order plain search, self-play, ours, ours with states (the peak only grows, so each figure
bounds everything run before it).

Run::

    .venv/bin/python benchmarks/search_trees.py [--positions 10000] [--simulations 64]
        [--repeats 3] [--run FOLDER] [--no-keep-states] [--out runs/bench_search_trees.json]

Prints a table and ends with the JSON results on one line (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from timing import CompileClock

from rljaxinterp.agents.alphazero import make_agent
from rljaxinterp.envs.sampling import random_play_states
from rljaxinterp.interp.search import search_trees
from rljaxinterp.runs import default_config, load_run
from rljaxinterp.runs.presets import CONNECT_FOUR_CONV


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def nbytes(tree) -> int:
    return int(sum(x.nbytes for x in jax.tree.leaves(tree)))


def timed(clock: CompileClock, fn, *args):
    clock.seconds = 0.0
    w0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn(*args))
    return out, {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0, "compile": clock.seconds}


def sample_positions(env, n: int, key: jax.Array):
    """``n`` non-terminal positions drawn without replacement from uniformly random games
    (every position each game visits, so early positions are over-represented as in play)."""
    k_play, k_pick = jax.random.split(key)
    games = max(16, math.ceil(n / 15))
    while True:
        states = random_play_states(env, games, 42, k_play)
        have = len(np.asarray(states.terminated))
        if have >= n:
            break
        games *= 2
    pick = np.sort(np.asarray(jax.random.choice(k_pick, have, (n,), replace=False)))
    return jax.tree.map(lambda x: x[pick], states), games, have


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--positions", type=int, default=10_000)
    p.add_argument("--simulations", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="steady-state calls of each program after the first")
    p.add_argument("--run", default=None, help="an AlphaZero connect-four run folder (default: fresh parameters)")
    p.add_argument("--no-keep-states", action="store_true", help="skip the keep_states=True measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench_search_trees.json")
    args = p.parse_args()
    sims, n = args.simulations, args.positions
    clock = CompileClock()
    t_start = time.perf_counter()

    if args.run:
        run = load_run(args.run)
        if run.kind.name != "alphazero" or run.config.env != "connect_four":
            raise SystemExit(f"--run {args.run}: need an AlphaZero connect-four run, got {run.kind.name} on "
                             f"{getattr(run.config, 'env', '?')}")
        cfg = dataclasses.replace(run.config, num_simulations=sims)
        params = run.params()
        params_from = f"run {args.run} (latest checkpoint)"
    else:
        cfg = default_config("alphazero", "connect_four", **{**CONNECT_FOUR_CONV, "num_simulations": sims,
                                                             "seed": args.seed})
        params = None
        params_from = f"fresh initialisation (seed {args.seed})"
    agent = make_agent(cfg)
    key = jax.random.PRNGKey(args.seed)
    k_init, k_pos, k_games, k_play = jax.random.split(key, 4)
    if params is None:
        params = agent.init(k_init).params
    print(f"agent: connect_four AlphaZero, {cfg.model} {dict(cfg.model_kwargs)}, {cfg.policy} search, "
          f"{sims} simulations; parameters: {params_from}", flush=True)
    print(f"devices: {jax.devices()}, CPU cores visible: {os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)

    states, sampled_games, available = sample_positions(agent.env, n, k_pos)
    print(f"positions: {n} non-terminal of {available} from {sampled_games} random games "
          f"({time.perf_counter() - t_start:.1f} s)", flush=True)
    rss_base = peak_rss_mb()

    # the programs, each called as fn(); every call does the same work on the same positions
    search_key = jax.random.PRNGKey(1)

    @jax.jit
    def plain_fn(prm, s, k):  # what self-play takes from each search
        o = agent.search(prm, s, k, num_simulations=sims, deterministic=True)
        return o.action, o.action_weights, o.search_tree.summary().value

    play_fn = jax.jit(agent.self_play)
    per_call = cfg.games * cfg.unroll_length
    play_calls = math.ceil(n / per_call)
    games_state = [agent.init_games(k_games)]
    play_keys = iter(jax.random.split(k_play, 10_000))

    def plain():
        return plain_fn(params, states, search_key)

    def self_play():  # play_calls calls of self_play, the live games carried over as in training
        games = games_state[0]
        for _ in range(play_calls):
            games, traj = play_fn(params, games, next(play_keys))
        games_state[0] = games
        return games, traj.policy

    def ours():
        return search_trees(agent, params, states, num_simulations=sims, key=search_key)

    def ours_states():
        return search_trees(agent, params, states, num_simulations=sims, key=search_key, keep_states=True)

    programs = {
        "plain_search": (plain, n, "agent.search jitted, deterministic, move + policy + root value out"),
        "self_play": (self_play, play_calls * per_call,
                      f"agent.self_play, {cfg.games} games x {cfg.unroll_length} moves per call, {play_calls} calls"),
        "search_trees": (ours, n, "search_trees, keep_states=False"),
    }
    if not args.no_keep_states:
        programs["search_trees_keep_states"] = (ours_states, n, "search_trees, keep_states=True")

    results: dict = {}
    outputs: dict = {}
    for name, (fn, positions, what) in programs.items():
        print(f"{name}: first call ({what}) ...", flush=True)
        out, t = timed(clock, fn)
        outputs[name] = out
        results[name] = {"what": what, "positions_per_call": positions, "first_call_s": t["wall"],
                         "first_call_cpu_s": t["cpu"], "compile_s": t["compile"], "peak_rss_mb_after": peak_rss_mb(),
                         "rss_mb_after": rss_mb(), "runs_s": [], "runs_cpu_s": []}
        print(f"{name}: first call {t['wall']:.1f} s (compile {t['compile']:.1f} s), peak RSS now "
              f"{peak_rss_mb():.0f} MB", flush=True)
        if name == "plain_search":
            outputs["plain_move"] = np.asarray(out[0])
        if name.startswith("search_trees"):
            results[name]["tree_mb"] = nbytes(out) / 2**20
            if out.states is not None:
                results[name]["tree_states_mb"] = nbytes(out.states) / 2**20
            outputs[name] = {"move": np.asarray(out.search_move), "max_depth": np.asarray(out.depth.max(-1)),
                             "pv_length": np.asarray(out.pv_length)}
        del out  # keep only one tree alive at a time

    for r in range(args.repeats):
        for name, (fn, positions, _) in programs.items():
            out, t = timed(clock, fn)
            del out
            results[name]["runs_s"].append(t["wall"])
            results[name]["runs_cpu_s"].append(t["cpu"])
            if t["compile"] > 0.05:
                print(f"  warning: {name} spent {t['compile']:.2f} s compiling in a steady-state call", flush=True)
            print(f"repeat {r + 1}/{args.repeats}: {name} {t['wall']:.2f} s ({positions / t['wall']:,.0f} positions/s, "
                  f"CPU {t['cpu']:.2f} s)", flush=True)

    for name, res in results.items():
        res["median_s"] = statistics.median(res["runs_s"])
        res["median_cpu_s"] = statistics.median(res["runs_cpu_s"])
        res["positions_per_s"] = res["positions_per_call"] / res["median_s"]
        res["positions_per_cpu_s"] = res["positions_per_call"] / res["median_cpu_s"]
    plain_rate = results["plain_search"]["positions_per_s"]
    for res in results.values():
        res["ratio_to_plain_search"] = res["positions_per_s"] / plain_rate
        res["cpu_ratio_to_plain_search"] = res["positions_per_cpu_s"] / results["plain_search"]["positions_per_cpu_s"]

    # consistency: the extracted tree plays the same moves as the plain search
    tree = outputs["search_trees"]
    same_move = float(np.mean(tree["move"] == outputs["plain_move"]))
    summary = {
        "benchmark": "search_trees", "env": "connect_four", "positions": n, "simulations": sims,
        "params": params_from, "config": cfg.to_dict(), "repeats": args.repeats,
        "devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
        "load_average_end": os.getloadavg(), "peak_rss_mb_before_programs": rss_base,
        "same_move_as_plain_search": same_move, "max_depth_mean": float(tree["max_depth"].mean()),
        "pv_length_mean": float(tree["pv_length"].mean()),
        "total_s": time.perf_counter() - t_start, "results": results,
    }

    print()
    print(f"connect four, {n} positions, {sims} simulations, params: {params_from}; "
          f"median of {args.repeats} calls after the first")
    print("| program | positions / call | first call s (compile s) | median s (CPU s) | positions/s | "
          "vs plain search (CPU) | tree MB | peak RSS MB after |")
    print("|---|---|---|---|---|---|---|---|")
    for name, res in results.items():
        tree_mb = f"{res['tree_mb']:.0f}" if "tree_mb" in res else ""
        if "tree_states_mb" in res:
            tree_mb += f" ({res['tree_states_mb']:.0f} states)"
        print(f"| {name} | {res['positions_per_call']:,} | {res['first_call_s']:.1f} ({res['compile_s']:.1f}) | "
              f"{res['median_s']:.2f} ({res['median_cpu_s']:.2f}) | {res['positions_per_s']:,.0f} | "
              f"{res['ratio_to_plain_search']:.2f}x ({res['cpu_ratio_to_plain_search']:.2f}x) | {tree_mb} | "
              f"{res['peak_rss_mb_after']:,.0f} |")
    print(f"search_trees plays the plain search's move in {same_move:.4f} of positions; mean deepest node "
          f"{summary['max_depth_mean']:.2f} plies, mean PV length {summary['pv_length_mean']:.2f}; "
          f"peak RSS before the programs {rss_base:,.0f} MB")
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(summary, indent=1))
    print(f"wrote {out_path}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
