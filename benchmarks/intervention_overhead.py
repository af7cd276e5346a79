"""Cost of the site machinery: our models with no intervention against plain Flax twins.

The plain twins below are the same networks written without ``site`` calls and with the
same parameter trees, so both run on identical weights. Each pair is timed side by side,
interleaved, in this one process; the figure is the ratio of medians (target <= 1.05).
"""

from __future__ import annotations

import argparse
import json
import re
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import interp
from rljaxinterp.models import make_model


class PlainMLP(nn.Module):
    num_actions: int
    hidden: tuple = (128, 128)

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(obs.shape[0], -1)
        for i, w in enumerate(self.hidden):
            x = nn.relu(nn.Dense(w, name=f"layer{i}")(x))
        return nn.Dense(self.num_actions, name="policy_head")(x), jnp.tanh(nn.Dense(1, name="value_head")(x)[..., 0])


class PlainResTower(nn.Module):
    num_actions: int
    channels: int = 64
    blocks: int = 4

    @nn.compact
    def __call__(self, obs):
        b = obs.shape[0]
        x = nn.relu(nn.Conv(self.channels, (3, 3), name="stem")(obs))
        for i in range(self.blocks):
            h = nn.relu(_conv(self.channels, f"block{i}", "conv1")(x))
            x = nn.relu(x + _conv(self.channels, f"block{i}", "conv2")(h))
        p = nn.relu(nn.Conv(2, (1, 1), name="policy_conv")(x))
        v = nn.relu(nn.Conv(1, (1, 1), name="value_conv")(x))
        v = nn.relu(nn.Dense(64, name="value_hidden")(v.reshape(b, -1)))
        return nn.Dense(self.num_actions, name="policy_head")(p.reshape(b, -1)), jnp.tanh(
            nn.Dense(1, name="value_head")(v)[..., 0]
        )


def _conv(channels, block, name):
    # Flat twin of ResBlock's parameters: re-nest them below.
    return nn.Conv(channels, (3, 3), name=f"{block}__{name}")


def _to_flat(params):
    out = {}
    for k, v in params.items():
        if k.startswith("block"):
            for sub, leaf in v.items():
                out[f"{k}__{sub}"] = leaf
        else:
            out[k] = v
    return out


def time_pair(f, g, args, repeats, calls=5):
    jax.block_until_ready(f(*args)), jax.block_until_ready(g(*args))
    tf, tg = [], []
    for _ in range(repeats):
        for fn, acc in ((f, tf), (g, tg)):
            t = time.perf_counter()
            for _ in range(calls):
                jax.block_until_ready(fn(*args))
            acc.append((time.perf_counter() - t) / calls)
    return float(np.median(tf)), float(np.median(tg))


def same_program(f, g, args) -> bool:
    """Whether XLA compiled both to the same instructions (source locations aside)."""
    def text(fn):
        hlo = fn.lower(*args).compile().as_text()
        hlo = re.sub(r", metadata=\{[^}]*\}", "", hlo)
        return [line for line in hlo.splitlines() if not re.match(r"^\d+ [{\"]", line)]

    return text(f) == text(g)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    obs = jax.random.bernoulli(jax.random.key(0), 0.3, (args.batch, 6, 7, 2)).astype(jnp.float32)
    results = []
    cases = [
        ("mlp 2x128", make_model("mlp", 7, obs.shape[1:], hidden=(128, 128)), PlainMLP(7), lambda p: p),
        ("conv 4x64", make_model("conv", 7, obs.shape[1:], channels=64, blocks=4), PlainResTower(7), _to_flat),
    ]
    for name, model, plain, convert in cases:
        params = model.init(jax.random.key(1), obs[:1])["params"]
        ours = jax.jit(lambda p, o: interp.run_with_interventions(model, p, o, None))
        twin = jax.jit(lambda p, o: plain.apply({"params": convert(p)}, o))
        a, (logits, value) = ours(params, obs), twin(params, obs)
        assert np.allclose(a.logits, logits, atol=1e-5) and np.allclose(a.value, value, atol=1e-5)
        identical = same_program(ours, twin, (params, obs))
        t_ours, t_plain = time_pair(ours, twin, (params, obs), args.repeats)
        cache = jax.jit(lambda p, o: interp.run_with_cache(model, p, o))
        t_cache, _ = time_pair(cache, twin, (params, obs), args.repeats)
        row = dict(model=name, batch=args.batch, plain_ms=1e3 * t_plain, no_intervention_ms=1e3 * t_ours,
                   ratio=t_ours / t_plain, identical_program=identical, cache_all_sites_ms=1e3 * t_cache)
        results.append(row)
        print(f"{name:10s} batch {args.batch}: plain {row['plain_ms']:.2f} ms, ours without interventions "
              f"{row['no_intervention_ms']:.2f} ms -> ratio {row['ratio']:.3f} (target <= 1.05), "
              f"same compiled program: {identical}; "
              f"caching every site {row['cache_all_sites_ms']:.2f} ms")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
