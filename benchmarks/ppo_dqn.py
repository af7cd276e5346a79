"""PPO and DQN side by side: CartPole-v1 (both), Breakout-MinAtar (PPO), throughput.

    .venv/bin/python benchmarks/ppo_dqn.py [--seeds 2] [--breakout-steps 2000000] [--skip-breakout]

Each training run is one jitted call over all seeds (``jax.vmap``); compile time is reported
separately from run time. "Eval" is the mean return of 64 fresh episodes of the final policy
(PPO samples its policy, DQN acts greedily); "train" is the mean return of the episodes that
finished in the last 5% of updates.
"""

from __future__ import annotations

import argparse
import functools

import jax
import numpy as np
from timing import compile_and_run

from rljaxinterp.agents import dqn as dqn_lib
from rljaxinterp.agents import ppo as ppo_lib
from rljaxinterp.agents.rl_common import evaluate, random_return
from rljaxinterp.runs import default_config


def run(lib, config, seeds: int) -> dict:
    agent = (ppo_lib.make_ppo if lib is ppo_lib else dqn_lib.make_dqn)(config)
    keys = jax.random.split(jax.random.PRNGKey(config.seed), seeds)
    train = jax.jit(jax.vmap(lib.make_train(config)))
    (state, metrics), compile_s, run_s = compile_and_run(train, keys)
    returns = np.asarray(metrics["episode_return"], np.float64)
    counts = np.asarray(metrics["episodes"], np.float64)
    tail = max(1, returns.shape[1] // 20)
    train_ret = np.nansum((returns * counts)[:, -tail:]) / max(counts[:, -tail:].sum(), 1)
    ev = jax.jit(jax.vmap(lambda p, k: evaluate(agent.env, agent.act, p, k, 64)))
    eval_ret = np.asarray(ev(state.params, jax.random.split(jax.random.PRNGKey(123), seeds))).mean(axis=1)
    steps = int(np.asarray(state.env_steps)[0])
    return dict(steps=steps, compile_s=compile_s, run_s=run_s, sps=seeds * steps / run_s,
                train=train_ret, eval=eval_ret, env=agent.env)


def throughput(config, updates: int) -> tuple[float, float]:
    """Env steps/s of PPO training (rollout + learning) on one seed, and compile seconds."""
    ppo = ppo_lib.make_ppo(config)
    state = jax.jit(ppo.init)(jax.random.PRNGKey(0))
    seg = jax.jit(functools.partial(ppo.segment, num_updates=updates))
    _, compile_s, run_s = compile_and_run(seg, state)
    return updates * config.batch_size / run_s, compile_s


def fmt(name: str, r: dict, random: float) -> str:
    return (f"{name:<28} steps={r['steps']:>9,d} compile={r['compile_s']:6.1f}s run={r['run_s']:7.1f}s "
            f"({r['sps']:>9,.0f} steps/s) train={r['train']:7.1f} eval/seed={np.round(r['eval'], 1)} "
            f"random={random:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--breakout-steps", type=int, default=2_000_000)
    ap.add_argument("--skip-breakout", action="store_true")
    args = ap.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {args.seeds} seeds per run (vmapped)")

    cp_ppo = default_config("ppo", "CartPole-v1")
    cp_dqn = default_config("dqn", "CartPole-v1")
    ppo_cp = run(ppo_lib, cp_ppo, args.seeds)
    rand_cp = float(random_return(ppo_cp["env"], jax.random.PRNGKey(0), 256).mean())
    dqn_cp = run(dqn_lib, cp_dqn, args.seeds)
    print("\n== CartPole-v1 (solved: mean return >= 475) ==")
    print(fmt("PPO", ppo_cp, rand_cp))
    print(fmt("DQN", dqn_cp, rand_cp))
    print(f"PPO solved on {(ppo_cp['eval'] >= 475).sum()}/{args.seeds} seeds; "
          f"DQN on {(dqn_cp['eval'] >= 475).sum()}/{args.seeds}")

    if not args.skip_breakout:
        cfg = default_config("ppo", "Breakout-MinAtar", total_timesteps=args.breakout_steps)
        br = run(ppo_lib, cfg, args.seeds)
        rand_br = float(random_return(br["env"], jax.random.PRNGKey(0), 256).mean())
        print("\n== Breakout-MinAtar ==")
        print(fmt("PPO (conv 16ch, 1 block)", br, rand_br))

    print("\n== PPO training throughput, 1 seed (rollout + updates; compile separate) ==")
    for cfg, updates in [(cp_ppo, 20), (default_config("ppo", "Breakout-MinAtar"), 3)]:
        sps, comp = throughput(cfg, updates)
        print(f"{cfg.env:<20} {sps:>10,.0f} env steps/s  (compile {comp:.1f}s, {cfg.num_envs} envs x "
              f"{cfg.num_steps} steps, {cfg.update_epochs} epochs x {cfg.num_minibatches} minibatches)")


if __name__ == "__main__":
    main()
