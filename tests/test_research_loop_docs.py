"""docs/RESEARCH_LOOP.md runs as written (commands and Python) on tiny runs of the same
architectures, and every interpretability command runs on a connect-four and a CheeseMaze run."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = (Path(__file__).parents[1] / "docs" / "RESEARCH_LOOP.md").read_text()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """``runs/c4`` and ``runs/maze``: the documented runs shrunk (one residual block of 8
    channels; a 16-16 MLP; a few iterations), so every site name of the page exists."""
    from rljaxinterp.runs import default_config, train

    root = tmp_path_factory.mktemp("loop")
    c4 = default_config("alphazero", "connect_four", iterations=2, checkpoint_every=1, games=8, num_simulations=4,
                        max_num_considered_actions=4, updates_per_iteration=1, minibatch_size=32, replay_size=256,
                        model="conv", model_kwargs={"channels": 8, "blocks": 1})
    train(c4, root / "runs" / "c4", progress=False)
    maze = default_config("ppo", "CheeseMaze", env_kwargs={"size": 7, "corner_size": 2, "max_steps": 50}, model="mlp",
                          model_kwargs={"hidden": [16, 16]}, num_envs=8, num_steps=16, total_timesteps=8 * 16 * 2)
    train(maze, root / "runs" / "maze", progress=False)
    return root


def _commands() -> list[list[str]]:
    lines = [line for block in re.findall(r"```bash\n(.*?)```", DOC, re.DOTALL) for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("rljaxinterp ") and " train " not in line]


def _in_fresh_process(commands: list[list[str]], cwd) -> None:
    """Run CLI commands in one fresh interpreter: dozens of compiled programs accumulate in a
    long test process (one XLA compile crashed there once); a command's own process is how a
    user runs it."""
    code = f"from rljaxinterp.cli import main\nfor argv in {commands!r}:\n    assert main(argv) == 0, argv\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800, cwd=cwd,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_documented_commands_run(workdir):
    commands = _commands()
    assert {c[0] for c in commands} == {"probe", "sweep", "ablate", "steer"}
    _in_fresh_process(commands, workdir)
    probe = json.loads(next((workdir / "runs" / "c4").glob("probe-*/probes.json")).read_text())
    assert probe["leaked_rows"] == 0 and "input" in probe["test"]
    assert probe["states"]["used"] == probe["states"]["distinct"] or probe["states"]["used"] == 4096
    steer = json.loads(next((workdir / "runs" / "maze").glob("steer-*/steering.json")).read_text())
    assert {"reached_cheese", "reached_corner"} <= set(steer["behaviour"])
    assert (next((workdir / "runs" / "maze").glob("steer-*")) / "behaviour.png").exists()


@pytest.mark.parametrize("block", range(len(re.findall(r"```python\n(.*?)```", DOC, re.DOTALL))))
def test_the_documented_python_runs_in_15_lines(workdir, block):
    code = re.findall(r"```python\n(.*?)```", DOC, re.DOTALL)[block]
    assert len([line for line in code.splitlines() if line.strip()]) <= 15
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, cwd=workdir, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "baseline" in done.stdout and "control" in done.stdout


COMMANDS = [
    ["probe", "--states", "256"],
    ["sweep", "--states", "256"],
    ["sweep", "--states", "256", "--method", "attribution", "--metric", "action"],
    ["sweep", "--states", "256", "--method", "mean"],
    ["attribute", "--states", "256", "--method", "occlusion", "--metric", "action"],
    ["attribute", "--states", "128"],
    ["factorise", "--states", "256", "--site", "SITE", "--rank", "3", "--iterations", "50"],
    ["steer", "--states", "256", "--site", "SITE", "--episodes", "8", "--coefficients", "1"],
    ["ablate", "--states", "256", "--site", "SITE", "--units", "0,1", "--episodes", "8"],
    ["report", "--states", "256"],
]
SITE = {"c4": "block0.resid_post", "maze": "layer1.post"}
CONCEPT = {"c4": ["--concept", "opponent_immediate_win"], "maze": ["--concept", "goal_is_right", "--distribution", "test"]}


@pytest.mark.parametrize("run", ["c4", "maze"])
def test_every_command_runs_on_every_kind_of_env(workdir, run, tmp_path):
    folder = str(workdir / "runs" / run)
    commands = [[argv[0], folder, *[SITE[run] if a == "SITE" else a for a in argv[1:]],
                 *(CONCEPT[run] if argv[0] == "steer" else []), "--out", str(tmp_path / str(i))]
                for i, argv in enumerate(COMMANDS)]
    _in_fresh_process(commands, workdir)
    for i, argv in enumerate(COMMANDS):
        out = tmp_path / str(i)
        parts = [out / p for p in ("probe", "sweep", "attribute")] if argv[0] == "report" else [out]
        for part in parts:
            written = {p.name for p in part.iterdir()}
            assert "summary.md" in written and any(n.endswith(".json") for n in written), (argv, written)
            assert any(n.endswith(".png") for n in written), (argv, written)
    assert "## probes" in (tmp_path / "9" / "report.md").read_text()
    sweep = json.loads((tmp_path / "1" / "effects.json").read_text())
    assert sweep["states"]["used"] == 256 and sweep["states"]["distinct"] >= 256


def test_pairs_from_a_counterfactual_generator(workdir, tmp_path):
    from rljaxinterp.cli import main

    assert main(["sweep", str(workdir / "runs" / "c4"), "--states", "512", "--pairs", "remove:opponent_immediate_win",
                 "--out", str(tmp_path / "s")]) == 0
    sweep = json.loads((tmp_path / "s" / "effects.json").read_text())
    assert 0 < sweep["pairs_found"] <= sweep["pairs_tried"] and sweep["pairs_used"] == sweep["pairs_found"]
    with pytest.raises(SystemExit, match="remove:<concept>"):
        main(["sweep", str(workdir / "runs" / "c4"), "--states", "64", "--pairs", "drop:x", "--out", str(tmp_path / "x")])
