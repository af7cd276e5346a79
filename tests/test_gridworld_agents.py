"""PPO and DQN on a gridworld, and the training-loop convolution they rely on."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import envs
from rljaxinterp.agents import dqn as dqn_lib
from rljaxinterp.agents import ppo as ppo_lib
from rljaxinterp.agents import tree_ppo
from rljaxinterp.eval import tree_worlds as tw
from rljaxinterp.models.kernels import loop_friendly_conv

TINY_COIN = {"height": 5, "width": 7, "max_steps": 30}


def _conv(x, k):
    kh, kw = k.shape[:2]
    pad = (((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2))
    return jax.lax.conv_general_dilated(x, k, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("kernel", [pytest.param((3, 3), marks=pytest.mark.slow), (1, 1), pytest.param((2, 2), marks=pytest.mark.slow),
                                    pytest.param((3, 2), marks=pytest.mark.slow)])
def test_loop_friendly_conv_has_the_values_and_gradients_of_a_plain_conv(kernel):
    kx, kk, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (2, 3, 5, 7, 4))  # (seeds, N, H, W, Cin): vmapped like training
    k = jax.random.normal(kk, (2, *kernel, 4, 6))
    g = jax.random.normal(kg, (2, 3, 5, 7, 6))

    def grads(conv):
        loss = lambda x, k, g: jnp.sum(conv(x, k) * g)
        return jax.vmap(jax.value_and_grad(loss, argnums=(0, 1)))(x, k, g)

    (v1, (dx1, dk1)), (v2, (dx2, dk2)) = grads(loop_friendly_conv), grads(_conv)
    np.testing.assert_allclose(v1, v2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dk1, dk2, rtol=1e-4, atol=1e-3)


def _success(env, policy, params, key, n=256):
    """Share of ``n`` fresh levels on which ``policy(params, obs, key) -> action`` reaches the coin."""
    states = jax.vmap(env.init)(jax.random.split(key, n))

    def body(states, key):
        k_act, k_env = jax.random.split(key)
        states = jax.vmap(env.step)(states, policy(params, states.observation, k_act), jax.random.split(k_env, n))
        return states, None

    states, _ = jax.lax.scan(body, states, jax.random.split(key, env.max_steps))
    return float(jnp.mean(env.episode_metrics(states)["reached_coin"]))


@pytest.fixture(scope="module")
def coin_env():
    return envs.make("CoinAtEnd", distribution="train", **TINY_COIN)


@pytest.fixture(scope="module")
def random_success(coin_env):
    policy = lambda p, obs, k: jax.random.randint(k, obs.shape[:1], 0, 4)
    return _success(coin_env, policy, None, jax.random.PRNGKey(1))


@pytest.mark.slow
def test_ppo_learns_to_reach_the_coin_on_fresh_levels(coin_env, random_success):
    config = ppo_lib.PPOConfig(env="CoinAtEnd", env_kwargs=TINY_COIN, model="mlp", model_kwargs={"hidden": [64, 64]},
                               num_envs=32, num_steps=32, lr=1e-3, total_timesteps=32 * 32 * 40)
    agent = ppo_lib.make_ppo(config)
    state, _ = ppo_lib.make_train(config)(jax.random.PRNGKey(0))
    policy = lambda p, obs, k: jax.random.categorical(k, agent.policy_value(p, obs).logits)
    trained = _success(coin_env, policy, state.params, jax.random.PRNGKey(2))
    assert trained >= random_success + 0.4, (trained, random_success)


@pytest.mark.slow
def test_dqn_learns_to_reach_the_coin_on_fresh_levels(coin_env, random_success):
    config = dqn_lib.DQNConfig(env="CoinAtEnd", env_kwargs=TINY_COIN, model="mlp", model_kwargs={"hidden": [64, 64]},
                               num_envs=16, total_timesteps=60_000, buffer_size=10_000, learning_starts=1_000,
                               train_frequency=2, target_update_every=100, lr=1e-3, eps_decay_steps=30_000,
                               gamma=0.95)
    agent = dqn_lib.make_dqn(config)
    state, _ = dqn_lib.make_train(config)(jax.random.PRNGKey(0))
    policy = lambda p, obs, k: jnp.argmax(agent.policy_value(p, obs).logits, -1)
    trained = _success(coin_env, policy, state.params, jax.random.PRNGKey(2))
    assert trained >= random_success + 0.4, (trained, random_success)


# -- Tree Gridworld trained online (experiments/tree_gridworld.py) -------------------------------

CONTINUING_TREES = {"size": 10, "num_trees": 10, "max_steps": 2**31 - 1}


@pytest.mark.slow
def test_continuing_tree_worlds_carry_across_rollouts_and_never_end():
    """Reset-free training: a rollout starts where the last one stopped (agent, trees,
    counters), no step is done, and rewards are the chops alone (no truncation bootstrap)."""
    config = ppo_lib.PPOConfig(env="TreeGrid", env_kwargs=CONTINUING_TREES, model="mlp",
                               model_kwargs={"hidden": [16]}, num_envs=4, num_steps=50,
                               total_timesteps=4 * 50 * 2, anneal_lr=False)
    agent = ppo_lib.make_ppo(config)
    state = agent.init(jax.random.PRNGKey(0))
    state = state.replace(env_state=state.env_state.replace(step_count=state.env_state.step_count + 7))
    after_one, _ = jax.jit(agent.update)(state)
    carry, traj = jax.jit(agent.rollout)(after_one, jax.random.PRNGKey(1))
    first, second = after_one.env_state, carry[0]
    assert not np.asarray(traj.done).any()
    np.testing.assert_array_equal(first.step_count, 7 + 50)
    np.testing.assert_array_equal(second.step_count, 7 + 100)
    # The second rollout begins with the first one's last observation (no reset in between)...
    np.testing.assert_array_equal(traj.observation[0], first.observation)
    # ... and its rewards are exactly the chops it made: cumulative counters carry on.
    chops = np.asarray(second.inner.chopped - first.inner.chopped)
    np.testing.assert_array_equal(np.asarray(traj.reward).sum(0), chops)
    assert (np.asarray(first.inner.chopped) >= 0).all() and chops.sum() > 0
    assert (np.asarray(second.inner.extinctions) >= np.asarray(first.inner.extinctions)).all()


def test_gae_bootstraps_from_the_state_after_the_rollout():
    """With no episode end, the value after the rollout reaches back through GAE:
    raising it by d raises advantage t by d * gamma * (gamma * lambda) ** (T - 1 - t)."""
    config = ppo_lib.PPOConfig(env="TreeGrid", env_kwargs=CONTINUING_TREES, model="mlp",
                               model_kwargs={"hidden": [16]}, num_envs=2, num_steps=5,
                               total_timesteps=10, num_minibatches=2, gamma=0.9, gae_lambda=0.8)
    agent = ppo_lib.make_ppo(config)
    t, n = 5, 2
    traj = ppo_lib.Transition(observation=jnp.zeros((t, n, 1)), legal=jnp.ones((t, n, 4), bool),
                              action=jnp.zeros((t, n), jnp.int32), log_prob=jnp.zeros((t, n)),
                              value=jnp.linspace(0, 1, t * n).reshape(t, n),
                              reward=jnp.arange(t * n, dtype=jnp.float32).reshape(t, n) % 2,
                              done=jnp.zeros((t, n), bool))
    adv0, target0 = agent.advantages(traj, jnp.zeros(n))
    adv1, _ = agent.advantages(traj, jnp.full(n, 10.0))
    expected = 10.0 * 0.9 * (0.9 * 0.8) ** (t - 1 - np.arange(t))
    np.testing.assert_allclose(np.asarray(adv1 - adv0), np.repeat(expected[:, None], n, 1), rtol=1e-5)
    np.testing.assert_allclose(target0, adv0 + traj.value)
    # An episode end at step 2 would cut it: nothing before step 3 sees the bootstrap.
    cut = traj.replace(done=traj.done.at[2].set(True))
    a0, _ = agent.advantages(cut, jnp.zeros(n))
    a1, _ = agent.advantages(cut, jnp.full(n, 10.0))
    assert np.allclose(np.asarray(a1 - a0)[:3], 0.0) and (np.asarray(a1 - a0)[3:] > 0).all()


def _tree_experiment(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "experiments"))
    import tree_gridworld

    return tree_gridworld


TREE_FIXTURE = Path(__file__).parent / "fixtures" / "tree_progress_v1"


def test_world_phases_read_crash_empty_spell_regrowth_and_second_crash():
    """Per-update records of one world (rollouts of 10 steps) -> its extinctions, regrowths and
    chop rates per step with trees standing, before the crash and after the regrowth."""
    #   update:        0  1  2  3  4  5  6  7  8  9
    trees = np.array([9, 8, 0, 0, 0, 2, 3, 0, 0, 0])
    chops = np.array([2, 3, 4, 0, 0, 1, 3, 2, 0, 0])
    empty = np.array([0, 0, 4, 10, 10, 3, 0, 6, 10, 7])  # update 9: regrew and emptied again inside it
    extinctions, revivals = tw.world_events(trees, empty, 10)
    # Update 2 ends with 4 empty steps: steps 27..30 are empty. Update 5 starts with 3: step 54 has a tree.
    assert extinctions == [27, 75, 94] and revivals == [54, 91]
    p = tw.world_phases(trees, chops, empty, 10, window=20)
    assert (p["first_extinction"], p["first_regrowth"], p["extinct_again"]) == (27, 54, 75)
    assert (p["extinctions"], p["regrowths"], p["trees_end"]) == (3, 2, 0)
    assert p["empty_share"] == pytest.approx(50 / 100)
    assert p["alive_after_regrowth"] == 75 - 54
    # Before the crash: updates 0..2 (window 20 = 2 updates before the crash update, and it).
    assert p["rate_before_crash"] == pytest.approx((2 + 3 + 4) / (10 + 10 + 6))
    # From the regrowth (update 5) through the update of the next extinction (7).
    assert p["rate_after_regrowth"] == pytest.approx((1 + 3 + 2) / (7 + 10 + 4))
    assert p["rate_end"] == pytest.approx(0 / 3)
    # Its stretches with trees standing: the first forest, then each regrowth to the next crash.
    assert tw.alive_spells(trees, empty, 10) == [(1, 26, True), (54, 21, True), (91, 3, True)]
    rows = tw.period_table({"world_trees": trees[None, :, None], "world_chops": chops[None, :, None],
                            "world_extinct_steps": empty[None, :, None]}, 10, 2)
    assert [(r["start"], r["end"], r["spells"], r["ended"]) for r in rows] == [(0, 50, 1, 1), (50, 100, 2, 2)]
    assert [r["empty_share"] for r in rows] == pytest.approx([24 / 50, 26 / 50])
    assert [r["alive_rate"] for r in rows] == pytest.approx([9 / 26, 6 / 24])
    assert [r["reward_rate"] for r in rows] == pytest.approx([9 / 50, 6 / 50])
    assert [r["hazard"] for r in rows] == pytest.approx([1 / 26, 2 / 24])
    assert [r["median_length"] for r in rows] == [26, 12]
    # A world that never crashes has no phases but a rate at the end.
    q = tw.world_phases(np.full(4, 10), np.ones(4, int), np.zeros(4, int), 10, window=20)
    assert q["first_extinction"] is q["first_regrowth"] is q["rate_before_crash"] is None
    assert q["extinctions"] == 0 and q["rate_end"] == pytest.approx(0.1)
    assert tw.alive_spells(np.full(4, 10), np.zeros(4, int), 10) == [(1, 40, False)]


@pytest.mark.slow
def test_segment_records_each_world_and_its_extinction_step_matches_the_env():
    """The per-world records of a training segment locate each world's first extinction at the
    step the env stamps (one tree on 3x3, so worlds empty fast and stay empty)."""
    config = ppo_lib.PPOConfig(env="TreeGrid", env_kwargs={"size": 3, "num_trees": 1, "max_steps": 2**31 - 1},
                               model="mlp", model_kwargs={"hidden": [8]}, num_envs=4, num_steps=8,
                               total_timesteps=4 * 8 * 6, anneal_lr=False)
    agent = ppo_lib.make_ppo(config)
    state = jax.vmap(agent.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    state, m = tree_ppo.make_segment(agent, 6)(state)
    assert m["world_trees"].shape == (2, 6, 4) and m["world_chops"].shape == (2, 6, 4)
    first = np.asarray(state.env_state.inner.first_extinction)
    assert (first > 0).sum() >= 4  # most worlds were emptied
    for s in range(2):
        for w in range(4):
            ext, rev = tw.world_events(m["world_trees"][s, :, w], m["world_extinct_steps"][s, :, w], 8)
            assert rev == [] and ext == ([first[s, w]] if first[s, w] > 0 else [])
            assert int(m["world_chops"][s, :, w].sum()) == int(state.env_state.inner.chopped[s, w])


def _matches(got, expected, where: str = "") -> None:
    """Equal, except that floats may differ in their last float32 bits: the float32 curve means
    (entropy, value) moved by one ulp between the compiler the fixture was written with and
    today's, while every count and every world record stayed exactly the same."""
    if isinstance(expected, dict):
        assert set(got) >= set(expected), where
        for k in expected:
            _matches(got[k], expected[k], f"{where}/{k}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            _matches(g, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-9), where
    else:
        assert got == expected, where


def _same_as_two_chunks_of_the_earlier_script(out: Path) -> None:
    """The report's records equal those the pre-run-layer script wrote for the same two chunks
    (floats to float32 rounding, see ``_matches``)."""
    import json

    expected = json.loads((TREE_FIXTURE / "expected_two_chunks.json").read_text())
    got = json.loads((out / "results.json").read_text())["data"]["runs"]["0.99"]
    _matches(got, expected)
    with np.load(TREE_FIXTURE / "expected_two_chunks_worlds.npz") as a, np.load(out / "worlds.npz") as b:
        assert a["gamma0.99_world_chops"].shape == (2, 2, 2)  # (seeds, updates, worlds)
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)


