"""The featuriser benchmark over seeds (issue #14): per-seed results aggregate to mean ± std per
site and method, the table and figure show them, bad input is refused before anything runs, and
the CLI runs end to end on a tiny tier."""

import json

import numpy as np
import pytest

from rljaxinterp.bench import feature_recovery as fr
from rljaxinterp.bench.metrics import mean_std, over_seeds

SAE = "sae topk 2x width, k=4"


def run(seed, cosine, recovered, iia, fve=None, l0=None, wall=10.0):
    """A hand-made single-seed feature_recovery result: one site, neurons and one SAE."""
    sae = {"mean_best_cosine": cosine + 0.5, "recovered": recovered, "iia": iia, "fve": fve, "l0": l0, "dead": 0}
    return {"tier": "quick", "seed": seed, "recovered_at": 0.9, "wall_s": wall, "sae_seconds": wall / 2,
            "das_seconds": 1.0,
            "sites": {"choice.post": {"units": 49, "d": 57, "methods": {
                "neurons": {"mean_best_cosine": cosine, "recovered": recovered, "iia": iia}, SAE: sae}}}}


@pytest.fixture
def result():
    return fr.aggregate([run(0, 0.2, 0.0, 0.1, fve=0.9, l0=4.0), run(1, 0.4, 0.5, 0.3, fve=1.0, l0=6.0, wall=20.0)])


def test_aggregate_gives_mean_and_population_std_per_site_and_method(result):
    neurons = result["sites"]["choice.post"]["methods"]["neurons"]
    assert neurons["mean_best_cosine"]["mean"] == pytest.approx(0.3)
    assert neurons["mean_best_cosine"]["std"] == pytest.approx(0.1)  # |0.2 - 0.4| / 2, ddof 0
    assert neurons["recovered"]["mean"] == pytest.approx(0.25) and neurons["recovered"]["std"] == pytest.approx(0.25)
    assert neurons["iia"]["mean"] == pytest.approx(0.2) and neurons["iia"]["per_seed"] == [0.1, 0.3]
    sae = result["sites"]["choice.post"]["methods"][SAE]
    assert sae["mean_best_cosine"]["mean"] == pytest.approx(0.8)
    assert sae["fve"]["mean"] == pytest.approx(0.95) and sae["fve"]["std"] == pytest.approx(0.05)
    assert sae["l0"]["mean"] == pytest.approx(5.0) and sae["l0"]["std"] == pytest.approx(1.0)
    assert result["seeds"] == [0, 1] and result["tier"] == "quick"
    assert result["sites"]["choice.post"]["units"] == 49
    assert result["wall_s"] == 30.0 and result["sae_seconds"] == 15.0 and result["das_seconds"] == 2.0
    assert [r["seed"] for r in result["per_seed"]] == [0, 1]  # the runs themselves are kept
    json.dumps(result)  # and all of it goes to features.json


def test_the_seeds_table_shows_mean_and_std_under_a_line_naming_the_seeds(result):
    lines = fr.table(result)
    assert lines[0].startswith("Mean ± std (population std) over 2 seeds (0, 1), tier quick")
    assert lines[1:4] == ["", "| method | choice.post (49 units) |", "|---|---|"]
    assert lines[4] == "| neurons | 0.300 ± 0.100 (25 ± 25%, IIA 0.20 ± 0.10) |"
    assert lines[5] == f"| {SAE} | 0.800 ± 0.100 (25 ± 25%, IIA 0.20 ± 0.10, FVE 0.950 ± 0.050, L0 5.0 ± 1.0) |"


def test_the_single_seed_table_is_unchanged():
    assert fr.table(run(0, 0.2, 0.0, 0.1, fve=0.9, l0=4.0)) == [
        "| method | choice.post (49 units) |", "|---|---|",
        "| neurons | 0.200 (0%, IIA 0.10) |",
        f"| {SAE} | 0.700 (0%, IIA 0.10, FVE 0.900, L0 4.0) |"]


