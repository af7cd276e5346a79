"""Integrated gradients over many states: ``rljaxinterp.interp.attribution`` against captum.

The same AlphaZero-style ResTower (connect four, identical weights in Flax and PyTorch),
the value head as the attributed output, zero baseline, Gauss-Legendre quadrature with
the same number of points (captum's default method). captum's ``IntegratedGradients``
runs with ``internal_batch_size`` chunks over the states (its own way of bounding
memory), fastest of the given torch thread counts; ours is one jitted call with
``state_chunk`` states per step. Prints the time ratio (target >= 10x) and the largest
difference between the two attributions (target <= 1e-4).

Needs ``pip install torch==2.13.0 captum`` (optional; not dependencies of rljaxinterp).

    .venv/bin/python benchmarks/ig_vs_captum.py [--states 10000] [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
import torch
from captum.attr import IntegratedGradients
from patching_vs_torch import TorchMLP, TorchResTower, connect_four_states

from rljaxinterp import envs
from rljaxinterp.interp import metrics
from rljaxinterp.interp.attribution import integrated_gradients
from rljaxinterp.models import make_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--model", choices=("conv", "mlp"), default="conv")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=None, help="our state_chunk (default: the library's)")
    parser.add_argument("--captum-batch", type=int, default=4096,
                        help="captum's internal_batch_size (path points per forward)")
    parser.add_argument("--torch-threads", type=int, nargs="+", default=[2, 1])
    args = parser.parse_args()

    env = envs.make("connect_four")
    obs = connect_four_states(args.states, jax.random.key(0))
    if args.model == "conv":
        model = make_model("conv", env.num_actions, env.observation_shape, channels=args.channels, blocks=args.blocks)
        twin = TorchResTower(env.observation_shape, env.num_actions, args.channels, args.blocks)
        label = f"ResTower {args.channels}x{args.blocks}"
    else:
        model = make_model("mlp", env.num_actions, env.observation_shape, hidden=(128, 128))
        twin = TorchMLP(env.observation_shape, env.num_actions, (128, 128))
        label = "MLP 2x128"
    params = model.init(jax.random.key(1), obs[:1])["params"]
    with torch.no_grad():
        tmodel = twin.load_flax(params)
    tmodel.eval()

    def ours():
        return jax.block_until_ready(integrated_gradients(model, params, obs, metrics.value, steps=args.steps,
                                                          state_chunk=args.chunk))

    t0 = time.perf_counter()
    ours()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    attr = np.asarray(ours())
    jax_time = time.perf_counter() - t0

    ig = IntegratedGradients(lambda x: tmodel(x)[1])
    x = torch.from_numpy(np.asarray(obs))
    torch_times = {}
    for threads in args.torch_threads:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        ref = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=args.steps, method="gausslegendre",
                           internal_batch_size=args.captum_batch).detach().numpy()
        torch_times[threads] = time.perf_counter() - t0
    torch_time = min(torch_times.values())
    diff = float(np.abs(attr - ref).max())
    scale = float(np.abs(ref).max())
    result = {"model": label, "states": args.states, "steps": args.steps, "jax_seconds": jax_time, "jax_first_call_seconds": first,
              "torch_seconds": torch_time, "torch_seconds_by_threads": torch_times, "speedup": torch_time / jax_time,
              "max_abs_diff": diff, "max_abs_attribution": scale}
    print(f"integrated gradients, {label} on connect four, {args.states} states, "
          f"{args.steps} Gauss-Legendre points")
    print(f"  rljaxinterp : {jax_time:8.2f} s (first call incl. compile {first:.2f} s)")
    print(f"  captum      : {torch_time:8.2f} s (by threads: {', '.join(f'{k}: {v:.2f} s' for k, v in torch_times.items())})")
    print(f"  speedup     : {result['speedup']:.1f}x (target >= 10x)")
    print(f"  max |diff|  : {diff:.2e} (largest attribution {scale:.2e}; target <= 1e-4)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
