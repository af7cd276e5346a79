"""Linear probes for every site x concept at once.

Sites are stacked by width and each stack is fitted by one ``lax.map``, so a narrow site
(the value head, the input) costs about its own width, not the widest site's; the
returned weights are zero-padded to the widest site. Scores are on a held-out split:
accuracy for binary concepts, R^2 for the rest.
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

from rljaxinterp.interp.cache import Params, SiteSelection, run_with_cache

KINDS = ("ridge", "logistic", "sparse")


@struct.dataclass
class ProbeScores:
    """Held-out scores shaped (sites, concepts), indexed by ``sites`` and ``concepts``; with
    a checkpoint axis in the features every array gains a leading (checkpoints,) axis."""

    test: jax.Array
    train: jax.Array
    baseline: jax.Array  # majority-class accuracy (binary) or 0 (R^2)
    # The probes themselves, on the raw activations (zero-padded to the widest site):
    # prediction = features @ weights[site, concept] + bias[site, concept] (a logit if binary).
    weights: jax.Array  # (sites, concepts, width)
    bias: jax.Array  # (sites, concepts)
    sites: tuple[str, ...] = struct.field(pytree_node=False)
    concepts: tuple[str, ...] = struct.field(pytree_node=False)

    def table(self) -> dict[str, dict[str, float]]:
        if self.test.ndim != 2:
            raise ValueError(f"table() reads one checkpoint; index test {self.test.shape} instead")
        return {s: {c: float(self.test[i, j]) for j, c in enumerate(self.concepts)} for i, s in enumerate(self.sites)}


def site_features(
    model: nn.Module, params: Params, obs: jax.Array, sites: SiteSelection = None
) -> dict[str, jax.Array]:
    """Activations flattened to ``(states, features)`` per site."""
    _, cache = run_with_cache(model, params, obs, sites)
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


def _objective(xtr, ytr, binary, l2, to_weights=lambda u: u):
    """Mean log-loss (binary) or half mean squared error, plus ``l2/(2n)|w|^2``: the
    objectives of scikit-learn's ``LogisticRegression(C=1/l2)`` and ``Ridge(alpha=l2)``."""
    n = xtr.shape[0]

    def loss(p):
        z = xtr @ p["w"] + p["b"]
        data = optax.sigmoid_binary_cross_entropy(z, ytr).mean() if binary else 0.5 * jnp.mean((z - ytr) ** 2)
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


def _fit_iterative(xs, gram, y, binary, train, test, kind, l2, l1, max_steps, tol):
    """Logistic probes (binary concepts) and L1 probes (any concept) solved to ``tol``, on
    standardised features ``xs`` whose training rows have the Gram matrix ``gram``."""
    n = len(train)
    to_weights = lambda u: u
    size = optax.tree.norm
    if kind == "logistic":
        # Precondition by Bohning's bound on the Hessian, S/4 + l2/n (S the feature covariance):
        # with S + c = R'R (Cholesky, any c >= 4 l2/n) and w = R^-1 u, the curvature is at most
        # 1/4 in every direction of u, so accelerated gradient needs few steps.
        chol = jnp.linalg.cholesky(gram / n + max(4 * l2 / n, 1e-3) * jnp.eye(xs.shape[1]))
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
    xtr, ytr = xs[train], y[train]
    loss = _objective(xtr, ytr, binary, l2, to_weights)
    p = _fista(loss, {"w": jnp.zeros(xs.shape[1]), "b": jnp.zeros(())}, lipschitz, l1, max_steps, tol, size)

    def predict(z):
        out = z @ p["w"] + p["b"]
        return jax.nn.sigmoid(out) if binary else out

    return _score(predict(xs[test]), y[test], binary), _score(predict(xtr), ytr, binary), to_weights(p["w"]), p["b"]


def _fit_ridge(xs, gram, y, binary, train, test, l2):
    """Every closed-form concept of one site from one factorisation (``y`` is a matrix)."""
    xtr, ytr = xs[train], y[train]
    y_mean = ytr.mean(0)
    n, d = xtr.shape
    if d <= n:  # the primal or the dual system, whichever is smaller
        w = jnp.linalg.solve(gram + l2 * jnp.eye(d), xtr.T @ (ytr - y_mean))
    else:
        w = xtr.T @ jnp.linalg.solve(xtr @ xtr.T + l2 * jnp.eye(n), ytr - y_mean)
    score = jax.vmap(_score, in_axes=(1, 1, 0))
    return score(xs[test] @ w + y_mean, y[test], binary), score(xtr @ w + y_mean, ytr, binary), w.T, y_mean


def _fit_site(x, y, train, test, binary, kind, l2, l1, max_steps, tol):
    """Every probe of one site, shaped (concepts, ...): the features are standardised and
    their Gram matrix formed once for all concepts. Closed-form and iterative columns are
    fitted as separate groups (whether a concept is binary is known before tracing)."""
    xs, mean, scale = _standardise(x, train)
    gram = xs[train].T @ xs[train]
    concepts = y.shape[1]
    # test scores, train scores, weights, biases (on the standardised features until the end)
    out = [jnp.zeros(concepts), jnp.zeros(concepts), jnp.zeros((concepts, x.shape[1])), jnp.zeros(concepts)]

    def put(cols, parts):
        return [o.at[cols].set(p) for o, p in zip(out, parts)]

    closed = np.flatnonzero(np.full(concepts, kind == "ridge") | ((kind == "logistic") & ~binary))
    if len(closed):
        out = put(closed, _fit_ridge(xs, gram, y[:, closed], binary[closed], train, test, l2))
    for is_binary in (True, False):
        cols = np.setdiff1d(np.flatnonzero(binary == is_binary), closed)
        if len(cols):
            fit = lambda yi: _fit_iterative(xs, gram, yi, is_binary, train, test, kind, l2, l1, max_steps, tol)
            out = put(cols, jax.vmap(fit, in_axes=1)(y[:, cols]))
    test_scores, train_scores, w, b = out
    w, b = _unstandardise(w.T, b, mean, scale)
    return test_scores, train_scores, w.T, b


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


