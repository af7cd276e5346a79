"""experiments/ttt_sae.py: its rank AUROC equals the library's, and a tiny run goes end to end."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp.interp import feature_concepts as fc

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "ttt_sae.py"


def _module():
    spec = importlib.util.spec_from_file_location("ttt_sae", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_auroc_matches_match_concepts_with_ties():
    rng = np.random.default_rng(0)
    f = np.maximum(rng.normal(size=(3000, 12)), 0).round(1).astype(np.float32)  # many zeros and ties
    y = (rng.random((3000, 3)) < [0.05, 0.3, 0.6]).astype(np.float32)
    f[:, 0] += y[:, 0]
    ours = np.asarray(_module()._auroc(jnp.asarray(f), jnp.asarray(y)))
    ref = fc.match_concepts(f, {str(i): y[:, i] for i in range(3)}).score
    np.testing.assert_allclose(ours, ref, atol=1e-4)


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
