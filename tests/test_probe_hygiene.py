"""Probe hygiene: balanced accuracy, the majority baseline, l2 by cross-validation on the
training rows, bootstrap intervals, group splits and duplicate states. Small synthetic
problems (200 states, 8 features) checked against NumPy references."""

import json

import jax
import numpy as np
import pytest
import scipy.optimize

from rljaxinterp.interp.probes import (
    _bootstrap_counts,
    cv_folds,
    fit_probes,
    leaked_rows,
    probe_split,
    unique_rows,
)

N, D = 200, 8
GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def _data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    w = rng.normal(size=D)
    concepts = {
        "noise": rng.normal(size=n),  # unrelated to the features
        "linear": x @ w,  # noiseless
        "mild": x @ w + 2.0 * rng.normal(size=n),
        "sign": (x[:, 0] + rng.normal(size=n) > 0).astype(np.float32),
    }
    return x, concepts


def _predict(scores, x, site, concept):
    return np.asarray(x, np.float64) @ np.asarray(scores.weights[site, concept], np.float64) + float(
        scores.bias[site, concept])


def _balanced_numpy(pred, y):
    hit = (pred > 0.5) == (y > 0.5)
    return 0.5 * (hit[y > 0.5].mean() + hit[y <= 0.5].mean())


def test_balanced_accuracy_of_a_constant_predictor_on_an_imbalanced_concept():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, D)).astype(np.float32)
    train, test = probe_split(jax.random.key(0), N)
    rare = np.zeros(N, np.float32)
    rare[test[:5]] = 1  # 5 of the 50 test states, ...
    rare[train[:15]] = 1  # ... and 15 of the 150 training states
    scores = fit_probes({"x": x}, {"rare": rare, "real": x[:, 0]}, l2=1e6, bootstrap=0)
    # so strong a penalty predicts the training mean 0.1 everywhere: always "absent"
    assert float(scores.test[0, 0]) == pytest.approx(0.9)
    assert float(scores.balanced[0, 0]) == pytest.approx(0.5)
    assert float(scores.baseline[0]) == pytest.approx(0.9)
    assert scores.baseline.shape == (2,) and float(scores.baseline[1]) == 0.0
    assert float(scores.balanced[0, 1]) == float(scores.test[0, 1])  # R^2 for real concepts


def _binary_probes():
    x, concepts = _data()
    labels = {"sign": concepts["sign"], "skewed": (x[:, 1] > 0.8).astype(np.float32)}
    scores = fit_probes({"x": x}, labels, kind="logistic", l2=1.0, bootstrap=0)
    _, test = probe_split(jax.random.key(0), N)
    for j, name in enumerate(scores.concepts):
        pred = 1 / (1 + np.exp(-_predict(scores, x[test], 0, j)))
        yield float(scores.balanced[0, j]), pred, np.asarray(labels[name], np.float64)[test]


def test_balanced_accuracy_matches_the_returned_probes():
    for balanced, pred, y in _binary_probes():
        assert balanced == pytest.approx(_balanced_numpy(pred, y), abs=1e-6)


def test_balanced_accuracy_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    for balanced, pred, y in _binary_probes():
        assert balanced == pytest.approx(metrics.balanced_accuracy_score(y > 0.5, pred > 0.5), abs=1e-6)


def _ridge_cv_reference(x, y, train, fold_of, binary):
    """Mean validation score per grid value: ridge with intercept on each fold's fitting rows
    standardised on themselves, in float64 NumPy."""
    xt, yt = np.asarray(x, np.float64)[train], np.asarray(y, np.float64)[train]
    folds = fold_of.max() + 1
    scores = np.zeros(len(GRID))
    for f in range(folds):
        fit, val = fold_of != f, fold_of == f
        mean, std = xt[fit].mean(0), xt[fit].std(0)
        z = (xt - mean) / np.where(std > 1e-6, std, 1.0)
        y_mean = yt[fit].mean()
        for i, l2 in enumerate(GRID):
            w = np.linalg.solve(z[fit].T @ z[fit] + l2 * np.eye(x.shape[1]), z[fit].T @ (yt[fit] - y_mean))
            pred, truth = z[val] @ w + y_mean, yt[val]
            if binary:
                scores[i] += np.mean((pred > 0.5) == (truth > 0.5)) / folds
            else:
                scores[i] += (1 - np.mean((pred - truth) ** 2) / np.var(truth)) / folds
    return scores


