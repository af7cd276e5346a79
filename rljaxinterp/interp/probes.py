"""Linear probes for every site x concept at once.

Sites are stacked by width and each stack is fitted by one ``lax.map``, so a narrow site
(the value head, the input) costs about its own width, not the widest site's; the
returned weights are zero-padded to the widest site. Scores are on a held-out split:
accuracy for binary concepts, R^2 for the rest.

Hygiene, because a probe score means little without it: ``unique_rows`` and
``leaked_rows`` find duplicate states (a test state seen in training is memorised, not
read), ``groups=`` splits by game rather than by state, the test score comes with balanced
accuracy, the majority baseline and a bootstrap interval, and ``l2="cv"`` picks the penalty
by cross-validation on the training rows only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rljaxinterp import distributed
from rljaxinterp.interp.cache import Params, SiteSelection, cache_states

KINDS = ("ridge", "logistic", "sparse")


@struct.dataclass
class ProbeScores:
    """Held-out scores shaped (sites, concepts), indexed by ``sites`` and ``concepts``; with
    a checkpoint axis in the features every per-probe array gains a leading (checkpoints,)
    axis. ``baseline`` is per concept only, shaped (concepts,): it depends on the labels of
    the test split, not on a site or checkpoint."""

    test: jax.Array  # accuracy (binary concepts) or R^2 on the test split
    train: jax.Array
    # (concepts,): majority-class accuracy on the test split for binary concepts, 0 for R^2.
    baseline: jax.Array
    # The probes themselves, on the raw activations (zero-padded to the widest site):
    # prediction = features @ weights[site, concept] + bias[site, concept] (a logit if binary).
    weights: jax.Array  # (sites, concepts, width)
    bias: jax.Array  # (sites, concepts)
    sites: tuple[str, ...] = struct.field(pytree_node=False)
    concepts: tuple[str, ...] = struct.field(pytree_node=False)
    # Shaped like ``test``: balanced accuracy (mean of the true-positive and true-negative
    # rates; binary concepts) or R^2 (the same as ``test``); the percentile bootstrap
    # interval of ``test`` (NaN without bootstrap); the l2 each probe was fitted with.
    balanced: jax.Array | None = None
    ci_low: jax.Array | None = None
    ci_high: jax.Array | None = None
    l2: jax.Array | None = None

    def table(self) -> dict[str, dict[str, float]]:
        if self.test.ndim != 2:
            raise ValueError(f"table() reads one checkpoint; index test {self.test.shape} instead")
        return {s: {c: float(self.test[i, j]) for j, c in enumerate(self.concepts)} for i, s in enumerate(self.sites)}

    def summary(self) -> dict[str, dict[str, dict]]:
        """Per site, per concept: ``{test, balanced, ci: [lo, hi], baseline, l2}`` as plain
        floats for JSON (``ci`` bounds are None without bootstrap)."""
        if self.test.ndim != 2:
            raise ValueError(f"summary() reads one checkpoint; index test {self.test.shape} instead")
        nan = np.full(self.test.shape, np.nan)
        get = lambda a: nan if a is None else np.asarray(a, np.float64)
        balanced, lo, hi, l2 = get(self.balanced), get(self.ci_low), get(self.ci_high), get(self.l2)
        opt = lambda v: None if math.isnan(v) else float(v)
        return {s: {c: {"test": float(self.test[i, j]), "balanced": opt(balanced[i, j]),
                        "ci": [opt(lo[i, j]), opt(hi[i, j])], "baseline": float(self.baseline[j]), "l2": opt(l2[i, j])}
                    for j, c in enumerate(self.concepts)} for i, s in enumerate(self.sites)}


def site_features(
    model: nn.Module, params: Params, obs: jax.Array, sites: SiteSelection = None
) -> dict[str, jax.Array]:
    """Activations flattened to ``(states, features)`` per site, the states sharded over every
    device of every process when there are several (``cache.cache_states``)."""
    cache = cache_states(model, params, obs, sites)
    return {n: a.reshape(a.shape[0], -1).astype(jnp.float32) for n, a in cache.items()}


def _is_binary(y: np.ndarray) -> np.ndarray:
    return np.all((y == 0) | (y == 1), axis=0)


def _standardise(x, train_idx):
    mean = x[train_idx].mean(0)
    std = x[train_idx].std(0)
    scale = jnp.where(std > 1e-6, std, 1.0)
    return (x - mean) / scale, mean, scale


def _unstandardise(w, b, mean, scale):
    """Weights on standardised features -> weights and bias on the raw activations."""
    w = w / scale.reshape(-1, *([1] * (w.ndim - 1)))
    return w, b - mean @ w


def _score(pred, y, binary):
    acc = jnp.mean((pred > 0.5) == (y > 0.5))
    r2 = 1.0 - jnp.mean((pred - y) ** 2) / jnp.maximum(jnp.var(y), 1e-12)
    return jnp.where(binary, acc, r2)


def _weighted_score(pred, y, binary, weight):
    """``_score`` of rows repeated ``weight`` times (bootstrap counts, or a 0/1 fold mask)."""
    total = jnp.maximum(weight.sum(), 1e-12)
    acc = weight @ ((pred > 0.5) == (y > 0.5)).astype(pred.dtype) / total
    centred = y - y.mean()  # the variance below then loses no precision to a large mean
    var = weight @ centred**2 / total - (weight @ centred / total) ** 2
    r2 = 1.0 - weight @ (pred - y) ** 2 / total / jnp.maximum(var, 1e-12)
    return jnp.where(binary, acc, r2)


def _balanced(pred, y):
    """Mean of the true-positive and true-negative rates (the rate of the one class present
    if the other is absent, as scikit-learn's ``balanced_accuracy_score``)."""
    pos, hit = y > 0.5, (pred > 0.5) == (y > 0.5)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    tpr = (hit & pos).sum() / jnp.maximum(n_pos, 1)
    tnr = (hit & ~pos).sum() / jnp.maximum(n_neg, 1)
    return jnp.where((n_pos > 0) & (n_neg > 0), 0.5 * (tpr + tnr), jnp.where(n_pos > 0, tpr, tnr))


def _objective(xtr, ytr, binary, l2, to_weights=lambda u: u, weight=None):
    """Mean log-loss (binary) or half mean squared error, plus ``l2/(2n)|w|^2``: the
    objectives of scikit-learn's ``LogisticRegression(C=1/l2)`` and ``Ridge(alpha=l2)``.
    With a 0/1 ``weight`` (a cross-validation fold) only the weighted rows count."""
    n = xtr.shape[0] if weight is None else weight.sum()

    def loss(p):
        z = xtr @ p["w"] + p["b"]
        if weight is None:
            data = optax.sigmoid_binary_cross_entropy(z, ytr).mean() if binary else 0.5 * jnp.mean((z - ytr) ** 2)
        else:
            per_row = optax.sigmoid_binary_cross_entropy(z, ytr) if binary else 0.5 * (z - ytr) ** 2
            data = weight @ per_row / n
        return data + 0.5 * l2 / n * jnp.sum(to_weights(p["w"]) ** 2)

    return loss


def _converge(step, residual, init, max_steps, tol):
    """Iterate ``step`` until ``residual`` is below ``tol``; under ``vmap`` every probe keeps
    its own stopping point (finished ones are frozen by the batched loop)."""

    def cond(carry):
        i, state = carry
        return (i < max_steps) & (residual(state) > tol)

    return jax.lax.while_loop(cond, lambda c: (c[0] + 1, step(c[1])), (jnp.int32(0), init))[1]


def _fista(loss, p0, lipschitz, l1, max_steps, tol, size=optax.tree.norm):
    """``loss + l1 |w|_1`` (sparse probes): accelerated proximal gradient with step ``1/L``
    and restarts (O'Donoghue & Candes, 2015), so it reaches the exact L1 solution. Stops
    when ``size`` of the prox-gradient residual (the gradient, without L1) is below ``tol``."""
    grad = jax.grad(loss)
    shrink = lambda w: jnp.sign(w) * jnp.maximum(jnp.abs(w) - l1 / lipschitz, 0.0)

    def prox_step(z):
        g = grad(z)
        return {"w": shrink(z["w"] - g["w"] / lipschitz), "b": z["b"] - g["b"] / lipschitz}

    def step(state):
        p, z, t, _ = state
        q = prox_step(z)
        t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        moved = jax.tree.map(jnp.subtract, q, p)
        restart = optax.tree.vdot(jax.tree.map(jnp.subtract, z, q), moved) > 0
        momentum = jnp.where(restart, 0.0, (t - 1.0) / t_next)
        z = jax.tree.map(lambda a, d: a + momentum * d, q, moved)
        gap = size(jax.tree.map(lambda a, b: (a - b) * lipschitz, state[1], q))
        return q, z, jnp.where(restart, 1.0, t_next), gap

    init = (p0, p0, jnp.float32(1.0), jnp.float32(jnp.inf))
    return _converge(step, lambda s: s[3], init, max_steps, tol)[0]


def _fit_iterative(xs, gram, y, binary, train, test, kind, l2, l1, max_steps, tol, weight=None):
    """Logistic probes (binary concepts) and L1 probes (any concept) solved to ``tol``, on
    standardised features ``xs`` whose training rows have the Gram matrix ``gram``: test
    score, train score, weights, bias and test predictions. With a 0/1 ``weight`` (a
    cross-validation fold; ``l2`` may then be traced) every row of ``xs`` is a candidate,
    the weighted ones are fitted, and the predictions for every row are returned."""
    n = len(train) if weight is None else weight.sum()
    to_weights = lambda u: u
    size = optax.tree.norm
    if kind == "logistic":
        # Precondition by Bohning's bound on the Hessian, S/4 + l2/n (S the feature covariance):
        # with S + c = R'R (Cholesky, any c >= 4 l2/n) and w = R^-1 u, the curvature is at most
        # 1/4 in every direction of u, so accelerated gradient needs few steps.
        floor = max(4 * l2 / n, 1e-3) if isinstance(l2, float) and weight is None else jnp.maximum(4 * l2 / n, 1e-3)
        chol = jnp.linalg.cholesky(gram / n + floor * jnp.eye(xs.shape[1]))
        r_inv = jax.scipy.linalg.solve_triangular(chol, jnp.eye(xs.shape[1]), lower=True).T  # R^-1
        to_weights = lambda u: r_inv @ u
        xs = xs @ r_inv  # materialised: measured faster than transforming u at every step
        # Stop as scikit-learn's lbfgs does: on the largest gradient entry in w (= R' grad_u).
        size = lambda g: jnp.maximum(jnp.abs(chol @ g["w"]).max(), jnp.abs(g["b"]))
        lipschitz, l1 = 0.25, 0.0
    else:
        top = jnp.linalg.eigvalsh(gram / n)[-1]
        # Lipschitz constant of the smooth part; features are centred, so the bias adds at most 1.
        lipschitz = (0.25 if binary else 1.0) * jnp.maximum(top, 1.0) + l2 / n
    xtr, ytr = (xs[train], y[train]) if weight is None else (xs, y)
    loss = _objective(xtr, ytr, binary, l2, to_weights, weight)
    p = _fista(loss, {"w": jnp.zeros(xs.shape[1]), "b": jnp.zeros(())}, lipschitz, l1, max_steps, tol, size)

    def predict(z):
        out = z @ p["w"] + p["b"]
        return jax.nn.sigmoid(out) if binary else out

    if weight is not None:
        return predict(xs)
    test_pred = predict(xs[test])
    return _score(test_pred, y[test], binary), _score(predict(xtr), ytr, binary), to_weights(p["w"]), p["b"], test_pred


def _fit_ridge(xs, gram, y, binary, train, test, l2):
    """Every closed-form concept of one site from one factorisation (``y`` is a matrix);
    a (concepts,) array ``l2`` (chosen by cross-validation) solves one system per concept."""
    xtr, ytr = xs[train], y[train]
    y_mean = ytr.mean(0)
    n, d = xtr.shape
    per_concept = functools.partial(jax.vmap, in_axes=(0, 1), out_axes=1)
    if isinstance(l2, float):
        if d <= n:  # the primal or the dual system, whichever is smaller
            w = jnp.linalg.solve(gram + l2 * jnp.eye(d), xtr.T @ (ytr - y_mean))
        else:
            w = xtr.T @ jnp.linalg.solve(xtr @ xtr.T + l2 * jnp.eye(n), ytr - y_mean)
    elif d <= n:
        w = per_concept(lambda l, r: jnp.linalg.solve(gram + l * jnp.eye(d), r))(l2, xtr.T @ (ytr - y_mean))
    else:
        kernel = xtr @ xtr.T
        w = xtr.T @ per_concept(lambda l, r: jnp.linalg.solve(kernel + l * jnp.eye(n), r))(l2, ytr - y_mean)
    score = jax.vmap(_score, in_axes=(1, 1, 0))
    test_pred = xs[test] @ w + y_mean
    return score(test_pred, y[test], binary), score(xtr @ w + y_mean, ytr, binary), w.T, y_mean, test_pred.T


def _closed_columns(kind, binary):
    """Concepts fitted in closed form: all for ridge, the real-valued ones for logistic."""
    return np.flatnonzero(np.full(len(binary), kind == "ridge") | ((kind == "logistic") & ~binary))


def _cv_ridge(z, m, y, binary, grid):
    """Validation scores (grid, concepts) of ridge fitted on the rows with ``m`` = 1 of
    ``z`` (centred on them) and scored on the rest: one eigendecomposition for the grid."""
    n, d = z.shape
    zm = z * m[:, None]
    y_mean = m @ y / m.sum()
    target = m[:, None] * (y - y_mean)
    if d <= n:
        e, v = jnp.linalg.eigh(zm.T @ z)
        q = v.T @ (z.T @ target)
        weights = lambda l: v @ (q / (e + l)[:, None])
    else:
        e, v = jnp.linalg.eigh(zm @ zm.T)
        q = v.T @ target
        weights = lambda l: zm.T @ (v @ (q / (e + l)[:, None]))
    score = jax.vmap(_weighted_score, in_axes=(1, 1, 0, None))
    return jax.vmap(lambda l: score(z @ weights(l) + y_mean, y, binary, 1.0 - m))(grid)


def _cv_l2(xs, y, train, binary, kind, grid, fold_of, folds, l1, max_steps, tol):
    """Per concept, the ``grid`` value (ascending) with the best mean validation score over
    the folds of the training rows, ties to the larger. Each fold is standardised on its
    own fitting rows; the test rows are never read."""
    xt, yt = xs[train], y[train]
    grid = jnp.asarray(grid, jnp.float32)
    closed = _closed_columns(kind, binary)

    def fold_scores(f):
        m = (fold_of != f).astype(xt.dtype)
        n_f = m.sum()
        mean = m @ xt / n_f
        std = jnp.sqrt(m @ (xt - mean) ** 2 / n_f)
        z = (xt - mean) / jnp.where(std > 1e-6, std, 1.0)
        scores = jnp.zeros((len(grid), y.shape[1]))
        if len(closed):
            scores = scores.at[:, closed].set(_cv_ridge(z, m, yt[:, closed], binary[closed], grid))
        gram = (z * m[:, None]).T @ z
        for is_binary in (True, False):
            cols = np.setdiff1d(np.flatnonzero(binary == is_binary), closed)
            if len(cols):
                def one(yi, l):
                    pred = _fit_iterative(z, gram, yi, is_binary, None, None, kind, l, l1, max_steps, tol, weight=m)
                    return _weighted_score(pred, yi, is_binary, 1.0 - m)
                over_grid = jax.vmap(jax.vmap(one, in_axes=(1, None)), in_axes=(None, 0))  # (grid, cols)
                scores = scores.at[:, cols].set(over_grid(yt[:, cols], grid))
        return scores

    mean_scores = jax.lax.map(fold_scores, jnp.arange(folds)).mean(0)  # (grid, concepts)
    best = len(grid) - 1 - jnp.argmax(mean_scores[::-1], axis=0)  # the last maximum: ties to the larger l2
    return grid[best]


def _fit_site(x, y, train, test, binary, kind, l2, l1, max_steps, tol, l2_grid=(), fold_of=None, folds=0,
              boot=None, confidence=0.95):
    """Every probe of one site, shaped (concepts, ...): the features are standardised and
    their Gram matrix formed once for all concepts. Closed-form and iterative columns are
    fitted as separate groups (whether a concept is binary is known before tracing).
    Returns test and train scores, weights, biases, balanced scores, the bootstrap interval
    of the test score (rows of ``boot`` are resample counts of the test rows) and the l2s."""
    xs, mean, scale = _standardise(x, train)
    gram = xs[train].T @ xs[train]
    concepts = y.shape[1]
    if l2 == "cv":
        l2s = _cv_l2(xs, y, train, binary, kind, l2_grid, fold_of, folds, l1, max_steps, tol)
    else:
        l2s = jnp.full(concepts, l2, jnp.float32)
    # test scores, train scores, weights, biases (on the standardised features until the end),
    # test predictions (concepts, test states)
    out = [jnp.zeros(concepts), jnp.zeros(concepts), jnp.zeros((concepts, x.shape[1])), jnp.zeros(concepts),
           jnp.zeros((concepts, len(test)))]

    def put(cols, parts):
        return [o.at[cols].set(p) for o, p in zip(out, parts)]

    closed = _closed_columns(kind, binary)
    if len(closed):
        out = put(closed, _fit_ridge(xs, gram, y[:, closed], binary[closed], train, test,
                                   l2s[closed] if l2 == "cv" else l2))
    for is_binary in (True, False):
        cols = np.setdiff1d(np.flatnonzero(binary == is_binary), closed)
        if len(cols):
            fit = lambda yi, l: _fit_iterative(xs, gram, yi, is_binary, train, test, kind, l, l1, max_steps, tol)
            if l2 == "cv":
                out = put(cols, jax.vmap(fit, in_axes=(1, 0))(y[:, cols], l2s[cols]))
            else:
                out = put(cols, jax.vmap(lambda yi: fit(yi, l2), in_axes=1)(y[:, cols]))
    test_scores, train_scores, w, b, pred = out
    w, b = _unstandardise(w.T, b, mean, scale)
    y_test = y[test].T
    balanced = jnp.where(binary, jax.vmap(_balanced)(pred, y_test), test_scores)
    if boot is None:
        low = high = jnp.full(concepts, jnp.nan)
    else:
        per_concept = jax.vmap(_weighted_score, in_axes=(0, 0, 0, None))
        resampled = jax.vmap(per_concept, in_axes=(None, None, None, 0))(pred, y_test, binary, boot)
        alpha = (1.0 - confidence) / 2
        low, high = jnp.quantile(resampled, jnp.array([alpha, 1.0 - alpha]), axis=0)
    return test_scores, train_scores, w.T, b, balanced, low, high, l2s


def _width_groups(widths: list[int]) -> list[list[int]]:
    """Site indices fitted as one stack: sites of equal width together, and every site
    narrower than a quarter of the widest in one group zero-padded to its widest member
    (cheap, and one compiled group fewer per narrow width). Standardised zero columns
    change no probe."""
    narrow = [i for i, w in enumerate(widths) if 4 * w < max(widths)]
    groups = [[i for i, v in enumerate(widths) if v == w and i not in narrow]
              for w in sorted(set(widths))]
    return [g for g in groups if g] + ([narrow] if narrow else [])


def _pad(x: jax.Array, width: int) -> jax.Array:
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])]) if x.shape[-1] < width else x


