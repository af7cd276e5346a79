"""AlphaZero on tic-tac-toe from scratch: time to an unbeatable raw network, then exact checks.

Run: .venv/bin/python benchmarks/alphazero_tictactoe.py [--iterations N] [--seed S]
Unbeatability is checked exhaustively (every opponent line, both seats) every --check-every
iterations; the time of those checks is excluded from the training wall time.
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from rljaxinterp.agents import AlphaZeroConfig, init_state, iteration_key, make_agent, make_iteration
from rljaxinterp.agents.evaluate import exhaustive, raw_moves, tic_tac_toe_report


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=AlphaZeroConfig().iterations)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-every", type=int, default=10)
    p.add_argument("--updates-per-iteration", type=int, default=AlphaZeroConfig().updates_per_iteration)
    args = p.parse_args()
    cfg = AlphaZeroConfig(iterations=args.iterations, seed=args.seed,
                          updates_per_iteration=args.updates_per_iteration)
    agent = make_agent(cfg)

    t0 = time.perf_counter()
    state = init_state(cfg)
    iteration = make_iteration(cfg)
    state, _ = iteration(state, iteration_key(cfg, 0))
    jax.block_until_ready(state.params)
    compile_and_first = time.perf_counter() - t0
    check_time, unbeatable_at, unbeatable_time = 0.0, None, None
    steady, checks = [], []  # (iteration, losing opponent lines over both seats)
    for i in range(1, cfg.iterations):
        t = time.perf_counter()
        state, metrics = iteration(state, iteration_key(cfg, i))
        jax.block_until_ready(state.params)
        steady.append(time.perf_counter() - t)
        if (i + 1) % args.check_every == 0:
            c = time.perf_counter()
            moves = raw_moves(agent, state.params)
            losing_lines = sum(exhaustive(moves, seat)["loss"] for seat in (0, 1))
            checks.append((i + 1, losing_lines))
            if losing_lines == 0 and unbeatable_at is None:
                unbeatable_at = i + 1
                unbeatable_time = time.perf_counter() - t0 - check_time - (time.perf_counter() - c)
            check_time += time.perf_counter() - c
    train_time = time.perf_counter() - t0 - check_time

    # Self-play alone, post-compilation.
    self_play = jax.jit(agent.self_play)
    k = jax.random.PRNGKey(1)
    jax.block_until_ready(self_play(state.params, state.env_state, k))
    t = time.perf_counter()
    reps = 5
    for r in range(reps):
        out = self_play(state.params, state.env_state, jax.random.fold_in(k, r))
    jax.block_until_ready(out)
    sp_rate = reps * cfg.games * cfg.unroll_length / (time.perf_counter() - t)

    report = tic_tac_toe_report(agent, state.params)
    per_iter = sum(steady) / max(len(steady), 1)
    print(json.dumps({
        "config": cfg.to_dict(),
        "train_wall_time_s_incl_compile": round(train_time, 1),
        "compile_plus_first_iteration_s": round(compile_and_first, 1),
        "seconds_per_iteration": round(per_iter, 3),
        "first_unbeatable_iteration_checked_every_%d" % args.check_every: unbeatable_at,
        "losing_lines_at_checks": checks,
        "wall_time_to_unbeatable_s_incl_compile": None if unbeatable_time is None else round(unbeatable_time, 1),
        "final": report,
    }, indent=1))
    print(f"\nsummary: {cfg.iterations} iterations in {train_time:.1f} s (compile+first {compile_and_first:.1f} s)")
    print(f"raw network unbeatable (both seats, every opponent line): {report['unbeatable']}"
          f"; first at iteration {unbeatable_at} after {unbeatable_time and round(unbeatable_time, 1)} s")
    print(f"with search unbeatable: {report['search_unbeatable']}")
    print(f"optimal-move share (raw, 4,520 non-terminal positions): {report['optimal_move_share']:.4f}")
    print(f"value agreement with minimax: sign on won/lost positions {report['decisive_sign_agreement']:.4f}, "
          f"nearest of -1/0/+1 on all {report['value_sign_agreement']:.4f}")
    print(f"self-play: {sp_rate:,.0f} positions/s at {cfg.num_simulations} simulations "
          f"({cfg.games} games in parallel); full iteration incl. updates: "
          f"{cfg.games * cfg.unroll_length / per_iter:,.0f} positions/s")


if __name__ == "__main__":
    main()
