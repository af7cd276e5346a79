"""The compiled tic-tac-toe strategy as shared-kernel convolutions: exact (square, channel)
units, the MLP's moves, and a truth laid out as the patching sweeps group the sites."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import interp
from rljaxinterp.bench import compiled_conv as cc
from rljaxinterp.bench import compiled_ttt as ct

# X (4, 7) wins at 1 down the middle column (see test_bench_compiled_ttt.ONLY_WIN)
ONLY_WIN = np.array([-1, -1, -1, -1, 0, -1, 1, 0, 1])


@pytest.fixture(scope="module")
def compiled():
    return cc.make_compiled_conv()


@pytest.fixture(scope="module")
def live():
    boards, obs, _, reference = ct._reachable()
    keep = np.array([move >= 0 for _, move in reference])
    return boards[keep], jnp.asarray(obs[keep]), np.array([move for _, move in reference])[keep]


def _moves(logits, boards) -> np.ndarray:
    return np.argmax(np.where(np.asarray(boards) < 0, np.asarray(logits), -np.inf), -1)


def _nonzero(cache, site: str) -> set[str]:
    names = cc.truth().element_concepts[site]
    return {names[i] for i in np.flatnonzero(np.ravel(np.asarray(cache[site][0])))}


@pytest.mark.slow
def test_params_fit_the_module():
    init = cc.CompiledConv().init(jax.random.key(0), jnp.zeros((1, 3, 3, 2)))["params"]
    assert jax.tree.map(jnp.shape, init) == jax.tree.map(jnp.shape, cc.compiled_params())


def test_verify_is_exhaustive(compiled):
    model, params, _ = compiled
    report = cc.verify(model, params)
    assert report["positions"] == 5478
    assert report["nonterminal"] == report["moves_match"] == 4520
    assert report["units_checked"] == 9 * sum(len(c) for c in cc.CHANNELS.values()) == 486
    assert report["rule_counts"]["block_fork"] == 254 and report["rule_counts"]["fork"] == 192


def test_every_live_move_equals_the_mlp_and_the_rules(compiled, live):
    model, params, _ = compiled
    boards, obs, moves = live
    assert len(boards) == 4520
    conv = _moves(model.apply({"params": params}, obs).logits, boards)
    mlp = _moves(ct.CompiledRules().apply({"params": ct.compiled_params()}, obs).logits, boards)
    assert np.array_equal(conv, moves) and np.array_equal(conv, mlp)
    assert moves.tolist() == [ct.rule_move(b) for b in boards]


def test_hand_checked_units(compiled):
    model, params, _ = compiled
    out, cache = interp.run_with_cache(model, params, jnp.asarray(ct.observations(ONLY_WIN[None])))
    assert _moves(out.logits, ONLY_WIN[None])[0] == 1
    lines = np.asarray(cache["lines.post"][0])
    ch = cc.CHANNELS["lines"].index
    assert lines[0, 1, ch("two_own_col")] == 1 and lines[0, 1, ch("open_own_col")] == 2
    assert lines[0, 1, ch("two_own_row")] == 0 and lines[0, 1, ch("two_own_diag")] == 0  # (0, 1) has no diagonal
    assert lines[..., ch("two_opp_row"):ch("open_own_row")].sum() == 0  # the opponent threatens nothing
    # one own stone on open row 3-4-5 (at 3 and 5); one opponent stone on open columns 0-3-6, 2-5-8
    assert _nonzero(cache, "singles.post") - {f"nothreat_{o}_sq{s}" for o in ct.OWNERS for s in range(9)} == {
        "single_own_line1_sq3", "single_own_line1_sq5", "single_opp_line3_sq0", "single_opp_line3_sq3",
        "single_opp_line5_sq2", "single_opp_line5_sq5"}
    assert "nothreat_own_sq1" not in _nonzero(cache, "singles.post")
    assert not _nonzero(cache, "forks.post")
    assert _nonzero(cache, "rules.post") == {"win_sq1", "opposite_corner_sq0", "opposite_corner_sq2",
                                             "empty_corner_sq0", "empty_corner_sq2", "empty_side_sq1",
                                             "empty_side_sq3", "empty_side_sq5"}
    assert _nonzero(cache, "choice.post") == {"choice_win_sq1", "choice_opposite_corner_sq0",
                                              "choice_opposite_corner_sq2", "choice_empty_side_sq3",
                                              "choice_empty_side_sq5"}


def test_truth_layout_matches_sites(compiled):
    model, params, truth = compiled
    infos = interp.site_info(model, jnp.zeros((1, 3, 3, 2)), params)
    for site, channels in truth.unit_concepts.items():
        assert infos[site].shape == (3, 3, len(channels)) and infos[site].axes == ("row", "col", "channel")
        assert infos[site].produced_by is not None
        assert len(truth.element_concepts[site]) == 9 * len(channels) == len(truth.element_circuit[site])
    assert truth.rule_of([ONLY_WIN]) == ["win"]
    # the element truth has exactly the MLP's units (three_* once per square of its line) plus dead ones
    for layer, names in ct.unit_names().items():
        live_names = {n.rsplit("_sq", 1)[0] if n.startswith("three_") else n
                      for n in truth.element_concepts[f"{layer}.post"] if not n.startswith("dead:")}
        assert live_names == set(names), layer
    win = cc.win_units("element")
    assert {n for s in win for n, w in zip(truth.element_concepts[s], win[s]) if w} == {
        n for n in (u for names in ct.unit_names().values() for u in names) if n.startswith(cc.WIN_PATH)}


def test_patching_a_site_with_its_own_activation_changes_nothing(compiled, live):
    model, params, _ = compiled
    obs = live[1]
    out, cache = interp.run_with_cache(model, params, obs)
    for site in cc.hidden_sites():
        patched = interp.run_with_interventions(model, params, obs, interp.patch(site, cache[site]))
        assert np.array_equal(np.asarray(patched.logits), np.asarray(out.logits)), site
        assert np.array_equal(np.asarray(patched.value), np.asarray(out.value)), site


@pytest.mark.slow
def test_patching_sweep_layout_matches_truth(compiled, live):
    model, params, truth = compiled
    boards, obs, moves = live
    wins = np.flatnonzero(np.array(truth.rule_of(boards)) == "win")[:24]
    obs, data = obs[wins], {"move": jnp.asarray(moves[wins])}
    corrupted = obs[np.roll(np.arange(len(wins)), 1)]

    def metric(out, data):
        return jnp.take_along_axis(out.logits, data["move"][:, None], -1)[:, 0]

    units = interp.patching_sweep(model, params, obs, corrupted, metric, sites=cc.hidden_sites(),
                                  granularity="unit", metric_data=data)
    win = cc.win_units()
    for site in cc.hidden_sites():
        effect = np.asarray(units[site])
        assert effect.shape == (len(truth.unit_concepts[site]),) == win[site].shape, site
        assert not effect[~truth.circuit[site]].any(), site  # value-only channels never move a logit
    for site in ("rules.post", "choice.post"):  # resampling the win channel loses the win
        assert np.asarray(units[site])[win[site]].min() < 0
    elements = interp.patching_sweep(model, params, obs, corrupted, metric, sites=["rules.post"],
                                     granularity="element", metric_data=data)
    assert np.ravel(elements["rules.post"]).shape == (len(truth.element_concepts["rules.post"]),)


def test_corrupted_unit_is_named(compiled):
    model, params, _ = compiled
    channel = cc.CHANNELS["lines"].index("two_own_col")
    bad = interp.edit_leaf(params, "lines/bias", lambda b: b.at[channel].add(1.0))
    with pytest.raises(ValueError, match=r"lines\.post\[\d, \d, \d+\] \(two_own_col at square \d"):
        cc.verify(model, bad)


def test_corrupted_readout_names_the_position(compiled):
    model, params, _ = compiled
    side = len(ct.RULES) - 1  # the lowest priority worth more than a win
    bad = interp.edit_leaf(params, "policy/kernel", lambda k: k.at[0, 0, side, 0].set(10.0))
    with pytest.raises(ValueError, match=r"the network plays \d but rule"):
        cc.verify(model, bad)


def test_win_units_refuses_other_granularities():
    with pytest.raises(ValueError, match="granularity"):
        cc.win_units("position")


def test_remove_channel_equals_zero_ablation(compiled):
    model, params, _ = compiled
    obs = jnp.asarray(ct.observations(ONLY_WIN[None]))
    win = cc.CHANNELS["rules"].index("win")
    removed = model.apply({"params": interp.remove_unit(model, params, "rules.post", win, obs)}, obs)
    ablated = interp.run_with_interventions(model, params, obs,
                                            interp.zero_ablate("rules.post", interp.unit_mask((3, 3, 8), win)))
    assert np.array_equal(np.asarray(removed.logits), np.asarray(ablated.logits))
    assert _moves(removed.logits, ONLY_WIN[None])[0] == 0  # without the win, the opposite corner
