"""Algorithm distillation on Dark Room: the env and its Hard variant, the source learning
histories, the in-context trial table, bad input, and a tiny training that must improve."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import envs, runs
from rljaxinterp.agents.algorithm_distillation import ADConfig, ADState, history_tables, make_ad
from rljaxinterp.envs.dark_room import DarkRoomTrials, source_histories
from rljaxinterp.interp import concepts, sequence

UP, DOWN, LEFT, RIGHT, STAY = range(5)


@pytest.fixture(scope="module")
def room():
    return envs.make("DarkRoom-v0")


def play(env, state, actions):
    step = jax.jit(env.step)
    rewards = []
    for t, a in enumerate(actions):
        state = step(state, jnp.int32(a), jax.random.key(t))
        rewards.append(float(state.rewards[0]))
    return state, rewards


def test_reset_reward_at_goal_and_20_step_episodes(room):
    goal = 4 * 9 + 6  # two cells right of the centre
    state = room.reset_to(goal)
    assert int(state.inner.pos) == 40 and state.observation.shape == (18,)
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(state.observation)), [4, 9 + 4])
    state, rewards = play(room, state, [RIGHT, RIGHT] + [STAY] * 18)
    assert rewards == [0.0] + [1.0] * 19  # +1 on every step that ends on the goal
    assert sum(rewards) == room.optimal_return(goal) == 19
    assert bool(state.truncated) and not bool(state.terminated) and int(state.step_count) == 20
    after, extra = play(room, state, [LEFT])  # a step after the end is a no-op with no reward
    assert extra == [0.0] and int(after.inner.pos) == goal
    walled, _ = play(room, room.reset_to(goal), [UP] * 6)  # walls keep the agent in the room
    assert int(walled.inner.pos) == 4


def test_hard_variant_rewards_once_per_episode():
    hard = envs.make("DarkRoomHard-v0")
    _, rewards = play(hard, hard.reset_to(41), [RIGHT, LEFT, RIGHT, STAY] + [STAY] * 16)
    assert rewards == [1.0] + [0.0] * 19 and float(hard.optimal_return(41)) == 1.0


def test_observation_is_only_the_position(room):
    a, _ = play(room, room.reset_to(0), [UP, LEFT])
    b, _ = play(room, room.reset_to(80), [UP, LEFT])
    np.testing.assert_array_equal(np.asarray(a.observation), np.asarray(b.observation))
    with pytest.raises(ValueError, match="'goal'.*allowed options: episode_steps, size"):
        envs.make("DarkRoom-v0", goal=3)
    with pytest.raises(ValueError, match="goal=81 is not a cell; allowed: 0..80"):
        room.check_goal(81)


@pytest.fixture(scope="module")
def histories(room):
    goals = jnp.repeat(jnp.arange(81), 2)
    return source_histories(room, goals, jax.random.key(0), 8)


def test_source_learns_and_is_deterministic(room, histories):
    returns = np.asarray(histories["reward"]).sum(-1)  # (histories, episodes)
    optimal = room.optimal_return(np.asarray(histories["goal"])).mean()
    mean = returns.mean(0)
    assert mean[0] < 0.3 * optimal and mean[-1] > 0.8 * optimal  # measured: 0.14 and 0.89
    assert np.all(np.diff(mean[:5]) > 0)
    again = source_histories(room, histories["goal"], jax.random.key(0), 8)
    for k in histories:
        np.testing.assert_array_equal(np.asarray(histories[k]), np.asarray(again[k]))
    assert np.asarray(histories["pos"])[:, :, 0].tolist() == [[40] * 8] * 162  # every episode starts at the centre


def test_history_table_is_what_a_trial_shows(room, histories):
    """Replaying a source history's actions in the trial env gives the training table."""
    trials = DarkRoomTrials(room, 2)
    h = 7
    pos, action, reward = (histories[k][h:h + 1, :2] for k in ("pos", "action", "reward"))
    table, actions = history_tables(room, pos, action, reward)
    state, rewards = play(trials, trials.reset_to(histories["goal"][h]), np.asarray(actions[0, :-1]))
    np.testing.assert_array_equal(np.asarray(state.observation), np.asarray(table[0]))
    assert rewards == np.asarray(reward).reshape(-1)[:-1].tolist()
    assert int(state.inner.episode) == 1 and int(state.inner.room.pos) == np.asarray(pos).reshape(-1)[-1]
    # concepts read the trial state: the goal has been found in context once a reward was seen
    found = concepts.compute("DarkRoom-v0", jax.tree.map(lambda x: x[None], state), ["goal_found_in_context", "episode"])
    assert float(found["goal_found_in_context"][0]) == float(np.asarray(reward).reshape(-1)[:-2].max() > 0)
    assert float(found["episode"][0]) == 1.0


