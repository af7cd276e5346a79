"""The README's main job, end to end on an untrained network (training is tested elsewhere)."""

import json

import numpy as np
import pytest

from rljaxinterp.cli import build_parser
from rljaxinterp.cli.quickstart import run_quickstart
from rljaxinterp.reporting import fresh_folder


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    return run_quickstart(tmp_path_factory.mktemp("runs") / "quickstart", seed=0, train=False)


@pytest.mark.slow
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


@pytest.mark.slow
def test_report_states_the_win_now_finding_with_its_controls(quickstart):
    """Counted independently from the boards: positions whose mover has exactly one line with
    two of their stones and an empty square. An untrained network must not pass the
    pre-stated thresholds (that is what the controls are for)."""
    from rljaxinterp.envs.boards import tic_tac_toe_reachable

    states, boards = tic_tac_toe_reachable()
    lines = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]
    count = 0
    for board, over in zip(np.asarray(boards), np.asarray(states.terminated)):
        mover = 0 if (board == 0).sum() == (board == 1).sum() else 1
        threats = sum(sorted(board[list(line)]) == sorted([mover, mover, -1]) for line in lines)
        count += int(not over and threats == 1)
    finding = json.loads((quickstart / "results.json").read_text())["finding"]
    assert finding["positions"] == count > 0
    assert 0.0 < finding["random_takes_win"] < 1.0
    assert not finding["line_carries_decision"] and not finding["decodable"]
    report = (quickstart / "report.md").read_text()
    assert report.startswith("# Quickstart") and f"**Finding.** {finding['sentence']}" in report
    assert "no sign that the line carries the decision" in finding["sentence"]
    assert (quickstart / finding["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_are_never_overwritten(tmp_path):
    first = fresh_folder(tmp_path / "q")
    (first / "results.json").write_text("{}")
    second = fresh_folder(tmp_path / "q")
    assert second != first and second.name == "q-1"
    assert (first / "results.json").read_text() == "{}"


def test_cli_has_quickstart():
    args = build_parser().parse_args(["quickstart", "--out", "x", "--no-train"])
    assert args.out == "x" and args.no_train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from rljaxinterp.runs import default_config, train

    folder = tmp_path_factory.mktemp("runs") / "ttt"
    config = default_config("alphazero", "tic_tac_toe", iterations=4, checkpoint_every=2, games=16, num_simulations=4,
                            max_num_considered_actions=4, updates_per_iteration=1, minibatch_size=32,
                            replay_size=512, model_kwargs={"hidden": [16]})
    train(config, folder, progress=False)
    return folder


@pytest.mark.slow
def test_cli_sweep_probe_and_report_on_a_run(tiny_run, tmp_path):
    from rljaxinterp.cli import main

    assert main(["sweep", str(tiny_run), "--method", "patching", "--out", str(tmp_path / "s")]) == 0
    sweep = json.loads((tmp_path / "s" / "effects.json").read_text())
    assert sweep["states"]["used"] == 4520 and set(sweep["effects"]) >= {"layer0.post", "logits"}
    assert main(["sweep", str(tiny_run), "--method", "resample", "--out", str(tmp_path / "r")]) == 0
    assert main(["probe", str(tiny_run), "--out", str(tmp_path / "p")]) == 0
    probes = json.loads((tmp_path / "p" / "probes.json").read_text())
    # the centre square is a linear function of the input, and the first layer is linear in it
    assert probes["test"]["layer0.pre"]["centre_empty"]["test"] > 0.99 and probes["leaked_rows"] == 0
    assert probes["shuffled_labels"]["layer0.pre"]["centre_empty"] < 0.75
    assert main(["report", str(tiny_run), "--out", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "## Findings" in report and "`can_win_now`" in report
    summary = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert summary["steps"] == [0, 2, 4]
    cka = np.asarray(summary["representation_cka_to_final"])
    assert cka.shape[0] == 3 and np.allclose(cka[-1], 1.0, atol=1e-4)  # the final checkpoint with itself
    assert (tmp_path / "rep" / "attribution_by_square.png").exists() and "by occlusion" in report


@pytest.mark.slow
def test_cli_eval_reports_every_opponent_in_both_seats(tiny_run, capsys):
    from rljaxinterp.cli import main

    assert main(["eval", str(tiny_run), "--games", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    for player in ("raw", "search"):
        for opponent in ("random", "pure_mcts", "checkpoint_0"):
            seats = report[f"{player}_vs_{opponent}"]
            assert {seat: sum(r.values()) for seat, r in seats.items()} == {"first": 4, "second": 4}
    lines = report["tic_tac_toe"]["raw"]
    assert set(lines) == {"first", "second"} and all(sum(r.values()) > 0 for r in lines.values())


@pytest.mark.slow
def test_cli_attribute_factorise_and_steer_on_a_run(tiny_run, tmp_path):
    from rljaxinterp.cli import main

    assert main(["attribute", str(tiny_run), "--out", str(tmp_path / "a")]) == 0
    attr = json.loads((tmp_path / "a" / "attributions.json").read_text())
    assert attr["states"]["used"] == 4520 and attr["shape"] == [3, 3, 2] and (tmp_path / "a" / "attributions.png").exists()
    assert main(["attribute", str(tiny_run), "--method", "occlusion", "--out", str(tmp_path / "o")]) == 0
    assert main(["factorise", str(tiny_run), "--site", "layer0.post", "--rank", "3", "--iterations", "50",
                 "--out", str(tmp_path / "f")]) == 0
    factors = json.loads((tmp_path / "f" / "factors.json").read_text())
    assert len(factors["components"]) == 3 and 0 <= factors["relative_error"] < 1
    assert main(["steer", str(tiny_run), "--site", "layer0.post", "--concept", "centre_own",
                 "--coefficients", "0", "1", "--out", str(tmp_path / "st")]) == 0
    steer = json.loads((tmp_path / "st" / "steering.json").read_text())
    assert abs(steer["one_step"]["policy_kl"][0]) < 1e-6 and steer["one_step"]["policy_kl"][1] > 1e-4
    # coefficient 0 plays exactly as the unedited agent, and so does its (zero-norm) control
    win = steer["behaviour"]["win"]
    assert win["edited"][0] == win["baseline"] == win["control"][0] and win["p"][0] == 1.0
    with pytest.raises(SystemExit, match=r"unknown concept\(s\) \['nope'\]"):
        main(["steer", str(tiny_run), "--site", "layer0.post", "--concept", "nope", "--out", str(tmp_path / "x")])
