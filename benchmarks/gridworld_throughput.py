"""Env steps per second of every gridworld: ``vmap`` over many levels, random actions, ``lax.scan``.

Each environment runs as ``Batched(AutoReset(env), num_envs)`` for ``steps``
steps inside one compiled ``scan``, so every finished episode is replaced by
a freshly generated level in the same step (AutoReset generates a candidate
level every step, so generation cost is part of the figure). Compilation
is timed separately from the run; the run figure is the best of
``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

from rljaxinterp import envs
from rljaxinterp.envs.gridworlds import GRIDWORLDS


def rollout_fn(env: envs.Env, num_envs: int, steps: int):
    """A jittable ``key -> (total reward, episodes finished)`` over ``steps`` batched steps."""
    batched = envs.Batched(envs.AutoReset(env), num_envs)

    def body(state, key):
        act_key, step_key = jax.random.split(key)
        action = jax.random.randint(act_key, (num_envs,), 0, env.num_actions)
        state = batched.step(state, action, step_key)
        return state, (state.rewards[:, 0].sum(), state.done.sum())

    def run(key):
        init_key, scan_key = jax.random.split(key)
        _, (rewards, dones) = jax.lax.scan(body, batched.init(init_key), jax.random.split(scan_key, steps))
        return rewards.sum(), dones.sum()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--envs", nargs="*", default=list(GRIDWORLDS), choices=list(GRIDWORLDS))
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--distribution", default="train", choices=["train", "test"])
    args = parser.parse_args()

    results = []
    for name in args.envs:
        env = envs.make(name, distribution=args.distribution)
        key = jax.random.PRNGKey(0)
        start = time.perf_counter()
        compiled = jax.jit(rollout_fn(env, args.num_envs, args.steps)).lower(key).compile()
        compile_s = time.perf_counter() - start
        best = float("inf")
        for r in range(args.repeats):
            start = time.perf_counter()
            reward, episodes = jax.block_until_ready(compiled(jax.random.PRNGKey(r)))
            best = min(best, time.perf_counter() - start)
        row = {
            "env": name,
            "distribution": args.distribution,
            "num_envs": args.num_envs,
            "steps": args.steps,
            "compile_s": round(compile_s, 2),
            "run_s": round(best, 3),
            "steps_per_s": round(args.num_envs * args.steps / best),
            "episodes": int(episodes),
            "mean_reward_per_step": float(reward) / (args.num_envs * args.steps),
        }
        results.append(row)
        print(
            f"{name:12s} {args.num_envs} envs x {args.steps} steps: {row['steps_per_s']:>12,} steps/s "
            f"(run {row['run_s']:.3f} s, compile {row['compile_s']:.1f} s, {row['episodes']} episodes)",
            flush=True,
        )
    print(json.dumps({"backend": jax.default_backend(), "devices": len(jax.devices()), "results": results}))


if __name__ == "__main__":
    jnp.zeros(()).block_until_ready()  # start the backend outside the timings
    main()
