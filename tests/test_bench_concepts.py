"""Probes, steering and the saliency sanity checks against the compiled network's known concepts:
the oracles are perfect, the random rows near chance, the controls separate a real probe from a
memorising one, and bad method output is refused with a message naming the shape."""

import jax
import numpy as np
import pytest

from rljaxinterp.bench import compiled_ttt, concepts, leaderboard


@pytest.fixture(scope="module")
def setup():
    model, params, _ = compiled_ttt.make_compiled()
    task = concepts.make_task(0)
    untrained = model.init(jax.random.key(1000), task.obs[:1])["params"]
    return concepts.compiled_network(model, params, untrained), task


def _row(task, board) -> np.ndarray:
    obs = np.asarray(task.obs).reshape(len(task.obs), -1)
    return np.flatnonzero((obs == compiled_ttt.observations(np.array([board])).reshape(1, -1)).all(1))


def test_the_task_splits_every_live_position_once_and_its_labels_are_the_rule_units(setup):
    net, task = setup
    assert len(task.obs) == 4520 and np.intersect1d(task.train, task.test).size == 0
    assert len(task.train) + len(task.test) == len(task.obs)
    assert task.names == concepts.CONCEPTS and list(task.moves) == [*range(9), *range(9)]
    # the labels are the network's own rules units on every position (verified network)
    x = concepts.activations(net.model, net.params, task.obs, net.site)
    np.testing.assert_array_equal(x[:, net.truth.argmax(1)] > 0.5, task.labels)
    # win at s: s is empty and two of the mover's stones share a line with it (hand check, one board)
    board = np.array([0, 0, -1, -1, 1, -1, 1, -1, -1])  # X to move (X: 0, O: 1): X wins at 2, O threatens 2-4-6
    row = _row(task, board)
    assert row.size == 1 and set(np.flatnonzero(task.labels[row[0]])) == {2, 9 + 2}
    assert not task.quiet[row[0]].any()  # a win is there, so no concept calls for a new move
    board[6] = -1  # without O's stone at 6: the win remains, the threat is gone
    board[8] = 1
    row = _row(task, board)
    assert row.size == 1 and set(np.flatnonzero(task.labels[row[0]])) == {2}
    np.testing.assert_array_equal(task.legal[row[0]], board == -1)


@pytest.fixture(scope="module")
def c4_task():
    return concepts.make_task(0, "connect_four")


@pytest.mark.slow
def test_connect_four_concepts_agree_with_playing_the_move(c4_task):
    """Independent check: ``win_col{c}`` holds exactly where dropping in c ends the game with a
    win for the mover (pgx's own rules), on the first 300 positions."""
    from rljaxinterp.envs.registry import make as make_env
    from rljaxinterp.envs.sampling import sample_states

    env = make_env("connect_four")
    states, _ = sample_states(env, concepts.C4_POSITIONS, jax.random.key(0))  # the positions make_task drew
    states = jax.tree.map(lambda x: x[:300], states)
    np.testing.assert_array_equal(np.asarray(states.observation, np.float32), np.asarray(c4_task.obs[:300]))
    for c in range(7):
        after = jax.vmap(env.step)(states, jax.numpy.full(300, c), jax.random.split(jax.random.key(1), 300))
        won = np.asarray(after.terminated) & (np.abs(np.asarray(after.rewards)).max(-1) > 0)
        legal = c4_task.legal[:300, c]
        np.testing.assert_array_equal(c4_task.labels[:300, c], won & legal)
    assert c4_task.names[:2] == ("win_col0", "win_col1") and c4_task.labels.shape == (concepts.C4_POSITIONS, 14)
    assert 0.01 < c4_task.labels.mean() < 0.2


def test_bad_game_names_what_is_allowed():
    with pytest.raises(ValueError, match=r"game 'chess' is not allowed; use one of \('tic_tac_toe', 'connect_four'\)"):
        concepts.make_task(0, "chess")


def test_probe_oracle_is_perfect_random_is_chance_and_ridge_reads_the_unit(setup):
    net, task = setup
    key = jax.random.key(0)
    oracle = concepts.score_probe("oracle", None, net, task, key)
    assert oracle["f1"] == 1.0 and oracle["weight_on_units"] == 1.0 and oracle["f1_untrained"] < 0.2
    rand = concepts.score_probe("random probe", concepts.PROBES["random probe"], net, task, key)
    assert rand["f1"] < 0.2 and abs(rand["selectivity"]) < 0.1
    ridge = concepts.score_probe("ridge probe", concepts.PROBES["ridge probe"], net, task, key)
    assert ridge["f1"] > 0.95 and ridge["selectivity"] > 0.9 and ridge["weight_on_units"] > 0.9
    assert ridge["gap"] > 0.5 and ridge["f1_board"] < 0.3  # the network computes it; the board alone does not give it


