"""AlphaZero on the larger pgx games: train each default config for a wall-time budget, then
play the raw network and the network with search against a uniform-random player and
against pure MCTS (uniform prior, zero value) with the same simulation count, both seats.

Run: .venv/bin/python benchmarks/alphazero_games.py --env connect_four --minutes 10
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from rljaxinterp.agents import init_state, iteration_key, make_agent, make_iteration
from rljaxinterp.agents.configs import default_config
from rljaxinterp.agents.evaluate import greedy_player, play_match, pure_mcts_player, random_player, search_player


def share(result: dict) -> str:
    wins = sum(r["win"] for r in result.values())
    losses = sum(r["loss"] for r in result.values())
    games = sum(sum(r.values()) for r in result.values())
    return f"{wins}/{games} won, {losses} lost (first {result['first']}, second {result['second']})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--env", default="connect_four")
    p.add_argument("--minutes", type=float, default=10.0, help="training wall-time budget")
    p.add_argument("--games", type=int, default=50, help="evaluation games per seat")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cfg = default_config(args.env, seed=args.seed, iterations=100_000)
    agent = make_agent(cfg)
    iteration = make_iteration(cfg)
    state = init_state(cfg)
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < 60 * args.minutes:
        state, metrics = iteration(state, iteration_key(cfg, i))
        jax.block_until_ready(state.params)
        i += 1
        if i % 5 == 0:
            print(f"iteration {i}: {time.perf_counter() - t0:.0f} s, loss {float(metrics['loss']):.3f}", flush=True)
    train_s = time.perf_counter() - t0
    env, key = agent.env, jax.random.PRNGKey(args.seed + 1)
    rows = {"env": args.env, "iterations": i, "train_s": round(train_s, 1), "simulations": cfg.num_simulations}
    for pname, player in (("raw", greedy_player(agent, state.params)), ("search", search_player(agent, state.params))):
        for oname, opp in (("random", random_player()), ("pure_mcts", pure_mcts_player(env, cfg.num_simulations))):
            key, k = jax.random.split(key)
            result = play_match(env, player, opp, args.games, k)
            rows[f"{pname}_vs_{oname}"] = result
            print(f"{args.env}: {pname} network vs {oname}: {share(result)}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
