"""Scores of an interpretability method against a known mechanism, each metric written once.

Every function is pure numpy: arrays in, a Python float (or a numpy array) out. Bad input
raises ``ValueError`` naming the problem instead of returning NaN, because a NaN in a
leaderboard hides which method or agent broke. Definitions, ranges, chance levels and
sources are in docs/BENCH_METRICS.md.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike


# -- input checks ------------------------------------------------------------------------------
def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape: got {a.shape} and {b.shape}")


def _finite(x: ArrayLike, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contain NaN or infinity")
    return x


def _binary(x: ArrayLike, name: str) -> np.ndarray:
    x = np.asarray(x)
    if not np.all((x == 0) | (x == 1)):
        raise ValueError(f"{name} must be binary (0/1 or bool)")
    return x.astype(bool)


def _scores_truth(scores: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s, t = _finite(scores, "scores"), _binary(truth, "truth")
    _same_shape(s, t, "scores and truth")
    return s.ravel(), t.ravel()


def _descending(scores: np.ndarray) -> np.ndarray:
    """Indices from the largest score down; equal scores keep index order (stable sort)."""
    return np.argsort(-scores, kind="stable")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a flat array, tied values sharing the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # ranks below each distinct value
    return (first + (counts + 1) / 2)[inverse.ravel()]


# -- ranking the true elements ---------------------------------------------------------------
def auroc(scores: ArrayLike, truth: ArrayLike) -> float:
    """Chance that a true element outscores a false one, ties counted 1/2.

    AUROC = U / (n_pos * n_neg), U = sum of the (average) ranks of the positives - n_pos (n_pos + 1) / 2
    (Mann-Whitney). Only the order of ``scores`` matters, so methods on different scales compare.
    """
    s, t = _scores_truth(scores, truth)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes in truth: got {n_pos} positives and {n_neg} negatives")
    u = _average_ranks(s)[t].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def precision_at_k(scores: ArrayLike, truth: ArrayLike, k: int | None = None) -> float:
    """Fraction of the k highest scores that are true elements.

    k defaults to the number of true elements (precision at the true circuit size, where
    precision equals recall). Ties are broken by index order, not averaged.
    """
    s, t = _scores_truth(scores, truth)
    k = int(t.sum()) if k is None else k
    if not 1 <= k <= s.size:
        raise ValueError(f"k must be between 1 and the number of elements ({s.size}): got {k}")
    return float(t[_descending(s)[:k]].mean())


def f1(pred: ArrayLike, truth: ArrayLike) -> float:
    """F1 = 2 TP / (2 TP + FP + FN) of a predicted binary mask against the true one."""
    p, t = _binary(pred, "pred"), _binary(truth, "truth")
    _same_shape(p, t, "pred and truth")
    if not t.any():
        raise ValueError("truth has no positives: F1 is undefined with nothing to find")
    tp = int((p & t).sum())
    return 2 * tp / (2 * tp + int((p & ~t).sum()) + int((~p & t).sum()))


# -- circuits: faithfulness and its curve ----------------------------------------------------
def faithfulness(m_circuit: ArrayLike, m_empty: ArrayLike, m_full: ArrayLike) -> float | np.ndarray:
    """Share of the full model's effect the circuit recovers (MIB, Mueller et al. 2025).

    f(C) = (m(C) - m(empty)) / (m(full) - m(empty)); 0 = no better than the empty circuit,
    1 = as good as the full model. Broadcasts; scalars in give a float out.
    """
    c, e, full = (np.asarray(x, dtype=float) for x in (m_circuit, m_empty, m_full))
    gap = full - e
    if np.any(gap == 0):
        raise ValueError("m_full equals m_empty: the model has no effect to explain, faithfulness is undefined")
    f = (c - e) / gap
    return float(f) if f.ndim == 0 else f


def ranked_circuits(scores: ArrayLike, sizes: ArrayLike, absolute: bool) -> np.ndarray:
    """Masks of the top round(size * n) nodes for each size fraction, shape (len(sizes), n).

    Ranks by ``|score|`` when ``absolute`` else by signed score (a large negative node comes
    last). The choice is a required argument because it changes CMD (MIB issue #19).
    Rounding is half up; ties keep index order.
    """
    s = _finite(scores, "scores")
    if s.ndim != 1:
        raise ValueError(f"scores must be one score per node (1-D): got shape {s.shape}")
    fr = _finite(sizes, "sizes")
    if fr.ndim != 1 or np.any((fr < 0) | (fr > 1)):
        raise ValueError("sizes must be a 1-D array of fractions in [0, 1]")
    order = _descending(np.abs(s) if absolute else s)
    rank = np.empty(s.size, dtype=int)
    rank[order] = np.arange(s.size)
    ks = np.floor(fr * s.size + 0.5).astype(int)
    return rank[None, :] < ks[:, None]


def faithfulness_curve_areas(sizes: ArrayLike, f: ArrayLike) -> dict[str, float]:
    """CPR = area under f, CMD = area under |1 - f|, trapezoid rule over the given sizes (MIB).

    ``sizes`` are circuit sizes as fractions of nodes, strictly increasing in [0, 1]; ``f``
    the faithfulness at each. Only the given points are integrated (no extrapolation to 0
    or 1), so compare methods on the same grid. Higher CPR and lower CMD are better.
    """
    x, y = _finite(sizes, "sizes"), _finite(f, "faithfulness values")
    _same_shape(x, y, "sizes and f")
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"need at least two points on the curve (1-D): got shape {x.shape}")
    if np.any((x < 0) | (x > 1)) or np.any(np.diff(x) <= 0):
        raise ValueError("sizes must be strictly increasing fractions in [0, 1]")
    dx = np.diff(x)

    def trapezoid(v: np.ndarray) -> float:
        return float(np.sum(dx * (v[1:] + v[:-1]) / 2))

    return {"cpr": trapezoid(y), "cmd": trapezoid(np.abs(1 - y))}


# -- causal abstraction ----------------------------------------------------------------------
def interchange_intervention_accuracy(predicted: ArrayLike, expected: ArrayLike) -> float:
    """Share of counterfactual pairs where the intervened network's output equals the
    high-level causal model's output (Geiger et al. 2021).

    The leading axis is pairs; with vector outputs a pair counts only if every entry matches.
    """
    p, e = np.asarray(predicted), np.asarray(expected)
    _same_shape(p, e, "predicted and expected")
    if p.ndim == 0 or p.shape[0] == 0:
        raise ValueError("need at least one counterfactual pair (leading axis)")
    return float(np.mean(np.all((p == e).reshape(p.shape[0], -1), axis=1)))


def selectivity(task_score: float, control_score: float) -> float:
    """Probe accuracy on the task minus on a control task (Hewitt & Liang 2019): how much of
    the score is the representation's, not the probe's capacity to memorise."""
    return float(task_score) - float(control_score)


# -- attribution maps ------------------------------------------------------------------------
def attribution_mass(attributions: ArrayLike, true_mask: ArrayLike) -> float:
    """Mean over states of sum |a| on true elements / sum |a| (leading axis = states).

    ``true_mask`` is one mask shared by all states (``attributions.shape[1:]``) or one per
    state (``attributions.shape``). A state whose attribution is all zero scores 0 and is
    counted in a RuntimeWarning: the method pointed nowhere, often a saturated gradient.
    """
    a = np.abs(_finite(attributions, "attributions"))
    if a.ndim < 2:
        raise ValueError(f"attributions need a leading state axis and at least one element axis: got {a.shape}")
    m = _binary(true_mask, "true_mask")
    if m.shape not in (a.shape, a.shape[1:]):
        raise ValueError(f"true_mask must have shape {a.shape[1:]} or {a.shape}: got {m.shape}")
    m = np.broadcast_to(m, a.shape).reshape(a.shape[0], -1)
    a = a.reshape(a.shape[0], -1)
    total, on_truth = a.sum(1), (a * m).sum(1)
    empty = total == 0
    if empty.any():
        warnings.warn(f"{int(empty.sum())} of {a.shape[0]} states have zero total attribution; "
                      "they count as 0 mass", RuntimeWarning, stacklevel=2)
    return float(np.mean(np.where(empty, 0.0, on_truth / np.where(empty, 1.0, total))))


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman rank correlation: Pearson correlation of the (tie-averaged) ranks.

    The saliency randomisation test (Adebayo et al. 2018) compares a trained model's map with
    a weight-randomised model's map: a high value means the map does not depend on the model.
    """
    x, y = _finite(a, "a"), _finite(b, "b")
    _same_shape(x, y, "a and b")
    if x.size < 2:
        raise ValueError("spearman needs at least two elements")
    rx, ry = _average_ranks(x.ravel()), _average_ranks(y.ravel())
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    if denom == 0:
        raise ValueError("spearman is undefined for a constant input (all values tied)")
    return float((rx * ry).sum() / denom)


def symmetry_error(map_of_transformed: ArrayLike, transformed_map: ArrayLike) -> float:
    """mean |M(g x) - g M(x)| / mean |g M(x)|: 0 when the map is equivariant under the symmetry g.

    ``map_of_transformed`` is the map computed on the transformed input, ``transformed_map``
    the original map moved by the same transformation.
    """
    x, y = _finite(map_of_transformed, "map_of_transformed"), _finite(transformed_map, "transformed_map")
    _same_shape(x, y, "map_of_transformed and transformed_map")
    scale = np.abs(y).mean()
    if scale == 0:
        raise ValueError("transformed_map is all zero: nothing to normalise the error by")
    return float(np.abs(x - y).mean() / scale)


# -- features / directions -------------------------------------------------------------------
def best_cosine(found: ArrayLike, planted: ArrayLike) -> np.ndarray:
    """For each planted direction (rows, (p, d)), the largest |cosine| with any found one ((f, d)).

    Sign-blind, since a feature and its negation are the same direction. 1 = recovered exactly.
    """
    fd, pd = _finite(found, "found directions"), _finite(planted, "planted directions")
    if fd.ndim != 2 or pd.ndim != 2 or fd.shape[1] != pd.shape[1]:
        raise ValueError(f"found (f, d) and planted (p, d) must be 2-D with the same d: got {fd.shape}, {pd.shape}")
    if fd.shape[0] == 0:
        raise ValueError("no found directions to compare with")
    fn, pn = np.linalg.norm(fd, axis=1), np.linalg.norm(pd, axis=1)
    if np.any(fn == 0) or np.any(pn == 0):
        raise ValueError("a direction has zero norm: its cosine is undefined")
    cos = (pd / pn[:, None]) @ (fd / fn[:, None]).T
    return np.abs(cos).max(axis=1)


def best_subspace_cosine(found: ArrayLike, blocks: ArrayLike) -> np.ndarray:
    """For each planted subspace, spanned by the units of a 0/1 row of ``blocks`` ((p, d)), the
    largest ``|P f| / |f|`` over the found directions ((f, d)): the cosine of the angle between
    the direction and the subspace. 1 = the direction lies in the subspace (anywhere in it)."""
    fd, bd = _finite(found, "found directions"), _finite(blocks, "unit blocks")
    if fd.ndim != 2 or bd.ndim != 2 or fd.shape[1] != bd.shape[1]:
        raise ValueError(f"found (f, d) and blocks (p, d) must be 2-D with the same d: got {fd.shape}, {bd.shape}")
    if not np.isin(bd, (0, 1)).all() or np.any(bd.sum(1) == 0):
        raise ValueError("blocks must be 0/1 rows with at least one unit each (the units spanning each subspace)")
    fn = np.linalg.norm(fd, axis=1)
    if fd.shape[0] == 0 or np.any(fn == 0):
        raise ValueError("need at least one found direction, none of zero norm")
    return np.sqrt(((fd / fn[:, None]) ** 2) @ bd.T).max(axis=0)


# -- over seeds ------------------------------------------------------------------------------
def over_seeds(runs: list[dict]) -> dict:
    """Mean, std and per-seed values of each score of the first run (a curve: elementwise over
    seeds), so every bench table reports its seed spread the same way. std is the population std
    (ddof 0): with 3-5 seeds it describes these seeds, it is not an estimate of the spread."""
    out = {}
    if not runs:
        return out
    for k in runs[0]:
        v = np.array([r[k] for r in runs], np.float64)
        mean, std = v.mean(0), v.std(0)
        out[k] = {"mean": mean.tolist() if v.ndim > 1 else float(mean), "std": std.tolist() if v.ndim > 1 else float(std),
                  "per_seed": [r[k] for r in runs]}
    return out


def mean_std(stats: dict | None, digits: int = 3, scale: float = 1.0) -> str:
    """``mean ± std`` of an ``over_seeds`` entry (times ``scale``, e.g. 100 for a percentage);
    a dash when it is missing or NaN, so a broken cell reads as missing, not as a number."""
    if stats is None or np.isnan(stats["mean"]):
        return "–"
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"
