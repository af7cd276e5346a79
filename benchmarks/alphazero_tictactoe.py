"""AlphaZero on tic-tac-toe from scratch: time to an unbeatable raw network with a value head
of the right sign, then to an optimal move in every position, checked exactly.

Run: .venv/bin/python benchmarks/alphazero_tictactoe.py [--minutes 3] [--seed S]
Trains the default config (``default_config("alphazero", "tic_tac_toe")``) for its ``iterations``, then keeps
going at its final learning rate until the optimal-move share reaches 100% or ``--minutes`` of
training have passed. Every ``--check-every`` iterations the raw network is checked exhaustively
(every opponent line, both seats), its value sign on the won/lost non-terminal positions and its
optimal-move share over all 4,520 non-terminal positions; the time of those checks is excluded
from the training wall time, which includes compilation.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from rljaxinterp.agents import init_state, iteration_key, make_agent, make_iteration
from rljaxinterp.eval.matches import (
    decisive_sign_agreement,
    exhaustive,
    optimal_move_share,
    raw_moves,
    tic_tac_toe_report,
    tic_tac_toe_states,
)
from rljaxinterp.runs import default_config


def train_and_check(seed: int = 0, check_every: int = 10, minutes: float = 3.0,
                    stop_at: str | None = None) -> dict:
    """Train with the exact checks and return everything ``main`` prints. ``stop_at`` names a
    target (e.g. ``"unbeatable"``) to stop at as soon as it is met, skipping the closing
    self-play timing and reports: what ``benchmarks/suite.py`` needs for time to unbeatable."""
    cfg = default_config("alphazero", "tic_tac_toe", seed=seed)
    agent = make_agent(cfg)
    states = tic_tac_toe_states()
    values = jax.jit(lambda params: agent.masked_policy_value(params, states)[1])

    t0 = time.perf_counter()
    state = init_state(cfg)
    iteration = make_iteration(cfg)
    state, _ = iteration(state, iteration_key(cfg, 0))
    jax.block_until_ready(state.params)
    compile_and_first = time.perf_counter() - t0
    check_time = 0.0
    first: dict[str, tuple[int, float]] = {}  # target -> (iteration, training seconds)
    checks, steady, report_at_default_end = [], [], None
    i = 1
    while True:
        t = time.perf_counter()
        state, _ = iteration(state, iteration_key(cfg, i))
        jax.block_until_ready(state.params)
        steady.append(time.perf_counter() - t)
        i += 1
        elapsed = time.perf_counter() - t0 - check_time
        if i % check_every == 0 or i == cfg.iterations:
            c = time.perf_counter()
            moves = raw_moves(agent, state.params)
            losing_lines = sum(exhaustive(moves, seat)["loss"] for seat in (0, 1))
            sign = decisive_sign_agreement(np.asarray(values(state.params)))
            share = optimal_move_share(moves)
            checks.append({"iteration": i, "train_s": round(elapsed, 1), "losing_lines": losing_lines,
                           "value_sign": round(sign, 4), "optimal_share": round(share, 4)})
            for target, ok in (("unbeatable", losing_lines == 0), ("value_sign_95", sign >= 0.95),
                               ("unbeatable_and_value_sign_95", losing_lines == 0 and sign >= 0.95),
                               ("optimal_share_100", share == 1.0)):
                if ok and target not in first:
                    first[target] = (i, round(elapsed, 1))
            if i == cfg.iterations:
                report_at_default_end = tic_tac_toe_report(agent, state.params)
            check_time += time.perf_counter() - c
            if stop_at is not None and (stop_at in first or elapsed > 60 * minutes):
                break
            if i >= cfg.iterations and ("optimal_share_100" in first or elapsed > 60 * minutes):
                break
    train_time = time.perf_counter() - t0 - check_time
    result = {"config": cfg, "iterations": i, "train_time": train_time, "compile_and_first": compile_and_first,
              "per_iteration": sum(steady) / max(len(steady), 1), "first": first, "checks": checks,
              "report_at_default_end": report_at_default_end}
    if stop_at is not None:
        return result

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

    return result | {"final": tic_tac_toe_report(agent, state.params), "self_play_rate": sp_rate}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=3.0, help="training budget after the default iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-every", type=int, default=10)
    args = p.parse_args()
    r = train_and_check(args.seed, args.check_every, args.minutes)
    cfg, i, train_time, compile_and_first = r["config"], r["iterations"], r["train_time"], r["compile_and_first"]
    per_iter, first, checks, final, sp_rate = r["per_iteration"], r["first"], r["checks"], r["final"], r["self_play_rate"]
    report_at_default_end = r["report_at_default_end"]
    print(json.dumps({
        "config": cfg.to_dict(),
        "devices": jax.device_count(),
        "train_wall_time_s_incl_compile": round(train_time, 1),
        "compile_plus_first_iteration_s": round(compile_and_first, 1),
        "seconds_per_iteration": round(per_iter, 3),
        "first_reached_iteration_and_train_s": first,
        "checks": checks,
        f"report_at_default_end_iteration_{cfg.iterations}": report_at_default_end,
        f"final_report_iteration_{i}": final,
    }, indent=1))
    print(f"\nsummary: {i} iterations in {train_time:.1f} s incl. compile (compile+first {compile_and_first:.1f} s; "
          f"default config ends at iteration {cfg.iterations}); checks every {args.check_every} iterations")

    def when(target: str) -> str:
        return f"iteration {first[target][0]} after {first[target][1]} s" if target in first else "not reached"
    d = report_at_default_end
    print(f"at iteration {cfg.iterations} (default config end): raw unbeatable {d['unbeatable']}, "
          f"with search unbeatable {d['search_unbeatable']}, value sign on won/lost positions "
          f"{d['decisive_sign_agreement']:.4f}, optimal-move share {d['optimal_move_share']:.4f}")
    print(f"first raw network unbeatable (both seats, every opponent line): {when('unbeatable')}")
    print(f"first value sign >= 95% on won/lost non-terminal positions: {when('value_sign_95')}")
    print(f"first both at once: {when('unbeatable_and_value_sign_95')}")
    print(f"first optimal move in all 4,520 non-terminal positions: {when('optimal_share_100')}")
    print(f"final (iteration {i}): raw unbeatable {final['unbeatable']}, with search unbeatable "
          f"{final['search_unbeatable']}, optimal-move share raw {final['optimal_move_share']:.4f} / search "
          f"{final['search_optimal_move_share']:.4f}, value sign {final['decisive_sign_agreement']:.4f}")
    print(f"self-play: {sp_rate:,.0f} positions/s at {cfg.num_simulations} simulations "
          f"({cfg.games} games in parallel); full iteration incl. updates: "
          f"{cfg.games * cfg.unroll_length / per_iter:,.0f} positions/s")


if __name__ == "__main__":
    main()
