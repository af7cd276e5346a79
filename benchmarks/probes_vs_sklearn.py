"""Linear probes for every site x concept x checkpoint: ``fit_probes`` against scikit-learn.

Features: every site of a ResTower over the non-terminal reachable tic-tac-toe positions;
concepts: the whole tic-tac-toe concept library; checkpoints: a few random parameter sets
(stand-ins for training checkpoints). Per checkpoint:

* JAX: one ``fit_probes`` call covering all sites x concepts x checkpoints (features
  stacked on a checkpoint axis); its first call, which compiles, is reported apart. Also
  one call per checkpoint, as the training-dynamics layer runs it.
* scikit-learn: a Python loop over sites (``StandardScaler`` fitted on the training split,
  once per site) and concepts (one estimator each), on the *same* train/test split, which
  is rebuilt the way ``fit_probes`` draws it from its key.
  - ``ridge``: ``Ridge(alpha=l2)`` on standardised features; score = accuracy of
    ``prediction > 0.5`` for binary concepts, R^2 otherwise (as ``fit_probes``).
  - ``logistic``: ``LogisticRegression(C=1/l2)`` for binary concepts (``fit_probes`` minimises
    mean log-loss + l2/(2n)|w|^2, i.e. C = 1/l2), ``Ridge(alpha=l2)`` for real-valued ones.
  - ``sparse``: the same objectives plus ``l1 |w|_1``: ``ElasticNet`` for real-valued
    concepts, ``LogisticRegression(penalty="elasticnet", solver="saga")`` for binary ones,
    with the penalties mapped onto scikit-learn's parametrisation.
  ``fit_probes`` solves every kind to convergence (closed form, preconditioned accelerated
  gradient, FISTA), so the scores should agree up to the solvers' tolerances.

Prints the time ratio (target >= 10x) and the largest score difference.
Needs ``pip install torch==2.13.0 scikit-learn`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from rljaxinterp import envs
from rljaxinterp.interp import concepts as concept_lib
from rljaxinterp.interp.probes import fit_probes, probe_split, site_features
from rljaxinterp.models import make_model


def _sklearn_fit(kind, binary, xtr, ytr, xte, l2, l1, max_iter):
    """The scikit-learn estimator with the objective ``fit_probes`` minimises (see its docstring)."""
    n = len(ytr)
    if binary and kind != "ridge" and len(np.unique(ytr)) < 2:  # a constant concept
        return np.full(len(xte), ytr[0])
    if kind == "sparse" and binary:  # C sum(log-loss) + (1-r)/2 |w|^2 + r |w|_1
        c = 1.0 / (l2 + n * l1)
        clf = LogisticRegression(penalty="elasticnet", solver="saga", C=c, l1_ratio=n * l1 * c, max_iter=max_iter)
        return clf.fit(xtr, ytr).predict_proba(xte)[:, 1]
    if kind == "sparse":  # 1/(2n)|r|^2 + a r |w|_1 + a (1-r)/2 |w|^2
        alpha = l1 + l2 / n
        return ElasticNet(alpha=alpha, l1_ratio=l1 / alpha, max_iter=max_iter).fit(xtr, ytr).predict(xte)
    if kind == "logistic" and binary:
        clf = LogisticRegression(C=1.0 / l2, max_iter=max_iter).fit(xtr, ytr)
        return clf.predict_proba(xte)[:, 1]
    return Ridge(alpha=l2).fit(xtr, ytr).predict(xte)


def sklearn_probes(features, concepts, kind, train, test, l2, l1, max_iter):
    names = list(concepts)
    y_all = {c: np.asarray(concepts[c], np.float64) for c in names}
    out = np.zeros((len(features), len(names)))
    for i, x in enumerate(features.values()):
        x = np.asarray(x, np.float64)
        scaler = StandardScaler().fit(x[train])
        xtr, xte = scaler.transform(x[train]), scaler.transform(x[test])
        for j, c in enumerate(names):
            y = y_all[c]
            ytr, yte = y[train], y[test]
            binary = bool(np.all((y == 0) | (y == 1)))
            pred = _sklearn_fit(kind, binary, xtr, ytr, xte, l2, l1, max_iter)
            if binary:
                out[i, j] = np.mean((pred > 0.5) == (yte > 0.5))
            else:
                out[i, j] = 1.0 - np.mean((pred - yte) ** 2) / max(np.var(yte), 1e-12)
    return out


def sklearn_multitarget_ridge(features, concepts, train, test, l2):
    """The vectorised scikit-learn way for ridge: one multi-output fit per site."""
    y = np.stack([np.asarray(concepts[c], np.float64) for c in concepts], 1)
    for x in features.values():
        x = np.asarray(x, np.float64)
        scaler = StandardScaler().fit(x[train])
        Ridge(alpha=l2).fit(scaler.transform(x[train]), y[train]).predict(scaler.transform(x[test]))


def setup(checkpoints: int = 3, channels: int = 32, blocks: int = 2, test_fraction: float = 0.25) -> dict:
    """Features of every site for ``checkpoints`` random parameter sets over the non-terminal
    reachable tic-tac-toe positions, the concept library and the probes' train/test split."""
    states, _ = envs.tic_tac_toe_reachable()
    keep = np.flatnonzero(~np.asarray(states.terminated))
    states = jax.tree.map(lambda x: x[keep], states)
    obs = states.observation
    concepts = {k: np.asarray(v) for k, v in concept_lib.compute("tic_tac_toe", states).items()}
    n = obs.shape[0]
    model = make_model("conv", 9, obs.shape[1:], channels=channels, blocks=blocks)
    feats_fn = jax.jit(lambda p, o: site_features(model, p, o))
    params = [model.init(jax.random.key(100 + i), obs[:1])["params"] for i in range(checkpoints)]
    features = [jax.block_until_ready(feats_fn(p, obs)) for p in params]
    key = jax.random.key(0)
    train, test = probe_split(key, n, test_fraction)
    return {"n": n, "concepts": concepts, "features": features, "key": key, "train": train, "test": test,
                "checkpoints": checkpoints, "test_fraction": test_fraction}


