"""AlphaZero on the larger pgx games: train each default config for a wall-time budget, then
play the raw network and the network with search against a uniform-random player and
against pure MCTS (uniform prior, zero value) with the same simulation count, both seats.

Run: .venv/bin/python benchmarks/alphazero_games.py --env connect_four --minutes 10
     .venv/bin/python benchmarks/alphazero_games.py --env go_9x9 --minutes 5 --opponents random
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from rljaxinterp.agents import init_state, iteration_key, make_agent, make_iteration
from rljaxinterp.eval.matches import (
    greedy_player,
    match_runner,
    play_match,
    pure_mcts_player,
    random_player,
    search_player,
)
from rljaxinterp.runs import default_config


def share(result: dict) -> str:
    wins = sum(r["win"] for r in result.values())
    losses = sum(r["loss"] for r in result.values())
    games = sum(sum(r.values()) for r in result.values())
    return f"{wins}/{games} won, {losses} lost (first {result['first']}, second {result['second']})"


def train_for(env_name: str, minutes: float, seed: int = 0, log=print, curve: dict | None = None,
              **overrides) -> dict:
    """Train the game's default config (plus ``overrides``) for ``minutes`` of wall time
    (compilation included) or until ``iterations`` (an override; the learning rate decays over
    it), whichever comes first, logging every 5 iterations; returns the config, agent, final
    state and counts. With ``curve={"every_s", "simulations", "games"}`` the raw network plays pure MCTS
    with that many simulations (``games`` per seat) after every ``every_s`` seconds of training and
    at the end; the clock stops while it plays, so ``train_s`` is training time only."""
    # a long nominal run: the budget ends training, the learning rate stays near its start
    cfg = default_config("alphazero", env_name, seed=seed, **({"iterations": 100_000} | overrides))
    agent = make_agent(cfg)
    greedy = jax.jit(agent.greedy_action)
    has_pass = env_name.startswith("go_") or env_name == "othello"
    t0 = time.perf_counter()
    paused = 0.0  # seconds spent on curve points, not training
    clock = lambda: time.perf_counter() - t0 - paused
    iteration = make_iteration(cfg)
    state = init_state(cfg)
    i, finished, points = 0, 0, []
    if curve:
        match = match_runner(agent.env, lambda params: greedy_player(agent, params),
                             pure_mcts_player(agent.env, curve["simulations"]), curve["games"])
        key = jax.random.PRNGKey(seed + 2)

    def curve_point(train_s: float):
        nonlocal paused, key
        p0 = time.perf_counter()
        key, k = jax.random.split(key)
        result = match(state.params, k)
        wins, games = sum(r["win"] for r in result.values()), sum(sum(r.values()) for r in result.values())
        points.append({"train_s": train_s, "iteration": i, "win_rate": wins / games, "result": result})
        log(f"after {points[-1]['train_s']:.0f} s of training (iteration {i}): raw network vs pure MCTS-"
            f"{curve['simulations']}: {share(result)}")
        paused += time.perf_counter() - p0

    while clock() < 60 * minutes and i < cfg.iterations:
        state, metrics = iteration(state, iteration_key(cfg, i))
        jax.block_until_ready(state.params)
        i += 1
        finished += int(metrics["games_finished"])
        if curve and clock() >= curve["every_s"] * (len(points) + 1) and clock() < 60 * minutes:
            curve_point(clock())
        if i % 5 == 0:
            line = (f"iteration {i}: {clock():.0f} s, loss {float(metrics['loss']):.3f} "
                    f"(value {float(metrics['value_loss']):.3f}), self-play games finished {finished}")
            if has_pass:  # the raw network's voluntary passes in the live self-play games
                legal = np.asarray(state.env_state.legal_action_mask)
                passes = np.asarray(greedy(state.params, state.env_state)) == agent.env.num_actions - 1
                line += f", greedy pass with other moves legal {float((passes & legal[:, :-1].any(axis=1)).mean()):.2f}"
            log(line)
    train_s = clock()
    if curve:
        curve_point(train_s)
    return {"config": cfg, "agent": agent, "state": state, "iterations": i, "finished": finished,
            "train_s": train_s, "curve": points}


def strength(trained: dict, opponents: list[str], games: int, seed: int = 0, log=print,
             mcts_simulations: int | None = None) -> dict:
    """Raw network (greedy) and network with search against each opponent, ``games`` per seat;
    pure MCTS searches ``mcts_simulations`` (default: the agent's own count)."""
    cfg, agent, params = trained["config"], trained["agent"], trained["state"].params
    env, key = agent.env, jax.random.PRNGKey(seed + 1)
    players = {"random": random_player(),
               "pure_mcts": pure_mcts_player(env, mcts_simulations or cfg.num_simulations)}
    rows = {}
    for pname, player in (("raw", greedy_player(agent, params)), ("search", search_player(agent, params))):
        for oname in opponents:
            key, k = jax.random.split(key)
            result = play_match(env, player, players[oname], games, k)
            rows[f"{pname}_vs_{oname}"] = result
            log(f"{cfg.env}: {pname} network vs {oname}: {share(result)}")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--env", default="connect_four")
    p.add_argument("--minutes", type=float, default=10.0, help="training wall-time budget (compilation included)")
    p.add_argument("--games", type=int, default=50, help="evaluation games per seat")
    p.add_argument("--opponents", default="random,pure_mcts", help="comma-separated: random, pure_mcts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curve-every", type=float, default=0.0,
                   help="seconds of training between curve points (raw network vs pure MCTS); 0: no curve")
    p.add_argument("--curve-simulations", type=int, default=200,
                   help="pure MCTS simulations on the curve (and in the final matches when there is a curve)")
    p.add_argument("--curve-games", type=int, default=20, help="games per seat at each curve point")
    p.add_argument("--set", default="{}", help='config changes as JSON, e.g. \'{"games": 64}\'')
    args = p.parse_args()
    log = lambda line: print(line, flush=True)
    curve = ({"every_s": args.curve_every, "simulations": args.curve_simulations, "games": args.curve_games}
             if args.curve_every > 0 else None)
    trained = train_for(args.env, args.minutes, args.seed, log, curve, **json.loads(args.set))
    cfg, i, finished, train_s = trained["config"], trained["iterations"], trained["finished"], trained["train_s"]
    rows = {"env": args.env, "iterations": i, "train_s_incl_compile": round(train_s, 1),
            "selfplay_games_finished": finished, "simulations": cfg.num_simulations,
            "devices": jax.device_count(), "config": cfg.to_dict(), "curve": trained["curve"]}
    print(f"{args.env}: trained {i} iterations in {train_s:.0f} s (compilation included), "
          f"{finished} self-play games finished", flush=True)
    rows |= strength(trained, args.opponents.split(","), args.games, args.seed, log,
                     args.curve_simulations if curve else None)
    print(json.dumps(rows))

if __name__ == "__main__":
    main()
