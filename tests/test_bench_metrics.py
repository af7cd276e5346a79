"""Benchmark metrics on toy cases whose values are worked out by hand (docs/BENCH_METRICS.md)."""

import numpy as np
import pytest

from rljaxinterp.bench import metrics as M

TRUTH = np.array([1, 0, 1])  # a 3-node circuit: nodes 0 and 2 are in it


# -- AUROC and precision@k ---------------------------------------------------------------------
@pytest.mark.parametrize("scores, value", [
    ((0.9, 0.2, 0.6), 1.0),   # both true nodes above the false one
    ((0.9, 0.6, 0.2), 0.5),   # pairs (0.9 > 0.6) won, (0.2 < 0.6) lost: 1/2
    ((0.9, 0.6, 0.6), 0.75),  # (0.9 > 0.6) won, (0.6 = 0.6) tie counts 1/2: 1.5/2
    ((0.1, 0.9, 0.2), 0.0),   # the false node above both true ones
])
def test_auroc_hand_values(scores, value):
    assert M.auroc(np.array(scores), TRUTH) == pytest.approx(value)


def test_auroc_flattens_and_ignores_scale():
    s = np.array([[0.9, 0.2], [0.6, 0.1]])
    t = np.array([[1, 0], [1, 0]])
    assert M.auroc(s, t) == 1.0
    assert M.auroc(1000 * s - 7, t.astype(bool)) == 1.0


@pytest.mark.parametrize("scores, truth, match", [
    ((0.1, 0.2, 0.3), (1, 1, 1), "both classes.*3 positives and 0 negatives"),
    ((0.1, 0.2, 0.3), (0, 0, 0), "both classes.*0 positives and 3 negatives"),
    ((0.1, 0.2), (1, 0, 1), r"same shape: got \(2,\) and \(3,\)"),
    ((0.1, 0.2, 0.3), (1, 0, 2), "truth must be binary"),
    ((0.1, np.nan, 0.3), (1, 0, 1), "scores contain NaN"),
])
def test_auroc_bad_input(scores, truth, match):
    with pytest.raises(ValueError, match=match):
        M.auroc(np.array(scores), np.array(truth))


@pytest.mark.parametrize("scores, k, value", [
    ((0.9, 0.2, 0.6), None, 1.0),  # k = 2 true nodes; top 2 = nodes 0, 2
    ((0.9, 0.6, 0.2), None, 0.5),  # top 2 = nodes 0, 1
    ((0.9, 0.6, 0.6), None, 0.5),  # tie between nodes 1 and 2: index order puts node 1 first
    ((0.9, 0.6, 0.2), 1, 1.0),
    ((0.9, 0.6, 0.2), 3, 2 / 3),
])
def test_precision_at_k_hand_values(scores, k, value):
    assert M.precision_at_k(np.array(scores), TRUTH, k) == pytest.approx(value)



def test_ties_keep_index_order_on_a_large_array():
    # 50 tied top scores; a non-stable sort (numpy's quicksort at this size) shuffles them
    scores = np.array([1.0, 0.0] * 50)
    first_ten_tied = np.zeros(100, bool)
    first_ten_tied[0:20:2] = True
    assert M.precision_at_k(scores, first_ten_tied) == 1.0
    np.testing.assert_array_equal(M.ranked_circuits(scores, [0.1], absolute=False)[0], first_ten_tied)

@pytest.mark.parametrize("k", [0, 4])
def test_precision_at_k_bad_k(k):
    with pytest.raises(ValueError, match=f"k must be between 1 and the number of elements \\(3\\): got {k}"):
        M.precision_at_k(np.array([0.9, 0.2, 0.6]), TRUTH, k)


def test_f1():
    # TP = 1 (node 0), FP = 1 (node 1), FN = 1 (node 2): 2 / (2 + 1 + 1)
    assert M.f1(np.array([1, 1, 0]), TRUTH) == 0.5
    assert M.f1(TRUTH.astype(bool), TRUTH) == 1.0
    assert M.f1(np.zeros(3), TRUTH) == 0.0
    with pytest.raises(ValueError, match="truth has no positives"):
        M.f1(np.array([1, 0, 0]), np.zeros(3))