def probe_split(key: jax.Array, n: int, test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """The (train, test) state indices ``fit_probes`` uses for ``key``."""
    perm = np.asarray(jax.random.permutation(jax.random.split(key)[0], n))
    n_test = max(1, int(round(test_fraction * n)))
    return perm[n_test:], perm[:n_test]


def fit_probes(
    features: Mapping[str, jax.Array],
    concepts: Mapping[str, jax.Array],
    kind: str = "ridge",
    key: jax.Array | None = None,
    test_fraction: float = 0.25,
    l2: float = 1.0,
    l1: float = 1e-3,
    max_steps: int = 200,
    tol: float = 1e-4,
    shuffle_labels: bool = False,
) -> ProbeScores:
    """Train one probe per (site, concept) on a random split, all in one jitted call.

    ``features`` maps sites to ``(states, width)`` activations, or ``(checkpoints, states,
    width)`` to probe every checkpoint in the same call (scores then gain a leading axis).

    Every kind is solved to its optimum, so scores are those of the named estimator, not of
    an optimiser's budget: ``ridge`` in closed form (scikit-learn's ``Ridge(alpha=l2)``);
    ``logistic`` by preconditioned accelerated gradient for binary concepts
    (``LogisticRegression(C=1/l2)``) and as ridge for real-valued ones; ``sparse`` adds
    ``l1 |w|_1`` (elastic net) and runs FISTA. Iterative fits stop at ``max_steps`` or
    when below ``tol``: the largest gradient entry on standardised features for logistic
    probes (scikit-learn's lbfgs rule), the norm of the prox-gradient residual for sparse.
    ``shuffle_labels`` permutes each concept's labels across states first: the control
    that a probe must fail (its score is what memorisation alone achieves).
    """
    if kind not in KINDS:
        raise ValueError(f"probe kind {kind!r} is not allowed; use one of {KINDS}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    site_names, concept_names = tuple(features), tuple(concepts)
    lead = next(iter(features.values())).shape[:-1]
    n = lead[-1]
    for name, f in features.items():
        if f.ndim not in (2, 3) or f.shape[:-1] != lead:
            raise ValueError(f"features[{name!r}] has shape {f.shape}; expected {(*lead, 'width')} "
                             "(states, width) or (checkpoints, states, width), the same for every site")
    y = np.stack([np.asarray(concepts[c], np.float32).reshape(n) for c in concept_names], 1)
    key = jax.random.key(0) if key is None else key
    train, test = probe_split(key, n, test_fraction)
    shuffle_key = jax.random.split(key)[1]
    if shuffle_labels:
        y = np.asarray(jax.vmap(lambda k, col: jax.random.permutation(k, col))(
            jax.random.split(shuffle_key, y.shape[1]), y.T)).T
    binary = _is_binary(y)
    groups = _width_groups([features[s].shape[-1] for s in site_names])
    order = np.argsort(np.concatenate(groups))  # grouped position -> site order
    group_width = [max(features[site_names[i]].shape[-1] for i in g) for g in groups]
    flat = [features[s].reshape(-1, n, features[s].shape[-1]) for s in site_names]  # (checkpoints, n, width)
    by_checkpoint = [[_pad(flat[i], w) for i in g] for g, w in zip(groups, group_width)]
    static = dict(binary=tuple(bool(b) for b in binary), kind=kind, l2=float(l2), l1=float(l1),
                  max_steps=int(max_steps), tol=float(tol))
    args = jnp.asarray(y), jnp.asarray(train), jnp.asarray(test)
    # Checkpoints one after another through one compiled program (faster here than lax.map).
    per_checkpoint = [_fit_all(by_checkpoint, jnp.int32(c), *args, **static) for c in range(math.prod(lead[:-1]))]
    parts = [p[0] if len(lead) == 1 else jnp.stack(p) for p in zip(*per_checkpoint)]
    test_scores, train_scores, weights, bias = (jnp.take(p, order, axis=len(lead) - 1) for p in parts)
    majority = np.maximum(y[test].mean(0), 1 - y[test].mean(0))
    baseline = np.where(binary, majority, 0.0)
    return ProbeScores(test_scores, train_scores, jnp.asarray(baseline), weights, bias, site_names, concept_names)


@functools.partial(jax.jit, static_argnames=("binary", "kind", "l2", "l1", "max_steps", "tol"))
def _fit_all(groups, checkpoint, y, train, test, *, binary, kind, l2, l1, max_steps, tol):
    """Test scores, train scores, weights and biases shaped (sites, concepts[, width]) at one
    checkpoint of ``groups`` (lists of same-width (checkpoints, states, width) features), the
    sites in group order, weights zero-padded to the widest. Compiled once per shape and
    setting, so every checkpoint of a run reuses it."""
    stacks = [jnp.stack([f[checkpoint] for f in g]) for g in groups]
    fit = functools.partial(_fit_site, y=y, train=train, test=test, binary=np.asarray(binary), kind=kind, l2=l2,
                            l1=l1, max_steps=max_steps, tol=tol)
    width = max(x.shape[-1] for x in stacks)
    # Sites one at a time (lax.map), concepts together (vmap): a site's features then stay in
    # cache while all its probes are fitted; measured 3x faster than a vmap over sites.
    parts = [jax.lax.map(fit, x) for x in stacks]
    return tuple(jnp.concatenate(p) for p in zip(*[(t, tr, _pad(w, width), b) for t, tr, w, b in parts]))
