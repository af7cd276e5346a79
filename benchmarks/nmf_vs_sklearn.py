"""NMF of a large activation matrix: ``rljaxinterp.interp.factorisation.nmf`` against
scikit-learn's ``NMF(solver="mu")`` with the same rank, iterations and starting point.

The matrix is post-ReLU activations of a random two-layer network on random inputs
(non-negative, realistic sparsity), 100,000 x 256 by default. Both run the multiplicative
updates of Lee & Seung from the same ``(W, H)`` (scikit-learn with ``init="custom"``,
``tol=0`` so it never stops early). Prints the time ratio and both reconstruction errors.

Needs ``pip install scikit-learn`` (optional; not a dependency of rljaxinterp).

    .venv/bin/python benchmarks/nmf_vs_sklearn.py [--rows 100000] [--cols 256] [--rank 16] [--iterations 200]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import jax
import numpy as np
from sklearn.decomposition import NMF

from rljaxinterp.interp.factorisation import nmf, random_init


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=256)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()

    k_in, k_w1, k_w2, k_init = jax.random.split(jax.random.key(0), 4)
    inputs = jax.random.normal(k_in, (args.rows, 64))
    hidden = jax.nn.relu(inputs @ jax.random.normal(k_w1, (64, 128)) / 8)
    x = jax.block_until_ready(jax.nn.relu(hidden @ jax.random.normal(k_w2, (128, args.cols)) / 11 - 0.1))
    w0, h0 = random_init(x, args.rank, k_init)

    def ours():
        return jax.block_until_ready(nmf(x, args.rank, args.iterations, init=(w0, h0)))

    t0 = time.perf_counter()
    ours()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = ours()
    jax_time = time.perf_counter() - t0

    xn, w0n, h0n = np.asarray(x), np.asarray(w0), np.asarray(h0)
    sk = NMF(args.rank, init="custom", solver="mu", max_iter=args.iterations, tol=0.0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": we ask for exactly this many iterations
        w_sk = sk.fit_transform(xn, W=w0n.copy(), H=h0n.copy())
    sk_time = time.perf_counter() - t0
    # For context: scikit-learn's default solver (coordinate descent), same rank and iterations.
    cd = NMF(args.rank, init="custom", solver="cd", max_iter=args.iterations, tol=0.0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_cd = cd.fit_transform(xn, W=w0n.copy(), H=h0n.copy())
    cd_time = time.perf_counter() - t0
    norm = np.linalg.norm(xn)
    err_cd = float(np.linalg.norm(xn - w_cd @ cd.components_) / norm)
    err_sk = float(np.linalg.norm(xn - w_sk @ sk.components_) / norm)
    err_ours = float(fit.relative_error)
    recon_diff = float(np.abs(np.asarray(fit.reconstruct()) - w_sk @ sk.components_).max())
    result = {"rows": args.rows, "cols": args.cols, "rank": args.rank, "iterations": args.iterations,
              "jax_seconds": jax_time, "jax_first_call_seconds": first, "sklearn_seconds": sk_time,
              "speedup": sk_time / jax_time, "relative_error_ours": err_ours, "relative_error_sklearn": err_sk,
              "max_abs_reconstruction_diff": recon_diff, "sklearn_cd_seconds": cd_time,
              "relative_error_sklearn_cd": err_cd, "max_entry": float(xn.max()),
              "zero_fraction": float((xn == 0).mean())}
    print(f"NMF of a {args.rows} x {args.cols} matrix ({100 * result['zero_fraction']:.0f}% zeros), rank {args.rank}, "
          f"{args.iterations} multiplicative updates from the same start")
    print(f"  rljaxinterp  : {jax_time:7.2f} s (first call incl. compile {first:.2f} s), relative error {err_ours:.5f}")
    print(f"  scikit-learn : {sk_time:7.2f} s, relative error {err_sk:.5f}")
    print(f"  scikit-learn, its default solver 'cd' (another algorithm), same iterations: {cd_time:7.2f} s, "
          f"relative error {err_cd:.5f}")
    print(f"  speedup      : {result['speedup']:.1f}x; largest reconstruction difference {recon_diff:.2e} "
          f"(largest entry {result['max_entry']:.2f})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
