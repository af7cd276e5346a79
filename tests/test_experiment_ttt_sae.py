"""experiments/ttt_sae.py: a tiny run goes end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "ttt_sae.py"


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
    out = tmp_path / "report"
    cmd = [sys.executable, str(SCRIPT), "--tier", "quick", "--agents", "1", "--null", "2", "--draws", "2",
           "--sae-steps", "50", "--base", str(tmp_path / "agents"), "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=SCRIPT.parents[1], capture_output=True, text=True)
    folder = tmp_path / "report-quick"
    for name in ("report.md", "results.json", "dynamics.png", "steering_doses.png", "feature_cards.png"):
        assert (folder / name).stat().st_size > 0, name
    results = json.loads((folder / "results.json").read_text())
    assert len(results["findings"]) == 3
    assert all(not f["holds"] for f in results["findings"].values())  # one agent: the rules need three
    assert len(results["data"]["dynamics"]) == 4  # checkpoints 0, 10, 20, 30
