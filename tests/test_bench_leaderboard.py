"""The leaderboard on the compiled network: the oracle is perfect, random is near chance,
activation patching finds the win circuit on the compiled network and not on untrained ones,
occlusion finds the decision's squares and the spurious cue, and the oracle's faithfulness
curve beats random's. On the SIIT networks: the oracle is perfect, patching beats the
untrained-MLP control, and their training stays out of the methods' wall time."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp.bench import compiled_ttt, concepts, label_only, leaderboard, shuffled, siit, spurious_cue

METHODS = ["activation patching (resample)", "random", "oracle (circuit)", "occlusion", "random map",
           "oracle (attribution)", "ridge probe", "random probe", "mean difference", "random direction",
           "oracle (steering)"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:  # the tier-5 agent is trained into a fresh cache, not the user's
        env.setenv("RLJAXINTERP_CACHE", str(tmp_path_factory.mktemp("cache")))
        return leaderboard.leaderboard("quick", METHODS, log=lambda s: None)


def mean(result, method, tier, key):
    return result["rows"][method][tier][key]["mean"]


@pytest.fixture(scope="module")
def curves():
    """Faithfulness scores of the oracle and random circuit methods on one quick-tier task."""
    model, params, _ = compiled_ttt.make_compiled()
    task = leaderboard.make_tasks(leaderboard.TIERS["quick"]["positions"], 0)["circuit"]
    return {name: leaderboard.score_circuit(leaderboard.METHODS[name], model, params, task, jax.random.key(0), curve=True)
            for name in ("oracle (circuit)", "random")}


def test_faithfulness_curve_runs_from_empty_to_full(curves):
    n = sum(u.size for u in leaderboard.win_units().values())
    for scores in curves.values():
        f = np.asarray(scores["curve"])
        assert f.shape == (n + 1,) and f[0] == 0.0 and f[-1] == 1.0


def test_oracle_circuit_is_faithful_and_random_is_not(curves):
    oracle, rand = curves["oracle (circuit)"], curves["random"]
    assert oracle["cpr"] > rand["cpr"] + 0.5 and oracle["cmd"] < rand["cmd"] - 0.4
    # ties keep index order, so the oracle adds the win path layer by layer: f stays 0 until the
    # last layer (choice_win, one unit per square) comes in, reaches 1 with the whole path and
    # overshoots by at most 15% (the other rules' choice units sit at their means, not at 0)
    units = leaderboard.win_units()
    size, last = sum(int(u.sum()) for u in units.values()), int(units["choice.post"].sum())
    f = np.asarray(oracle["curve"])
    assert np.all(f[:size - last] == 0.0) and np.all((f[size:] >= 1.0) & (f[size:] < 1.15))


@pytest.mark.slow
def test_oracle_is_perfect_and_random_is_near_chance(result):
    for oracle, key in (("oracle (circuit)", "auroc"), ("oracle (attribution)", "mass")):
        assert mean(result, oracle, "compiled", key) == 1.0
    assert abs(mean(result, "random", "compiled", "auroc") - 0.5) < 0.1
    assert abs(mean(result, "random map", "compiled", "auroc") - 0.5) < 0.05


@pytest.mark.slow
def test_patching_finds_the_win_circuit_only_where_it_exists(result):
    assert mean(result, "activation patching (resample)", "compiled", "auroc") > 0.9
    assert mean(result, "activation patching (resample)", "untrained", "auroc") < 0.7


@pytest.mark.slow
def test_occlusion_points_at_the_squares_the_decision_reads(result):
    assert mean(result, "occlusion", "compiled", "mass") > mean(result, "random map", "compiled", "mass") + 0.3
    assert mean(result, "occlusion", "untrained", "mass") < mean(result, "random map", "compiled", "mass") + 0.1


@pytest.mark.slow
def test_occlusion_finds_the_planted_cue_on_a_and_not_on_b(result):
    cue = result["rows"]["occlusion"]["cue"]
    assert cue["separates"]["per_seed"] == [1.0] * result["seeds"]
    assert max(cue["mass_B"]["per_seed"]) < 1 / 9 < min(cue["mass_A"]["per_seed"])
    assert result["rows"]["random map"]["cue"]["separates"]["mean"] == 0.0
    assert min(result["cue"]["truth"]["A"]) >= 0.9 and max(result["cue"]["truth"]["B"]) <= 0.05


@pytest.mark.slow
def test_siit_column_oracle_is_perfect_and_patching_beats_the_untrained_mlp(result):
    nets = result["siit"]["networks"]
    assert len(nets) == len(siit.TIERS["quick"]["seeds"]) * len(siit.TIERS["quick"]["widths"])
    assert all(n["iia"] >= siit.MIN_IIA and n["argmax_changed"] <= siit.MAX_STRICT_CHANGE for n in nets)
    assert mean(result, "oracle (circuit)", "siit", "auroc") == 1.0
    assert mean(result, "oracle (circuit)", "siit", "precision") == 1.0
    patched = mean(result, "activation patching (resample)", "siit", "auroc")
    # measured 0.720 against 0.511 (seeds 0, 1, width 128) by siit.score_circuit_methods
    assert patched > mean(result, "activation patching (resample)", "siit_untrained", "auroc") + 0.1
    assert patched < mean(result, "activation patching (resample)", "compiled", "auroc")
    assert abs(mean(result, "random", "siit", "auroc") - 0.5) < 0.15
    assert "## SIIT networks (tier 2)" in leaderboard.markdown(result)


@pytest.mark.slow
def test_shuffled_target_twins_are_controls_for_every_family(result):
    """Tier 4: patching finds no win circuit in a network trained on shuffled targets; a probe
    reads the concepts better from the SIIT network than from its twin; the gradient map of
    a SIIT network is unrelated to its twin's (data randomisation), occlusion's much less so
    (both nets leave empty squares at zero)."""
    twins = [n["twin"] for n in result["siit"]["networks"]]
    assert all(t["memorised"] > 0.95 and abs(t["rule_accuracy"] - t["chance"]) < 0.03 for t in twins)
    # measured 0.530 on the twins against 0.715 on the SIIT networks (seeds 0, 1, width 128)
    patched = mean(result, "activation patching (resample)", "siit_shuffled", "auroc")
    assert abs(patched - 0.5) < 0.1 and patched < mean(result, "activation patching (resample)", "siit", "auroc") - 0.1
    assert mean(result, "ridge probe", "siit", "gap_shuffled_net") > 0.05
    # measured -0.001 (gradient, not in METHODS here) and 0.703 (occlusion)
    assert mean(result, "occlusion", "siit", "data_randomisation") < 0.9
    assert "shuffled-target twin" in leaderboard.markdown(result)


@pytest.mark.slow
def test_the_conv_variant_is_scored_per_square_and_channel(result):
    """On the compiled conv network the truth is (square, channel) elements: the oracle is
    perfect, patching finds the win path (measured 0.994), random is near chance, and a map
    that reads only inputs and outputs (occlusion) is the same as on the compiled MLP."""
    assert mean(result, "oracle (circuit)", "compiled_conv", "auroc") == 1.0
    assert mean(result, "activation patching (resample)", "compiled_conv", "auroc") > 0.95
    assert abs(mean(result, "random", "compiled_conv", "auroc") - 0.5) < 0.1
    assert mean(result, "activation patching (resample)", "compiled_conv", "cpr") > mean(
        result, "random", "compiled_conv", "cpr") + 0.5
    occluded = result["rows"]["occlusion"]
    assert occluded["compiled_conv"]["mass"]["per_seed"] == pytest.approx(occluded["compiled"]["mass"]["per_seed"])
    assert "compiled conv: node AUROC" in leaderboard.markdown(result)


@pytest.mark.slow
def test_patching_circuit_is_faithful(result):
    assert mean(result, "activation patching (resample)", "compiled", "cpr") > mean(result, "random", "compiled", "cpr") + 0.5
    assert mean(result, "activation patching (resample)", "compiled", "cmd") < 0.25


@pytest.mark.slow
def test_written_leaderboard_never_overwrites(result, tmp_path):
    first = leaderboard.write(result, tmp_path / "lb")
    second = leaderboard.write(result, tmp_path / "lb")
    assert first.name == "lb" and second.name == "lb-1"
    assert json.loads((first / "leaderboard.json").read_text())["tier"] == "quick"
    text = (first / "leaderboard.md").read_text()
    assert "| activation patching (resample) |" in text and "## Spurious cue" in text and "SIIT: node AUROC" in text
    assert (first / "faithfulness.png").exists() and (first / "leaderboard.png").exists()


TRAIN_S = 1000.0


class Clock:
    """The leaderboard's clock, moved on by ``TRAIN_S`` per stand-in training: a wall column that
    counted training would then exceed ``TRAIN_S``."""

    def __init__(self):
        self.offset = 0.0

    def perf_counter(self):
        return time.perf_counter() + self.offset


def test_siit_networks_are_a_column_group_and_their_training_is_not_the_methods(monkeypatch, tmp_path):
    clock = Clock()

    def untrained_siit(width, seed):  # stands in for siit.make_trained: the wiring is under test, not SIIT
        clock.offset += TRAIN_S
        model = siit.make_model(width)
        params = model.init(jax.random.key(seed), jnp.asarray(siit.live_obs()[:1]))["params"]
        checked = {"accuracy": 0.5, "iia": 0.25, "iia_changed": 0.125, "iia_min_node": 0.0625, "argmax_changed": 0.75,
                   "changed_share": 0.1, "max_logit_change": 1.0, "pairs": 10}
        return siit.Trained(width, seed, model, params, TRAIN_S), checked

    def untrained_twin(width, seed):  # stands in for shuffled.train
        trained, _ = untrained_siit(width, seed)
        return shuffled.Twin(trained, shuffled.shuffled_targets(seed), memorised=0.25, rule_accuracy=0.125)

    monkeypatch.setattr(siit, "make_trained", untrained_siit)
    monkeypatch.setattr(shuffled, "train", untrained_twin)
    monkeypatch.setattr(leaderboard, "time", clock)
    result = leaderboard.leaderboard("quick", ["oracle (circuit)"], log=lambda s: None)
    tier = siit.TIERS["quick"]
    assert [(n["width"], n["seed"]) for n in result["siit"]["networks"]] == [
        (w, s) for w in tier["widths"] for s in tier["seeds"]]
    n = len(result["siit"]["networks"])
    row = result["rows"]["oracle (circuit)"]
    assert result["siit"]["wall_s"] >= 2 * TRAIN_S * n and row["wall_s"] < TRAIN_S  # each network and its twin
    assert row["siit"]["auroc"]["per_seed"] == [1.0] * n and row["siit_untrained"]["precision"]["mean"] == 1.0
    text = leaderboard.markdown(result)
    assert "| SIIT: node AUROC | SIIT: precision at true size | SIIT: CPR | SIIT: CMD | untrained MLP: node AUROC |" in text
    assert "## SIIT networks (tier 2)" in text and "| 128 | 1 | 0.5000 | 0.2500 | 0.1250 | 0.0625 | 0.7500 | 1000 | 0.250 | 0.125 (" in text
    assert "| shuffled-target MLP: node AUROC | shuffled-target MLP: precision at true size |" in text
    assert (leaderboard.write(result, tmp_path / "lb") / "leaderboard.png").exists()
    # a circuit method brings the edge table (bench/edges.py), its time in its own wall column
    assert result["edges"]["rows"]["oracle (edges)"]["auroc"]["per_seed"] == [1.0] * leaderboard.TIERS["quick"]["seeds"]
    assert "## Edges, compiled MLP" in text and result["edges"]["wall_s"] < TRAIN_S
    siit_edges = result["edges"]["siit"]  # the SIIT edge table, on the stand-in networks
    assert siit_edges["networks"] == [[n["width"], n["seed"]] for n in result["siit"]["networks"]]
    width = tier["widths"][0]
    assert siit_edges["widths"] == {width: {"truth_edges": 1152, "candidates": 18 * width + width * width + width * 10}}
    assert siit_edges["rows"]["oracle (edges)"]["auroc"]["per_seed"] == [1.0] * n
    assert abs(siit_edges["rows"]["random"]["auroc"]["mean"] - 0.5) < 0.05
    assert "### Edges, SIIT MLPs" in text and f"(width {width}: 1152 true of 19968)" in text
    without = {k: v for k, v in result.items() if k != "siit"}
    without["edges"] = {k: v for k, v in result["edges"].items() if k != "siit"}
    without["rows"] = {name: {k: v for k, v in r.items() if not k.startswith("siit")} for name, r in result["rows"].items()}
    assert "SIIT" not in leaderboard.markdown(without)


@pytest.mark.slow
def test_each_cue_world_of_a_tier_is_a_column_group_with_its_own_truth(monkeypatch):
    def untrained_pair(seed, world):  # stands in for spurious_cue.make_pair: the wiring is under test
        model = spurious_cue.make_model(world)
        pos = spurious_cue.WORLDS[world].eval_positions()
        params = {kind: model.init(jax.random.key(seed + i), spurious_cue.with_cue(pos.obs[:1], pos.target[:1]))["params"]
                  for i, kind in enumerate(spurious_cue.KINDS)}
        dependence = {kind: spurious_cue.cue_dependence(model, p, world=world) for kind, p in params.items()}
        return spurious_cue.Pair(model, params, dependence, world)

    def untrained_siit(width, seed):  # the attribution family's data randomisation needs SIIT networks
        model = siit.make_model(width)
        return siit.Trained(width, seed, model, model.init(jax.random.key(seed), jnp.asarray(siit.live_obs()[:1]))["params"],
                            0.0), {"accuracy": 0.5, "iia": 0.25, "iia_changed": 0.125, "iia_min_node": 0.0625,
                                   "argmax_changed": 0.75, "changed_share": 0.1, "max_logit_change": 1.0, "pairs": 10}

    monkeypatch.setattr(spurious_cue, "make_pair", untrained_pair)
    monkeypatch.setattr(siit, "make_trained", untrained_siit)
    monkeypatch.setattr(shuffled, "train", lambda width, seed: shuffled.Twin(untrained_siit(width, seed)[0], None, 0.0, 0.0))
    monkeypatch.setitem(leaderboard.TIERS, "quick", {**leaderboard.TIERS["quick"], "seeds": 1,
                                                     "cue_worlds": ("tic_tac_toe", "cheese_maze")})
    result = leaderboard.leaderboard("quick", ["random map", "oracle (attribution)"], log=lambda s: None)
    oracle = result["rows"]["oracle (attribution)"]
    positions = leaderboard.TIERS["quick"]["positions"]
    for group, world, cells in (("cue", "tic_tac_toe", 9), ("cue_maze", "cheese_maze", spurious_cue.MAZE_SIZE ** 2)):
        assert result[group]["world"] == world
        # the oracle's cue mass is the measured dependence share of the task's positions
        depends = leaderboard.make_cue_task(untrained_pair(0, world), positions, 0).depends
        assert oracle[group]["mass_A"]["mean"] == pytest.approx(depends["predictive"].mean())
        assert oracle[group]["mass_B"]["mean"] == pytest.approx(depends["noise"].mean())
        assert result["rows"]["random map"][group]["gap"]["mean"] == 0.0
        assert result["rows"]["random map"][group]["mass_A"]["mean"] == pytest.approx(1 / cells, rel=0.2)
    text = leaderboard.markdown(result)
    assert "## Spurious cue, tic-tac-toe:" in text and "## Spurious cue, maze gridworld (CheeseMaze, 11x11):" in text
    assert text.count("| random map | ") == 3  # the attribution table and the two cue tables


def test_bad_input_names_what_is_allowed():
    with pytest.raises(ValueError, match=r"tier 'huge' is not allowed; use one of \('quick', 'default'\)"):
        leaderboard.leaderboard("huge")
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['magic'\]; registered: activation patching"):
        leaderboard.leaderboard("quick", ["magic"])
    with pytest.raises(ValueError, match="family 'vibes' is not allowed"):
        leaderboard.register_method("x", "vibes", lambda *a: None)
    leaderboard.register_method("wrong shape", "attribution", lambda model, params, obs, *rest: obs, overwrite=True)
    try:
        with pytest.raises(ValueError, match=r"method 'wrong shape' returned maps shaped \(128, 3, 3, 2\)"):
            leaderboard.leaderboard("quick", ["wrong shape"], log=lambda s: None)
    finally:
        del leaderboard.METHODS["wrong shape"]


@pytest.mark.slow
def test_adding_a_method_as_the_docs_show():
    doc = (Path(__file__).parents[1] / "docs" / "BENCH.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", doc, re.DOTALL))
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_probes_and_steering_on_the_siit_networks(result):
    """The SIIT MLPs hold the concepts in blocks of units: a ridge probe decodes them and puts
    more of its weight on those blocks than a random hyperplane; the difference of means steers
    the network onto the concept's square where a random direction of the same norm does not."""
    assert mean(result, "ridge probe", "siit", "f1") > 0.95
    assert mean(result, "ridge probe", "siit", "weight_on_units") > 2 * mean(result, "random probe", "siit", "weight_on_units")
    assert mean(result, "random probe", "siit", "f1") < 0.3
    assert mean(result, "mean difference", "siit", "target_x1") > 0.9
    assert mean(result, "random direction", "siit", "target_x1") < 0.2
    assert mean(result, "oracle (steering)", "siit", "target_x1") > 0.9
    text = leaderboard.markdown(result)
    assert "## Probes: is the concept read from the site where it is computed" in text
    assert "SIIT: target rate at 1x" in text and "SIIT: weight on the concept's units" in text


