"""AlphaZero agent: exact solver, training, determinism, resumable run folders."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from rljaxinterp.agents import AlphaZeroConfig
from rljaxinterp.eval import minimax
from rljaxinterp.runs import RunFolderError, load_run, train

TINY = AlphaZeroConfig(
    games=16, num_simulations=4, unroll_length=9, iterations=8, checkpoint_every=2,
    replay_size=512, minibatch_size=64, updates_per_iteration=8, learning_rate=3e-3,
    model_kwargs={"hidden": [32]},
)


def same_params(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("az") / "run"
    train(TINY, folder, progress=False)
    return folder


# -- exact solver -----------------------------------------------------------------------------------
def b(text: str) -> tuple[int, ...]:
    """'X.O/...' rows -> board tuple (X=0, O=1, .=-1)."""
    return tuple({"X": 0, "O": 1, ".": -1}[c] for c in text.replace("/", ""))


def test_minimax_hand_positions():
    sol = minimax.solve()
    assert len(sol.boards) == 5478 and int((~sol.terminal).sum()) == 4520
    assert minimax.value(minimax.EMPTY) == 0  # perfect play draws
    assert minimax.value(b("XX./OO./...")) == 1  # X to move completes the top row
    assert minimax.optimal_moves(b("XX./OO./...")) == {2}
    # O to move must block at 2, then X forks with 4 (threats at 7 and 8): O is lost
    assert minimax.mover(b("XX./O../...")) == 1 and minimax.value(b("XX./O../...")) == -1
    assert minimax.value(b("XXX/OO./...")) == -1  # finished: the mover (O) lost
    assert minimax.value(b("XOX/XOO/OXX")) == 0  # full board, no line
    # X to move with a fork available at 4? X.. / .O. / ..X : O to move, must play an edge
    assert minimax.value(b("X../.O./..X")) == 0
    assert minimax.optimal_moves(b("X../.O./..X")) == {1, 3, 5, 7}
    # X threatens 2, 7 and 8 at once: O to move cannot stop them all
    assert minimax.mover(b("XX./.XO/O..")) == 1 and minimax.value(b("XX./.XO/O..")) == -1
    # O to move can win at once on the middle row, which beats blocking X
    assert minimax.value(b("XX./OO./X..")) == 1 and minimax.optimal_moves(b("XX./OO./X..")) == {5}


def test_minimax_rows_match_envs_enumeration():
    from rljaxinterp.envs import tic_tac_toe_boards
    assert set(map(tuple, tic_tac_toe_boards().tolist())) == set(minimax.solve().index)


# -- config -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,words", [
    ("num_simulations", 0, ">= 1"), ("exploration", 1.5, "0 <= value <= 1"),
    ("policy", "ucb", "gumbel"), ("env", "nope", "registered"),
    ("replay_size", 10, "games * unroll_length"), ("learning_rate", 0.0, "0 < value"),
])
def test_config_rejects_bad_values(field, value, words):
    with pytest.raises(ValueError, match=field) as e:
        AlphaZeroConfig(**{field: value})
    assert words in str(e.value) and repr(value) in str(e.value)


def test_config_round_trips_json():
    assert AlphaZeroConfig.from_dict(TINY.to_dict()) == TINY


# -- training ------------------------------------------------------------------------------------------
def test_tiny_run_learns_and_writes_folder(tiny_run):
    run = load_run(tiny_run)
    assert run.config == TINY
    assert run.steps == [0, 2, 4, 6, 8]
    rows = run.metrics()
    assert [r["iteration"] for r in rows] == list(range(1, 9))
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (tiny_run / "learning_curve.png").stat().st_size > 0
    state, meta = run.state()
    assert meta["iteration"] == 8 and meta["env_steps"] == 8 * 16 * 9 and meta["wall_time"] > 0
    out = jax.jit(jax.vmap(run.policy_value, in_axes=(None, 0)))(run.params(), state.env_state.observation)
    assert out.logits.shape == (16, 9) and bool((abs(out.value) <= 1).all())


def test_same_seed_is_bit_identical(tiny_run, tmp_path):
    train(TINY, tmp_path / "again", progress=False)
    assert same_params(load_run(tmp_path / "again").params(), load_run(tiny_run).params())
    assert not same_params(load_run(tiny_run).params(0), load_run(tiny_run).params())


def test_refuses_a_different_config(tiny_run):
    before = listing(tiny_run)
    with pytest.raises(RunFolderError, match="seed: folder has 0, asked 1"):
        train(TINY.replace(seed=1), tiny_run, progress=False)
    assert listing(tiny_run) == before


@pytest.mark.slow
def test_truncated_checkpoint_is_a_clear_error_and_deletes_nothing(tiny_run, tmp_path):
    folder = tmp_path / "damaged"
    shutil.copytree(tiny_run, folder)
    data = max((folder / "checkpoints" / "8" / "state").rglob("d/*"), key=lambda p: p.stat().st_size)
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 3)
    before = listing(folder)
    # In a child process: after raising, orbax abandons its read coroutines and Python reports
    # them (as unraisable exceptions) whenever they are collected, often at exit.
    script = textwrap.dedent(f"""
        from rljaxinterp.agents import AlphaZeroConfig
        from rljaxinterp.runs import CheckpointError, load_run, train
        calls = [lambda: load_run({str(folder)!r}).state(),  # the whole state (params() reads only params)
                 lambda: train(AlphaZeroConfig.from_dict({TINY.to_dict()!r}), {str(folder)!r}, progress=False)]
        for call in calls:
            try:
                call()
                print("no error")
            except CheckpointError as e:
                print("CheckpointError:", " ".join(str(e).split()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("CheckpointError:") for line in lines), done.stdout + done.stderr
    assert re.search(r"checkpoints/8 cannot be read.*Nothing was deleted", lines[0])
    assert listing(folder) == before
    assert same_params(load_run(folder).params(6), load_run(tiny_run).params(6))


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tiny_run, tmp_path):
    folder = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import time
        from rljaxinterp.agents import AlphaZeroConfig
        from rljaxinterp.runs import train
        cfg = AlphaZeroConfig.from_dict({TINY.to_dict()!r})
        train(cfg, {str(folder)!r}, progress=False, log=lambda s: (print(s, flush=True), time.sleep(0.4)))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (folder / "checkpoints" / "4").exists():
            assert proc.poll() is None, "training subprocess ended early"
            assert time.time() < deadline, "no checkpoint 4 within 120 s"
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = load_run(folder).steps
    assert 4 in done and 8 not in done
    train(TINY, folder, progress=False)
    run = load_run(folder)
    assert run.steps == [0, 2, 4, 6, 8]
    assert same_params(run.params(), load_run(tiny_run).params())
    assert [r["iteration"] for r in run.metrics()] == list(range(1, 9))


