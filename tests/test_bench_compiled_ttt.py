"""The compiled tic-tac-toe rule network: exact units, exact moves, and interventions that
behave as its truth says."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import interp
from rljaxinterp.bench import compiled_ttt as ct

# (board, rule, move, decision squares); 0 = X (first mover), 1 = O, -1 empty.
HAND_BUILT = [
    ([0, 0, -1, -1, 1, -1, -1, -1, 1], "win", 2, [0, 1, 2]),
    ([0, 0, 1, -1, 1, -1, -1, -1, -1], "block", 6, [2, 4, 6]),
    ([-1, 0, -1, 0, -1, 1, -1, 1, -1], "fork", 0, [0, 1, 3]),
    ([-1, 0, -1, 0, 1, -1, -1, -1, -1], "block_fork", 0, [0, 1, 3]),
    ([-1] * 9, "centre", 4, [4]),
    ([1, -1, -1, -1, 0, -1, -1, -1, -1], "opposite_corner", 8, [0, 8]),
    ([-1, -1, -1, -1, 0, -1, -1, -1, -1], "empty_corner", 0, [0]),
    ([0, -1, 1, 1, 0, 0, 0, -1, 1], "empty_side", 1, [1]),
]
# X (4, 7) wins at 1 down the middle column; no block, fork or block-fork anywhere, and without
# the win the opposite corner 0 is next
ONLY_WIN = np.array([-1, -1, -1, -1, 0, -1, 1, 0, 1])


@pytest.fixture(scope="module")
def compiled():
    return ct.make_compiled()


@pytest.fixture(scope="module")
def report(compiled):
    model, params, _ = compiled
    return ct.verify(model, params)


def _move(model, params, boards, interventions=None) -> np.ndarray:
    obs = jnp.asarray(ct.observations(boards))
    logits = np.asarray(interp.run_with_interventions(model, params, obs, interventions).logits)
    return np.argmax(np.where(np.asarray(boards) < 0, logits, -np.inf), -1)


def _mask(truth: ct.Truth, site: str, prefix: str) -> jax.Array:
    return jnp.asarray([name.startswith(prefix) for name in truth.unit_concepts[site]], jnp.float32)


def test_params_fit_the_module():
    model = ct.CompiledRules()
    init = model.init(jax.random.key(0), jnp.zeros((1, 3, 3, 2)))["params"]
    shapes = jax.tree.map(lambda a: a.shape, init)
    assert jax.tree.map(lambda a: a.shape, ct.compiled_params()) == shapes


def test_verify_is_exhaustive_and_exact(report):
    assert report["positions"] == 5478
    assert report["nonterminal"] == report["moves_match"] == 4520
    assert report["units_checked"] == sum(len(v) for v in ct.unit_names().values())
    assert sum(report["rule_counts"].values()) == 4520
    share = report["optimal_share"]
    # a win, a block (else the opponent wins next), and a fork (two threats, opponent has none) are always optimal
    for rule in ("win", "block", "fork", "opposite_corner", "empty_corner", "empty_side"):
        assert share[rule] == 1.0, rule
    # the simple block-fork and "take the centre" are not
    assert round(share["block_fork"] * report["rule_counts"]["block_fork"]) == 205
    assert report["rule_counts"]["block_fork"] == 254
    assert round(share["centre"] * report["rule_counts"]["centre"]) == 109
    assert report["rule_counts"]["centre"] == 129


def test_observation_planes_match_environment():
    boards, obs, _, _ = ct._reachable()
    assert np.array_equal(obs, ct.observations(boards))


@pytest.mark.parametrize(("board", "rule", "move", "squares"), HAND_BUILT, ids=[h[1] for h in HAND_BUILT])
def test_hand_built_boards(compiled, board, rule, move, squares):
    model, params, truth = compiled
    assert ct.rule_applied(board) == rule
    assert ct.rule_move(board) == move
    assert truth.rule_of([board]) == [rule]
    assert np.flatnonzero(truth.decision_squares([board])[0]).tolist() == squares
    assert _move(model, params, np.array([board]))[0] == move


def test_terminal_boards_have_no_rule(compiled):
    won = [0, 0, 0, 1, 1, -1, -1, -1, -1]
    assert ct.rule_move(won) == -1 and ct.rule_applied(won) == "none"
    assert not compiled[2].decision_squares([won]).any()


def test_truth_layout_matches_sites(compiled):
    model, params, truth = compiled
    infos = interp.site_info(model, jnp.zeros((1, 3, 3, 2)), params)
    for site, names in truth.unit_concepts.items():
        assert infos[site].shape == (len(names),)
        assert infos[site].axes == ("unit",)
        assert infos[site].produced_by is not None
    lines = truth.circuit["lines.post"]
    assert (~lines).sum() == 16
    assert all(n.startswith("three_") for n, m in zip(truth.unit_concepts["lines.post"], lines) if not m)
    assert all(truth.circuit[s].all() for s in ("singles.post", "forks.post", "rules.post", "choice.post"))


def test_ablating_win_units_changes_only_a_win_decision(compiled):
    model, params, truth = compiled
    board = ONLY_WIN[None]
    assert truth.rule_of(board) == ["win"] and _move(model, params, board)[0] == 1
    for site, prefix in (("rules.post", "win_"), ("choice.post", "choice_win_")):
        ablated = _move(model, params, board, interp.zero_ablate(site, _mask(truth, site, prefix)))
        assert ablated[0] == 0, site
    # off the decision's circuit: the value-only units, and the block rule that does not fire here
    for site, prefix in (("lines.post", "three_"), ("rules.post", "block_"), ("lines.post", "two_opp_")):
        assert _move(model, params, board, interp.zero_ablate(site, _mask(truth, site, prefix)))[0] == 1, prefix


def test_remove_unit_equals_zero_ablation(compiled):
    model, params, truth = compiled
    _, obs, _, _ = ct._reachable()
    obs = jnp.asarray(obs)
    unit = truth.unit_concepts["lines.post"].index("two_own_line4_sq1")
    edited = interp.remove_unit(model, params, "lines.post", unit, obs)
    removed = model.apply({"params": edited}, obs)
    ablated = interp.run_with_interventions(
        model, params, obs, interp.zero_ablate("lines.post", interp.unit_mask((ct.N_LINES_UNITS,), unit))
    )
    assert np.array_equal(np.asarray(removed.logits), np.asarray(ablated.logits))
    assert np.array_equal(np.asarray(removed.value), np.asarray(ablated.value))
    # that unit is the only reason the win rule fires at 1 on this board; with it gone the
    # paired single unit reads relu(open - 2 two) = 2, so the fork rule fires there instead
    _, cache = interp.run_with_cache(model, edited, jnp.asarray(ct.observations(ONLY_WIN[None])))
    rules = dict(zip(truth.unit_concepts["rules.post"], np.asarray(cache["rules.post"][0]), strict=True))
    assert rules["win_sq1"] == 0 and rules["fork_sq1"] == 1


def test_corrupted_unit_is_named(compiled):
    model, params, _ = compiled
    unit = 5
    bad = interp.edit_leaf(params, "lines/bias", lambda b: b.at[unit].add(1.0))
    name = ct.unit_names()["lines"][unit]
    with pytest.raises(ValueError, match=rf"lines\.post\[{unit}\] \({name}\)"):
        ct.verify(model, bad)


def test_corrupted_readout_names_the_position(compiled):
    model, params, _ = compiled
    bad = interp.edit_leaf(params, "policy/bias", lambda b: b.at[8].add(3.0))
    with pytest.raises(ValueError, match=r"the network plays 8 but rule"):
        ct.verify(model, bad)
