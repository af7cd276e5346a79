"""Decision transformer on GraphPaths-v0: the env (BFS, reward, reset, random walks), the
causal GPT's named sites and head patching, and a tiny training run that must improve."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import envs, interp, runs
from rljaxinterp.agents.decision_transformer import (
    DTConfig,
    DTState,
    evaluate,
    make_dt,
    walk_figures,
    walk_tables,
)
from rljaxinterp.envs.graph_paths import UNREACHABLE, random_walks, shortest_distances
from rljaxinterp.interp import sequence

# 0 -> 1 -> 2 -> 3 -> 0, a shortcut 0 -> 2, and 4 -> 0; nothing reaches 4.
HAND = np.zeros((5, 5), bool)
for i, j in [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (4, 0)]:
    HAND[i, j] = True


def test_bfs_on_a_hand_made_graph():
    d = np.asarray(shortest_distances(HAND))
    expected = np.array([[0, 1, 1, 2, -1],
                         [3, 0, 1, 2, -1],
                         [2, 3, 0, 1, -1],
                         [1, 2, 2, 0, -1],
                         [1, 2, 2, 3, 0]])
    np.testing.assert_array_equal(d, expected)
    assert UNREACHABLE == -1


@pytest.fixture(scope="module")
def env():
    return envs.make("GraphPaths-v0", num_nodes=8, edge_prob=0.3, max_steps=6)


def test_reset_reward_and_shortest_path(env):
    start, goal = map(int, env.reachable_pairs()[np.argmax(env.distances_np[env.distances_np > 0])])
    d = int(env.distances_np[start, goal])
    state = env.reset_to(start, goal)
    assert float(state.observation[0, 1]) == -d and float(state.observation[:, 0].sum()) == 1
    assert int(state.inner.distance) == d and not bool(state.done)
    rewards = []
    step = jax.jit(env.step)
    for t in range(d):
        action = int(np.flatnonzero(np.asarray(state.inner.shortest_next))[0])
        state = step(state, jnp.int32(action), jax.random.key(t))
        rewards.append(float(state.rewards[0]))
    assert rewards == [-1.0] * d  # -1 per step, the last one included
    assert bool(state.terminated) and int(state.inner.node) == goal and float(state.inner.return_to_go) == 0.0
    after = step(state, jnp.int32(0), jax.random.key(99))  # a step after the end is a no-op with no reward
    assert int(after.inner.node) == goal and float(after.rewards[0]) == 0.0
    # the table records each action taken, and the return-to-go drops by each reward
    table = np.asarray(state.observation)
    assert table[:d, 1].tolist() == [-d + t for t in range(d)]


def test_env_rejects_bad_pairs_and_options(env):
    default = envs.make("GraphPaths-v0")  # 20 nodes, p = 0.1: node 4 is a dead end
    assert not default.adjacency_np[4].any()
    with pytest.raises(ValueError, match="no path from start=4 to goal=0 .*goals reachable from 4: none"):
        default.check_pair(4, 0)
    with pytest.raises(ValueError, match="no path from start=2 to goal=2"):
        env.check_pair(2, 2)
    with pytest.raises(ValueError, match="goal=8 is not a node; allowed: 0..7"):
        env.check_pair(0, 8)
    with pytest.raises(ValueError, match="'nodes'.*allowed options: edge_prob, graph_seed, max_steps, num_nodes"):
        envs.make("GraphPaths-v0", nodes=5)


def test_random_walks_follow_edges_and_are_deterministic(env):
    walks = random_walks(env.adjacency, env.distances, jax.random.key(3), 512, env.max_steps)
    again = random_walks(env.adjacency, env.distances, jax.random.key(3), 512, env.max_steps)
    for k in walks:
        np.testing.assert_array_equal(np.asarray(walks[k]), np.asarray(again[k]))
    nodes, length, goal = (np.asarray(walks[k]) for k in ("nodes", "length", "goal"))
    adj = env.adjacency_np
    for w in range(64):
        for t in range(length[w]):
            a, b = nodes[w, t], nodes[w, t + 1]
            assert adj[a, b] or (a == b and not adj[a].any())
        assert (nodes[w, length[w]] == goal[w]) == bool(walks["reached"][w])
    assert (env.distances_np[nodes[:, 0], goal] > 0).all()  # only pairs with a path


# -- the model ------------------------------------------------------------------------------
TINY = DTConfig(num_walks=4000, batch_size=128, num_updates=800, checkpoint_every=400, log_every=200,
                learning_rate=3e-3, env_kwargs={"num_nodes": 8, "edge_prob": 0.3, "max_steps": 6},
                model_kwargs={"d_model": 32, "heads": 2, "layers": 1, "d_mlp": 64})


@pytest.fixture(scope="module")
def agent():
    return make_dt(TINY)


@pytest.fixture(scope="module")
def untrained(agent):
    """The initial parameters and the data (what ``init`` puts in the state, without the optimiser)."""
    params = jax.jit(agent.model.init)(jax.random.PRNGKey(0), jnp.zeros((1, *agent.env.observation_shape)))["params"]
    return dataclasses.make_dataclass("Untrained", ["params", "data"])(params, agent.dataset())


def test_sites_have_transformerlens_names_and_axes(agent, untrained):
    obs = walk_tables(agent.env, jax.tree.map(lambda x: x[:4], untrained.data))[0]
    axes = interp.site_axes(agent.model.clone(layers=2), obs)  # an abstract trace of a two-layer twin
    for i in range(2):
        assert axes[f"blocks.{i}.attn.z"] == ("token", "head", "d_head")
        assert axes[f"blocks.{i}.attn.pattern"] == ("head", "query", "key")
        for name in ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"):
            assert axes[f"blocks.{i}.{name}"] == ("token", "d_model")
        assert axes[f"blocks.{i}.mlp.post"] == ("token", "d_mlp")
    assert axes["embed"] == axes["pos_embed"] == axes["ln_final"] == ("token", "d_model")
    assert axes["logits"] == ("action",)
    assert interp.sites(agent.model, obs, untrained.params)["embed"] == (3 * 6, 32)
    m = agent.model
    assert m.token_at(m.token_position(4, "state")) == (4, "state")
    with pytest.raises(ValueError, match=r"unknown token type 'reward'; this model's token types are "
                                         r"\('return_to_go', 'state', 'action'\)"):
        m.token_position(0, "reward")
    with pytest.raises(ValueError, match="context of 7 timesteps is longer than the model's max_timesteps=6"):
        m.apply({"params": untrained.params}, jnp.zeros((1, 7, obs.shape[-1])))


def test_attention_is_causal(agent, untrained):
    tables = walk_tables(agent.env, jax.tree.map(lambda x: x[:8], untrained.data))[0]
    changed = tables.at[:, 3:, 1].add(5.0)  # later returns-to-go differ
    every = jax.jit(lambda t: agent.model.clone(all_steps=True).apply({"params": untrained.params}, t).logits)
    a, b = every(tables), every(changed)
    np.testing.assert_array_equal(np.asarray(a[:, :3]), np.asarray(b[:, :3]))
    assert not np.allclose(np.asarray(a[:, 3:]), np.asarray(b[:, 3:]))


def test_head_patching_with_own_activation_changes_nothing(agent, untrained):
    states = jax.vmap(agent.env.reset_to)(*map(jnp.asarray, agent.env.reachable_pairs()[:8].T))
    obs = states.observation
    metric = interp.metrics.value
    z_sites = sequence.head_sites(agent.model, obs, untrained.params)
    assert z_sites == ["blocks.0.attn.z"]
    # one sweep: the first 8 states patched from themselves, the next 8 from the same start with another goal
    other = jax.vmap(agent.env.reset_to)(states.inner.node, (states.inner.goal + 1) % agent.env.num_nodes)
    both = jnp.concatenate([obs, obs])
    effects = interp.patching_sweep(agent.model, untrained.params, both, jnp.concatenate([obs, other.observation]),
                                    metric, granularity="head", sites=z_sites, reduce=False)
    e = np.asarray(effects["blocks.0.attn.z"])
    assert e.shape == (2, 16)  # (heads, states)
    assert np.abs(e[:, :8]).max() < 1e-6  # patching is x + m * (source - x): exact up to rounding
    assert np.abs(e[:, 8:]).max() > 1e-4  # a different goal does move the policy through a head


def test_gap_shares_are_one_at_the_token_the_output_reads(agent, untrained):
    states = jax.vmap(agent.env.reset_to)(*map(jnp.asarray, agent.env.reachable_pairs()[:8].T))
    other = jax.vmap(agent.env.reset_to)(states.inner.node, (states.inner.goal + 1) % agent.env.num_nodes)
    shares, clean, corrupted = interp.gap_shares(agent.model, untrained.params, states.observation, other.observation,
                                                 interp.metrics.value, sites=["ln_final"], granularity="position")
    s = np.asarray(shares["ln_final"])
    assert s.shape == (18,) and abs(clean - corrupted) > 1e-4
    # the heads read the first state token (position 1): patching it there carries the whole gap, elsewhere none
    np.testing.assert_allclose(s[1], 1.0, atol=1e-4)
    assert np.abs(np.delete(s, 1)).max() < 1e-6
    with pytest.raises(ValueError, match="no gap to share"):
        interp.gap_shares(agent.model, untrained.params, states.observation, states.observation, interp.metrics.value,
                          sites=["ln_final"], granularity="position")


def test_token_helpers(agent, untrained):
    states = jax.vmap(agent.env.reset_to)(*map(jnp.asarray, agent.env.reachable_pairs()[:8].T))
    obs = states.observation
    pos = sequence.positions_of(agent.model, obs, "state")
    assert np.asarray(pos).tolist() == [1] * 8
    feats = jax.jit(lambda p, o, i: sequence.token_features(agent.model, p, o, i))(untrained.params, obs, pos)
    assert feats["blocks.0.resid_post"].shape == (8, 32) and feats["blocks.0.attn.pattern"].shape == (8, 2 * 18)
    rtg = sequence.kind_mask(agent.model, 18, ["return_to_go"])
    assert np.flatnonzero(np.asarray(rtg)).tolist() == [0, 3, 6, 9, 12, 15]
    att = jax.jit(lambda p, o, i: sequence.attention_from(agent.model, p, o, i, rtg))(untrained.params, obs, pos)
    assert att["blocks.0.attn.pattern"].shape == (8, 2)
    np.testing.assert_allclose(np.asarray(att["blocks.0.attn.pattern"]) <= 1 + 1e-6, True)
    with pytest.raises(ValueError, match="unknown token type 'rewards'"):
        sequence.kind_mask(agent.model, 18, ["rewards"])


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match=r"DTConfig.env='CartPole-v1' is not allowed; allowed: GraphPaths-v0"):
        DTConfig(env="CartPole-v1")
    with pytest.raises(ValueError, match="DTConfig.batch_size=0"):
        DTConfig(batch_size=0)
    with pytest.raises(ValueError, match="do not fit model 'gpt'"):
        make_dt(DTConfig(model_kwargs={"width": 3}))


# -- training -------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_training_improves_on_the_random_walks(agent, untrained):
    """Starts from the fixture's parameters and data (``init`` itself runs in the slow run-folder tests)."""
    state = DTState(untrained.params, agent.optimiser().init(untrained.params), jax.random.PRNGKey(1), jnp.int32(0),
                    jnp.int32(0), untrained.data)
    state, metrics = jax.jit(agent.segment, static_argnums=1)(state, 400)
    initial = float(jax.jit(lambda p, d: agent.loss(p, *walk_tables(agent.env, d))[0])(untrained.params, untrained.data))
    assert float(np.mean(metrics["loss"][-50:])) < 0.8 * initial
    final, walks = evaluate(agent, state.params), walk_figures(agent.env, state.data)
    assert final["success_rate"] > walks["success_rate"]
    assert final["success_rate"] > evaluate(agent, untrained.params)["success_rate"]
    assert final["path_ratio"] < walks["path_ratio"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dt")
    runs.train(TINY, folder, progress=False)
    return folder


@pytest.mark.slow
def test_run_folder_checkpoints_data_and_evaluation(trained, agent):
    run = runs.load_run(trained)
    assert run.kind.name == "dt" and run.steps == [0, 400, 800]
    rows = run.metrics()
    assert [r["update"] for r in rows] == [200, 400, 600, 800]
    assert rows[-1]["success_rate"] > walk_figures(run.agent.env, run.state()[0].data)["success_rate"]
    returns = run.evaluate()
    assert returns.shape == (len(run.agent.env.reachable_pairs()),) and (returns < 0).all()
    # the saved data are the seed's walks, regenerated bit-identically
    saved = run.state()[0].data
    for k, v in agent.dataset().items():
        np.testing.assert_array_equal(np.asarray(saved[k]), np.asarray(v))
    assert json.loads((trained / "config.json").read_text())["agent"] == "dt"


@pytest.mark.slow
def test_resume_is_bit_identical(trained, tmp_path):
    runs.train(TINY, tmp_path, progress=False, stop_after=1)
    assert runs.load_run(tmp_path).steps == [0, 400]
    runs.train(TINY, tmp_path, progress=False)
    a, b = runs.load_run(trained).params(), runs.load_run(tmp_path).params()
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_cli_config_picks_the_dt_kind():
    import argparse

    from rljaxinterp.cli.train import add_parsers, config_from_args

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "dt", "--out", "x", "--num-updates", "7"])
    config = config_from_args(args)
    assert isinstance(config, DTConfig) and config.num_updates == 7
    assert dataclasses.replace(config, num_updates=TINY.num_updates).env == "GraphPaths-v0"