# -- CLI and other games ---------------------------------------------------------------------------
def test_cli_registers_train_and_eval(tmp_path):
    from rljaxinterp.cli import build_parser
    from rljaxinterp.cli.train import config_from_args

    args = build_parser().parse_args(
        ["train", "alphazero", "--env", "connect_four", "--out", str(tmp_path), "--iterations", "3"])
    cfg = config_from_args(args)
    assert callable(args.run) and cfg.env == "connect_four" and cfg.iterations == 3 and cfg.model == "mlp"
    args = build_parser().parse_args(["eval", str(tmp_path)])
    assert callable(args.run) and args.run_dir == str(tmp_path)


@pytest.mark.parametrize("env", [
    pytest.param("connect_four", marks=pytest.mark.slow),
    pytest.param("othello", marks=pytest.mark.slow),
    pytest.param("go_9x9", marks=pytest.mark.slow),  # ~30 s compile
    pytest.param("chess", marks=pytest.mark.slow),  # ~40 s compile
])
def test_default_config_runs_end_to_end(env):
    """Each game's default config, shrunk, runs two jitted iterations (search, self-play, updates)."""
    from rljaxinterp.agents import init_state, iteration_key, make_iteration
    from rljaxinterp.runs import default_config

    small = {"conv": {"channels": 8, "blocks": 1}, "mlp": {"hidden": [16]}}[default_config("alphazero", env).model]
    cfg = default_config("alphazero", env, games=2, num_simulations=2, unroll_length=2, minibatch_size=4,
                         updates_per_iteration=1, replay_size=8, iterations=2, max_num_considered_actions=2,
                         model_kwargs=small)
    state, step = init_state(cfg), make_iteration(cfg)
    for i in range(cfg.iterations):
        state, metrics = step(state, iteration_key(cfg, i))
    assert int(state.iteration) == 2 and int(state.buffer.size) == 8
    assert np.isfinite(float(metrics["loss"]))


@pytest.mark.slow
def test_muzero_policy_trains_and_searches_deterministically():
    from rljaxinterp.agents import init_state, iteration_key, make_agent, make_iteration

    cfg = TINY.replace(policy="muzero", iterations=2)
    state, step = init_state(cfg), make_iteration(cfg)
    for i in range(cfg.iterations):
        state, metrics = step(state, iteration_key(cfg, i))
    assert np.isfinite(float(metrics["loss"]))
    agent = make_agent(cfg)
    states = agent.init_games(jax.random.PRNGKey(3))
    a = agent.search(state.params, states, jax.random.PRNGKey(0), deterministic=True)
    b = agent.search(state.params, states, jax.random.PRNGKey(1), deterministic=True)
    assert np.array_equal(np.asarray(a.action), np.asarray(b.action))
    assert a.search_tree.node_values.shape == (cfg.games, cfg.num_simulations + 1)