def compare(data: dict, kind: str, l2: float = 1.0, l1: float = 1e-3, max_iter: int = 1000) -> dict:
    """One ``fit_probes`` call over all checkpoints (first, compiling call apart) against the
    scikit-learn loop (and, for ridge, scikit-learn's multi-target ``Ridge``): one result row."""
    concepts, features, key, train, test = (data[k] for k in ("concepts", "features", "key", "train", "test"))
    n, n_sites, n_concepts = data["n"], len(features[0]), len(concepts)
    stacked = {site: jnp.stack([f[site] for f in features]) for site in features[0]}
    fit = lambda f: jax.block_until_ready(fit_probes(
        f, concepts, kind=kind, key=key, test_fraction=data["test_fraction"], l2=l2, l1=l1))
    # All checkpoints in one call: the first call compiles, later ones reuse the program.
    t = time.perf_counter()
    fit(stacked)
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    ours = fit(stacked)
    one_s = time.perf_counter() - t
    # One call per checkpoint (as the training-dynamics layer does, to bound memory).
    fit(features[0])
    t = time.perf_counter()
    for f in features:
        fit(f)
    per_s = time.perf_counter() - t

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        sk = [sklearn_probes(f, concepts, kind, train, test, l2, l1, max_iter) for f in features]
        sk_s = time.perf_counter() - t
    row = {"kind": kind, "states": n, "sites": n_sites, "concepts": n_concepts, "checkpoints": data["checkpoints"],
               "first_call_s": first_s, "one_call_s": one_s, "per_checkpoint_calls_s": per_s, "sklearn_loop_s": sk_s,
               "ratio": sk_s / one_s, "ratio_first_call": sk_s / first_s}
    if kind == "ridge":
        t = time.perf_counter()
        for f in features:
            sklearn_multitarget_ridge(f, concepts, train, test, l2)
        row["sklearn_multitarget_ridge_s"] = time.perf_counter() - t

    diffs = np.abs(np.asarray(ours.test) - np.stack(sk))
    binary = np.asarray(ours.baseline) > 0  # baseline is majority accuracy for binary, 0 for R^2
    worst = np.unravel_index(np.argmax(diffs), diffs.shape)
    row |= {"max_abs_score_diff": float(diffs.max()), "mean_abs_score_diff": float(diffs.mean()),
                "max_abs_accuracy_diff": float(diffs[:, :, binary].max()) if binary.any() else None,
                "max_abs_r2_diff": float(diffs[:, :, ~binary].max()) if (~binary).any() else None,
                "worst": {"checkpoint": int(worst[0]), "site": ours.sites[worst[1]], "concept": ours.concepts[worst[2]]},
                "target_ratio": 10.0}
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", default=["ridge", "logistic"], choices=["ridge", "logistic", "sparse"])
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--l1", type=float, default=1e-3)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--max-iter", type=int, default=1000, help="LogisticRegression max_iter")
    args = parser.parse_args()

    data = setup(args.checkpoints, args.channels, args.blocks, args.test_fraction)
    features, n_concepts = data["features"], len(data["concepts"])
    n_sites = len(features[0])
    print(f"{data['n']} non-terminal positions, {n_sites} sites (widths up to "
          f"{max(f.shape[1] for f in features[0].values())}) x {n_concepts} concepts x {args.checkpoints} "
          f"checkpoints = {n_sites * n_concepts * args.checkpoints} probes per kind; train {len(data['train'])}, "
          f"test {len(data['test'])}")

    rows = []
    print(f"{'kind':9s} {'first call s':>12s} {'one call s':>10s} {'per ckpt s':>10s} {'sklearn s':>9s} "
          f"{'ratio':>7s} {'max|dscore|':>11s} {'mean|dscore|':>12s}")
    for kind in args.kinds:
        row = compare(data, kind, args.l2, args.l1, args.max_iter)
        rows.append(row)
        first_s, one_s, per_s, sk_s = row["first_call_s"], row["one_call_s"], row["per_checkpoint_calls_s"], \
            row["sklearn_loop_s"]
        print(f"{kind:9s} {first_s:12.2f} {one_s:10.2f} {per_s:10.2f} {sk_s:9.2f} {row['ratio']:6.1f}x "
              f"{row['max_abs_score_diff']:11.2e} {row['mean_abs_score_diff']:12.2e}"
              + (f"   (sklearn multi-target Ridge, one fit per site: {row['sklearn_multitarget_ridge_s']:.2f} s)"
                 if kind == "ridge" else ""), flush=True)
        print(f"          max |accuracy diff| {row['max_abs_accuracy_diff']}, max |R^2 diff| "
              f"{row['max_abs_r2_diff']}, worst at {row['worst']}")
    print(json.dumps(rows))

if __name__ == "__main__":
    main()
