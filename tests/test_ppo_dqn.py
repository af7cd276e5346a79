"""PPO and DQN: they learn CartPole on tiny budgets, are deterministic, vmap over seeds like
separate runs, resume bit-identically from run folders, and reject bad configs clearly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp.agents import dqn as dqn_lib
from rljaxinterp.agents import ppo as ppo_lib
from rljaxinterp.agents.rl_common import evaluate, random_return
from rljaxinterp.runs import load_run

PPO_TINY = ppo_lib.PPOConfig(num_envs=8, num_steps=128, total_timesteps=40_960, lr=1e-3,
                             model_kwargs={"hidden": [64, 64]})
DQN_TINY = dqn_lib.DQNConfig(num_envs=8, total_timesteps=40_000, learning_starts=1_000,
                             buffer_size=10_000, eps_decay_steps=20_000, lr=1e-3, batch_size=64)
KEYS = jax.random.split(jax.random.PRNGKey(42), 2)


def _same(a, b, atol=0.0):
    return jax.tree.all(jax.tree.map(lambda x, y: bool(np.allclose(x, y, rtol=0, atol=atol)), a, b))


@pytest.fixture(scope="module")
def random_cartpole():
    env = ppo_lib.make_ppo(PPO_TINY).env
    return float(random_return(env, jax.random.PRNGKey(0), 256).mean())


@pytest.fixture(scope="module")
def ppo_runs():
    return jax.jit(jax.vmap(ppo_lib.make_train(PPO_TINY)))(KEYS)


@pytest.fixture(scope="module")
def dqn_runs():
    return jax.jit(jax.vmap(dqn_lib.make_train(DQN_TINY)))(KEYS)


def _vmapped_and_separate(make_train, config):
    """A few updates only: vmapped matmuls sum in another order (~1e-8 apart), and RL
    amplifies such differences chaotically over many updates (an action flips)."""
    train = make_train(config)
    return jax.jit(jax.vmap(train))(KEYS), train(KEYS[0]), train(KEYS[0])


def test_ppo_improves_over_random_and_loss_falls_within_updates(ppo_runs, random_cartpole):
    state, metrics = ppo_runs
    returns = np.asarray(metrics["episode_return"])  # (seed, update)
    assert 15 < random_cartpole < 30
    late = np.nanmean(returns[:, -5:], axis=1)
    assert np.all(late > 3 * random_cartpole), late
    # every epoch after the first fits the same batch better
    first, last = np.asarray(metrics["loss_first_epoch"]), np.asarray(metrics["loss_last_epoch"])
    assert np.mean(last < first) > 0.8
    ppo = ppo_lib.make_ppo(PPO_TINY)
    params0 = jax.tree.map(lambda x: x[0], state.params)
    evaluated = evaluate(ppo.env, ppo.act, params0, jax.random.PRNGKey(1), 32)
    assert float(evaluated.mean()) > 3 * random_cartpole


@pytest.mark.parametrize("make_train,config", [
    pytest.param(ppo_lib.make_train, PPO_TINY.replace(total_timesteps=3 * PPO_TINY.batch_size), marks=pytest.mark.slow),
    pytest.param(dqn_lib.make_train, DQN_TINY.replace(total_timesteps=3_000), marks=pytest.mark.slow),
], ids=["ppo", "dqn"])
def test_vmapped_seeds_equal_separate_runs_and_same_seed_is_identical(make_train, config):
    (vstate, vmetrics), (state, metrics), (state2, _) = _vmapped_and_separate(make_train, config)
    assert _same(state, state2)  # same seed: bit-identical, whole state
    assert _same(jax.tree.map(lambda x: x[0], vstate.params), state.params, atol=1e-6)
    assert not _same(jax.tree.map(lambda x: x[1], vstate.params), state.params, atol=1e-3)
    np.testing.assert_allclose(vmetrics["loss"][0], metrics["loss"], rtol=1e-5)


@pytest.mark.slow
def test_dqn_learns_cartpole(dqn_runs, random_cartpole):
    state, metrics = dqn_runs
    dqn = dqn_lib.make_dqn(DQN_TINY)
    for seed in range(2):
        params = jax.tree.map(lambda x, s=seed: x[s], state.params)
        greedy = evaluate(dqn.env, dqn.act, params, jax.random.PRNGKey(1), 32)
        assert float(greedy.mean()) > 3 * random_cartpole, (seed, greedy)
    assert np.all(np.isfinite(np.asarray(metrics["loss"])))
    eps = np.asarray(metrics["epsilon"])[0]
    assert eps[0] > 0.9 and abs(eps[-1] - DQN_TINY.eps_finish) < 1e-6


@pytest.mark.slow
def test_dqn_td_loss_falls_on_a_fixed_batch(dqn_runs):
    dqn = dqn_lib.make_dqn(DQN_TINY)
    state = jax.tree.map(lambda x: x[0], dqn_runs[0])
    assert int(state.buffer.size) == DQN_TINY.buffer_size
    batch = state.buffer.sample(jax.random.PRNGKey(3), 256)
    target = dqn.td_target(state.params, state.target_params, batch)

    @jax.jit
    def fit(params, opt_state):
        def step(carry, _):
            params, opt_state = carry
            (loss, _), g = jax.value_and_grad(dqn.loss, has_aux=True)(params, batch, target)
            updates, opt_state = dqn.optimizer.update(g, opt_state, params)
            return (jax.tree.map(jnp.add, params, updates), opt_state), loss
        return jax.lax.scan(step, (params, opt_state), None, 50)[1]

    losses = np.asarray(fit(state.params, dqn.optimizer.init(state.params)))
    assert losses[-1] < 0.7 * losses[0], losses[[0, -1]]


@pytest.mark.slow
def test_masked_actions_are_never_taken():
    ppo = ppo_lib.make_ppo(PPO_TINY)
    state = jax.jit(ppo.init)(jax.random.PRNGKey(0))
    env_state = state.env_state.replace(
        legal_action_mask=jnp.zeros_like(state.env_state.legal_action_mask).at[:, 1].set(True))
    actions = jax.vmap(lambda k: ppo.act(state.params, env_state, k))(jax.random.split(jax.random.PRNGKey(1), 64))
    assert np.all(np.asarray(actions) == 1)
    dqn = dqn_lib.make_dqn(DQN_TINY)
    params = dqn.model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))["params"]
    explored = dqn.explore(params, env_state, jnp.float32(0.5), jax.random.PRNGKey(2))
    assert np.all(np.asarray(explored) == 1)


@pytest.mark.parametrize("cls,changes,match", [
    (ppo_lib.PPOConfig, {"num_envs": 0}, r"PPOConfig.num_envs=0 .*integer >= 1"),
    (ppo_lib.PPOConfig, {"gamma": 1.5}, r"PPOConfig.gamma=1.5 .*0.0 <= value <= 1.0"),
    (ppo_lib.PPOConfig, {"num_minibatches": 3}, r"num_minibatches=3 .*divide"),
    (ppo_lib.PPOConfig, {"total_timesteps": 10}, r"total_timesteps=10 .*one update"),
    (ppo_lib.PPOConfig, {"lr": 0.0}, r"PPOConfig.lr=0.0"),
    (ppo_lib.PPOConfig, {"env": "nope"}, r"PPOConfig.env='nope'"),
    (ppo_lib.PPOConfig, {"model": "rnn"}, r"PPOConfig.model='rnn' .*allowed: auto, mlp"),
    (ppo_lib.PPOConfig, {"anneal_lr": 1}, r"anneal_lr=1 .*True or False"),
    (ppo_lib.PPOConfig, {"model_kwargs": {"value_activation": "tanh"}}, r"value_activation"),
    (dqn_lib.DQNConfig, {"buffer_size": 100, "learning_starts": 1000}, r"DQNConfig.buffer_size=100"),
    (dqn_lib.DQNConfig, {"tau": 0.0}, r"DQNConfig.tau=0.0"),
    (dqn_lib.DQNConfig, {"eps_finish": -0.1}, r"DQNConfig.eps_finish=-0.1"),
    (dqn_lib.DQNConfig, {"total_timesteps": 100}, r"DQNConfig.total_timesteps=100 .*one update"),
])
def test_bad_config_values_raise_clear_errors(cls, changes, match):
    with pytest.raises(ValueError, match=match):
        cls(**changes)


def test_two_player_games_are_rejected():
    with pytest.raises(ValueError, match="single-agent"):
        ppo_lib.make_ppo(ppo_lib.PPOConfig(env="tic_tac_toe"))


def test_config_round_trips_through_json():
    cfg = PPO_TINY.replace(model_kwargs={"hidden": (32, 32)})
    assert ppo_lib.PPOConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown DQNConfig field"):
        dqn_lib.DQNConfig.from_dict({"bogus": 1})


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ppo", "dqn"])
def test_run_folder_resumes_bit_identically_and_loads(tmp_path, kind):
    from rljaxinterp import runs

    if kind == "ppo":
        cfg = ppo_lib.PPOConfig(num_envs=4, num_steps=32, total_timesteps=768, checkpoint_every=2)
    else:
        cfg = dqn_lib.DQNConfig(num_envs=4, total_timesteps=680, learning_starts=200, buffer_size=500,
                                checkpoint_every=40, model_kwargs={"hidden": [32]})
    full = runs.train(cfg, tmp_path / "full", progress=False)
    assert cfg.num_updates == 3 * cfg.checkpoint_every  # one segment length, one compile
    runs.train(cfg, tmp_path / "part", progress=False, stop_after=1)
    assert load_run(tmp_path / "part").steps == [0, cfg.checkpoint_every]
    with open(tmp_path / "part" / "metrics.jsonl", "a") as f:  # a row a killed chunk wrote before its checkpoint
        f.write('{"update": 0, "written_after_the_checkpoint": true}\n')
    resumed = runs.train(cfg, tmp_path / "part", progress=False)
    assert _same(full, resumed)  # whole state, bit-identical
    drop = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]  # noqa: E731
    assert drop(load_run(tmp_path / "part").metrics()) == drop(load_run(tmp_path / "full").metrics())

    run = load_run(tmp_path / "part")
    assert isinstance(run, runs.Run) and run.kind.name == kind and run.config == cfg
    assert run.steps[-1] == cfg.num_updates
    assert _same(run.params(), full.params)
    rows = run.metrics()
    assert rows[-1]["update"] == cfg.num_updates and [r["update"] for r in rows] == sorted({r["update"] for r in rows})
    assert (tmp_path / "part" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    out = run.policy_value(run.params(), jnp.zeros((3, 4)))
    assert out.logits.shape == (3, 2) and out.value.shape == (3,)

    with pytest.raises(runs.RunFolderError, match="different config"):
        runs.train(cfg.replace(seed=1), tmp_path / "part", progress=False)


def test_ppo_with_separate_actor_and_critic_mlps():
    """``separate_critic`` (rejax's and PureJaxRL's layout, for like-for-like timing): the policy
    reads only the actor trunk, the value only the critic trunk, and PPO trains with it."""
    config = ppo_lib.PPOConfig(num_envs=8, num_steps=128, total_timesteps=8 * 128 * 3,
                               model_kwargs={"hidden": [32, 32], "separate_critic": True})
    ppo = ppo_lib.make_ppo(config)
    params = ppo.init_params(jax.random.PRNGKey(0))
    assert set(params) == {"layer0", "layer1", "critic0", "critic1", "policy_head", "value_head"}
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, *ppo.env.observation_shape))
    out = ppo.model.apply({"params": params}, obs)
    zero = lambda names: {k: jax.tree.map(jnp.zeros_like, v) if k in names else v for k, v in params.items()}
    no_critic = ppo.model.apply({"params": zero({"critic0", "critic1"})}, obs)
    no_actor = ppo.model.apply({"params": zero({"layer0", "layer1"})}, obs)
    assert _same(out.logits, no_critic.logits) and not _same(out.value, no_critic.value)
    assert _same(out.value, no_actor.value) and not _same(out.logits, no_actor.logits)
    state, metrics = jax.jit(ppo_lib.make_train(config))(jax.random.PRNGKey(2))
    assert np.all(np.isfinite(np.asarray(metrics["loss_last_epoch"])))
    assert not _same(state.params["critic0"], params["critic0"])
