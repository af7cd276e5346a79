"""benchmarks/suite.py: backend detection, the JSON and Markdown it writes, a missing comparison
library or rejax venv reported in words (never a number), and a failing figure not losing the
others. The whole quick suite runs in the slow tests."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("suite", ROOT / "benchmarks" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backend_detection(suite):
    import jax

    env = suite.backend_info()
    assert env["backend"] == jax.default_backend()
    assert env["device_count"] == jax.device_count() and env["devices"]
    assert env["versions"]["jax"] == jax.__version__ and "flax" in env["versions"]
    assert env["cpu_count"] >= 1 and len(env["load_average"]) == 3 and "UTC" in env["date"]


def _stub_figures(suite, monkeypatch):
    def ok(size, ctx, log):
        log("  working")
        return {"result": "3.0 s vs 6.0 s, 2.0x | fast", "size": f"{size['ppo_steps']} steps", "data": [math.nan]}

    def missing(size, ctx, log):
        raise suite.Missing("torch not installed (pip install torch)")

    def broken(size, ctx, log):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(suite, "RUNNERS", {"ttt": ok, "patching": missing, "ig": broken})


def test_json_and_markdown_written_after_each_figure(suite, monkeypatch, tmp_path):
    _stub_figures(suite, monkeypatch)
    lines = []
    report = suite.run_suite(tmp_path, "quick", ["ttt", "patching", "ig"], rejax="/nonexistent", log=lines.append)
    figs = report["figures"]
    assert figs["ttt"]["status"] == "ok" and figs["ttt"]["size"] == f"{suite.SIZES['quick']['ppo_steps']} steps"
    assert figs["patching"]["status"].startswith("skipped: torch not installed")
    assert figs["ig"]["status"] == "error" and figs["ig"]["result"] == "error: ValueError: boom"
    assert "ValueError" in figs["ig"]["traceback"]
    saved = json.loads((tmp_path / "suite.json").read_text())  # strict JSON: NaN is null
    assert saved["figures"]["ttt"]["data"] == [None] and saved["rejax"] is None
    assert saved["environment"]["backend"] == report["environment"]["backend"]
    md = (tmp_path / "suite.md").read_text()
    assert f"backend: **{report['environment']['backend']}**" in md and "rejax: not installed" in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows[0] == "| figure | result | size | wall s |" and len(rows) == 4
    assert "2.0x \\| fast" in rows[1] and "skipped: torch not installed" in rows[2] and "error: ValueError" in rows[3]
    assert any(line.startswith("[ig]") for line in lines)


def test_ppo_row_without_rejax_says_so(suite, monkeypatch):
    import ppo_vs_rejax  # importable: the suite put benchmarks/ on sys.path

    calls = []

    def fake_ours(env, steps, model, kwargs):
        calls.append(kwargs)
        return {"steps": steps, "run_s": 2.0, "compile_s": 1.0, "final_return": 20.0}

    monkeypatch.setattr(ppo_vs_rejax, "run_ours", fake_ours)
    monkeypatch.delenv(suite.REJAX_ENV, raising=False)
    assert suite.rejax_python(None) is None
    fig = suite.fig_ppo({"ppo_steps": 1000}, {"rejax_python": None}, lambda s: None)
    assert fig["data"]["rejax"] is None and "rejax not installed" in fig["result"]
    assert calls == [{"hidden": [64, 64]}, {"hidden": [64, 64], "separate_critic": True}]
    assert "500 steps/s" in fig["result"]


@pytest.mark.slow
def test_quick_suite_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RLJAXINTERP_REJAX_PYTHON"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--quick", "--out",
                           str(tmp_path / "suite")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "suite" / "suite.json").read_text())
    assert list(report["figures"]) == ["ttt", "connect_four", "patching", "probes", "ig", "ppo", "sae"]
    for name, fig in report["figures"].items():
        assert fig["status"] == "ok" or fig["status"].startswith("skipped: "), (name, fig)
    ttt = report["figures"]["ttt"]["data"]
    assert ttt["warm"]["compile_and_first_s"] < ttt["cold"]["compile_and_first_s"]
    assert "rejax not installed" in report["figures"]["ppo"]["result"]
    c4 = report["figures"]["connect_four"]["data"]  # the curve: points during training and one at the end
    steps = [p["iteration"] for p in c4["curve"]]
    assert steps and steps == sorted(steps) and steps[-1] == c4["iterations"]
    assert c4["curve"][-1]["train_s"] == c4["train_s"] and all(0 <= p["win_rate"] <= 1 for p in c4["curve"])
    assert (tmp_path / "suite" / "connect_four_curve.png").stat().st_size > 0
