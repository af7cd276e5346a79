"""Edge-level truth and edge scores (issue #14): exact edge patching and edge attribution
patching agree with a toy worked out by hand; on the compiled network the oracle is perfect,
random is at chance, exact edge patching finds the win circuit's edges, and an edge patched
with its own clean activation changes nothing. Edge mean-ablation (the faithfulness curve)
agrees with a toy by hand and with the empty network, the full one and node ablation; at random
weights the scores are at chance within a layer. The SIIT MLPs' edge truth matches a count by
hand and the node truth (their leaderboard table: test_bench_leaderboard)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import interp
from rljaxinterp.bench import compiled_ttt, edges, leaderboard, metrics, siit
from rljaxinterp.models.base import ModelOutput
from rljaxinterp.models.sites import site


class Toy(nn.Module):
    """x (2) -> relu(W1 x) (2) -> W2 h (1 logit)."""

    @nn.compact
    def __call__(self, obs):
        x = site(self, "input", obs, axes=("feature",))
        pre = site(self, "hidden.pre", nn.Dense(2, name="hidden")(x), axes=("unit",))
        h = site(self, "hidden.post", nn.relu(pre), axes=("unit",))
        logits = site(self, "logits", nn.Dense(1, name="out")(h), axes=("action",))
        return ModelOutput(logits=logits, value=logits[..., 0])


TOY_DENSES = {"hidden": ("hidden.pre", ("input",)), "out": ("logits", ("hidden.post",))}
TOY_PARAMS = {"hidden": {"kernel": jnp.array([[1.0, -1.0], [2.0, 3.0]]), "bias": jnp.zeros(2)},
              "out": {"kernel": jnp.array([[3.0], [-2.0]]), "bias": jnp.zeros(1)}}


def first_logit(out, data):
    return out.logits[:, 0]


def test_toy_edge_effects_by_hand():
    """Clean x = (1, 0): pre = (1, -1), h = (1, 0), logit 3. Corrupted x = (0, 1): pre = (2, 3),
    h = (2, 3), so dx = (-1, 1), dh = (1, 3); d logit / d pre = (3, 0) (h1's ReLU is off).

    x0->h0 (W 1):  pre0 = 1 - 1 = 0, logit 0            exact -3, EAP  1 * -1 * 3 = -3
    x0->h1 (W -1): pre1 = -1 + 1 = 0, h1 stays 0        exact  0, EAP  0
    x1->h0 (W 2):  pre0 = 1 + 2 = 3, logit 9            exact +6, EAP  2 * 1 * 3 = +6
    x1->h1 (W 3):  pre1 = -1 + 3 = 2, logit 3 - 4 = -1  exact -4, EAP  0 (flat ReLU at the clean point)
    h0->out (W 3): logit 3 + 3 * 1 = 6                  exact +3, EAP  3
    h1->out (W -2): logit 3 - 2 * 3 = -3                exact -6, EAP -6
    """
    clean, corrupted = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]])
    args = (Toy(), TOY_PARAMS, clean, corrupted, first_logit, {})
    exact = edges.edge_patching(*args, denses=TOY_DENSES)
    eap = edges.edge_attribution_patching(*args, denses=TOY_DENSES)
    np.testing.assert_array_equal(exact["hidden"], [[-3, 0], [6, -4]])
    np.testing.assert_array_equal(exact["out"], [[3], [-6]])
    np.testing.assert_array_equal(eap["hidden"], [[-3, 0], [6, 0]])
    np.testing.assert_array_equal(eap["out"], [[3], [-6]])


def signed_logit(out, data):
    return out.logits[:, 0] * data["sign"]


def test_toy_edge_ablation_by_hand():
    """Positions x = (1, 0) and (0, 1): h = (1, 0) and (2, 3), logits 3 and 0; the means are
    x = (0.5, 0.5), h = (1.5, 1.5). m = mean of (+logit, -logit), so m(full) = 1.5 and m(empty)
    = 0 (every logit the same constant). An ablated edge sends W[u, v] mean(a_u).

    keep h0->out only:          h0 = relu(1 * 0.5 + 2 * 0.5) = 1.5 everywhere, m 0
    keep x0->h0, h0->out:       h0 = relu(x0 + 2 * 0.5) = (2, 1), logit 3 h0 - 2 * 1.5 = (3, 0), m 1.5
    keep x1->h1, h1->out:       h1 = relu(-0.5 + 3 x1) = (0, 2.5), logit 3 * 1.5 - 2 h1 = (4.5, -0.5), m 2.5
    """
    obs, data = jnp.array([[1.0, 0.0], [0.0, 1.0]]), {"sign": jnp.array([1.0, -1.0])}

    def keep(*on):
        masks = {"hidden": np.zeros((len(on) + 2, 2, 2)), "out": np.zeros((len(on) + 2, 2, 1))}
        masks["hidden"][-1] = masks["out"][-1] = 1  # last circuit: every edge
        for c, edges_on in enumerate(on, start=1):
            for layer, i, j in edges_on:
                masks[layer][c, i, j] = 1
        return masks  # first circuit: no edge

    masks = keep([("out", 0, 0)], [("hidden", 0, 0), ("out", 0, 0)], [("hidden", 1, 1), ("out", 1, 0)])
    m = edges.kept_edges_metric(Toy(), TOY_PARAMS, obs, signed_logit, data, masks, TOY_DENSES)
    np.testing.assert_allclose(m, [0.0, 0.0, 1.5, 2.5, 1.5], atol=1e-6)
    # the curve: ranking x0->h0 and h0->out first, then the rest
    scores = {"hidden": np.array([[4.0, 0.0], [0.0, 0.0]]), "out": np.array([[3.0], [0.0]])}
    curve = edges.faithfulness_curve(Toy(), TOY_PARAMS, obs, signed_logit, data, scores, [0, 1 / 6, 2 / 6, 1],
                                     TOY_DENSES)
    np.testing.assert_allclose(curve["curve"], [0.0, 0.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose([curve["cpr"], curve["cmd"]], [1 / 12 + 2 / 3, 1 / 6 + 1 / 12], atol=1e-6)


def test_curve_fractions_hold_the_ends_and_the_true_size():
    fr = edges.curve_fractions(20668, 147)
    assert fr[0] == 0 and fr[-1] == 1 and np.all(np.diff(fr) > 0) and 147 / 20668 in fr
    assert np.all(np.diff(fr[fr >= 0.05]) <= 0.05 + 1 / 20668) and np.sum(fr * 20668 <= 1078) > 20  # fine where curves rise
    np.testing.assert_allclose(fr * 20668, np.round(fr * 20668), atol=1e-6)  # each an exact k
    with pytest.raises(ValueError, match="fractions must be a 1-D grid from 0"):
        edges.faithfulness_curve(Toy(), TOY_PARAMS, jnp.ones((2, 2)), first_logit, {},
                                 {"hidden": np.ones((2, 2)), "out": np.ones((2, 1))}, [0.5, 1.0], TOY_DENSES)


@pytest.fixture(scope="module")
def compiled():
    model, params = compiled_ttt.CompiledRules(), compiled_ttt.compiled_params()
    task = leaderboard.make_tasks(128, 0)["circuit"]
    corrupted = task.obs[jax.random.permutation(jax.random.key(0), task.obs.shape[0])]
    return model, params, task, corrupted, edges.edge_truth(params, task.units)


def test_truth_is_the_win_path_between_board_and_logits(compiled):
    _, params, _, _, truth = compiled
    t = edges.flat(truth)
    names = np.array(edges.edge_names())
    assert t.size == names.size == sum(p["kernel"].size for layer, p in params.items() if layer in edges.DENSES)
    # 96 board -> two_own, 24 two_own -> nothreat_own, 9 each into win, choice_win and the logits
    assert 0 < t.sum() == 147 < t.size
    assert {k: int(v.sum()) for k, v in truth.items()} == {
        "lines": 96, "singles": 24, "forks": 0, "rules": 9, "choice": 9, "policy": 9}
    assert np.all(edges.flat({k: np.asarray(p["kernel"]) for k, p in params.items()})[t] != 0)
    assert not any(n.startswith(("own_", "opp_")) and "logit" in n for n in names[t])  # no legality skip
    for where, on in leaderboard.win_units().items():  # every win unit has an edge in and an edge out
        for unit in np.array(edges.unit_labels(where))[on]:
            assert any(n.endswith(f" -> {unit}") for n in names[t]), unit
            assert any(n.startswith(f"{unit} -> ") for n in names[t]), unit


def test_oracle_is_perfect_and_random_is_at_chance(compiled):
    model, params, task, corrupted, truth = compiled
    assert edges.score(truth, truth, params) == {"auroc": 1.0, "precision": 1.0, "auroc_wired": 1.0}
    draws = [edges.score(edges.random_scores(model, params, task.obs, corrupted, leaderboard.rule_logit, task.data,
                                             jax.random.key(i)), truth, params)["auroc"] for i in range(40)]
    assert abs(np.mean(draws) - 0.5) < 0.02


def test_exact_edge_patching_finds_the_win_edges(compiled):
    """Measured at 128 positions, seed 0: AUROC 0.957, precision 0.639, AUROC among the
    nonzero-weight edges 0.918 (weight magnitude alone: 0.972, 0.061, 0.381; EAP 0.591, 0.245, 0.576)."""
    model, params, task, corrupted, truth = compiled
    args = (model, params, task.obs, corrupted, leaderboard.rule_logit, task.data)
    exact = edges.score(edges.edge_patching(*args), truth, params)
    weight = edges.score(edges.weight_magnitude(*args), truth, params)
    eap = edges.score(edges.edge_attribution_patching(*args), truth, params)
    assert exact["auroc"] > 0.93 and exact["precision"] > 0.55 and exact["auroc_wired"] > 0.88
    assert exact["auroc_wired"] > weight["auroc_wired"] + 0.4 and exact["precision"] > weight["precision"] + 0.4
    assert exact["auroc_wired"] > eap["auroc_wired"] + 0.2


def test_patching_an_edge_with_its_clean_activation_changes_nothing(compiled):
    model, params, task, _, _ = compiled
    args = (model, params, task.obs, task.obs, leaderboard.rule_logit, task.data)
    for scores in (edges.edge_patching(*args), edges.edge_attribution_patching(*args)):
        assert all(np.all(s == 0.0) for s in scores.values())


def test_eap_is_exact_on_the_edges_into_the_logits(compiled):
    """The logits are linear in their inputs, so the first-order estimate is the effect."""
    model, params, task, corrupted, _ = compiled
    args = (model, params, task.obs, corrupted, leaderboard.rule_logit, task.data)
    exact, eap = edges.edge_patching(*args), edges.edge_attribution_patching(*args)
    assert np.abs(exact["policy"]).max() > 0.5
    np.testing.assert_allclose(eap["policy"], exact["policy"], atol=1e-5)


def test_leaderboard_section():
    tasks = [leaderboard.make_tasks(32, seed)["circuit"] for seed in (0, 1)]
    section = leaderboard.score_edge_section(tasks, 32)
    assert set(section["rows"]) == set(edges.METHODS) and section["truth_edges"] == 147
    oracle = section["rows"][edges.ORACLE]
    assert oracle["auroc"]["per_seed"] == [1.0, 1.0] and oracle["precision"]["mean"] == 1.0
    assert section["wall_s"] >= sum(sum(r["wall_s"]["per_seed"]) for r in section["rows"].values())
    result = {"tier": "quick", "seeds": 2, "positions": 32, "rows": {}, "wall_s": 1.0, "edges": section}
    text = leaderboard.markdown(result)
    assert "## Edges, compiled MLP" in text and "147 true edges among 20668 candidates" in text
    assert "| oracle (edges) | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000 |" in text
    assert "| CPR | CMD | f at true size | edge AUROC, untrained |" in text
    for row in section["rows"].values():  # every curve runs from the empty circuit to the full network
        assert row["curve"]["mean"][0] == 0.0 and row["curve"]["mean"][-1] == 1.0
        assert len(row["curve"]["mean"]) == len(section["fractions"])
    assert oracle["auroc_untrained"]["per_seed"] == [1.0, 1.0]


def test_bad_input_names_what_is_allowed(compiled):
    _, params, _, _, _ = compiled
    with pytest.raises(ValueError, match=r"unknown edge method\(s\) \['magic'\]; allowed: \['edge patching"):
        edges.score_edges(0, 8, ["magic"])
    with pytest.raises(ValueError, match=r"layer 'choice' has kernel \(49, 49\), but its senders \('forks.post',\)"):
        edges.edge_truth(params, denses={"choice": ("choice.pre", ("forks.post",))})
    with pytest.raises(ValueError, match=r"layer 'nope' is not in params; allowed:"):
        edges.edge_truth(params, denses={"nope": ("choice.pre", ("rules.post",))})


def test_edge_curve_ends_are_the_empty_and_the_full_network(compiled):
    """Every edge kept is the unedited network; none kept sends every sender's mean, so the
    (linear) logits are their mean over the positions; ablating every edge out of a site is
    node mean-ablation of that site."""
    model, params, task, _, truth = compiled
    shapes = {layer: np.shape(params[layer]["kernel"]) for layer in edges.DENSES}
    keep = {layer: np.stack([np.zeros(s), np.ones(s), np.ones(s)]) for layer, s in shapes.items()}
    keep["choice"][2] = 0  # every edge out of rules.post
    m = edges.kept_edges_metric(model, params, task.obs, leaderboard.rule_logit, task.data, keep)
    logits = model.apply({"params": params}, task.obs).logits
    mean_logits = jnp.broadcast_to(logits.mean(0), logits.shape)
    rules_mean = interp.ablation.ablation_values(model, params, task.obs, "mean", ["rules.post"])
    node = interp.run_with_interventions(model, params, task.obs, [interp.patch("rules.post", rules_mean["rules.post"])])
    want = [np.take_along_axis(np.asarray(lg), np.asarray(task.data["move"])[:, None], -1).mean()
            for lg in (mean_logits, logits, node.logits)]
    np.testing.assert_allclose(m, want, rtol=1e-5, atol=1e-4)
    assert abs(want[1] - want[0]) > 1 and abs(want[2] - want[1]) > 0.1  # the three differ
    fractions = edges.curve_fractions(edges.flat(truth).size, int(edges.flat(truth).sum()))
    curve = edges.faithfulness_curve(model, params, task.obs, leaderboard.rule_logit, task.data, truth, fractions)
    assert curve["curve"][0] == 0.0 and curve["curve"][-1] == 1.0


def test_untrained_control(compiled):
    """At random weights the true edges are no longer special within a layer (AUROC near 0.5
    in ``lines``, which holds 96 of the 147), but pooled over layers the methods stay above
    chance: the true edges sit mostly in the layer of smallest fan-in, where random weights,
    and so the effects, are largest. Measured on the first 32 positions of seed 0's task,
    untrained seeds 0-2: within ``lines`` 0.565, 0.458, 0.476 (exact) and 0.501, 0.463, 0.512
    (weight magnitude), pooled 0.651, 0.562, 0.606 and 0.634, 0.596, 0.648."""
    model, _, task, _, truth = compiled
    pooled, within = [], []
    for seed in range(3):
        untrained = leaderboard.untrained_params(model, seed, task.obs[:32])
        corrupted = task.obs[:32][jax.random.permutation(jax.random.key(seed), 32)]
        args = (model, untrained, task.obs[:32], corrupted, leaderboard.rule_logit, jax.tree.map(lambda a: a[:32], task.data))
        for fn in (edges.edge_patching, edges.weight_magnitude):
            found = fn(*args)
            pooled.append(edges.score(found, truth, untrained)["auroc"])
            within.append(metrics.auroc(np.abs(found["lines"]).ravel(), truth["lines"].ravel()))
    assert abs(np.mean(within) - 0.5) < 0.05, within
    assert 0.5 < np.mean(pooled) < 0.75, pooled


def test_siit_edge_truth_by_hand():
    """Width 128, 4 units per node: board -> two_own 8 lines x 3 squares x 2 planes x 4 units
    = 192, board -> empty 9 x 2 x 4 = 72; two_own -> win 24 (line, square) pairs x 16 = 384,
    empty -> win 9 x 16 = 144; win -> logits 9 x 4 x 10 = 360."""
    truth = siit.edge_truth(128)
    assert [int(truth[k].sum()) for k in siit.DENSES] == [264, 528, 360]
    two_own_line0, win = np.arange(4), lambda s: 4 * s + np.arange(4)  # line 0 is squares 0, 1, 2
    assert truth["layer1"][np.ix_(two_own_line0, win(2))].all() and not truth["layer1"][np.ix_(two_own_line0, win(3))].any()
    assert truth["layer0"][[0, 1, 2, 3, 4, 5]][:, two_own_line0].all() and not truth["layer0"][6:, two_own_line0].any()
    assert not truth["layer1"][:, 36:].any() and not truth["policy_head"][36:].any()  # block nodes, free units
    assert not truth["layer0"][:, 100:].any() and not truth["layer1"][100:].any()  # layer 0's free units
    units = siit.win_units(128)  # every win-path unit has an edge in and an edge out, and no other unit has
    assert np.array_equal(truth["layer0"].any(0), units["layer0.post"]) and np.array_equal(truth["layer1"].any(1), units["layer0.post"])
    assert np.array_equal(truth["layer1"].any(0), units["layer1.post"]) and np.array_equal(truth["policy_head"].any(1), units["layer1.post"])