def probe_split(
    key: jax.Array, n: int, test_fraction: float = 0.25, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The (train, test) state indices ``fit_probes`` uses for ``key``. With ``groups`` (one
    id per state, e.g. the game a state comes from) whole groups are split: a fraction
    ``test_fraction`` of the groups (at least one) is held out, with all their states."""
    if groups is None:
        perm = np.asarray(jax.random.permutation(jax.random.split(key)[0], n))
        n_test = max(1, int(round(test_fraction * n)))
        train, test = perm[n_test:], perm[:n_test]
        unit = "states"
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups has shape {groups.shape}; expected ({n},), one group id per state")
        ids = np.unique(groups, return_inverse=True)[1].reshape(n)
        perm = np.asarray(jax.random.permutation(jax.random.split(key)[0], ids.max() + 1))
        held_out = np.isin(ids, perm[:max(1, int(round(test_fraction * len(perm))))])
        train, test = np.flatnonzero(~held_out), np.flatnonzero(held_out)
        unit = f"states in {len(perm)} groups"
    if not len(train) or not len(test):
        raise ValueError(f"test_fraction={test_fraction} of {n} {unit} leaves {len(train)} training and "
                         f"{len(test)} test states; both sides need at least one (more states or groups, or "
                         "another test_fraction)")
    return train, test


def cv_folds(key: jax.Array, n_train: int, folds: int = 5, groups: np.ndarray | None = None) -> np.ndarray:
    """The cross-validation fold (0 .. folds-1) of each training row, in the order of
    ``probe_split``'s train indices, that ``fit_probes(..., l2="cv", key=key)`` uses. Fold
    sizes differ by at most one; with ``groups`` (ids of the training rows) whole groups
    are assigned to folds, so no group is on both sides of a validation split."""
    fold_key = jax.random.fold_in(key, 1)
    if groups is None:
        units, ids = n_train, np.arange(n_train)
    else:
        groups = np.asarray(groups)
        if groups.shape != (n_train,):
            raise ValueError(f"groups has shape {groups.shape}; expected ({n_train},), the training rows' groups")
        ids = np.unique(groups, return_inverse=True)[1].reshape(n_train)
        units = int(ids.max()) + 1 if n_train else 0
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= units:
        what = "training states" if groups is None else "training groups"
        raise ValueError(f"folds={folds!r} must be an integer from 2 to the number of {what} ({units})")
    fold_of_unit = np.empty(units, np.int32)
    fold_of_unit[np.asarray(jax.random.permutation(fold_key, units))] = np.arange(units) % folds
    return fold_of_unit[ids]


def _row_keys(obs) -> np.ndarray:
    """Each state's bytes as one opaque value (``-0.0`` read as ``0.0``), for exact matching."""
    rows = np.asarray(obs)
    rows = rows.reshape(rows.shape[0], -1)
    if np.issubdtype(rows.dtype, np.floating):
        rows = rows + 0  # -0.0 -> 0.0
    rows = np.ascontiguousarray(rows)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(rows.shape[0])


def unique_rows(obs) -> np.ndarray:
    """Sorted indices of the first occurrence of each distinct state in ``obs`` (states,
    ...): ``obs[i]``, ``features[i]`` and concept labels ``[i]`` are then the deduplicated
    set. Rows match when byte-identical (NaNs with the same bits count as equal)."""
    return np.sort(np.unique(_row_keys(obs), return_index=True)[1])


def leaked_rows(obs, train, test) -> int:
    """How many test states (indices ``test`` into ``obs``) are identical to some training
    state: a probe can score on those by memorising. Zero after ``unique_rows``."""
    keys = _row_keys(obs)
    return int(np.isin(keys[np.asarray(test)], keys[np.asarray(train)]).sum())


def _check_l2(l2, l2_grid) -> tuple[float | str, tuple[float, ...]]:
    if isinstance(l2, str):
        if l2 != "cv":
            raise ValueError(f"l2={l2!r} is not allowed; use a number >= 0 or 'cv'")
        grid = tuple(sorted({float(g) for g in l2_grid}))
        if not grid:
            raise ValueError(f"l2_grid={l2_grid!r} is empty; l2='cv' needs at least one candidate")
        if grid[0] <= 0 or not math.isfinite(grid[-1]):
            raise ValueError(f"l2_grid={l2_grid!r} must hold finite values > 0")
        return "cv", grid
    if isinstance(l2, bool) or not isinstance(l2, (int, float, np.integer, np.floating)) or not 0 <= l2 < math.inf:
        raise ValueError(f"l2={l2!r} is not allowed; use a finite number >= 0 or 'cv'")
    return float(l2), ()


def _bootstrap_counts(key: jax.Array, n_test: int, resamples: int) -> np.ndarray:
    """(resamples, n_test): how often each test row is drawn in each bootstrap resample."""
    draws = np.asarray(jax.random.randint(jax.random.fold_in(key, 2), (resamples, n_test), 0, n_test))
    rows = np.arange(resamples)[:, None] * n_test
    return np.bincount((draws + rows).ravel(), minlength=resamples * n_test).reshape(resamples, n_test).astype(np.float32)


def fit_probes(
    features: Mapping[str, jax.Array],
    concepts: Mapping[str, jax.Array],
    kind: str = "ridge",
    key: jax.Array | None = None,
    test_fraction: float = 0.25,
    l2: float | str = 1.0,
    l1: float = 1e-3,
    max_steps: int = 200,
    tol: float = 1e-4,
    shuffle_labels: bool = False,
    l2_grid: tuple[float, ...] = (0.01, 0.1, 1, 10, 100, 1000),
    folds: int = 5,
    groups: np.ndarray | None = None,
    bootstrap: int = 0,
    confidence: float = 0.95,
) -> ProbeScores:
    """Train one probe per (site, concept) on a random split, all in one jitted call.

    ``features`` maps sites to ``(states, width)`` activations, or ``(checkpoints, states,
    width)`` to probe every checkpoint in the same call (scores then gain a leading axis).
    Drop duplicate states first (``unique_rows``): a test state also in training is scored
    by memory. ``groups`` (one id per state, e.g. its game) splits whole groups into train
    and test instead of single states (``probe_split``), and cross-validation folds too.

    Every kind is solved to its optimum, so scores are those of the named estimator, not of
    an optimiser's budget: ``ridge`` in closed form (scikit-learn's ``Ridge(alpha=l2)``);
    ``logistic`` by preconditioned accelerated gradient for binary concepts
    (``LogisticRegression(C=1/l2)``) and as ridge for real-valued ones; ``sparse`` adds
    ``l1 |w|_1`` (elastic net) and runs FISTA. Iterative fits stop at ``max_steps`` or
    when below ``tol``: the largest gradient entry on standardised features for logistic
    probes (scikit-learn's lbfgs rule), the norm of the prox-gradient residual for sparse.
    ``shuffle_labels`` permutes each concept's labels across states first: the control
    that a probe must fail (its score is what memorisation alone achieves).

    ``l2="cv"`` chooses l2 per (site, concept) from ``l2_grid`` by ``folds``-fold
    cross-validation on the training split only (folds from ``cv_folds``, each standardised
    on its own fitting rows; the best mean validation score, ties to the larger l2), then
    refits on the whole training split. ``bootstrap`` resamples of the test rows (drawn
    once from ``key``; 0, the default, for none: NaN) give the ``confidence`` percentile interval
    of the test score (``ci_low``, ``ci_high``).
    """
    if kind not in KINDS:
        raise ValueError(f"probe kind {kind!r} is not allowed; use one of {KINDS}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    l2, l2_grid = _check_l2(l2, l2_grid)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ValueError(f"bootstrap={bootstrap!r} must be a number of resamples >= 0 (0 for no interval)")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must lie strictly between 0 and 1")
    # Features sharded over several processes (a global array): every process fits the same
    # probes on all the states (``site_features`` already hands each process the whole rows).
    features = dict(zip(features, distributed.host_local(list(features.values()))))  # in the sites' order
    site_names, concept_names = tuple(features), tuple(concepts)
    lead = next(iter(features.values())).shape[:-1]
    n = lead[-1]
    for name, f in features.items():
        if f.ndim not in (2, 3) or f.shape[:-1] != lead:
            raise ValueError(f"features[{name!r}] has shape {f.shape}; expected {(*lead, 'width')} "
                             "(states, width) or (checkpoints, states, width), the same for every site")
    y = np.stack([np.asarray(concepts[c], np.float32).reshape(n) for c in concept_names], 1)
    key = jax.random.key(0) if key is None else key
    train, test = probe_split(key, n, test_fraction, groups)
    fold_of = None
    if l2 == "cv":
        fold_of = jnp.asarray(cv_folds(key, len(train), folds, None if groups is None else np.asarray(groups)[train]))
    boot = jnp.asarray(_bootstrap_counts(key, len(test), int(bootstrap))) if bootstrap else None
    shuffle_key = jax.random.split(key)[1]
    if shuffle_labels:
        y = np.asarray(jax.vmap(lambda k, col: jax.random.permutation(k, col))(
            jax.random.split(shuffle_key, y.shape[1]), y.T)).T
    binary = _is_binary(y)
    width_groups = _width_groups([features[s].shape[-1] for s in site_names])
    order = np.argsort(np.concatenate(width_groups))  # grouped position -> site order
    group_width = [max(features[site_names[i]].shape[-1] for i in g) for g in width_groups]
    flat = [features[s].reshape(-1, n, features[s].shape[-1]) for s in site_names]  # (checkpoints, n, width)
    by_checkpoint = [[_pad(flat[i], w) for i in g] for g, w in zip(width_groups, group_width)]
    static = dict(binary=tuple(bool(b) for b in binary), kind=kind, l2=l2, l1=float(l1),
                  max_steps=int(max_steps), tol=float(tol), l2_grid=l2_grid,
                  folds=int(folds) if l2 == "cv" else 0, confidence=float(confidence))
    args = jnp.asarray(y), jnp.asarray(train), jnp.asarray(test), fold_of, boot
    # Checkpoints one after another through one compiled program (faster here than lax.map).
    per_checkpoint = [_fit_all(by_checkpoint, jnp.int32(c), *args, **static) for c in range(math.prod(lead[:-1]))]
    parts = [p[0] if len(lead) == 1 else jnp.stack(p) for p in zip(*per_checkpoint)]
    test_scores, train_scores, weights, bias, balanced, low, high, l2s = (
        jnp.take(p, order, axis=len(lead) - 1) for p in parts)
    majority = np.maximum(y[test].mean(0), 1 - y[test].mean(0))
    baseline = np.where(binary, majority, 0.0)
    return ProbeScores(test_scores, train_scores, jnp.asarray(baseline), weights, bias, site_names, concept_names,
                       balanced=balanced, ci_low=low, ci_high=high, l2=l2s)


@functools.partial(jax.jit, static_argnames=("binary", "kind", "l2", "l1", "max_steps", "tol", "l2_grid", "folds",
                                             "confidence"))
def _fit_all(groups, checkpoint, y, train, test, fold_of, boot, *, binary, kind, l2, l1, max_steps, tol, l2_grid,
             folds, confidence):
    """Test scores, train scores, weights, biases, balanced scores, bootstrap interval and
    l2s shaped (sites, concepts[, width]) at one checkpoint of ``groups`` (lists of
    same-width (checkpoints, states, width) features), the sites in group order, weights
    zero-padded to the widest. Compiled once per shape and setting, so every checkpoint of
    a run reuses it."""
    stacks = [jnp.stack([f[checkpoint] for f in g]) for g in groups]
    fit = functools.partial(_fit_site, y=y, train=train, test=test, binary=np.asarray(binary), kind=kind, l2=l2,
                            l1=l1, max_steps=max_steps, tol=tol, l2_grid=l2_grid, fold_of=fold_of, folds=folds,
                            boot=boot, confidence=confidence)
    width = max(x.shape[-1] for x in stacks)
    # Sites one at a time (lax.map), concepts together (vmap): a site's features then stay in
    # cache while all its probes are fitted; measured 3x faster than a vmap over sites.
    parts = [jax.lax.map(fit, x) for x in stacks]
    return tuple(jnp.concatenate(p) for p in zip(*[(t, tr, _pad(w, width), *rest) for t, tr, w, *rest in parts]))
