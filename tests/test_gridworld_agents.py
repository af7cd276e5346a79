"""PPO and DQN on a gridworld, and the training-loop convolution they rely on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import envs
from rljaxinterp.agents import dqn as dqn_lib
from rljaxinterp.agents import ppo as ppo_lib
from rljaxinterp.agents.rl_common import loop_friendly_conv

TINY_COIN = {"height": 5, "width": 7, "max_steps": 30}


def _conv(x, k):
    kh, kw = k.shape[:2]
    pad = (((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2))
    return jax.lax.conv_general_dilated(x, k, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("kernel", [(3, 3), (1, 1), (2, 2), (3, 2)])
def test_loop_friendly_conv_has_the_values_and_gradients_of_a_plain_conv(kernel):
    kx, kk, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (2, 3, 5, 7, 4))  # (seeds, N, H, W, Cin): vmapped like training
    k = jax.random.normal(kk, (2, *kernel, 4, 6))
    g = jax.random.normal(kg, (2, 3, 5, 7, 6))

    def grads(conv):
        loss = lambda x, k, g: jnp.sum(conv(x, k) * g)  # noqa: E731
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
    policy = lambda p, obs, k: jax.random.randint(k, obs.shape[:1], 0, 4)  # noqa: E731
    return _success(coin_env, policy, None, jax.random.PRNGKey(1))


def test_ppo_learns_to_reach_the_coin_on_fresh_levels(coin_env, random_success):
    config = ppo_lib.PPOConfig(env="CoinAtEnd", env_kwargs=TINY_COIN, model="mlp", model_kwargs={"hidden": [64, 64]},
                               num_envs=32, num_steps=32, lr=1e-3, total_timesteps=32 * 32 * 40)
    agent = ppo_lib.make_ppo(config)
    state, _ = ppo_lib.make_train(config)(jax.random.PRNGKey(0))
    policy = lambda p, obs, k: jax.random.categorical(k, agent.policy_value(p, obs).logits)  # noqa: E731
    trained = _success(coin_env, policy, state.params, jax.random.PRNGKey(2))
    assert trained >= random_success + 0.4, (trained, random_success)


def test_dqn_learns_to_reach_the_coin_on_fresh_levels(coin_env, random_success):
    config = dqn_lib.DQNConfig(env="CoinAtEnd", env_kwargs=TINY_COIN, model="mlp", model_kwargs={"hidden": [64, 64]},
                               num_envs=16, total_timesteps=60_000, buffer_size=10_000, learning_starts=1_000,
                               train_frequency=2, target_update_every=100, lr=1e-3, eps_decay_steps=30_000,
                               gamma=0.95)
    agent = dqn_lib.make_dqn(config)
    state, _ = dqn_lib.make_train(config)(jax.random.PRNGKey(0))
    policy = lambda p, obs, k: jnp.argmax(agent.policy_value(p, obs).logits, -1)  # noqa: E731
    trained = _success(coin_env, policy, state.params, jax.random.PRNGKey(2))
    assert trained >= random_success + 0.4, (trained, random_success)
