"""Integrated gradients over many states: ``rljaxinterp.interp.attribution`` against captum.

The same AlphaZero-style ResTower (connect four, identical weights in Flax and PyTorch),
the value head as the attributed output, zero baseline, Gauss-Legendre quadrature with
the same number of points (captum's default method). captum's ``IntegratedGradients``
runs with ``internal_batch_size`` chunks over the states (its own way of bounding
memory), fastest of the given torch thread counts; ours is one jitted call with
``Sizing.states_per_call`` states per step. Prints the time ratio (target >= 10x) and the largest
difference between the two attributions (target <= 1e-4).

Two further checks say what limits each figure:

* Arithmetic: XLA's cost analysis counts the floating-point operations of one forward and
  input-gradient pass; times states x points that is the work both libraries must do.
  Against a float32 matmul timed here (the machine's practical peak) it bounds any speed-up.
* Precision: ``--x64-states`` states are attributed again by both in float64. ReLU networks
  have kinks; in float32 a pre-activation within rounding of zero can fall on different
  sides in the two libraries, which changes that path point's gradient by a finite amount.
  In float64 such flips become vanishingly rare, so agreement there shows the same maths.

Needs ``pip install torch==2.13.0 captum`` (optional; not dependencies of rljaxinterp).

    .venv/bin/python benchmarks/ig_vs_captum.py [--states 10000] [--steps 50]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import jax
import numpy as np
import torch
from captum.attr import IntegratedGradients
from patching_vs_torch import TorchMLP, TorchResTower, connect_four_states

from rljaxinterp import envs
from rljaxinterp.interp import Sizing, metrics
from rljaxinterp.interp.attribution import integrated_gradients
from rljaxinterp.models import make_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--model", choices=("conv", "mlp"), default="conv")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=None, help="our Sizing.states_per_call (default: the library's)")
    parser.add_argument("--captum-batch", type=int, default=4096,
                        help="captum's internal_batch_size (path points per forward)")
    parser.add_argument("--torch-threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--x64-states", type=int, default=1000, help="states for the float64 comparison (0: skip)")
    args = parser.parse_args()
    result = compare(args.model, args.states, args.steps, args.channels, args.blocks, args.chunk,
                     args.captum_batch, args.torch_threads, args.x64_states)
    label, first, jax_time, torch_time, torch_times, diff, scale = (result[k] for k in (
        "model", "jax_first_call_seconds", "jax_seconds", "torch_seconds", "torch_seconds_by_threads",
        "max_abs_diff", "max_abs_attribution"))
    print(f"integrated gradients, {label} on connect four, {args.states} states, "
          f"{args.steps} Gauss-Legendre points")
    print(f"  rljaxinterp : {jax_time:8.2f} s (first call incl. compile {first:.2f} s)")
    print(f"  captum      : {torch_time:8.2f} s (by threads: {', '.join(f'{k}: {v:.2f} s' for k, v in torch_times.items())})")
    print(f"  speedup     : {result['speedup']:.1f}x (target >= 10x)")
    print(f"  max |diff|  : {diff:.2e} (largest attribution {scale:.2e}; target <= 1e-4); "
          f"{result['entries_over_1e-4']} of {result['entries']:,} entries differ by more than 1e-4")
    print(f"  work        : {result['gflop']:,.0f} GFLOP (XLA cost analysis of forward + input gradient) -> "
          f"rljaxinterp {result['jax_gflops']:.0f} GFLOP/s, captum {result['torch_gflops']:.0f} GFLOP/s; "
          f"float32 matmul here {result['matmul_gflops']:.0f} GFLOP/s")
    print(f"  10x captum  : would need {result['gflops_for_10x']:.0f} GFLOP/s, "
          f"{result['gflops_for_10x'] / result['matmul_gflops']:.1f}x the matmul rate")
    if args.x64_states:
        print(f"  float64     : {args.x64_states} states, max |diff| {result['x64_max_abs_diff']:.2e}; "
              f"float32 rljaxinterp vs float64 captum {result['f32_ours_vs_f64']:.2e}, "
              f"float32 captum vs float64 captum {result['f32_captum_vs_f64']:.2e}")
    print(json.dumps(result))


def compare(model_kind: str = "conv", states: int = 10_000, steps: int = 50, channels: int = 32, blocks: int = 2,
            chunk: int | None = None, captum_batch: int = 4096, torch_threads=(2, 1), x64_states: int = 1000) -> dict:
    """Ours against captum on identical weights: times, differences, the work bound and (with
    ``x64_states``) the float64 check, as one result dict."""
    env = envs.make("connect_four")
    obs = connect_four_states(states, jax.random.key(0))
    if model_kind == "conv":
        model = make_model("conv", env.num_actions, env.observation_shape, channels=channels, blocks=blocks)
        twin = TorchResTower(env.observation_shape, env.num_actions, channels, blocks)
        label = f"ResTower {channels}x{blocks}"
    else:
        model = make_model("mlp", env.num_actions, env.observation_shape, hidden=(128, 128))
        twin = TorchMLP(env.observation_shape, env.num_actions, (128, 128))
        label = "MLP 2x128"
    params = model.init(jax.random.key(1), obs[:1])["params"]
    with torch.no_grad():
        tmodel = twin.load_flax(params)
    tmodel.eval()

    def ours():
        return jax.block_until_ready(integrated_gradients(model, params, obs, metrics.value, steps=steps,
                                                          sizing=Sizing(states_per_call=chunk)))

    t0 = time.perf_counter()
    ours()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    attr = np.asarray(ours())
    jax_time = time.perf_counter() - t0

    ig = IntegratedGradients(lambda x: tmodel(x)[1])
    x = torch.from_numpy(np.asarray(obs))
    torch_times = {}
    for threads in torch_threads:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        ref = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=steps, method="gausslegendre",
                           internal_batch_size=captum_batch).detach().numpy()
        torch_times[threads] = time.perf_counter() - t0
    torch_time = min(torch_times.values())
    diff = float(np.abs(attr - ref).max())
    scale = float(np.abs(ref).max())
    result = {"model": label, "states": states, "steps": steps, "jax_seconds": jax_time, "jax_first_call_seconds": first,
              "torch_seconds": torch_time, "torch_seconds_by_threads": torch_times, "speedup": torch_time / jax_time,
              "max_abs_diff": diff, "max_abs_attribution": scale,
              "entries_over_1e-4": int((np.abs(attr - ref) > 1e-4).sum()), "entries": int(attr.size)}
    result |= roofline(model, params, obs, states * steps, jax_time, torch_time)
    if x64_states:
        result |= float64_check(model, params, tmodel, obs[:x64_states], steps)
    return result


def roofline(model, params, obs, points: int, jax_time: float, torch_time: float) -> dict:
    """Operations per path point (forward + input gradient), and a float32 matmul's rate."""
    batch = obs[:1000].astype(np.float32)
    grad = jax.jit(jax.grad(lambda x: model.apply({"params": params}, x).value.sum()))
    flops = grad.lower(batch).compile().cost_analysis()["flops"] / batch.shape[0] * points
    a = jax.random.normal(jax.random.key(0), (2048, 2048))
    square = jax.jit(lambda a: a @ a)
    square(a).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        square(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return {"gflop": flops / 1e9, "jax_gflops": flops / jax_time / 1e9, "torch_gflops": flops / torch_time / 1e9,
            "matmul_gflops": 2 * 2048**3 / best / 1e9, "gflops_for_10x": flops / (torch_time / 10) / 1e9}


def float64_check(model, params, tmodel, obs, steps: int) -> dict:
    """Both libraries in float64 and float32 on the same states, against float64 captum."""
    x = torch.from_numpy(np.asarray(obs, np.float64))

    def captum(net, inputs):
        ig = IntegratedGradients(lambda z: net(z)[1])
        return ig.attribute(inputs, baselines=torch.zeros_like(inputs), n_steps=steps,
                            method="gausslegendre").detach().numpy().astype(np.float64)

    ref64 = captum(copy.deepcopy(tmodel).double(), x)
    ref32 = captum(tmodel, x.float())
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
        ours64 = np.asarray(integrated_gradients(model, params64, np.asarray(obs, np.float64), metrics.value,
                                                 steps=steps))
    ours32 = np.asarray(integrated_gradients(model, params, obs, metrics.value, steps=steps), np.float64)
    return {"x64_states": int(obs.shape[0]), "x64_dtype": str(ours64.dtype),
            "x64_max_abs_diff": float(np.abs(ours64 - ref64).max()),
            "f32_ours_vs_f64": float(np.abs(ours32 - ref64).max()),
            "f32_captum_vs_f64": float(np.abs(ref32 - ref64).max())}


if __name__ == "__main__":
    main()
