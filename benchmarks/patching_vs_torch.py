"""A unit-level activation-patching sweep: ``patching_sweep`` against PyTorch forward hooks.

Every unit (channel of a conv site, neuron of a dense site) of every hidden site is
patched, one at a time, with its activation on a corrupted batch (the same states
permuted), and the change of the value head is averaged over states (noising).

* JAX: one ``patching_sweep(..., granularity="unit")`` call, wrapped in ``jax.jit`` so it
  compiles once; compilation is timed separately from the steady-state sweep. Variant
  "default" is ``patching_sweep`` as shipped (its own cache-sized ``Sizing.states_per_step`` and
  ``Sizing.patches_per_step``); variant "tuned" passes ``patches_per_step=--tuned-chunk`` and
  ``states_per_step=--tile``.
* PyTorch ("the best conventional way"): the same network with identical weights, a
  forward hook that overwrites one channel of a module output with the cached corrupted
  activation, and a Python loop over sites and units; each forward is batched over all
  states, under ``torch.no_grad``; the loop is timed with ``torch.set_num_threads(t)`` for each
  ``--torch-threads`` value (default 2 and 1), ``--torch-repeats`` times each, and the
  fastest counts.
* Both sides report the best wall time of their repeats (the machine is shared, so the
  best run is the one least disturbed) and the process CPU time of that run (user +
  system over all threads), whose ratio is less sensitive to other jobs on the machine.
* Floor: as many plain batched JAX forward passes as there are patched units. Patching a
  late site only needs the layers after it (the prefix is shared across the units of a
  site), so the sweep can come in below the floor.

Targets: JAX >= 2x faster than torch at 10,000 states and >= 4x at 200 states.
Needs ``pip install torch==2.13.0 scikit-learn`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn as tnn

from rljaxinterp import envs
from rljaxinterp.envs.sampling import random_play_states
from rljaxinterp.interp import Sizing, metrics
from rljaxinterp.interp.cache import sites as sites_of
from rljaxinterp.interp.patching import patching_sweep
from rljaxinterp.models import make_model

NOT_HIDDEN = ("input", "logits", "value")


# --- PyTorch twins (NCHW inside, NHWC observations in) ------------------------------------


class TorchBlock(tnn.Module):
    def __init__(self, c: int, k: int):
        super().__init__()
        self.conv1 = tnn.Conv2d(c, c, k, padding=k // 2)
        self.relu1 = tnn.ReLU()
        self.conv2 = tnn.Conv2d(c, c, k, padding=k // 2)
        self.relu_out = tnn.ReLU()

    def forward(self, x):
        h = self.relu1(self.conv1(x))
        return self.relu_out(x + self.conv2(h))


class TorchResTower(tnn.Module):
    def __init__(self, obs_shape, num_actions, channels, blocks, kernel=3, value_hidden=64):
        super().__init__()
        h, w, planes = obs_shape
        self.stem = tnn.Conv2d(planes, channels, kernel, padding=kernel // 2)
        self.stem_relu = tnn.ReLU()
        self.blocks = tnn.ModuleList([TorchBlock(channels, kernel) for _ in range(blocks)])
        self.policy_conv = tnn.Conv2d(channels, 2, 1)
        self.policy_relu = tnn.ReLU()
        self.policy_head = tnn.Linear(2 * h * w, num_actions)
        self.value_conv = tnn.Conv2d(channels, 1, 1)
        self.value_relu = tnn.ReLU()
        self.value_hidden = tnn.Linear(h * w, value_hidden)
        self.value_hidden_relu = tnn.ReLU()
        self.value_head = tnn.Linear(value_hidden, 1)

    def forward(self, obs):
        x = self.stem_relu(self.stem(obs.permute(0, 3, 1, 2)))
        for block in self.blocks:
            x = block(x)
        p = self.policy_relu(self.policy_conv(x))
        logits = self.policy_head(p.permute(0, 2, 3, 1).flatten(1))  # Flax flattens NHWC
        v = self.value_relu(self.value_conv(x))
        v = self.value_hidden_relu(self.value_hidden(v.permute(0, 2, 3, 1).flatten(1)))
        return logits, torch.tanh(self.value_head(v)[:, 0])

    def site_modules(self):
        out = {"stem.pre": self.stem, "stem.post": self.stem_relu}
        for i, b in enumerate(self.blocks):
            out |= {f"block{i}.conv1.pre": b.conv1, f"block{i}.conv1.post": b.relu1,
                    f"block{i}.conv2.pre": b.conv2, f"block{i}.resid_post": b.relu_out}
        return out | {"policy.conv.post": self.policy_relu, "value.conv.post": self.value_relu,
                      "value.hidden.post": self.value_hidden_relu}

    def load_flax(self, params):
        def conv(m, p):
            m.weight.copy_(_t(p["kernel"]).permute(3, 2, 0, 1))  # (kh,kw,in,out) -> (out,in,kh,kw)
            m.bias.copy_(_t(p["bias"]))

        conv(self.stem, params["stem"])
        for i, b in enumerate(self.blocks):
            conv(b.conv1, params[f"block{i}"]["conv1"])
            conv(b.conv2, params[f"block{i}"]["conv2"])
        conv(self.policy_conv, params["policy_conv"])
        conv(self.value_conv, params["value_conv"])
        for name in ("policy_head", "value_hidden", "value_head"):
            _dense(getattr(self, name), params[name])
        return self


class TorchMLP(tnn.Module):
    def __init__(self, obs_shape, num_actions, hidden):
        super().__init__()
        widths = [math.prod(obs_shape), *hidden]
        self.layers = tnn.ModuleList([tnn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.relus = tnn.ModuleList([tnn.ReLU() for _ in hidden])
        self.policy_head = tnn.Linear(widths[-1], num_actions)
        self.value_head = tnn.Linear(widths[-1], 1)

    def forward(self, obs):
        x = obs.flatten(1)
        for layer, relu in zip(self.layers, self.relus):
            x = relu(layer(x))
        return self.policy_head(x), torch.tanh(self.value_head(x)[:, 0])

    def site_modules(self):
        out = {}
        for i, (layer, relu) in enumerate(zip(self.layers, self.relus)):
            out |= {f"layer{i}.pre": layer, f"layer{i}.post": relu}
        return out

    def load_flax(self, params):
        for i, layer in enumerate(self.layers):
            _dense(layer, params[f"layer{i}"])
        _dense(self.policy_head, params["policy_head"])
        _dense(self.value_head, params["value_head"])
        return self


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x, np.float32))


def _dense(m, p):
    m.weight.copy_(_t(p["kernel"]).T)  # (in, out) -> (out, in)
    m.bias.copy_(_t(p["bias"]))


def torch_sweep(model, clean, corrupted):
    """{site: (units,)} mean value change; a hook overwrites one unit (dim 1) per forward."""
    modules = model.site_modules()
    cache = {}
    handles = [m.register_forward_hook(lambda m, i, o, n=n: cache.__setitem__(n, o.clone()))
               for n, m in modules.items()]
    model(corrupted)
    for h in handles:
        h.remove()
    base = model(clean)[1]
    effects = {}
    for name, module in modules.items():
        source = cache[name]
        effect = torch.empty(source.shape[1])
        for unit in range(source.shape[1]):
            def hook(m, i, out, unit=unit, source=source):
                out[:, unit] = source[:, unit]
                return out

            handle = module.register_forward_hook(hook)
            effect[unit] = (model(clean)[1] - base).mean()
            handle.remove()
        effects[name] = effect.numpy()
    return effects


# --- benchmark ----------------------------------------------------------------------------


def connect_four_states(n: int, key) -> np.ndarray:
    env = envs.make("connect_four")
    k_play, k_pick = jax.random.split(key)
    obs = np.asarray(random_play_states(env, max(8, n // 12), 42, k_play).observation)
    while obs.shape[0] < n:  # ~20 non-terminal states per game; top up if short
        k_play, k = jax.random.split(k_play)
        obs = np.concatenate([obs, np.asarray(random_play_states(env, max(8, n // 12), 42, k).observation)])
    return obs[np.asarray(jax.random.permutation(k_pick, obs.shape[0]))[:n]].astype(np.float32)


def timed(fn, repeats):
    """(best wall seconds, process CPU seconds of that run) over ``repeats`` runs."""
    runs = []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - t, time.process_time() - c))
    return min(runs)


def run_case(label, model, tmodel, obs_all, n, args):
    clean = jnp.asarray(obs_all[:n])
    perm = np.asarray(jax.random.permutation(jax.random.key(7), n))
    corrupted = clean[perm]
    params = model.init(jax.random.key(args.seed), clean[:1])["params"]
    shapes = sites_of(model, clean[:1], params)
    hidden = [s for s in shapes if s not in NOT_HIDDEN]
    n_units = sum(shapes[s][-1] for s in hidden)

    # JAX: the whole sweep in one compiled program, as shipped (default Sizing) and tuned.
    variants = {"default": (None, None)}
    if not args.no_tuned:
        variants["tuned"] = (args.tuned_chunk, args.tile)
    jax_rows, jax_effects = {}, None
    for vname, (chunk, tile) in variants.items():
        sweep = jax.jit(lambda p, c, x, chunk=chunk, tile=tile: patching_sweep(
            model, p, c, x, metrics.value, sites=hidden, granularity="unit",
            sizing=Sizing(states_per_step=tile, patches_per_step=chunk)))
        t = time.perf_counter()
        compiled = sweep.lower(params, clean, corrupted).compile()
        compile_s = time.perf_counter() - t
        effects = jax.block_until_ready(compiled(params, clean, corrupted))
        jax_effects = jax_effects or effects
        sweep_s, sweep_cpu = timed(lambda: jax.block_until_ready(compiled(params, clean, corrupted)), args.repeats)
        jax_rows[vname] = dict(chunk_size=chunk, state_tile=tile, compile_s=compile_s, sweep_s=sweep_s,
                               sweep_cpu_s=sweep_cpu, effects=effects)

    forward = jax.jit(lambda p, o: model.apply({"params": p}, o).value)
    jax.block_until_ready(forward(params, clean))
    fwd_s, _ = timed(lambda: jax.block_until_ready(forward(params, clean)), max(5, 3 * args.repeats))
    floor_s = n_units * fwd_s

    # PyTorch: identical weights, hooks, Python loop.
    with torch.no_grad():
        tmodel.load_flax(jax.tree.map(np.asarray, params))
        tclean, tcorr = torch.from_numpy(np.array(clean)), torch.from_numpy(np.array(corrupted))
        ref = jax.jit(lambda p, o: model.apply({"params": p}, o))(params, clean)
        t_logits, t_value = tmodel(tclean)
        fwd_diff = max(float(np.abs(t_value.numpy() - np.asarray(ref.value)).max()),
                       float(np.abs(t_logits.numpy() - np.asarray(ref.logits)).max()))
        torch_sweep(tmodel, tclean[:8], tcorr[:8])  # warm-up
        torch_effects = None

        torch_by_threads = {}
        repeats = args.torch_repeats or (3 if n <= 2000 else 1)
        for threads in args.torch_threads:  # best of: OpenMP barriers suffer badly on a busy machine
            torch.set_num_threads(threads)
            holder = {}
            torch_by_threads[threads] = timed(lambda: holder.update(e=torch_sweep(tmodel, tclean, tcorr)), repeats)
            torch_effects = holder["e"]
        best_threads = min(torch_by_threads, key=lambda k: torch_by_threads[k][0])
        torch_s, torch_cpu = torch_by_threads[best_threads]
        torch.set_num_threads(best_threads)
        t_fwd_s, _ = timed(lambda: tmodel(tclean), max(5, 3 * args.repeats))

    scale = max(float(np.abs(torch_effects[s]).max()) for s in hidden)
    rows = []
    for vname, r in jax_rows.items():
        diff = max(float(np.abs(np.asarray(r["effects"][s]) - torch_effects[s]).max()) for s in hidden)
        rows.append(dict(
            model=label, states=n, sites=len(hidden), units=n_units, variant=vname, chunk_size=r["chunk_size"],
            state_tile=r["state_tile"], jax_compile_s=r["compile_s"], jax_sweep_s=r["sweep_s"],
            jax_sweep_cpu_s=r["sweep_cpu_s"], torch_loop_s=torch_s, torch_loop_cpu_s=torch_cpu,
            torch_loop_s_by_threads={k: v[0] for k, v in torch_by_threads.items()}, torch_threads=best_threads,
            speedup=torch_s / r["sweep_s"], cpu_speedup=torch_cpu / r["sweep_cpu_s"], jax_floor_s=floor_s,
            sweep_over_floor=r["sweep_s"] / floor_s, torch_forward_s=t_fwd_s, jax_forward_s=fwd_s,
            max_abs_effect_diff=diff, max_abs_effect=scale, forward_max_abs_diff=fwd_diff,
        ))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, nargs="+", default=[10_000, 200])
    parser.add_argument("--models", nargs="+", default=["conv", "mlp"], choices=["conv", "mlp"])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--tuned-chunk", type=int, default=2, help="Sizing.patches_per_step of the tuned JAX variant")
    parser.add_argument("--tile", type=int, default=250, help="Sizing.states_per_step of the tuned JAX variant")
    parser.add_argument("--no-tuned", action="store_true", help="only time patching_sweep with its defaults")
    parser.add_argument("--repeats", type=int, default=3, help="timed JAX sweeps (median)")
    parser.add_argument("--torch-threads", type=int, nargs="+", default=[2, 1],
                        help="torch.set_num_threads values to try; the fastest torch loop is reported")
    parser.add_argument("--torch-repeats", type=int, default=None,
                        help="timed torch loops per thread count (default 3 up to 2,000 states, else 1)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    env = envs.make("connect_four")
    obs_all = connect_four_states(max(args.states), jax.random.key(0))
    shape, n_act = env.observation_shape, env.num_actions
    builders = {
        "conv": (f"conv {args.blocks}x{args.channels}",
                 lambda: make_model("conv", n_act, shape, channels=args.channels, blocks=args.blocks),
                 lambda: TorchResTower(shape, n_act, args.channels, args.blocks)),
        "mlp": (f"mlp {'x'.join(map(str, args.hidden))}",
                lambda: make_model("mlp", n_act, shape, hidden=tuple(args.hidden)),
                lambda: TorchMLP(shape, n_act, args.hidden)),
    }
    rows = []
    header = (f"{'model':11s} {'states':>6s} {'units':>5s} {'variant':>7s} {'chunk':>5s} {'tile':>5s} "
              f"{'compile s':>9s} {'jax s':>8s} {'torch s':>8s} {'speedup':>7s} {'cpu ratio':>9s} {'floor s':>8s} "
              f"{'jax/floor':>9s} {'max|diff|':>9s}")
    print(header)
    for kind in args.models:
        label, make_jax, make_torch = builders[kind]
        for n in args.states:
            target = 2.0 if n >= 10_000 else 4.0 if n <= 200 else None
            for row in run_case(label, make_jax(), make_torch().eval(), obs_all, n, args):
                row["target_speedup"] = target
                rows.append(row)
                print(f"{label:11s} {n:6d} {row['units']:5d} {row['variant']:>7s} {str(row['chunk_size']):>5s} "
                      f"{str(row['state_tile']):>5s} {row['jax_compile_s']:9.2f} {row['jax_sweep_s']:8.3f} "
                      f"{row['torch_loop_s']:8.3f} {row['speedup']:6.1f}x {row['cpu_speedup']:8.1f}x "
                      f"{row['jax_floor_s']:8.3f} "
                      f"{row['sweep_over_floor']:9.2f} {row['max_abs_effect_diff']:9.1e}"
                      + (f"  (target >= {target:g}x)" if target else ""), flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