def _pick(scores):
    return GRID[len(GRID) - 1 - int(np.argmax(scores[::-1]))]


@pytest.mark.slow
def test_cross_validated_ridge_l2_matches_a_numpy_reference_and_never_reads_the_test_rows():
    x, concepts = _data()
    key = jax.random.key(0)
    scores = fit_probes({"x": x}, concepts, l2="cv", l2_grid=GRID, folds=5, key=key, bootstrap=0)
    chosen = dict(zip(scores.concepts, np.asarray(scores.l2[0])))
    assert chosen["noise"] == pytest.approx(1000.0)  # pure noise: shrink everything
    assert chosen["linear"] == pytest.approx(0.01)  # noiseless: shrink nothing
    train, test = probe_split(key, N)
    fold_of = cv_folds(key, len(train), 5)
    assert np.bincount(fold_of).tolist() == [30] * 5
    for j, name in enumerate(scores.concepts):
        reference = _ridge_cv_reference(x, concepts[name], train, fold_of, binary=name == "sign")
        assert chosen[name] == pytest.approx(_pick(reference)), (name, reference)
    assert 0.01 < chosen["mild"] < 1000.0  # an interior optimum, so the comparison above means something

    # refitted on the whole training split with the chosen l2: the same probe as asking for it
    for j, name in enumerate(scores.concepts):
        alone = fit_probes({"x": x}, {name: concepts[name]}, l2=float(GRID[np.argmin(np.abs(np.log(
            np.array(GRID) / chosen[name])))]), key=key, bootstrap=0)
        np.testing.assert_allclose(scores.weights[0, j], alone.weights[0, 0], rtol=1e-4, atol=1e-5)
        assert float(scores.test[0, j]) == pytest.approx(float(alone.test[0, 0]), abs=1e-5)

    # the test rows can be anything: the choice does not change
    rng = np.random.default_rng(5)
    x_other = x.copy()
    x_other[test] = rng.normal(size=(len(test), D)) * 10
    other = {k: np.array(v, np.float64) for k, v in concepts.items()}
    for k in other:
        other[k][test] = rng.permutation(other[k][test])
    again = fit_probes({"x": x_other}, other, l2="cv", l2_grid=GRID, folds=5, key=key, bootstrap=0)
    np.testing.assert_array_equal(again.l2, scores.l2)


def test_cross_validated_logistic_l2_matches_a_scipy_reference():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(N, D)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + 1.5 * rng.normal(size=N) > 0).astype(np.float32)
    key = jax.random.key(1)
    scores = fit_probes({"x": x}, {"y": y}, kind="logistic", l2="cv", l2_grid=GRID, folds=4, key=key,
                        max_steps=3000, tol=1e-7, bootstrap=0)
    train, _ = probe_split(key, N)
    fold_of = cv_folds(key, len(train), 4)
    xt, yt = np.asarray(x, np.float64)[train], y[train].astype(np.float64)
    mean_acc = np.zeros(len(GRID))
    for f in range(4):
        fit, val = fold_of != f, fold_of == f
        mu, sd = xt[fit].mean(0), xt[fit].std(0)
        z = (xt - mu) / sd
        for i, l2 in enumerate(GRID):
            def loss(p):
                logits = z[fit] @ p[:-1] + p[-1]
                value = np.mean(np.logaddexp(0, logits) - yt[fit] * logits) + 0.5 * l2 / fit.sum() * p[:-1] @ p[:-1]
                r = (1 / (1 + np.exp(-logits)) - yt[fit]) / fit.sum()
                return value, np.append(z[fit].T @ r + l2 / fit.sum() * p[:-1], r.sum())
            p = scipy.optimize.minimize(loss, np.zeros(D + 1), jac=True, method="L-BFGS-B",
                                        options={"gtol": 1e-10, "ftol": 1e-14, "maxiter": 10000}).x
            mean_acc[i] += np.mean(((z[val] @ p[:-1] + p[-1]) > 0) == (yt[val] > 0.5)) / 4
    assert float(scores.l2[0, 0]) == pytest.approx(_pick(mean_acc)), mean_acc


