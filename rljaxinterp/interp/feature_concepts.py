"""Dictionary features scored as concept detectors: which concept each feature tracks, and how
much of a board the features together spell out.

Features are any ``(states, features)`` matrix: SAE feature activations, NMF weights, neurons,
so one scoring serves every dictionary. Concepts come from the concept library (one value per
state). The two board-game measures are those of Karvonen et al. (2024): *coverage*, the mean
over concepts of the best F1 any single feature reaches as a thresholded detector, and *board
reconstruction F1*, where every feature that is a high-precision detector of a per-square fact
on one half of the states votes for that fact on the other half.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from flax import struct
from scipy.stats import rankdata

THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # fractions of each feature's maximum


def state_features(features: np.ndarray) -> np.ndarray:
    """``(states, *positions, m)`` -> ``(states, m)``: a feature is on in a state as strongly as
    on its strongest square or token."""
    f = np.asarray(features, np.float32)
    return f.reshape(f.shape[0], -1, f.shape[-1]).max(1) if f.ndim > 2 else f


def _matrix(features) -> np.ndarray:
    f = np.asarray(features, np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (states, features); got shape {f.shape} (see state_features)")
    return f


def is_binary(y: np.ndarray) -> bool:
    return bool(np.all((y == 0) | (y == 1)))


@struct.dataclass
class ConceptMatch:
    """``score[i, j]``: how well feature ``i`` tracks concept ``j``: AUROC for a binary concept
    (0.5 = chance), Pearson correlation for a real one (NaN where a side is constant)."""

    score: np.ndarray  # (features, concepts)
    concepts: tuple[str, ...] = struct.field(pytree_node=False)
    binary: tuple[bool, ...] = struct.field(pytree_node=False)

    def strength(self) -> np.ndarray:
        """(features, concepts): |2·AUROC - 1| (Somers' D) or |r|, both 0 at chance and 1 for a
        perfect (or perfectly inverted) detector; -1 where undefined."""
        strength = np.abs(np.where(np.asarray(self.binary)[None], 2 * self.score - 1, self.score))
        return np.nan_to_num(strength, nan=-1.0)

    def best(self) -> list[tuple[str, float]]:
        """Per feature, the concept it tracks best (by ``strength``)."""
        j = self.strength().argmax(1)
        return [(self.concepts[c], float(self.score[i, c])) for i, c in enumerate(j)]

    def best_feature(self) -> dict[str, tuple[int, float]]:
        """Per concept, the feature that detects it best (highest AUROC or correlation)."""
        s = np.nan_to_num(self.score, nan=-np.inf)
        return {c: (int(s[:, j].argmax()), float(self.score[s[:, j].argmax(), j])) for j, c in enumerate(self.concepts)}


def match_concepts(features, concepts: Mapping[str, np.ndarray]) -> ConceptMatch:
    """Score every feature against every concept in one pass (ranks for AUROC, with ties
    averaged, so a feature that is 0 on most states is scored fairly)."""
    f = _matrix(features)
    names = tuple(concepts)
    ys = [np.asarray(concepts[n], np.float64).reshape(-1) for n in names]
    for n, y in zip(names, ys):
        if y.shape[0] != f.shape[0]:
            raise ValueError(f"concept {n!r} has {y.shape[0]} values for {f.shape[0]} states")
    binary = tuple(is_binary(y) for y in ys)
    score = np.full((f.shape[1], len(names)), np.nan)
    ranks = rankdata(f, axis=0)
    centred = f - f.mean(0)
    norms = np.linalg.norm(centred, axis=0)
    for j, (y, binary_y) in enumerate(zip(ys, binary)):
        if binary_y:
            pos = y.sum()
            neg = y.size - pos
            if pos and neg:
                score[:, j] = (ranks.T @ y - pos * (pos + 1) / 2) / (pos * neg)
        else:
            yc = y - y.mean()
            denom = norms * np.linalg.norm(yc)
            with np.errstate(invalid="ignore", divide="ignore"):
                score[:, j] = np.where(denom > 0, (centred.T @ yc) / denom, np.nan)
    return ConceptMatch(score, names, binary)


def _f1(tp, fp, fn):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0)


def _on(f: np.ndarray, maxima: np.ndarray, t: float) -> np.ndarray:
    return (f > t * maxima) & (f > 0)


def _binary_table(table) -> np.ndarray:
    y = np.asarray(table)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or not is_binary(y):
        raise ValueError(f"concepts must be a binary (states, concepts) table; got shape {y.shape} "
                         f"with values {np.unique(y)[:5]}")
    return y.astype(np.float64)


def coverage(features, concepts, thresholds: Sequence[float] = THRESHOLDS) -> np.ndarray:
    """Per binary concept (columns of ``concepts``, ``(states, c)``), the best F1 of any single
    feature read as "fires above ``t`` × its maximum", over ``thresholds``; the mean of this is
    Karvonen et al.'s coverage."""
    f, y = _matrix(features), _binary_table(concepts)
    maxima = f.max(0)
    best = np.zeros(y.shape[1])
    for t in thresholds:
        on = _on(f, maxima, t).astype(np.float64)
        tp = on.T @ y
        fp = on.sum(0)[:, None] - tp
        fn = y.sum(0)[None] - tp
        best = np.maximum(best, _f1(tp, fp, fn).max(0))
    return best


def board_reconstruction_f1(features, board, thresholds: Sequence[float] = THRESHOLDS,
                            precision: float = 0.95, split: float = 0.5) -> float:
    """How well the features spell out the board: on the first ``split`` of the states, a
    feature becomes a detector of a per-square fact (a column of ``board``) when it fires on
    some state and its precision for it is at least ``precision``; on the rest, every fact a
    firing detector names is predicted. F1 over all (state, fact) cells, best threshold."""
    f, y = _matrix(features), _binary_table(board)
    if f.shape[0] != y.shape[0]:
        raise ValueError(f"features cover {f.shape[0]} states and the board {y.shape[0]}")
    cut = round(split * f.shape[0])
    if not 0 < cut < f.shape[0]:
        raise ValueError(f"split={split} leaves no states on one side of {f.shape[0]}")
    maxima = f[:cut].max(0)
    best = 0.0
    for t in thresholds:
        on_train = _on(f[:cut], maxima, t).astype(np.float64)
        fired = on_train.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = (on_train.T @ y[:cut]) / fired[:, None]
        detects = (fired[:, None] > 0) & (prec >= precision)  # (features, facts)
        predicted = (_on(f[cut:], maxima, t).astype(np.float64) @ detects) > 0
        truth = y[cut:] > 0
        tp = np.sum(predicted & truth)
        best = max(best, float(_f1(tp, np.sum(predicted & ~truth), np.sum(~predicted & truth))))
    return best


def square_table(squares: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Per-square facts ``{name: (states, squares)}`` as one ``(states, facts)`` table and its
    column names (``"own_piece@4"``)."""
    columns, names = [], []
    for name, table in squares.items():
        t = np.asarray(table).reshape(len(np.asarray(table)), -1)
        columns.append(t)
        names += [f"{name}@{i}" for i in range(t.shape[1])]
    return np.concatenate(columns, 1).astype(np.float64), names


__all__ = ["THRESHOLDS", "ConceptMatch", "board_reconstruction_f1", "coverage", "is_binary", "match_concepts",
           "square_table", "state_features"]
