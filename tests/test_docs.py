"""Every "How to add ..." example in docs/ARCHITECTURE.md runs as written, each in a fresh
interpreter (they register environments, concepts and agent kinds)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = (Path(__file__).parents[1] / "docs" / "ARCHITECTURE.md").read_text()
SECTIONS = {m[1]: m[2] for m in re.finditer(r"^## (How to add [^\n]+)\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)}


def test_every_layer_has_a_worked_example():
    assert set(SECTIONS) == {f"How to add {x}" for x in
                             ("an environment", "a model", "an agent", "an interpretability method", "a concept")}


# The agent example trains a (tiny) hill climber, the method and concept examples compile sweeps and
# probes: minute-class cases, run with the slow ones.
@pytest.mark.parametrize("section", [pytest.param(s, marks=pytest.mark.slow) if s in ("How to add an agent", "How to add an interpretability method", "How to add a concept",
                                                                                  "How to add a model", "How to add an environment") else s
                                     for s in sorted(SECTIONS)])
def test_example_runs(section):
    blocks = re.findall(r"```python\n(.*?)```", SECTIONS[section], re.S)
    assert blocks, f"{section} has no python example"
    done = subprocess.run([sys.executable, "-c", "\n".join(blocks)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