def test_sparse_probes_take_l2_by_cross_validation():
    x, concepts = _data()
    scores = fit_probes({"x": x}, {k: concepts[k] for k in ("noise", "linear")}, kind="sparse", l2="cv",
                        l2_grid=GRID, folds=3, bootstrap=0)
    assert float(scores.l2[0, 0]) == pytest.approx(1000.0) and float(scores.l2[0, 1]) == pytest.approx(0.01)
    assert float(scores.test[0, 1]) > 0.999


def _numpy_interval(pred, y, counts, confidence=0.95):
    resampled = counts @ (pred - y) ** 2 / counts.sum(1)
    centred = y - y.mean()
    var = counts @ centred**2 / counts.sum(1) - (counts @ centred / counts.sum(1)) ** 2
    alpha = (1 - confidence) / 2
    return np.percentile(1 - resampled / var, [100 * alpha, 100 * (1 - alpha)])


@pytest.mark.slow
def test_bootstrap_interval_contains_the_estimate_matches_numpy_and_narrows_with_more_states():
    widths = {}
    for n in (200, 2000):
        x, concepts = _data(seed=3, n=n)
        concepts = {k: concepts[k] for k in ("mild", "sign")}
        key = jax.random.key(4)
        scores = fit_probes({"x": x}, concepts, key=key, bootstrap=1000)
        low, high, test = np.asarray(scores.ci_low[0]), np.asarray(scores.ci_high[0]), np.asarray(scores.test[0])
        assert np.all(low <= test) and np.all(test <= high) and np.all(low < high)
        widths[n] = high - low
        _, test_rows = probe_split(key, n)
        pred = _predict(scores, x[test_rows], 0, 0)
        counts = _bootstrap_counts(key, len(test_rows), 1000).astype(np.float64)
        reference = _numpy_interval(pred, np.asarray(concepts["mild"], np.float64)[test_rows], counts)
        np.testing.assert_allclose([low[0], high[0]], reference, atol=2e-4)
    assert np.all(widths[2000] < 0.6 * widths[200]), widths
    none = fit_probes({"x": x}, concepts, key=key, bootstrap=0)
    assert np.isnan(np.asarray(none.ci_low)).all() and np.isnan(np.asarray(none.ci_high)).all()
    np.testing.assert_array_equal(none.test, scores.test)
    np.testing.assert_array_equal(none.weights, scores.weights)


def test_group_split_keeps_every_group_on_one_side():
    rng = np.random.default_rng(6)
    groups = rng.permutation(np.repeat(np.arange(40), 5))  # 40 games of 5 states
    train, test = probe_split(jax.random.key(2), N, 0.25, groups)
    assert not set(groups[train]) & set(groups[test])
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(N))
    assert len(set(groups[test])) == 10  # a quarter of the groups
    folds = cv_folds(jax.random.key(2), len(train), 3, groups[train])
    for g in set(groups[train]):
        assert len(set(folds[groups[train] == g])) == 1  # no group on both sides of a fold
    x, concepts = _data()
    scores = fit_probes({"x": x}, {"mild": concepts["mild"]}, key=jax.random.key(2), groups=groups, l2="cv",
                        l2_grid=GRID, folds=3, bootstrap=0)
    assert np.isclose(GRID, float(scores.l2[0, 0])).any() and float(scores.test[0, 0]) > 0.3