@pytest.mark.slow
def test_train_on_two_host_devices_matches_one_device(tmp_path):
    """train() shards the self-play games over all devices: a run on 2 forced host devices
    ends with the params of a 1-device run (up to float reduction order), and a checkpoint
    written on 2 devices resumes on 1."""
    cfg = AlphaZeroConfig(games=8, num_simulations=2, iterations=4, checkpoint_every=2, replay_size=256,
                          minibatch_size=16, updates_per_iteration=2, model_kwargs={"hidden": [16]})
    script = textwrap.dedent(f"""
        import json, sys, jax
        from rljaxinterp.agents import AlphaZeroConfig
        from rljaxinterp.runs import train
        cfg = AlphaZeroConfig.from_dict({cfg.to_dict()!r})
        state = train(cfg, sys.argv[1], progress=False)
        if len(sys.argv) > 2:
            train(cfg, sys.argv[2], progress=False, stop_after=2)
        sharding = state.env_state.observation.sharding
        print(json.dumps({{"devices": jax.device_count(), "spread": len(sharding.device_set),
                          "spec": list(getattr(sharding, "spec", []))}}))
    """)

    def run(devices: int, *folders: Path) -> dict:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                   JAX_PLATFORMS="cpu")
        out = subprocess.run([sys.executable, "-c", script, *map(str, folders)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    one = run(1, tmp_path / "one")
    two = run(2, tmp_path / "two", tmp_path / "two_then_one")
    assert one["devices"] == 1 and one["spread"] == 1
    assert two["devices"] == 2 and two["spread"] == 2 and two["spec"][:1] == ["games"]
    assert load_run(tmp_path / "two_then_one").steps == [0, 2]
    train(cfg, tmp_path / "two_then_one", progress=False)  # resumed here, on this process's device
    reference = load_run(tmp_path / "one")
    for name in ("two", "two_then_one"):
        run_ = load_run(tmp_path / name)
        assert run_.steps == reference.steps == [0, 2, 4]
        for x, y in zip(jax.tree.leaves(run_.params()), jax.tree.leaves(reference.params()), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6, err_msg=name)
        for a, b in zip(run_.metrics(), reference.metrics(), strict=True):
            assert a["env_steps"] == b["env_steps"]
            np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5, err_msg=name)


def test_policy_loss_is_over_legal_moves_only():
    """Illegal moves' logits do not enter the policy loss: it equals the cross-entropy of the
    softmax over the legal moves alone."""
    from rljaxinterp.agents import init_state, make_agent

    agent, params = make_agent(TINY), init_state(TINY).params
    obs = jax.random.bernoulli(jax.random.PRNGKey(0), 0.3, (5, 3, 3, 2)).astype(np.float32)
    legal = np.array(jax.random.bernoulli(jax.random.PRNGKey(1), 0.6, (5, 9)))
    legal[:, 0] = True
    policy = np.where(legal, np.arange(1, 10, dtype=np.float32), 0.0)
    policy /= policy.sum(axis=1, keepdims=True)
    _, (policy_loss, _) = agent.loss(params, obs, policy, legal, np.zeros(5, np.float32))
    logits = np.asarray(agent.policy_value(params, obs).logits, np.float64)
    top = np.where(legal, logits, -np.inf).max(axis=1, keepdims=True)
    log_z = top + np.log(np.where(legal, np.exp(logits - top), 0.0).sum(axis=1, keepdims=True))
    expected = -(policy * np.where(legal, logits - log_z, 0.0)).sum(axis=1).mean()
    np.testing.assert_allclose(float(policy_loss), expected, rtol=1e-5)


@pytest.mark.slow
def test_go_restrict_pass_allows_pass_only_after_opponent_pass():
    from rljaxinterp.agents import make_agent

    with pytest.raises(ValueError, match="only for Go"):
        AlphaZeroConfig(restrict_pass=True)
    agent = make_agent(AlphaZeroConfig(env="go_9x9", model="conv", model_kwargs={"channels": 4, "blocks": 1},
                                       restrict_pass=True))
    env, pass_ = agent.env, agent.env.num_actions - 1
    batch = lambda s: jax.tree.map(lambda x: x[None], s)
    state = env.init(jax.random.PRNGKey(0))
    assert bool(state.legal_action_mask[pass_]) and not bool(agent.legal_actions(batch(state))[0, pass_])
    after_stone = env.step(state, 40, jax.random.PRNGKey(1))
    assert not bool(agent.legal_actions(batch(after_stone))[0, pass_])
    after_pass = env.step(after_stone, pass_, jax.random.PRNGKey(2))
    legal = np.asarray(agent.legal_actions(batch(after_pass))[0])
    np.testing.assert_array_equal(legal, np.asarray(after_pass.legal_action_mask))  # pass allowed again
    assert legal[pass_] and legal[:pass_].sum() == 80  # one stone on the board


def test_configs_written_before_a_field_existed_read_as_trained():
    """Runs from before symmetry augmentation and restricted passes trained without them."""
    import dataclasses

    from rljaxinterp.agents.config import AlphaZeroConfig

    old = {k: v for k, v in dataclasses.asdict(AlphaZeroConfig(env="tic_tac_toe")).items()
           if k not in ("symmetries", "restrict_pass")}
    config = AlphaZeroConfig.from_dict(old)
    assert config.symmetries is False and config.restrict_pass is False
