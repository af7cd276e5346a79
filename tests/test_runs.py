"""The run layer: folders written before the redesign still load, and training output fits
a terminal and a log."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from rljaxinterp import runs
from rljaxinterp.runs.progress import MAX_LINES, every_n

FIXTURES = Path(__file__).parent / "fixtures" / "runs_v1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("kind", ["alphazero", "ppo", "dqn"])
def test_folders_written_by_the_old_layout_load_with_the_same_contents(kind):
    run = runs.load_run(FIXTURES / kind)
    expected = EXPECTED[kind]
    assert run.kind.name == kind and run.steps == expected["steps"]
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(run.params())]
    assert sum(x.sum() for x in leaves) == pytest.approx(expected["param_sum"], rel=1e-12)
    assert sum(np.abs(x).sum() for x in leaves) == pytest.approx(expected["param_abs_sum"], rel=1e-12)
    assert len(run.metrics()) == expected["metrics_rows"]
    state, meta = run.state()
    assert meta["wall_time"] > 0 and jax.tree.structure(state.params) == jax.tree.structure(run.params())


def test_old_alphazero_folder_without_agent_field_resumes_only_its_own_config(tmp_path):
    folder = tmp_path / "az"
    shutil.copytree(FIXTURES / "alphazero", folder)
    config = runs.load_run(folder).config
    assert "agent" not in json.loads((folder / "config.json").read_text())
    runs.train(config, folder, progress=False)  # finished: nothing to do, nothing rewritten
    assert runs.load_run(folder).steps == EXPECTED["alphazero"]["steps"]
    with pytest.raises(runs.RunFolderError, match="different config.*seed: folder has 0, asked 1"):
        runs.train(config.replace(seed=1), folder, progress=False)
    with pytest.raises(runs.RunFolderError, match="holds a run of kind 'alphazero', not 'ppo'"):
        runs.train(runs.load_run(FIXTURES / "ppo").config, folder, progress=False)


def test_unknown_agent_kind_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"agent": "sarsa", "env": "CartPole-v1"}))
    with pytest.raises(ValueError, match="unknown agent kind 'sarsa'; registered kinds: alphazero, ppo, dqn"):
        runs.load_run(tmp_path)


def test_summary_lines_are_capped_for_logs():
    assert every_n(300) == 10 and every_n(30) == 1 and every_n(31) == 2 and every_n(0) == 1
    assert all(-(-chunks // every_n(chunks)) <= MAX_LINES for chunks in range(1, 2000))


@pytest.mark.slow
def test_training_piped_to_a_log_prints_a_few_summary_lines(tmp_path):
    """A 40-iteration run whose stdout is a pipe prints at most MAX_LINES lines, the last one
    at the final iteration, and no progress-bar fragments."""
    script = f"""
from rljaxinterp import runs
cfg = runs.default_config("alphazero", "tic_tac_toe", model_kwargs={{"hidden": [8]}}, games=4, replay_size=36,
    num_simulations=2, max_num_considered_actions=2, updates_per_iteration=1, minibatch_size=8,
    iterations=40, checkpoint_every=20)
runs.train(cfg, {str(tmp_path / "run")!r})
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert 1 <= len(lines) <= MAX_LINES and lines == [l for l in lines if l.startswith("alphazero tic_tac_toe")]
    assert "iteration=40/40" in lines[-1] and "\r" not in done.stdout + done.stderr


def test_extendable_fields_lengthen_a_run_but_never_cut_it_before_its_last_checkpoint(tmp_path):
    """tree_ppo runs may change ``chunks`` on resume (config.json rewritten atomically, a note
    says so); ending before the last checkpoint or changing any other field is refused."""
    from rljaxinterp.runs.train import _claim

    kind = runs.kind_named("tree_ppo")
    config = runs.default_config("tree_ppo", "TreeGrid", num_envs=2, num_steps=4, chunks=1, updates_per_chunk=2)
    folder = tmp_path / "tree"
    assert _claim(kind, config, folder, 2) is None
    (folder / "checkpoints" / "2").mkdir(parents=True)  # as if the first chunk were done
    longer = config.replace(chunks=3)
    assert _claim(kind, longer, folder, 6) == "run length changed: chunks 1 -> 3, total_timesteps 16 -> 48"
    assert runs.read_config(folder)[1] == longer
    (folder / "checkpoints" / "6").mkdir()
    with pytest.raises(runs.RunFolderError, match="has 6 updates done; asked for 4 in all"):
        _claim(kind, longer.replace(chunks=2), folder, 4)
    with pytest.raises(runs.RunFolderError, match="gamma: folder has 0.99, asked 0.9"):
        _claim(kind, longer.replace(gamma=0.9), folder, 6)
    assert runs.read_config(folder)[1] == longer  # refusals change nothing
    with pytest.raises(ValueError, match="TreePPOConfig.chunks=0 is not allowed"):
        config.replace(chunks=0)