def test_steering_oracle_acts_on_the_concept_and_a_random_direction_does_not(setup):
    net, task = setup
    key = jax.random.key(0)
    oracle = concepts.score_steering("oracle", None, net, task, key)
    assert oracle["target_x1"] == 1.0 and oracle["off_target_x1"] == 0.0 and oracle["collateral_x1"] == 0.0
    rand = concepts.score_steering("random direction", concepts.DIRECTIONS["random direction"], net, task, key)
    assert rand["target_x1"] < 0.5 and rand["collateral_x1"] > 0.1
    mean_diff = concepts.score_steering("mean difference", concepts.DIRECTIONS["mean difference"], net, task, key)
    assert mean_diff["target_x1"] > 0.9


def test_a_zero_vector_changes_no_move(setup):
    net, task = setup
    zeros = np.zeros((2, 49), np.float32)
    moves = np.asarray(concepts._steered_moves(net.model, net.params, task.obs[:64], net.site, zeros))
    assert (moves == moves[-1]).all()


def test_counterfactual_logits_with_the_sites_own_activation_are_the_plain_logits(setup):
    net, task = setup
    cf = concepts._counterfactuals(net, task)
    rows = np.arange(50)
    x = concepts.activations(net.model, net.params, task.obs[task.train[rows]], net.site)
    plain = net.model.apply({"params": net.params}, task.obs[task.train[rows]]).logits
    np.testing.assert_array_equal(np.asarray(cf.logits(rows, x)), np.asarray(plain))
    assert cf.quiet.shape == (len(task.train), 18)


@pytest.mark.slow
def test_das_direction_steers_the_compiled_network(setup):
    """DAS learns each concept's direction from counterfactuals alone (measured 0.911 target rate
    at 1x, where a random direction reaches 0.2)."""
    net, task = setup
    das = concepts.score_steering("DAS direction", concepts.das_direction, net, task, jax.random.key(0))
    assert das["target_x1"] > 0.8 and das["off_target_x1"] < 0.05


def test_bad_method_output_is_refused(setup):
    net, task = setup
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"method 'flat' returned probe weights shaped \(49,\); need \(18, 49\)"):
        concepts.score_probe("flat", lambda x, y, k: (np.ones(49), np.zeros(18)), net, task, key)
    with pytest.raises(ValueError, match=r"must return \(weights \(concepts, width\), biases \(concepts,\)\); got ndarray"):
        concepts.score_probe("one", lambda x, y, k: np.ones((18, 49)), net, task, key)
    with pytest.raises(ValueError, match="returned a zero direction"):
        concepts.score_steering("zero", lambda x, y, k: np.zeros((18, 49)), net, task, key)


def test_saliency_checks_separate_a_faithful_map_from_a_random_one():
    model, params, _ = compiled_ttt.make_compiled()
    task = leaderboard.make_tasks(64, 0)["attribution"]
    untrained = model.init(jax.random.key(1000), task.obs[:1])["params"]
    key = jax.random.key(0)
    check = lambda name: leaderboard.score_attribution_checks(leaderboard.METHODS[name], model, params, untrained,
                                                              task, key)
    occlusion, rand = check("occlusion"), check("random map")
    # the network is exactly equivariant, so occlusion's maps rotate with the board; a random map does not
    assert occlusion["symmetry"] < 1e-6 and rand["symmetry"] > 0.3
    # a map blind to the weights is identical on the randomised network
    assert rand["randomisation"] == 1.0 and occlusion["randomisation"] < 0.7
    assert check("oracle (attribution)") == {}


def test_scores_that_do_not_apply_are_null_in_the_json():
    import json

    row = {"f1_board": float("nan"), "per_seed": [float("nan"), 0.5], "n": 3}
    text = json.dumps(leaderboard._json_safe({"rows": {"oracle (probe)": row}}), allow_nan=False)
    assert json.loads(text) == {"rows": {"oracle (probe)": {"f1_board": None, "per_seed": [None, 0.5], "n": 3}}}