def test_shared_stats_helpers():
    stats = over_seeds([{"a": 1.0, "curve": [0.0, 2.0]}, {"a": 3.0, "curve": [2.0, 2.0]}])
    assert stats["a"] == {"mean": 2.0, "std": 1.0, "per_seed": [1.0, 3.0]}
    assert stats["curve"]["mean"] == [1.0, 2.0] and stats["curve"]["std"] == [1.0, 0.0]
    assert mean_std(stats["a"]) == "2.000 ± 1.000"
    assert mean_std({"mean": 0.25, "std": 0.125}, 0, 100) == "25 ± 12"
    assert mean_std(None) == "–" and mean_std({"mean": float("nan"), "std": 0.0}) == "–"


def test_the_figure_bars_are_the_mean_cosines_with_std_error_bars(result, tmp_path):
    methods, means, stds = fr.cosine_bars(result)
    assert methods == ["neurons", SAE]
    np.testing.assert_allclose(means["choice.post"], [0.3, 0.8])
    np.testing.assert_allclose(stds["choice.post"], [0.1, 0.1])
    assert fr.plot(result, tmp_path / "features.png").stat().st_size > 0


def test_runs_that_score_different_things_are_refused():
    other = run(1, 0.4, 0.5, 0.3)
    del other["sites"]["choice.post"]["methods"][SAE]
    with pytest.raises(ValueError, match="seed 1 scores site 'choice.post' with other units or methods"):
        fr.aggregate([run(0, 0.2, 0.0, 0.1), other])
    with pytest.raises(ValueError, match="runs mix tiers 'quick' and 'default'"):
        fr.aggregate([run(0, 0.2, 0.0, 0.1), {**run(1, 0.4, 0.5, 0.3), "tier": "default"}])
    with pytest.raises(ValueError, match="runs is empty"):
        fr.aggregate([])


@pytest.mark.parametrize("tier, seeds, message", [
    ("huge", (0, 1), r"tier='huge' is not allowed; use one of \('quick', 'default'\)"),
    ("quick", (), r"seeds=\(\) is empty; give at least one integer seed, e.g. \(0, 1, 2, 3, 4\)"),
    ("quick", (0, 0), r"seeds=\(0, 0\) repeats a seed"),
    ("quick", (0, 1.5), r"seeds=\(0, 1.5\) holds \[1.5\]; seeds must be integers"),
])
def test_bad_input_is_refused_before_anything_runs(monkeypatch, tier, seeds, message):
    monkeypatch.setattr(fr, "feature_recovery", lambda *a, **k: pytest.fail("ran before checking its input"))
    with pytest.raises(ValueError, match=message):
        fr.feature_recovery_seeds(tier, seeds)


@pytest.mark.slow  # a CLI end to end (about 10 s); keeps `make test` under 10 minutes
def test_cli_runs_two_seeds_of_a_tiny_tier_end_to_end(monkeypatch, tmp_path, capsys):
    from rljaxinterp.cli import main

    # ~20 s, nearly all of it compiling (the second seed runs in ~3 s): one site, 20 SAE steps, 5 DAS steps.
    monkeypatch.setitem(fr.TIERS, "quick", {"steps": 20, "widths": (1,), "topk": (4,), "relu": (1.0,), "das_steps": 5})
    monkeypatch.setattr(fr, "SITES", ("choice.post",))
    assert main(["bench", "features", "--out", str(tmp_path / "f"), "--seeds", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "seed 0 (1/2) done in" in out and "seed 1 (2/2) done in" in out
    folder = tmp_path / "f"
    assert {"features.json", "features.md", "features.png"} <= {p.name for p in folder.iterdir()}
    result = json.loads((folder / "features.json").read_text())
    assert result["seeds"] == [0, 1] and [r["seed"] for r in result["per_seed"]] == [0, 1]
    methods = result["sites"]["choice.post"]["methods"]
    assert {"neurons", "pca", "nmf", "das", "sae topk 1x width, k=4", "sae relu 1x width, L1=1"} == set(methods)
    cosines = methods["das"]["mean_best_cosine"]["per_seed"]
    assert cosines[0] != cosines[1]  # each seed is its own rotation and DAS start
    assert (folder / "features.md").read_text().startswith("Mean ± std (population std) over 2 seeds (0, 1), tier quick")
