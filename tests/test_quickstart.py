"""The README's main job, end to end on an untrained network (training is tested elsewhere)."""

import json

import numpy as np
import pytest

from rljaxinterp.cli import build_parser
from rljaxinterp.quickstart import fresh_folder, run_quickstart


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    return run_quickstart(tmp_path_factory.mktemp("runs") / "quickstart", seed=0, train=False)


def test_quickstart_writes_results_for_every_site_over_all_positions(quickstart):
    results = json.loads((quickstart / "results.json").read_text())
    assert results["num_positions"] == 5478
    sites = results["sites"]
    for metric in ("value", "policy_kl"):
        effects = results["patching"][metric]
        assert list(effects) == list(sites)
        for name, shape in sites.items():
            assert np.shape(effects[name]) == tuple(shape), name
    value = results["patching"]["value"]
    # The value head does not read the policy logits: patching them cannot move the value.
    assert np.all(np.abs(value["logits"]) < 1e-6)  # up to float reassociation
    # Patching the whole board input moves it; patching one square of it is a real sweep.
    assert np.abs(np.asarray(value["input"])).sum() > 0
    kl = np.asarray(results["patching"]["policy_kl"]["logits"])
    assert np.all(kl >= -1e-6) and kl.sum() > 0
    for name in results["files"]:
        assert (quickstart / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_are_never_overwritten(tmp_path):
    first = fresh_folder(tmp_path / "q")
    (first / "results.json").write_text("{}")
    second = fresh_folder(tmp_path / "q")
    assert second != first and second.name == "q-1"
    assert (first / "results.json").read_text() == "{}"


def test_cli_has_quickstart():
    args = build_parser().parse_args(["quickstart", "--out", "x", "--no-train"])
    assert args.out == "x" and args.no_train
