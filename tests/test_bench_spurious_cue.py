"""The spurious-cue pair: model A reads the cue, model B ignores it (measured exactly), and
occlusion finds the cue on A and not on B, on the quick tier's positions."""

import dataclasses

import jax
import numpy as np
import pytest

from rljaxinterp.bench import leaderboard
from rljaxinterp.bench import spurious_cue as sc


@pytest.fixture(scope="module")
def pair():
    return sc.make_pair(0)  # trained and verified once (about 15 s on 2 shared cores)


@pytest.fixture(scope="module")
def task(pair):
    return leaderboard.make_cue_task(pair, leaderboard.TIERS["quick"]["positions"], 0)


def test_a_depends_on_the_cue_and_b_does_not(pair):
    a, b = pair.dependence["predictive"], pair.dependence["noise"]
    assert a["moved"] >= sc.MIN_DEPENDENCE_A and b["moved"] <= sc.MAX_DEPENDENCE_B
    assert a["follows"] > 0.9  # A plays where the cue is, wherever it is
    assert b["accuracy"] > 0.95  # B learned the rule moves from the board instead


def test_occlusion_finds_the_cue_on_a_and_not_on_b(pair, task):
    scores = leaderboard.score_cue(leaderboard.METHODS["occlusion"], pair, task, jax.random.key(0))
    assert scores["mass_A"] > scores["mass_B"] + leaderboard.CUE_MARGIN
    assert scores["mass_B"] < 1 / 9  # below a uniform map's share on one square
    assert scores["separates"] == 1.0


def test_oracle_and_random_bound_the_cue_scores(pair, task):
    oracle = leaderboard.score_cue(leaderboard.METHODS["oracle (attribution)"], pair, task, jax.random.key(0))
    assert oracle["mass_A"] == pytest.approx(task.depends["predictive"].mean())
    assert oracle["mass_B"] == pytest.approx(task.depends["noise"].mean())
    rand = leaderboard.score_cue(leaderboard.METHODS["random map"], pair, task, jax.random.key(0))
    assert rand["gap"] == 0.0 and rand["separates"] == 0.0  # the same map for both models


def test_cue_dependence_is_exact_on_a_hand_built_model(pair):
    # a model that plays the cue square when there is one: zero every weight, then let the cue
    # plane's inputs (every third feature) vote for their own square through the identity
    params = jax.tree.map(np.zeros_like, pair.params["noise"])
    kernel = np.zeros_like(params["layer0"]["kernel"])
    kernel[np.arange(9) * 3 + sc.CUE, np.arange(9)] = 1.0
    params["layer0"]["kernel"] = kernel
    params["layer1"]["kernel"] = np.eye(*params["layer1"]["kernel"].shape, dtype=np.float32)
    params["policy_head"]["kernel"] = np.eye(*params["policy_head"]["kernel"].shape, dtype=np.float32)
    dep = sc.cue_dependence(pair.model, params)
    assert dep["moved"] == 1.0 and dep["follows"] == 1.0


def test_verify_names_the_measured_shares(pair):
    swapped = dataclasses.replace(pair, dependence={"predictive": pair.dependence["noise"],
                                                    "noise": pair.dependence["predictive"]})
    with pytest.raises(ValueError, match=r"changes the move in 0\.\d+ of live positions for model A \(need >= 0\.9\)"):
        sc.verify(swapped)


def test_training_is_deterministic_and_kinds_are_checked():
    first, second = sc.train("noise", 3, steps=20), sc.train("noise", 3, steps=20)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True))
    with pytest.raises(ValueError, match=r"cue kind 'both' is not allowed; use one of \('predictive', 'noise'\)"):
        sc.train("both", 0)
