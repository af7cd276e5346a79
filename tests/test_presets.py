"""Presets per backend: "cpu" and "accelerator" tables, "auto" choosing by the JAX backend,
the choice printed by the CLI and recorded in an AlphaZero run's config.json."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from rljaxinterp import runs
from rljaxinterp.agents.config import AlphaZeroConfig
from rljaxinterp.runs import presets

GAMES = ["tic_tac_toe", "connect_four", "othello", "go_9x9", "chess"]
OTHER_GAME = "hex"  # no preset of its own: the fallback
FIXTURES = Path(__file__).parent / "fixtures" / "runs_v1"


def parse(*argv):
    from rljaxinterp.cli import build_parser

    return build_parser("train").parse_args(["train", *argv])


def test_auto_picks_cpu_on_this_machine_and_accelerator_on_gpu_or_tpu(monkeypatch):
    assert jax.default_backend() == "cpu" and presets.resolve("auto") == "cpu"
    assert runs.default_config("alphazero", "othello").preset == "cpu"
    assert [presets.backend_preset(b) for b in ("cpu", "gpu", "tpu")] == ["cpu", "accelerator", "accelerator"]
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    config = runs.default_config("alphazero", "othello")
    assert config.preset == "accelerator" and config.model == "conv"


@pytest.mark.parametrize("env", GAMES + [OTHER_GAME])
def test_explicit_presets(env):
    cpu = runs.default_config("alphazero", env, preset="cpu")
    acc = runs.default_config("alphazero", env, preset="accelerator")
    # the CPU preset is the table as it was, unchanged
    assert cpu == AlphaZeroConfig(env=env, **presets.ALPHAZERO.get(env, presets.ALPHAZERO_OTHER_GAMES))
    assert cpu.preset == "cpu" and acc.preset == "accelerator"
    assert cpu == runs.default_config("alphazero", env)  # auto on this CPU machine
    # the accelerator preset: pgx's AlphaZero example sizes
    assert (acc.model, acc.model_kwargs) == ("conv", {"channels": 128, "blocks": 6})
    assert (acc.games, acc.num_simulations, acc.minibatch_size) == (1024, 32, 4096)
    assert acc.updates_per_iteration * acc.minibatch_size == acc.games * acc.unroll_length
    assert acc.restrict_pass == (env == "go_9x9") and acc.exploration == cpu.exploration
    # changes apply over either preset
    assert runs.default_config("alphazero", env, preset="accelerator", games=8, replay_size=128).games == 8


def test_cpu_presets_keep_todays_values():
    c4, othello, chess = (runs.default_config("alphazero", g, preset="cpu") for g in ("connect_four", "othello", "chess"))
    assert (c4.model, c4.model_kwargs, c4.games, c4.replay_size) == ("mlp", {"hidden": [256, 256]}, 64, 16384)
    conv = runs.default_config("alphazero", "connect_four", preset="cpu", **presets.CONNECT_FOUR_CONV)
    assert (conv.model, conv.model_kwargs, conv.games, conv.replay_size) == ("conv", {"channels": 32, "blocks": 2}, 32, 8192)
    assert (othello.model, othello.model_kwargs, othello.games, othello.iterations) == ("mlp", {"hidden": [256, 256]}, 64, 1000)
    assert (chess.games, chess.replay_size, chess.iterations) == (16, 2048, 300)
    assert runs.default_config("alphazero", "tic_tac_toe", preset="cpu") == AlphaZeroConfig()


def test_ppo_and_dqn_use_one_table_on_every_backend():
    for kind, env in (("ppo", "CartPole-v1"), ("dqn", "CartPole-v1"), ("ppo", "Breakout-MinAtar")):
        assert runs.default_config(kind, env, preset="accelerator") == runs.default_config(kind, env, preset="cpu")


@pytest.mark.parametrize("kind", ["alphazero", "ppo"])
def test_unknown_preset_is_a_clear_error(kind):
    with pytest.raises(ValueError, match=r"unknown preset 'gpu'; allowed: auto, cpu, accelerator"):
        runs.default_config(kind, "CartPole-v1" if kind == "ppo" else "othello", preset="gpu")
    with pytest.raises(ValueError, match=r"AlphaZeroConfig.preset='auto' is not allowed; allowed: None, cpu, accelerator"):
        AlphaZeroConfig(preset="auto")  # a config records a resolved name
    with pytest.raises(SystemExit):
        parse("alphazero", "--out", "x", "--preset", "gpu")


def test_config_round_trip_keeps_the_preset_and_old_configs_stay_as_they_were():
    acc = runs.default_config("alphazero", "go_9x9", preset="accelerator")
    assert acc.to_dict()["preset"] == "accelerator"
    assert AlphaZeroConfig.from_dict(acc.to_dict()).preset == "accelerator"
    assert AlphaZeroConfig.from_dict(json.loads(json.dumps(acc.to_dict()))) == acc
    # a label, not a setting: equality ignores it, and an unlabelled config serialises as before
    assert acc == acc.replace(preset=None) == acc.replace(preset="cpu")
    assert "preset" not in AlphaZeroConfig().to_dict()
    old = json.loads((FIXTURES / "alphazero" / "config.json").read_text())
    assert AlphaZeroConfig.from_dict(old).preset is None and AlphaZeroConfig.from_dict(old).to_dict() == old


def test_run_folder_records_the_preset_and_old_folders_resume_under_a_labelled_config(tmp_path):
    from rljaxinterp.runs.train import _claim, read_config

    kind = runs.kind_named("alphazero")
    config = runs.default_config("alphazero", "tic_tac_toe", preset="accelerator", games=4, replay_size=64)
    assert _claim(kind, config, tmp_path / "new", config.iterations) is None
    assert json.loads((tmp_path / "new" / "config.json").read_text())["preset"] == "accelerator"
    assert read_config(tmp_path / "new")[1].preset == "accelerator"
    # a folder from before presets had names: its config, now labelled "cpu", resumes it
    folder = tmp_path / "old"
    shutil.copytree(FIXTURES / "alphazero", folder)
    before = (folder / "config.json").read_text()
    labelled = runs.load_run(folder).config.replace(preset="cpu")
    runs.train(labelled, folder, progress=False)  # finished: nothing to do, nothing rewritten
    assert (folder / "config.json").read_text() == before
    with pytest.raises(runs.RunFolderError, match="seed: folder has 0, asked 1"):
        runs.train(labelled.replace(seed=1), folder, progress=False)


def test_cli_help_lists_both_presets_and_the_flag_chooses(capsys):
    from rljaxinterp.cli.train import config_from_args, presets_text

    text = presets_text(runs.kind_named("alphazero"))
    assert "--preset cpu:" in text and "--preset accelerator:" in text
    assert '--model-kwargs {"channels": 128, "blocks": 6}' in text and '{"hidden": [256, 256]}' in text
    assert "the same for --preset cpu and accelerator" in presets_text(runs.kind_named("ppo"))
    with pytest.raises(SystemExit):
        parse("alphazero", "--help")
    out = capsys.readouterr().out
    assert "--preset {auto,cpu,accelerator}" in out and "--preset accelerator:" in out
    assert config_from_args(parse("alphazero", "--env", "othello", "--out", "x")).preset == "cpu"
    chosen = config_from_args(parse("alphazero", "--env", "othello", "--out", "x", "--preset", "accelerator",
                                    "--games", "8", "--replay-size", "256"))
    assert (chosen.preset, chosen.model, chosen.games) == ("accelerator", "conv", 8)


def test_cli_prints_the_preset_before_training(monkeypatch, capsys):
    from rljaxinterp.cli import train as cli_train

    seen = []
    monkeypatch.setattr(cli_train, "train", lambda config, out, progress: seen.append((config, capsys.readouterr().out)))
    assert cli_train.run_train(parse("alphazero", "--env", "othello", "--out", "x", "--quiet")) == 0
    config, printed = seen[0]
    assert printed == "preset: cpu (auto: jax backend is cpu)\n" and config.preset == "cpu"
    assert capsys.readouterr().out == "run written to x\n"
    cli_train.run_train(parse("alphazero", "--out", "x", "--preset", "accelerator", "--quiet"))
    assert seen[1][1] == "preset: accelerator (chosen by --preset)\n"
    capsys.readouterr()
    cli_train.run_train(parse("ppo", "--env", "CartPole-v1", "--out", "x", "--quiet"))
    assert seen[2][1] == "preset: cpu (auto: jax backend is cpu; ppo has one preset table for every backend)\n"


# Shrunk for a CPU: self-play and training sizes only; the accelerator network (6 x 128 residual
# tower), the search policy and every other setting stay the preset's.
SHRUNK = {"games": 2, "num_simulations": 2, "max_num_considered_actions": 2, "unroll_length": 2, "minibatch_size": 4,
          "updates_per_iteration": 1, "replay_size": 8, "iterations": 1, "checkpoint_every": 1}


@pytest.mark.slow
@pytest.mark.parametrize("env", GAMES + [OTHER_GAME])
def test_accelerator_preset_trains_one_iteration_on_cpu(env, tmp_path):
    config = runs.default_config("alphazero", env, preset="accelerator", **SHRUNK)
    assert config.model_kwargs == {"channels": 128, "blocks": 6}
    runs.train(config, tmp_path, progress=False)
    run = runs.load_run(tmp_path)
    assert run.steps == [0, 1] and run.config.preset == "accelerator"
    (row,) = run.metrics()
    assert np.isfinite(row["loss"]) and row["iteration"] == 1
