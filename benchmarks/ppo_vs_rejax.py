"""Our PPO against rejax's PPO with the same hyperparameters, side by side on this machine.

    .venv/bin/python benchmarks/ppo_vs_rejax.py [--steps 500000] [--minatar-steps 500000] [--skip-minatar]

rejax 0.1.3 needs gymnax 0.0.9, which is not our gymnax, so rejax runs in its own virtual
environment (``benchmarks/.rejax-venv``, git-ignored; built on first use with pip, reused
after) in a subprocess; ours runs in this process. Both sides: one seed, the whole run one
jitted call, compiled first (``lower().compile()``) so the timed figure is the run alone;
env steps/s = total_timesteps / run seconds. Same PPO hyperparameters on both sides (16 envs
x 128 steps, epochs, minibatches, lr, gamma, GAE lambda, clip, entropy/value coefficients,
grad-norm clip). Networks differ in shape: rejax uses separate actor and critic MLPs
(64, 64); ours is one MLP (64, 64) with policy and value heads, with every activation site
of the model layer compiled in. rejax evaluates once at the end (``eval_freq`` =
total steps), we evaluate with 64 episodes after timing. If the venv cannot be built (no
network, no pip), the rejax half is skipped with a message and ours still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import venv
from pathlib import Path

from timing import compile_and_run

VENV = Path(__file__).resolve().parent / ".rejax-venv"
PINS = ["rejax==0.1.3", "gymnax==0.0.9"]

HYPER = dict(num_envs=16, num_steps=128, update_epochs=4, num_minibatches=4, lr=2.5e-4, gamma=0.99,
             gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5)

CHILD = r"""
import json, sys, time
import jax
from rejax import PPO
h = json.loads(sys.argv[1])
algo = PPO.create(env=h["env"], num_envs=h["num_envs"], num_steps=h["num_steps"],
                  num_epochs=h["update_epochs"], num_minibatches=h["num_minibatches"],
                  learning_rate=h["lr"], gamma=h["gamma"], gae_lambda=h["gae_lambda"],
                  clip_eps=h["clip_eps"], ent_coef=h["ent_coef"], vf_coef=h["vf_coef"],
                  max_grad_norm=h["max_grad_norm"], total_timesteps=h["total_timesteps"],
                  eval_freq=h["total_timesteps"], skip_initial_evaluation=True,
                  agent_kwargs={"activation": "relu", "hidden_layer_sizes": [64, 64]})
key = jax.random.PRNGKey(0)
t0 = time.perf_counter()
compiled = jax.jit(algo.train).lower(key).compile()
compile_s = time.perf_counter() - t0
t0 = time.perf_counter()
ts, (lengths, returns) = jax.block_until_ready(compiled(key))
run_s = time.perf_counter() - t0
print(json.dumps({"jax": jax.__version__, "compile_s": compile_s, "run_s": run_s,
                  "final_return": float(returns[-1].mean())}))
"""


def venv_python() -> Path | None:
    """The rejax venv's python, building the venv on first use; None (with a reason printed)
    if it cannot be built."""
    py = VENV / "bin" / "python"
    if py.exists() and subprocess.run([py, "-c", "import rejax, gymnax"], capture_output=True).returncode == 0:
        return py
    print(f"building {VENV} with {' '.join(PINS)} (once) ...", flush=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        done = subprocess.run([py, "-m", "pip", "install", "-q", *PINS], capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"SKIP rejax: could not build {VENV}: {e}")
        return None
    if done.returncode != 0:
        print(f"SKIP rejax: pip install {' '.join(PINS)} failed:\n{done.stderr[-2000:]}")
        return None
    return py


def run_rejax(py: Path, env: str, steps: int) -> dict | None:
    h = {**HYPER, "env": env, "total_timesteps": steps}
    out = subprocess.run([py, "-c", CHILD, json.dumps(h)], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if out.returncode != 0:
        print(f"SKIP rejax on {env}: the subprocess failed:\n{out.stderr[-2000:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ours(env: str, steps: int, model: str, model_kwargs: dict) -> dict:
    import jax
    import numpy as np

    from rljaxinterp.agents import ppo as ppo_lib
    from rljaxinterp.agents.rl_common import evaluate, random_return

    config = ppo_lib.PPOConfig(env=env, total_timesteps=steps, model=model, model_kwargs=model_kwargs,
                               **HYPER)
    agent = ppo_lib.make_ppo(config)
    train = ppo_lib.make_train(config)
    (state, _), compile_s, run_s = compile_and_run(train, jax.random.PRNGKey(0))
    ret = jax.jit(lambda p, k: evaluate(agent.env, agent.act, p, k, 64))(state.params, jax.random.PRNGKey(1))
    rand = float(np.mean(random_return(agent.env, jax.random.PRNGKey(2), 256)))
    return {"jax": jax.__version__, "compile_s": compile_s, "run_s": run_s, "random_return": rand,
            "final_return": float(np.mean(ret)), "steps": config.num_updates * config.batch_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=500_000)
    ap.add_argument("--minatar", default="Breakout-MinAtar")
    ap.add_argument("--minatar-steps", type=int, default=500_000)
    ap.add_argument("--skip-minatar", action="store_true")
    args = ap.parse_args()
    py = venv_python()
    cases = [("CartPole-v1", args.steps, "mlp", {"hidden": [64, 64]})]
    if not args.skip_minatar:
        # rejax's networks are MLPs; ours is run with the same MLP and with our default conv.
        cases += [(args.minatar, args.minatar_steps, "mlp", {"hidden": [64, 64]}),
                  (args.minatar, args.minatar_steps, "conv", {"channels": 16, "blocks": 1})]
    rows = []
    for env, steps, model, mk in cases:
        ours = run_ours(env, steps, model, mk)
        theirs = run_rejax(py, env, steps) if (py is not None and model == "mlp") else None
        row = {"env": env, "model": f"{model} {mk}", "ours": ours, "rejax": theirs}
        ours_sps = ours["steps"] / ours["run_s"]
        line = (f"{env:<18} ours ({model}): {ours_sps:>9,.0f} steps/s (run {ours['run_s']:.1f}s, compile "
                f"{ours['compile_s']:.1f}s, return {ours['final_return']:.1f}, random policy {ours['random_return']:.1f})")
        if theirs is not None:
            sps = steps / theirs["run_s"]
            row["ratio"] = ours_sps / sps
            line += (f" | rejax: {sps:>9,.0f} steps/s (run {theirs['run_s']:.1f}s, compile {theirs['compile_s']:.1f}s, "
                     f"return {theirs['final_return']:.1f}) | ours/rejax = {ours_sps / sps:.2f}x")
        print(line, flush=True)
        rows.append(row)
    print(json.dumps({"hyper": HYPER, "results": rows}))


if __name__ == "__main__":
    main()