def test_unique_rows_and_leakage():
    rng = np.random.default_rng(7)
    base = rng.integers(0, 3, size=(60, 3, 3)).astype(np.float32)
    base = base[unique_rows(base)]  # random boards may already repeat
    obs = np.concatenate([base, base[:20]])[rng.permutation(len(base) + 20)]
    keep = unique_rows(obs)
    assert len(keep) == len(base) and np.all(np.diff(keep) > 0)
    flat = obs.reshape(len(obs), -1)
    assert len({r.tobytes() for r in flat[keep]}) == len(keep)
    for i in range(len(obs)):  # every state keeps its first occurrence
        first = next(j for j in range(len(obs)) if np.array_equal(flat[j], flat[i]))
        assert first in keep
    train, test = probe_split(jax.random.key(0), len(obs))
    assert leaked_rows(obs, train, test) > 0  # 20 duplicated states: some straddle the split
    # counted by hand
    seen = {flat[i].tobytes() for i in train}
    assert leaked_rows(obs, train, test) == sum(flat[i].tobytes() in seen for i in test)
    clean = obs[keep]
    train, test = probe_split(jax.random.key(0), len(clean))
    assert leaked_rows(clean, train, test) == 0
    assert len(unique_rows(np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 2.0]]))) == 2  # -0.0 is 0.0


def test_default_call_is_unchanged_and_summary_is_json():
    x, concepts = _data()
    sites = {"x": x, "narrow": x[:, :2]}
    default = fit_probes(sites, concepts)
    explicit = fit_probes(sites, concepts, l2=1.0)
    for field in ("test", "train", "baseline", "weights", "bias", "balanced", "ci_low", "ci_high"):
        np.testing.assert_array_equal(getattr(default, field), getattr(explicit, field))
    np.testing.assert_array_equal(default.l2, 1.0)
    assert default.balanced.shape == default.test.shape == default.ci_low.shape == default.l2.shape == (2, 4)
    summary = json.loads(json.dumps(default.summary()))
    entry = summary["x"]["sign"]
    assert set(entry) == {"test", "balanced", "ci", "baseline", "l2"}
    assert entry["test"] == pytest.approx(default.table()["x"]["sign"]) and len(entry["ci"]) == 2
    assert entry["baseline"] == pytest.approx(float(default.baseline[3]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(l2=-1.0), "l2=-1.0 is not allowed"),
    (dict(l2="auto"), "l2='auto' is not allowed"),
    (dict(l2="cv", l2_grid=()), "l2_grid=\\(\\) is empty"),
    (dict(l2="cv", l2_grid=(0.0, 1.0)), "must hold finite values > 0"),
    (dict(l2="cv", folds=1), "folds=1 must be an integer from 2"),
    (dict(l2="cv", folds=151), "folds=151 .* training states \\(150\\)"),
    (dict(groups=np.zeros(N - 1)), "groups has shape \\(199,\\); expected \\(200,\\)"),
    (dict(groups=np.zeros(N)), "leaves 0 training and 200 test states"),
    (dict(bootstrap=-1), "bootstrap=-1"),
])
def test_bad_options_are_named(kwargs, message):
    x, concepts = _data()
    with pytest.raises(ValueError, match=message):
        fit_probes({"x": x}, {"sign": concepts["sign"]}, **kwargs)


@pytest.mark.slow
def test_cross_validated_ridge_on_more_features_than_states_uses_the_dual_and_agrees():
    rng = np.random.default_rng(8)
    n, d = 60, 64  # 45 training states < 64 features: the kernel (dual) systems
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = {"few": x[:, :3].sum(1) + 0.5 * rng.normal(size=n), "noise": rng.normal(size=n)}
    key = jax.random.key(3)
    scores = fit_probes({"x": x}, y, l2="cv", l2_grid=GRID, folds=3, key=key, bootstrap=0)
    train, _ = probe_split(key, n)
    fold_of = cv_folds(key, len(train), 3)
    for j, name in enumerate(scores.concepts):
        reference = _ridge_cv_reference(x, y[name], train, fold_of, binary=False)
        assert float(scores.l2[0, j]) == pytest.approx(_pick(reference)), (name, reference)
        alone = fit_probes({"x": x}, {name: y[name]}, l2=_pick(reference), key=key, bootstrap=0)
        np.testing.assert_allclose(scores.weights[0, j], alone.weights[0, 0], rtol=1e-3, atol=1e-5)
