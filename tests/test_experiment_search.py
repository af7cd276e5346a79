"""experiments/search_vs_network.py and experiments/lookahead.py: tiny runs go end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], check=False, cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_search_vs_network_tiny_run(tmp_path):
    run("search_vs_network.py", "--tier", "quick", "--agents", "1", "--iterations", "2", "--draws", "5",
        "--play-games", "16", "--budgets", "1", "8", "--base", str(tmp_path / "ttt"), "--c4-base", str(tmp_path / "c4"),
        "--out", str(tmp_path / "report"))
    folder = tmp_path / "report-quick"
    for game in ("tic_tac_toe", "connect_four"):
        for name in (f"search_{game}.png", f"value_error_{game}.png"):
            assert (folder / name).stat().st_size > 0, name
    results = json.loads((folder / "results.json").read_text())
    assert set(results["findings"]) == {"S: search helps", "D (tic_tac_toe): concepts predicting disagreement",
                                        "D (connect_four): concepts predicting disagreement"}
    assert all(not f["holds"] for f in results["findings"].values())  # one agent: the rules need three
    data = results["data"]["results"]
    assert data["tic_tac_toe"]["positions"] == 4520 and data["connect_four"]["positions"] > 0
    for game in data.values():
        gap = game["agents"][0]["gap"]
        assert 0 <= gap["raw_optimal_rate"] <= 1 and 0 <= gap["search_optimal_rate"] <= 1
        assert len(game["agents"][0]["dynamics"]) >= 2  # the first and the last checkpoint


@pytest.mark.slow
def test_lookahead_tiny_run(tmp_path):
    run("lookahead.py", "--tier", "quick", "--agents", "1", "--iterations", "2", "--null", "3", "--draws", "5",
        "--play-games", "48", "--base", str(tmp_path / "c4"), "--out", str(tmp_path / "report"))
    folder = tmp_path / "report-quick"
    for name in ("report.md", "probe_profile.png", "patching.png"):
        assert (folder / name).stat().st_size > 0, name
    results = json.loads((folder / "results.json").read_text())
    assert set(results["findings"]) == {"L: look-ahead decodable", "P: future-square patching"}
    assert all(not f["holds"] for f in results["findings"].values())
    rows = results["data"]["probe_rows"]
    assert [r[1] for r in rows] == ["my_next_move", "opponent_reply", "my_move_two_plies_ahead",
                                    "threat_in_two_plies"]
    assert all(0 <= r[3] <= 1 for r in rows)