@pytest.mark.slow
def test_distill_run_equals_the_distil_function_and_resumes_bit_identically(tmp_path):
    """A student trained in a run folder (the ``distill`` kind) has the parameters ``distil``
    returns for the same teacher play and keys, and a run stopped after one checkpoint and
    resumed ends identical; ``load_run`` gives the student's network for interp."""
    import dataclasses

    import jax.numpy as jnp

    from rljaxinterp.agents.distill import distil, sampling_player, scale_width
    from rljaxinterp.runs.distill import DistillConfig, _keys
    from rljaxinterp.envs.sampling import random_play_states

    teacher_folder = FIXTURES / "alphazero"
    config = DistillConfig(teacher=str(teacher_folder), games=8, steps=20, checkpoint_every=10, epsilon=0.3, width=2.0)
    runs.train(config, tmp_path / "whole", progress=False)
    runs.train(config, tmp_path / "split", progress=False, stop_after=1)
    runs.train(config, tmp_path / "split", progress=False)
    whole, split = runs.load_run(tmp_path / "whole"), runs.load_run(tmp_path / "split")
    assert whole.steps == [0, 10, 20] and whole.metrics()[-1]["step"] == 20
    teacher = runs.load_run(teacher_folder)
    params = teacher.params()
    play = lambda o: teacher.policy_value(params, o)
    k_play, k_fit = _keys(config)
    played = random_play_states(teacher.env, 8, 9, k_play, sampling_player(play, 1.0, 0.3))
    student = teacher.kind.agent(dataclasses.replace(
        teacher.config, model_kwargs=scale_width("mlp", dict(teacher.config.model_kwargs), 2.0))).model
    fit = distil(play, student, played.observation.astype(jnp.float32), played.legal_action_mask, k_fit, steps=20)
    jax.tree.map(np.testing.assert_array_equal, whole.params(), split.params())  # same tree structure, too
    jax.tree.map(np.testing.assert_array_equal, whole.params(), fit.params)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]  # noqa: E731
    assert drop(whole.metrics()) == drop(split.metrics())
    assert whole.metrics()[-1]["policy_kl"] == fit.held_out["policy_kl"]
    assert whole.model.hidden == (16,)  # the teacher's width 8, doubled
    out = whole.policy_value(whole.params(), played.observation[:3].astype(jnp.float32))
    assert out.logits.shape == (3, 9)


@pytest.mark.slow
def test_seeded_run_equals_vmapped_segments_and_logs_each_seed(tmp_path):
    """A ppo_seeds run folder (two chunks, one checkpoint each, stopped and resumed between
    them) ends bit-identical to the same vmapped segments run by hand from the same split keys
    (and to ``jax.vmap(agent.train)``, one fused program, up to float rounding), logs one
    value per seed per update, and evaluates every seed on fresh levels after each chunk."""
    from rljaxinterp.agents.ppo import PPOConfig, make_ppo

    config = runs.default_config("ppo_seeds", "CoinAtEnd", env_kwargs={"height": 3, "width": 5, "max_steps": 10},
                                 model="mlp", model_kwargs={"hidden": [8]}, num_envs=4, num_steps=8,
                                 total_timesteps=4 * 8 * 4, seeds=2, chunks=2, eval_levels=3)
    assert config.checkpoint_every == 2
    runs.train(config, tmp_path / "run", progress=False, stop_after=1)
    runs.train(config, tmp_path / "run", progress=False)
    run = runs.load_run(tmp_path / "run")
    assert run.steps == [0, 2, 4]
    rows = run.metrics()
    assert [r["update"] for r in rows] == [1, 2, 3, 4] and all(len(r["episode_return"]) == 2 for r in rows)
    assert [sorted(r.get("eval", {})) == [] for r in rows] == [True, False, True, False]
    assert set(rows[-1]["eval"]) >= {"reached_coin", "reached_end_without_coin"}
    single = make_ppo(PPOConfig(**{k: v for k, v in config.to_dict().items()
                                   if k not in ("seeds", "chunks", "eval_levels")}))
    keys = jax.random.split(jax.random.PRNGKey(config.seed), 2)
    segment = jax.jit(jax.vmap(lambda s: single.segment(s, 2)))
    by_hand = segment(segment(jax.jit(jax.vmap(single.init))(keys))[0])[0]
    fused, _ = jax.jit(jax.vmap(single.train))(keys)
    jax.tree.map(np.testing.assert_array_equal, run.params(), by_hand.params)  # the same programs: bit-identical
    # one fused program: XLA may round differently
    jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, atol=1e-6), run.params(), fused.params)
    with pytest.raises(ValueError, match="3 chunks must divide"):
        config.replace(chunks=3)


def test_derived_length_fields_refuse_a_disagreeing_value_and_imports_only_create(tmp_path):
    """Fields a seeded or tree config derives cannot be given another value silently; an npz
    import never writes into an existing folder."""
    from rljaxinterp.agents.seeds import PPOSeedsConfig
    from rljaxinterp.agents.tree_ppo import TreePPOConfig
    from rljaxinterp.runs.tree_ppo import import_progress

    with pytest.raises(ValueError, match=r"TreePPOConfig.total_timesteps=5 is not allowed: it follows from"):
        TreePPOConfig(num_envs=2, num_steps=4, total_timesteps=5)
    with pytest.raises(ValueError, match=r"checkpoint_every=7 is not allowed: it follows from num_updates // chunks"):
        PPOSeedsConfig(num_envs=2, num_steps=4, total_timesteps=16, chunks=2, checkpoint_every=7)
    with pytest.raises(ValueError, match="eval_levels=4 needs a task with a 'train' level distribution"):
        PPOSeedsConfig(num_envs=2, num_steps=4, total_timesteps=16, eval_levels=4)
    with pytest.raises(ValueError, match="max_steps"):
        TreePPOConfig(env_kwargs={"size": 10, "num_trees": 10, "max_steps": 100})
    (tmp_path / "taken").mkdir()
    with pytest.raises(runs.RunFolderError, match="exists; an import only creates a new run folder"):
        import_progress(Path(__file__).parent / "fixtures" / "tree_progress_v1" / "progress_gamma0.99.npz",
                        TreePPOConfig(num_envs=2, num_steps=16), tmp_path / "taken")
