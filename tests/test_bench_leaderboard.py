"""The leaderboard on the compiled network: the oracle is perfect, random is near chance,
activation patching finds the win circuit on the compiled network and not on untrained ones,
and occlusion finds the decision's squares."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rljaxinterp.bench import leaderboard

METHODS = ["activation patching (resample)", "random", "oracle (circuit)", "occlusion", "random map",
           "oracle (attribution)"]


@pytest.fixture(scope="module")
def result():
    return leaderboard.leaderboard("quick", METHODS, log=lambda s: None)


def mean(result, method, tier, key):
    return result["rows"][method][tier][key]["mean"]


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
def test_written_leaderboard_never_overwrites(result, tmp_path):
    first = leaderboard.write(result, tmp_path / "lb")
    second = leaderboard.write(result, tmp_path / "lb")
    assert first.name == "lb" and second.name == "lb-1"
    assert json.loads((first / "leaderboard.json").read_text())["tier"] == "quick"
    assert "| activation patching (resample) |" in (first / "leaderboard.md").read_text()


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