# -- the model ------------------------------------------------------------------------------
TINY = ADConfig(test_goals=16, histories_per_goal=4, history_episodes=3, context_episodes=2, batch_size=16,
                num_updates=300, log_every=150, checkpoint_every=300, learning_rate=3e-3,
                model_kwargs={"d_model": 32, "heads": 2, "layers": 1, "d_mlp": 64})


@pytest.fixture(scope="module")
def agent():
    return make_ad(TINY)


def test_bad_input_names_the_allowed_values(agent):
    model = agent.model
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, *agent.env.observation_shape)))["params"]
    too_long = jnp.zeros((1, 41, agent.env.observation_shape[1]))
    with pytest.raises(ValueError, match=r"context of 41 timesteps is longer than the model's max_timesteps=40; "
                                         r"allowed: 1\.\.40"):
        jax.eval_shape(lambda p: model.apply({"params": p}, too_long), params)
    with pytest.raises(ValueError, match=r"unknown token type 'reward'; this model's token types are \('transition',\)"):
        sequence.kind_mask(model, 40, ["reward"])
    with pytest.raises(ValueError, match=r"ADConfig.data='random' is not allowed; allowed: history, expert"):
        ADConfig(data="random")
    with pytest.raises(ValueError, match=r"ADConfig.env='GraphPaths-v0' is not allowed; allowed: DarkRoom-v0, "
                                         r"DarkRoomHard-v0"):
        ADConfig(env="GraphPaths-v0")
    with pytest.raises(ValueError, match="history_episodes.*need >= context_episodes=8"):
        ADConfig(history_episodes=4)
    train, test = agent.goals()
    assert len(train) == 65 and len(test) == 16 and not set(train) & set(test)


@pytest.mark.slow
def test_tiny_training_improves(agent, histories):
    """On the module's source histories (``init`` and ``dataset`` run in the slow run-folder tests)."""
    params = jax.jit(agent.model.init)(jax.random.PRNGKey(0), jnp.zeros((1, *agent.env.observation_shape)))["params"]
    data = {k: histories[k] for k in ("pos", "action", "reward")}
    state = ADState(params, agent.optimiser().init(params), jax.random.PRNGKey(1), jnp.int32(0), jnp.int32(0), data)
    tables, actions = jax.jit(lambda d, k: agent.windows(d, k, 256))(data, jax.random.PRNGKey(5))
    loss = jax.jit(agent.loss)
    initial, _ = loss(params, tables, actions)
    state, _ = jax.jit(agent.segment, static_argnums=1)(state, 200)
    final, accuracy = loss(state.params, tables, actions)
    assert float(final) < 0.75 * float(initial)  # measured: 0.49 of the initial loss
    assert float(accuracy) > 0.45  # chance is 0.2; measured: 0.59


def test_cli_config_picks_the_ad_kind():
    import argparse

    from rljaxinterp.cli.train import add_parsers, config_from_args

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    config = config_from_args(parser.parse_args(["train", "ad", "--out", "x", "--data", "expert"]))
    assert isinstance(config, ADConfig) and config.data == "expert" and config.env == "DarkRoom-v0"
    assert dataclasses.replace(config, data="history") == runs.default_config("ad", "DarkRoom-v0")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ad")
    runs.train(dataclasses.replace(TINY, checkpoint_every=150), folder, progress=False)
    return folder


@pytest.mark.slow
def test_run_folder_checkpoints_data_and_evaluation(trained, agent):
    run = runs.load_run(trained)
    assert run.kind.name == "ad" and run.steps == [0, 150, 300]
    rows = run.metrics()
    assert [r["update"] for r in rows] == [150, 300] and rows[-1]["loss"] < rows[0]["loss"]
    returns = run.evaluate()
    assert returns.shape == (16, 2) and (returns >= 0).all()
    saved = run.state()[0].data
    for k, v in agent.dataset().items():  # the saved data are the seed's, regenerated bit-identically
        np.testing.assert_array_equal(np.asarray(saved[k]), np.asarray(v))
    assert json.loads((trained / "config.json").read_text())["agent"] == "ad"


@pytest.mark.slow
def test_resume_is_bit_identical(trained, tmp_path):
    config = dataclasses.replace(TINY, checkpoint_every=150)
    runs.train(config, tmp_path, progress=False, stop_after=1)
    assert runs.load_run(tmp_path).steps == [0, 150]
    runs.train(config, tmp_path, progress=False)
    for x, y in zip(jax.tree.leaves(runs.load_run(trained).params()), jax.tree.leaves(runs.load_run(tmp_path).params())):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_probe_cli_reads_the_decision_token(trained, tmp_path):
    from rljaxinterp.cli import main

    assert main(["probe", str(trained), "--states", "256", "--out", str(tmp_path)]) == 0
    table = json.loads((tmp_path / "probes.json").read_text())["test"]
    assert set(table["blocks.0.resid_post"]) >= {"goal_row", "goal_col", "distance_to_goal", "goal_found_in_context"}
    assert table["embed"]["agent_row"]["test"] > 0.9  # the decision token embeds the current position
