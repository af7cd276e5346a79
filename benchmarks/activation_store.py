"""Peak memory and wall time of caching and probing connect-four positions through the
activation store, at 100k and 1M states (target: 1M peak within 1.5x of 100k).

Each size runs in a fresh subprocess (so ``ru_maxrss`` is that size's own peak): positions of
uniformly random play (``store.random_play_batches``; openings repeat, duplicates kept), one
hidden site of an untrained network of the connect-four conv tower (``CONNECT_FOUR_CONV``,
32 channels, 2 blocks; untrained: the benchmark measures memory, not what is learned) written
to disk with two exact concepts beside it, then a streamed ridge probe of both concepts.

    .venv/bin/python benchmarks/activation_store.py [--sizes 100000 1000000] [--site block1.resid_post]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

CONCEPTS = ["immediate_win", "height_col3"]


def child(states: int, site: str, folder: str) -> dict:
    import jax

    from rljaxinterp import envs
    from rljaxinterp.interp import store
    from rljaxinterp.models import make_model
    from rljaxinterp.runs.presets import CONNECT_FOUR_CONV

    env = envs.make("connect_four")
    kwargs = CONNECT_FOUR_CONV["model_kwargs"]
    model = make_model("conv", env.num_actions, env.observation_shape, **kwargs)
    params = model.init(jax.random.key(1), env.init(jax.random.key(0)).observation[None])["params"]
    path = os.path.join(folder, f"c4-{states}")
    start = time.perf_counter()
    source = store.random_play_batches(env, states, jax.random.key(2), CONCEPTS, games=1024, moves=42)
    acts = store.write_store(path, model, params, source, [site], states_per_call=4096, chunk_states=4096,
                             attrs={"env": "connect_four", "model": {"kind": "conv", **kwargs}, "trained": False})
    written = time.perf_counter()
    scores = store.ridge_probe(acts, [site], CONCEPTS, l2=1.0, batch_size=4096)
    probed = time.perf_counter()
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    width = 1
    for v in acts.sites[site]:
        width *= v
    return {"states": len(acts), "site": site, "width": width, "write_s": written - start, "probe_s": probed - written,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "in_memory_mb": len(acts) * width * 4 / 2**20, "disk_mb": disk / 2**20,
            "test": {c: float(scores.test[0, j]) for j, c in enumerate(CONCEPTS)},
            "baseline": {c: float(scores.baseline[j]) for j, c in enumerate(CONCEPTS)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--site", default="block1.resid_post")
    parser.add_argument("--dir", default=None, help="where stores are written (deleted after each size)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.site, args.dir)))
        return
    folder = tempfile.mkdtemp(prefix="activation-store-", dir=args.dir)
    rows = []
    try:
        for n in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(n), "--site", args.site, "--dir", folder],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            shutil.rmtree(os.path.join(folder, f"c4-{n}"), ignore_errors=True)
            print(f"{n} states done: {rows[-1]['peak_rss_mb']:.0f} MB peak", file=sys.stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("| states | site (floats/state) | as one array | on disk | cache + write s | probe s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['states']:,} | {r['site']} ({r['width']}) | {r['in_memory_mb']:,.0f} MB | {r['disk_mb']:,.0f} MB "
              f"| {r['write_s']:.1f} | {r['probe_s']:.1f} | {r['peak_rss_mb']:,.0f} |")
    if len(rows) > 1:
        print(f"\npeak RSS {rows[-1]['states']:,} / {rows[0]['states']:,}: "
              f"{rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}x (target <= 1.5x)")
    for r in rows:
        print(f"held-out probe score (accuracy if binary, else R^2) at {r['states']:,}: " + ", ".join(
            f"{c} {r['test'][c]:.3f}" + (f" (majority {r['baseline'][c]:.3f})" if r["baseline"][c] else "") for c in CONCEPTS))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
