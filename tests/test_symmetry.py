"""Board-symmetry augmentation: transformed positions are real positions with transformed
move values, and observation cells line up with action indices in every game it covers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import envs
from rljaxinterp.agents.symmetry import GAMES, make_augment
from rljaxinterp.eval import minimax
from rljaxinterp.eval.matches import tic_tac_toe_states


def test_tic_tac_toe_symmetries_map_optimal_moves_to_optimal_moves():
    """Each position with its optimal-move set, transformed, is another reachable position
    (looked up by observation) whose optimal-move set is the transformed one."""
    sol = minimax.solve()
    states = tic_tac_toe_states()
    obs = np.asarray(states.observation)
    live = np.flatnonzero(~sol.terminal)
    lookup = {obs[i].tobytes(): i for i in live}
    augment = make_augment("tic_tac_toe", (3, 3, 2), 9)
    policy = sol.optimal[live].astype(np.float32)
    seen = set()
    for seed in range(4):
        new_obs, (new_policy,) = jax.jit(augment)(jax.random.PRNGKey(seed), jnp.asarray(obs[live]),
                                                  (jnp.asarray(policy),))
        new_obs, new_policy = np.asarray(new_obs), np.asarray(new_policy)
        rows = np.array([lookup[o.tobytes()] for o in new_obs])  # KeyError: not a real position
        np.testing.assert_array_equal(new_policy, sol.optimal[rows].astype(np.float32))
        np.testing.assert_array_equal(sol.value[rows], sol.value[live])
        seen |= {(i, j) for i, j in zip(live[:50], rows[:50])}
    # the symmetries are used, not only the identity
    assert sum(i != j for i, j in seen) > 100


def random_positions(name: str, n: int = 32, moves: int = 12):
    env = envs.make(name)
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    states = jax.vmap(env.init)(keys)

    def step(states, key):
        k1, k2 = jax.random.split(key)
        a = jax.random.categorical(k1, jnp.where(states.legal_action_mask[:, :-1] if name != "connect_four"
                                                 else states.legal_action_mask, 0.0, -jnp.inf))
        return jax.vmap(env.step)(states, a, jax.random.split(k2, n)), None

    states, _ = jax.lax.scan(step, states, jax.random.split(jax.random.PRNGKey(1), moves))
    return env, states


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "go_9x9" else n
                                  for n in sorted(set(GAMES) - {"tic_tac_toe", "go_19x19"})])
def test_observation_cells_line_up_with_actions_and_move_together(name):
    env, states = random_positions(name)
    obs = np.asarray(states.observation)
    empty = (obs[..., 0] == 0) & (obs[..., 1] == 0)  # planes 0/1: the two players' stones now
    legal = np.asarray(states.legal_action_mask)
    live = ~np.asarray(states.done)
    assert live.sum() > 10 and (~empty).sum() > 100
    if name == "connect_four":  # a column is playable iff it has an empty cell
        cells, extra = empty.any(axis=1), legal[:, :0]
        np.testing.assert_array_equal(legal[live], cells[live])
    else:  # a stone on a cell makes that cell's action illegal; the last action is pass
        cells, extra = empty.reshape(len(obs), -1), legal[:, -1:]
        assert not (legal[live][:, :-1] & ~cells[live]).any()
    augment = jax.jit(make_augment(name, env.observation_shape, env.num_actions))
    policy = np.concatenate([cells, np.ones_like(extra)], axis=1).astype(np.float32)
    for seed in range(3):
        new_obs, (new_policy, new_legal) = augment(jax.random.PRNGKey(seed), obs, (policy, policy > 0))
        new_obs, new_policy = np.asarray(new_obs), np.asarray(new_policy)
        np.testing.assert_array_equal(np.asarray(new_legal), new_policy > 0)  # bools move like floats
        new_empty = (new_obs[..., 0] == 0) & (new_obs[..., 1] == 0)
        new_cells = new_empty.any(axis=1) if name == "connect_four" else new_empty.reshape(len(obs), -1)
        np.testing.assert_array_equal(new_policy[:, : new_cells.shape[1]], new_cells)
        np.testing.assert_array_equal(new_policy[:, new_cells.shape[1]:], 1.0)
        assert sorted(new_obs.sum(axis=(1, 2, 3))) == sorted(obs.sum(axis=(1, 2, 3)))
    assert not np.array_equal(new_obs, obs)


def test_games_without_symmetries_get_none():
    assert make_augment("chess", (8, 8, 119), 4672) is None