TREE_ARGS = ["--envs", "2", "--num-steps", "16", "--gammas", "0.99", "--eval-forests", "2", "--eval-steps", "20",
             "--periods", "2", "--world-plots", "1", "--seeds", "2", "--null", "3"]


@pytest.mark.slow
def test_tree_run_resumed_through_the_run_layer_ends_where_the_earlier_uninterrupted_run_ended(
        monkeypatch, tmp_path, capsys):
    """One chunk, then ``--resume --chunks 2`` (the run layer lengthens the tree_ppo run): the
    world records, curves, fresh-forest figures and restraint are those of two chunks in one go
    of the earlier npz-based script (a fixture written by it; floats to float32 rounding), and
    bit-identical to two chunks in one go of today's."""
    tg = _tree_experiment(monkeypatch)

    def run(*argv):
        monkeypatch.setattr("sys.argv", ["tree_gridworld.py", *TREE_ARGS, *argv])
        tg.main()

    run("--out", str(tmp_path / "split"), "--chunks", "1", "--steps-per-seed", "32")
    assert (tmp_path / "split" / "gamma0.99" / "config.json").exists()
    run("--out", str(tmp_path / "split"), "--resume", "--chunks", "2")
    assert "run length changed: chunks 1 -> 2" in capsys.readouterr().out
    _same_as_two_chunks_of_the_earlier_script(tmp_path / "split")
    # with today's code, bit for bit: the resumed run ends where two chunks in one go end
    run("--out", str(tmp_path / "whole"), "--chunks", "2", "--steps-per-seed", "32")
    import json
    records = lambda name: json.loads((tmp_path / name / "results.json").read_text())["data"]["runs"]["0.99"]
    split, whole = records("split"), records("whole")
    keys = json.loads((TREE_FIXTURE / "expected_two_chunks.json").read_text())
    assert {k: split[k] for k in keys} == {k: whole[k] for k in keys}
    # A run can only end at or after the chunks it has done.
    with pytest.raises(SystemExit, match="has 2 updates done"):
        run("--out", str(tmp_path / "split"), "--resume", "--chunks", "1")
    # Every chunk is a checkpoint, so any of them is a policy to test: the last gives the report's figures.
    capsys.readouterr()
    run("--out", str(tmp_path / "split"), "--restraint-of", "2")
    printed = capsys.readouterr().out.splitlines()[-1]
    import json
    restraint = json.loads((tmp_path / "split" / "results.json").read_text())["data"]["runs"]["0.99"]["restraint"]
    assert printed.endswith(" / ".join("[" + ", ".join(f"{n[0]:.3f}" for n in seed) + "]" for seed in restraint))


