"""Behaviour under interventions (``interp.behaviour.rollout``) and per-state patching data."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import interp, runs
from rljaxinterp.interp.behaviour import identity_like, random_like, rollout


def _agent(kind, env, **changes):
    agent = runs.kind_named(kind).agent(runs.default_config(kind, env, **changes))
    state = agent.init(jax.random.key(0))
    return agent, state.params


@pytest.fixture(scope="module")
def ttt():
    return _agent("alphazero", "tic_tac_toe", model_kwargs={"hidden": [16]})


@pytest.fixture(scope="module")
def maze():
    return _agent("ppo", "CheeseMaze", env_kwargs={"size": 7, "corner_size": 2, "max_steps": 50}, model="mlp",
                  model_kwargs={"hidden": [16, 16]})


def _direction(agent, params, site):
    obs = jax.vmap(agent.env.init)(jax.random.split(jax.random.key(0), 2)).observation.astype(jnp.float32)
    _, cache = interp.run_with_cache(agent.model, params, obs, [site])
    return jax.random.normal(jax.random.key(3), cache[site].shape[1:])


def _same(a, b):
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_a_zero_vector_changes_no_game_and_neither_does_its_control(ttt):
    agent, params = ttt
    v = _direction(agent, params, "layer0.post")
    b = rollout(agent.model, params, agent.env, [interp.add("layer0.post", c * v) for c in (0.0, 4.0)],
                episodes=32, key=jax.random.key(1), labels=[0, 4], controls=3)
    zero_edit = {k: x[0] for k, x in b.edited.items()}
    assert _same(zero_edit, b.baseline) and b.control["win"].shape == (2, 3, 32)
    assert all(_same({k: x[0, d] for k, x in b.control.items()}, b.baseline) for d in range(3))
    # the three draws of the 4x control aim in different directions
    assert len({np.asarray(b.control["greedy_move_kept"][1, d]).tobytes() for d in range(3)}) > 1
    assert np.all(b.baseline["greedy_move_kept"] == 1.0)
    outcome = b.baseline["win"] + b.baseline["draw"] + b.baseline["loss"]
    assert np.all(outcome == 1.0) and np.all(b.baseline["finished"] == 1.0)
    # a large push moves the moves, and the pooled rates stay rates
    assert float(b.edited["greedy_move_kept"][1].mean()) < 1.0
    summary = b.summary()
    assert set(summary) >= {"win", "draw", "loss", "took_win", "blocked", "greedy_move_kept"}
    assert "took_win_of" not in summary and summary["win"]["labels"] == ["0", "4"]
    assert summary["win"]["p"][0] == 1.0  # no edit: every control draw is as far from it as it is
    assert 1 / 4 <= summary["greedy_move_kept"]["p"][1] <= 1.0 and len(summary["win"]["control_draws"][1]) == 3
    json.dumps(summary)  # NaN-free
    for name in ("took_win", "blocked"):
        assert all(np.isnan(x) or 0.0 <= x <= 1.0 for x in summary[name]["edited"])


@pytest.mark.slow
def test_gridworld_rollout_reports_the_env_counters(maze):
    agent, params = maze
    v = _direction(agent, params, "layer1.post")
    b = rollout(agent.model, params, agent.env, [interp.add("layer1.post", 0.0 * v), interp.add("layer1.post", 3.0 * v)],
                episodes=8, key=jax.random.key(2), steps=40, policy="sample")
    assert {"reached_cheese", "reached_corner", "return", "length"} <= set(b.baseline)
    assert _same({k: x[0] for k, x in b.edited.items()}, b.baseline)
    assert np.all(np.asarray(b.baseline["length"]) <= 40)
    # same keys for every member: a rerun is bit-identical
    again = rollout(agent.model, params, agent.env, [interp.add("layer1.post", 0.0 * v), interp.add("layer1.post", 3.0 * v)],
                    episodes=8, key=jax.random.key(2), steps=40, policy="sample")
    assert _same(again.edited, b.edited) and _same(again.control, b.control)


def test_controls_match_the_size_of_the_edit():
    v = jnp.arange(6.0).reshape(2, 3)
    control = random_like(interp.add("s", v), jax.random.key(0))
    assert np.isclose(float(jnp.linalg.norm(control.shift)), float(jnp.linalg.norm(v)), rtol=1e-5)
    assert not np.allclose(np.asarray(control.shift), np.asarray(v))
    mask = jnp.zeros(10).at[jnp.array([1, 4])].set(1.0)
    ablation = random_like(interp.zero_ablate("s", mask), jax.random.key(1))
    assert float(ablation.mask.sum()) == 2.0 and ablation.mask.shape == (10,)
    basis = jnp.eye(5)[:, :2]
    sub = random_like(interp.subspace_patch("s", basis, jnp.zeros(5)), jax.random.key(2))
    assert np.allclose(np.asarray(sub.basis.T @ sub.basis), np.eye(2), atol=1e-5)
    x = jnp.ones(5)
    assert np.array_equal(np.asarray(identity_like(interp.scale("s", 3.0)).mask), 0.0)
    assert identity_like(interp.project_out("s", x)).basis.sum() == 0


def test_rollout_rejects_bad_input(ttt):
    agent, params = ttt
    with pytest.raises(ValueError, match="policy 'best' is not allowed"):
        rollout(agent.model, params, agent.env, [interp.zero_ablate("layer0.post")], episodes=2,
                key=jax.random.key(0), policy="best")
    with pytest.raises(ValueError, match="same interventions"):
        rollout(agent.model, params, agent.env, [interp.zero_ablate("layer0.post"), interp.zero_ablate("layer0.pre")],
                episodes=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="controls=0 must be a positive integer"):
        rollout(agent.model, params, agent.env, [interp.zero_ablate("layer0.post")], episodes=2,
                key=jax.random.key(0), controls=0)
    with pytest.raises(ValueError, match="episodes=0"):
        rollout(agent.model, params, agent.env, [interp.zero_ablate("layer0.post")], episodes=0, key=jax.random.key(0))


# -- per-state data in patching sweeps ----------------------------------------------------------
@pytest.fixture(scope="module")
def boards(ttt):
    agent, _ = ttt
    states = jax.vmap(agent.env.init)(jax.random.split(jax.random.key(5), 12))
    actions = jax.random.randint(jax.random.key(6), (12,), 0, 9)
    states = jax.vmap(agent.env.step)(states, actions, jax.random.split(jax.random.key(7), 12))
    obs = states.observation.astype(jnp.float32)
    return obs, obs[::-1], actions


def _logit_of(out, data):
    return jnp.take_along_axis(out.logits, data[:, None], axis=-1)[:, 0]


def test_a_metric_capturing_per_state_arrays_gets_told_to_use_metric_data(ttt, boards):
    agent, params = ttt
    clean, corrupted, actions = boards
    captured = lambda out: _logit_of(out, actions)
    # captured per-state arrays work while the sweep sees every state at once, and fail clearly once it chunks
    whole = interp.patching_sweep(agent.model, params, clean, corrupted, captured, sites=["layer0.post"])
    with pytest.raises(ValueError, match="metric_data=<pytree with a leading state axis>"):
        interp.patching_sweep(agent.model, params, clean, corrupted, captured, sites=["layer0.post"],
                              sizing=interp.Sizing(states_per_call=5))
    with pytest.raises(ValueError, match=r"leading state axis of 12"):
        interp.patching_sweep(agent.model, params, clean, corrupted, _logit_of, sites=["layer0.post"],
                              metric_data=actions[:5])
    fine = interp.patching_sweep(agent.model, params, clean, corrupted, _logit_of, sites=["layer0.post"],
                                 metric_data=actions, sizing=interp.Sizing(states_per_call=5))
    assert fine["layer0.post"].shape == (16,)
    np.testing.assert_allclose(np.asarray(fine["layer0.post"]), np.asarray(whole["layer0.post"]), atol=1e-5)


def test_state_masks_patch_exactly_the_given_elements_of_each_state(ttt, boards):
    agent, params = ttt
    clean, corrupted, actions = boards
    masks = (jax.random.uniform(jax.random.key(9), (12, 16)) < 0.4).astype(jnp.float32)
    swept = interp.patching_sweep(agent.model, params, clean, corrupted, _logit_of, sites=["layer0.post"],
                                  granularity="site", reduce=False, metric_data=actions,
                                  state_masks={"layer0.post": masks}, sizing=interp.Sizing(states_per_call=5))
    _, source = interp.run_with_cache(agent.model, params, corrupted, ["layer0.post"])
    by_hand = _logit_of(interp.run_with_interventions(agent.model, params, clean,
                                                      interp.patch("layer0.post", source["layer0.post"], masks)),
                        actions) - _logit_of(interp.run_with_interventions(agent.model, params, clean, None), actions)
    assert swept["layer0.post"].shape == (12,)
    np.testing.assert_allclose(np.asarray(swept["layer0.post"]), np.asarray(by_hand), atol=1e-5)
    nothing = interp.patching_sweep(agent.model, params, clean, corrupted, _logit_of, sites=["layer0.post"],
                                    granularity="unit", metric_data=actions,
                                    state_masks={"layer0.post": jnp.zeros((12, 16))})
    assert np.all(np.asarray(nothing["layer0.post"]) == 0.0)
    with pytest.raises(ValueError, match=r"state_masks\['layer0.post'\] has shape \(12, 3\)"):
        interp.patching_sweep(agent.model, params, clean, corrupted, _logit_of, sites=["layer0.post"],
                              metric_data=actions, state_masks={"layer0.post": jnp.ones((12, 3))})