# -- faithfulness and its curve ----------------------------------------------------------------
def test_faithfulness_hand_values():
    f = M.faithfulness(2.5, 1.0, 3.0)  # (2.5 - 1) / (3 - 1)
    assert isinstance(f, float) and f == 0.75
    np.testing.assert_allclose(M.faithfulness(np.array([1.0, 3.0, 4.0, 0.0]), 1.0, 3.0), [0, 1, 1.5, -0.5])
    with pytest.raises(ValueError, match="no effect to explain"):
        M.faithfulness(2.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="no effect to explain"):
        M.faithfulness(np.array([2.0, 2.0]), np.array([1.0, 1.0]), np.array([3.0, 1.0]))


def test_curve_areas_hand_drawn():
    # f jumps to 1 at half the nodes: CPR = 0.5 * (0 + 1) / 2 + 0.5 * (1 + 1) / 2
    assert M.faithfulness_curve_areas([0, 0.5, 1], [0, 1, 1]) == pytest.approx({"cpr": 0.75, "cmd": 0.25})
    # overshoot counts against CMD: |1 - f| = (1, 1, 0) -> 0.5 * 1 + 0.5 * 0.5
    assert M.faithfulness_curve_areas([0, 0.5, 1], [0, 2, 1]) == pytest.approx({"cpr": 1.25, "cmd": 0.75})
    # only the given points: [0.5, 1] alone is half the width
    assert M.faithfulness_curve_areas([0.5, 1], [1, 1]) == pytest.approx({"cpr": 0.5, "cmd": 0.0})


@pytest.mark.parametrize("sizes, f, match", [
    ([0, 0.5, 0.5], [0, 1, 1], "strictly increasing"),
    ([0, 0.5, 1.5], [0, 1, 1], "in \\[0, 1\\]"),
    ([0.5], [1], "at least two points"),
    ([0, 1], [0, 1, 1], "same shape"),
])
def test_curve_areas_bad_input(sizes, f, match):
    with pytest.raises(ValueError, match=match):
        M.faithfulness_curve_areas(sizes, f)


def test_ranked_circuits_signed_vs_absolute():
    scores = np.array([0.5, -2.0, 0.1])  # node 1 matters most, but by pushing the metric down
    sizes = [0, 1 / 3, 2 / 3, 1]
    signed = M.ranked_circuits(scores, sizes, absolute=False)  # order 0, 2, 1
    absolute = M.ranked_circuits(scores, sizes, absolute=True)  # order 1, 0, 2
    assert signed.dtype == bool and signed.shape == (4, 3)
    np.testing.assert_array_equal(signed, [[0, 0, 0], [1, 0, 0], [1, 0, 1], [1, 1, 1]])
    np.testing.assert_array_equal(absolute, [[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 1]])
    # round half up: 0.125 of 4 nodes is half a node -> 1 node
    assert M.ranked_circuits(np.arange(4.0), [0.125], absolute=False).sum() == 1
    with pytest.raises(ValueError, match="fractions in \\[0, 1\\]"):
        M.ranked_circuits(scores, [1.5], absolute=True)


def test_ranking_choice_changes_cpr_and_cmd():
    """MIB issue #19 in miniature: an additive model m(C) = sum of node contributions, scored
    by the exact contributions, gives different CPR and CMD under the two rankings."""
    contrib = np.array([1.0, -1.0, 0.5])  # m(full) = 0.5, m(empty) = 0
    sizes = np.array([0, 1 / 3, 2 / 3, 1])

    def areas(absolute):
        masks = M.ranked_circuits(contrib, sizes, absolute)
        return M.faithfulness_curve_areas(sizes, M.faithfulness(masks @ contrib, 0.0, contrib.sum()))

    # signed order 0, 2, 1: f = (0, 2, 3, 1); absolute order 0, 1, 2: f = (0, 2, 0, 1)
    assert areas(False) == pytest.approx({"cpr": 11 / 6, "cmd": 7 / 6})
    assert areas(True) == pytest.approx({"cpr": 5 / 6, "cmd": 5 / 6})