@pytest.mark.slow
def test_tree_folder_of_the_earlier_format_is_imported_and_resumes_bit_identically(monkeypatch, tmp_path):
    """A folder the npz-based script left after one chunk (args.json + progress_gamma0.99.npz) is
    imported into a run folder and resumed to two chunks: the same records as the earlier
    script's uninterrupted two-chunk run."""
    import shutil

    tg = _tree_experiment(monkeypatch)
    out = tmp_path / "old"
    shutil.copytree(TREE_FIXTURE, out, ignore=shutil.ignore_patterns("expected_*"))
    monkeypatch.setattr("sys.argv", ["tree_gridworld.py", "--out", str(out), "--resume", "--chunks", "2"])
    tg.main()
    assert (out / "gamma0.99" / "checkpoints" / "1").exists() and (out / "gamma0.99" / "checkpoints" / "2").exists()
    _same_as_two_chunks_of_the_earlier_script(out)


@pytest.mark.slow
def test_restraint_test_matches_a_hand_count_for_one_random_step():
    """One uniformly random step on 3x3 with no regrowth: a 1-tree forest is emptied exactly when
    the agent stands next to the tree (24 of the 72 ordered cell pairs) and moves into it; a
    2-tree forest cannot be emptied in one step."""
    config = ppo_lib.PPOConfig(env="TreeGrid", env_kwargs={"size": 3, "num_trees": 2, "regrow_scale": 0.0,
                                                           "max_steps": 2**31 - 1},
                               model="mlp", model_kwargs={"hidden": [8]}, num_envs=2, num_steps=4,
                               total_timesteps=8)
    agent = ppo_lib.make_ppo(config)
    forests = 3000
    shares = np.asarray(tw.make_restraint_test(agent, (1, 2), forests, steps=1)(None, jax.random.PRNGKey(0)))
    expected = 24 / 72 / agent.env.num_actions
    assert abs(shares[0, 0] - expected) < 4 * np.sqrt(expected * (1 - expected) / forests)
    assert shares[0, 1] == pytest.approx(1 - shares[0, 0])  # nothing regrows, so the rest is undecided
    assert shares[1, 0] == 0.0
    # The trained-policy path: one share pair per seed.
    params = jax.vmap(agent.init)(jax.random.split(jax.random.PRNGKey(1), 2)).params
    assert tw.make_restraint_test(agent, (1,), 8, steps=2)(params, jax.random.PRNGKey(0)).shape == (2, 1, 2)