@pytest.mark.slow
def test_the_alphazero_agent_is_scored_on_labels_only(result):
    """Tier 5 has exact labels and no unit truth: probes decode the concepts, the difference of
    means steers the agent far more often than a random direction, and there is no oracle."""
    assert result["label_only"]["agents"][0]["cached"] is False  # trained into the fresh cache
    assert mean(result, "ridge probe", "label_only", "f1") > 0.7
    assert mean(result, "mean difference", "label_only", "target_x1") > mean(
        result, "random direction", "label_only", "target_x1") + 0.3
    assert result["rows"]["oracle (steering)"]["label_only"] == {}
    assert "## AlphaZero agents (tier 5, labels only)" in leaderboard.markdown(result)
    assert [a["game"] for a in result["label_only"]["agents"]] == ["tic_tac_toe"]  # connect four: default tier


@pytest.mark.slow
def test_the_connect_four_agent_is_scored_on_labels_only(tmp_path, monkeypatch):
    """The default tier's connect-four agent, here at 30 iterations (measured: ridge F1 0.643,
    random probe 0.057): probes decode its concepts far above a random hyperplane, and no
    oracle exists where the units are unknown."""
    monkeypatch.setenv("RLJAXINTERP_CACHE", str(tmp_path))
    net, info = label_only.agent("connect_four", 0, 30)
    assert info["cached"] is False
    task = concepts.make_task(0, "connect_four")
    score = lambda name: leaderboard._score_concepts(leaderboard.METHODS[name], net, task, jax.random.key(0))
    assert score("ridge probe")["f1"] > score("random probe")["f1"] + 0.3
    assert score("oracle (steering)") == {}