# -- causal abstraction, probes --------------------------------------------------------------
def test_interchange_intervention_accuracy():
    assert M.interchange_intervention_accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    # vector outputs: a pair counts only if all entries match
    assert M.interchange_intervention_accuracy(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [1, 0]])) == 0.5
    with pytest.raises(ValueError, match="at least one counterfactual pair"):
        M.interchange_intervention_accuracy(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="same shape"):
        M.interchange_intervention_accuracy(np.array([0, 1]), np.array([0, 1, 1]))


def test_selectivity():
    assert M.selectivity(0.9, 0.7) == pytest.approx(0.2)


# -- attribution maps --------------------------------------------------------------------------
def test_attribution_mass_shared_mask_and_zero_state():
    attr = np.array([[3.0, -1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 2.0]])
    # 3/4, 0 (no attribution at all), 1/4 -> mean 1/3
    with pytest.warns(RuntimeWarning, match="1 of 3 states have zero total attribution"):
        assert M.attribution_mass(attr, np.array([1, 0, 0])) == pytest.approx(1 / 3)


def test_attribution_mass_per_state_mask_and_grid():
    attr = np.array([[3.0, -1.0, 0.0], [1.0, 1.0, 2.0]])
    assert M.attribution_mass(attr, np.array([[1, 0, 0], [0, 0, 1]])) == pytest.approx((0.75 + 0.5) / 2)
    grid = np.array([[[2.0, -2.0], [0.0, 4.0]]])  # one state, 2x2 board
    assert M.attribution_mass(grid, np.array([[0, 0], [1, 1]])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"true_mask must have shape \(3,\) or \(2, 3\): got \(2,\)"):
        M.attribution_mass(attr, np.array([1, 0]))


def test_spearman():
    a = np.array([0.3, 1.0, -2.0, 5.0])
    assert M.spearman(a, a) == pytest.approx(1.0)
    assert M.spearman(a, np.exp(a)) == pytest.approx(1.0)  # only ranks count
    assert M.spearman(a, -a) == pytest.approx(-1.0)
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): centred dot 4.5 over sqrt(4.5 * 5)
    x, y = np.array([1, 2, 2, 3]), np.array([1, 3, 2, 4])
    assert M.spearman(x, y) == pytest.approx(3 / np.sqrt(10))
    with pytest.raises(ValueError, match="constant input"):
        M.spearman(np.ones(4), a)


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, (6, 5)), rng.integers(0, 3, (6, 5))  # many ties, 2-D maps
    assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x.ravel(), y.ravel()).statistic)


def test_symmetry_error():
    x = np.arange(9.0).reshape(3, 3)
    saliency = lambda board: 2 * board  # equivariant under any permutation
    assert M.symmetry_error(saliency(np.fliplr(x)), np.fliplr(saliency(x))) == 0.0
    # mean |(1, 2) - (1, 4)| = 1 over mean |(1, 4)| = 2.5
    assert M.symmetry_error(np.array([1.0, 2.0]), np.array([1.0, 4.0])) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="all zero"):
        M.symmetry_error(np.ones(2), np.zeros(2))


# -- directions --------------------------------------------------------------------------------
def test_best_cosine_rotated_axes():
    planted = np.eye(2)
    rot90 = np.array([[0.0, -1.0], [1.0, 0.0]])
    # rotating the axes by 90 degrees maps x -> y and y -> -x: both recovered up to sign
    np.testing.assert_allclose(M.best_cosine(planted @ rot90.T, planted), [1.0, 1.0])
    c = np.cos(np.pi / 4)
    rot45 = np.array([[c, -c], [c, c]])
    np.testing.assert_allclose(M.best_cosine(planted @ rot45.T, planted), [c, c])
    # one found direction, three planted ones, found one scaled
    np.testing.assert_allclose(M.best_cosine(np.array([[5.0, 0, 0]]), np.eye(3)), [1, 0, 0])


@pytest.mark.parametrize("found, planted, match", [
    (np.zeros((1, 2)), np.eye(2), "zero norm"),
    (np.eye(3), np.eye(2), "same d"),
    (np.zeros((0, 2)), np.eye(2), "no found directions"),
])
def test_best_cosine_bad_input(found, planted, match):
    with pytest.raises(ValueError, match=match):
        M.best_cosine(found, planted)
