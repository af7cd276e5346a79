"""NMF/PCA, attribution, steering, similarity and distillation against exact identities."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp.agents.distill import distil, scale_width
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.interp import Sizing, attribution, metrics, run_with_cache
from rljaxinterp.interp.factorisation import nmf, nonnegative_parts, pca, random_init, top_rows
from rljaxinterp.interp.similarity import linear_cka, regression_similarity, similarity_matrix
from rljaxinterp.interp.steering import mean_difference, mean_differences, steering_effect
from rljaxinterp.models import ModelOutput, make_model, site


@pytest.fixture(scope="module")
def positions():
    states, _ = tic_tac_toe_reachable()
    live = np.flatnonzero(~np.asarray(states.terminated))
    return (jnp.asarray(states.observation[live], jnp.float32), jnp.asarray(states.legal_action_mask[live]))


@pytest.fixture(scope="module")
def conv(positions):
    model = make_model("conv", 9, (3, 3, 2), channels=8, blocks=1, value_hidden=16)
    return model, model.init(jax.random.key(0), positions[0][:1])["params"]


class Linear(nn.Module):
    @nn.compact
    def __call__(self, obs):
        x = site(self, "input", obs.reshape(obs.shape[0], -1))
        return ModelOutput(logits=x[:, :9], value=nn.Dense(1, name="head")(x)[:, 0])


# -- factorisation ---------------------------------------------------------------------------------
def test_nmf_recovers_a_planted_low_rank_matrix():
    k1, k2 = jax.random.split(jax.random.key(3))
    w = jax.random.uniform(k1, (300, 3))
    h = jax.random.uniform(k2, (3, 40)) * (jax.random.uniform(k2, (3, 40)) > 0.5)
    x = w @ h
    fit = nmf(x, 3, iterations=3000, key=jax.random.key(0))
    assert float(fit.relative_error) < 1e-2
    assert jnp.all(fit.weights >= 0) and jnp.all(fit.components >= 0)
    # Each planted part is found: its direction matches one factor's (cosine ~ 1).
    unit = lambda m: m / jnp.linalg.norm(m, axis=1, keepdims=True)
    cos = unit(h) @ unit(fit.components).T
    assert float(jnp.min(jnp.max(cos, axis=1))) > 0.99
    # Extra rank cannot make the fit worse.
    assert float(nmf(x, 5, iterations=3000).relative_error) <= float(fit.relative_error) + 1e-3


def test_nmf_steps_follow_the_multiplicative_update_rule():
    """Float64 numpy reference of Lee & Seung's update, from the same starting point."""
    x = jax.random.uniform(jax.random.key(1), (50, 12))
    w0, h0 = random_init(x, 4, jax.random.key(2))
    w, h = np.asarray(w0, np.float64), np.asarray(h0, np.float64)
    xn = np.asarray(x, np.float64)
    for _ in range(25):
        w *= (xn @ h.T) / (w @ h @ h.T)
        h *= (w.T @ xn) / (w.T @ w @ h)
    fit = nmf(x, 4, iterations=25, init=(w0, h0))
    np.testing.assert_allclose(np.asarray(fit.reconstruct()), w @ h, rtol=1e-3, atol=1e-4)


def test_nmf_and_pca_refuse_bad_input():
    with pytest.raises(ValueError, match="non-negative.*-1"):
        nmf(-jnp.ones((4, 3)), 2)
    with pytest.raises(ValueError, match="rank=7"):
        pca(jnp.ones((4, 3)), 7)
    with pytest.raises(ValueError, match=r"\(rows, features\)"):
        nmf(jnp.ones((4, 3, 2)), 2)


def test_pca_matches_the_svd_and_full_rank_is_exact():
    x = jax.random.normal(jax.random.key(0), (200, 6)) @ jax.random.normal(jax.random.key(1), (6, 6))
    fit = pca(x, 6)
    np.testing.assert_allclose(np.asarray(fit.reconstruct()), np.asarray(x), atol=1e-4)
    s = np.linalg.svd(np.asarray(x - x.mean(0), np.float64), compute_uv=False)
    np.testing.assert_allclose(np.asarray(fit.explained), s**2 / np.sum(s**2), rtol=1e-4)
    assert np.all(np.diff(np.asarray(fit.explained)) <= 0)


def test_nonnegative_parts_and_top_rows():
    x = jnp.array([[1.0, -2.0], [-3.0, 0.5]])
    np.testing.assert_array_equal(np.asarray(nonnegative_parts(x)), [[1, 0, 0, 2], [0, 0.5, 3, 0]])
    w = jnp.array([[0.1, 5.0], [0.9, 0.0], [0.5, 1.0]])
    np.testing.assert_array_equal(top_rows(w, 2), [[1, 2], [0, 2]])


# -- attribution -----------------------------------------------------------------------------------
def test_attributions_of_a_linear_model_are_weight_times_input(positions):
    obs = positions[0][:64]
    model = Linear()
    params = model.init(jax.random.key(0), obs[:1])["params"]
    w = np.asarray(params["head"]["kernel"][:, 0]).reshape(3, 3, 2)
    expected = np.asarray(obs) * w
    for fn in (attribution.gradient_x_input, attribution.integrated_gradients):
        np.testing.assert_allclose(np.asarray(fn(model, params, obs, metrics.value)), expected, atol=1e-6)
    grads = attribution.gradients(model, params, obs, metrics.value, sizing=Sizing(states_per_call=10))  # chunk not dividing 64
    np.testing.assert_allclose(np.asarray(grads), np.broadcast_to(w, obs.shape), atol=1e-6)


@pytest.mark.parametrize("site_name", [None, "stem.post", "block0.resid_post"])
def test_integrated_gradients_completeness(conv, positions, site_name):
    """Attributions sum to metric(x) - metric(baseline) (up to quadrature error)."""
    model, params = conv
    obs = positions[0][:200]
    attr, gap = attribution.integrated_gradients(model, params, obs, metrics.value, steps=64,
                                                 site=site_name, return_delta=True, sizing=Sizing(states_per_call=64))
    spread = float(jnp.std(model.apply({"params": params}, obs).value))
    assert attr.shape[0] == 200
    assert float(jnp.max(jnp.abs(gap))) < 1e-3 * max(spread, 1e-3) + 1e-5


def test_integrated_gradients_runs_in_float64_when_enabled(conv, positions):
    """float64 inputs and weights stay float64 end to end (how float32 rounding is told
    apart from a real difference, see benchmarks/ig_vs_captum.py)."""
    model, params = conv
    obs = np.asarray(positions[0][:8], np.float64)
    single = attribution.integrated_gradients(model, params, obs, metrics.value, steps=16)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
        attr, gap = attribution.integrated_gradients(model, params64, obs, metrics.value, steps=16,
                                                     return_delta=True)
        assert attr.dtype == jnp.float64
    assert single.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(attr), np.asarray(single), atol=1e-4)
    # the float32 run differs from the float64 one by rounding only
    assert float(np.abs(np.asarray(attr) - np.asarray(single, np.float64)).max()) > 0


def test_attribution_at_a_site_matches_gradients_of_the_patched_run(conv, positions):
    model, params = conv
    obs = positions[0][:16]
    _, cache = run_with_cache(model, params, obs, ["stem.post"])
    from rljaxinterp.interp import patch, run_with_interventions

    def total(a):
        return run_with_interventions(model, params, obs, patch("stem.post", a)).value.sum()

    expected = jax.grad(total)(cache["stem.post"])
    got = attribution.gradients(model, params, obs, metrics.value, site="stem.post")
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-6)


def test_occluding_an_empty_square_changes_nothing(conv, positions):
    model, params = conv
    obs = positions[0][:300]
    effect = np.asarray(attribution.occlusion(model, params, obs, metrics.value, fill=0.0))
    empty = np.asarray(obs.sum(-1) == 0)
    assert effect.shape == (300, 3, 3)
    assert np.all(effect[empty] == 0.0)
    assert np.abs(effect[~empty]).max() > 0  # occupied squares do matter to a random net


def test_attribution_errors(conv, positions):
    model, params = conv
    with pytest.raises(ValueError, match="integration method 'simpson'"):
        attribution.integrated_gradients(model, params, positions[0][:4], metrics.value, method="simpson")
    with pytest.raises(ValueError, match="baseline of shape"):
        attribution.integrated_gradients(model, params, positions[0][:4], metrics.value, baseline=jnp.zeros(5))


# -- steering --------------------------------------------------------------------------------------
def test_steering_with_zero_changes_nothing_and_a_direction_moves_the_policy(conv, positions):
    model, params = conv
    obs, legal = positions[0][:500], positions[1][:500]
    _, cache = run_with_cache(model, params, obs, ["block0.resid_post"])
    acts = cache["block0.resid_post"]
    centre = np.asarray(obs[:, 1, 1].sum(-1) > 0)
    direction = mean_difference(acts[centre], acts[~centre])
    zero = steering_effect(model, params, obs, "block0.resid_post", jnp.zeros_like(direction), [0.0, 1.0, 5.0], legal)
    for name in ("policy_kl", "action_prob_change", "greedy_changed", "value_change"):
        assert np.all(np.asarray(zero[name]) == 0.0), name
    moved = steering_effect(model, params, obs, "block0.resid_post", direction, [0.0, 4.0], legal)
    assert float(moved["policy_kl"][0]) == 0.0 and float(moved["policy_kl"][1]) > 0.0
    with pytest.raises(ValueError, match="one site"):
        mean_difference(acts, acts[:, 0])


def test_mean_differences_equal_one_mean_difference_per_concept():
    x = jax.random.normal(jax.random.key(0), (200, 7))
    labels = np.array(jax.random.bernoulli(jax.random.key(1), 0.3, (200, 4)))
    each = np.stack([np.asarray(mean_difference(x[y], x[~y])) for y in labels.T])
    np.testing.assert_allclose(np.asarray(mean_differences(x, labels)), each, rtol=1e-5, atol=1e-6)
    labels[:, 2] = False
    with pytest.raises(ValueError, match=r"concepts \[2\] hold on \[0\]"):
        mean_differences(x, labels)


# -- similarity ------------------------------------------------------------------------------------
def test_cka_is_one_with_itself_and_invariant_to_rotation():
    x = jax.random.normal(jax.random.key(0), (400, 16)) @ jax.random.normal(jax.random.key(1), (16, 16))
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(2), (16, 16)))
    assert abs(float(linear_cka(x, x)) - 1) < 1e-5
    assert abs(float(linear_cka(x, 3.0 * x @ q)) - 1) < 1e-4
    unrelated = jax.random.normal(jax.random.key(3), (400, 16))
    assert float(linear_cka(x, unrelated)) < 0.2
    assert float(regression_similarity(x, x @ q)) > 0.999
    assert float(regression_similarity(x, unrelated)) < 0.1
    m = similarity_matrix({"a": x, "b": unrelated}, {"a": x @ q}, "cka")
    assert m.shape == (2, 1) and m[0, 0] > 0.999 and m[1, 0] < 0.2


# -- distillation ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_student_trained_on_teacher_logits_matches_it_on_held_out_states(positions):
    obs, legal = positions
    teacher = make_model("mlp", 9, (3, 3, 2), hidden=(64, 64))
    t_params = teacher.init(jax.random.key(5), obs[:1])["params"]
    student = make_model("mlp", 9, (3, 3, 2), **scale_width("mlp", {"hidden": [64, 64]}, 0.5))
    def sharp_teacher(o):  # a random net's policy is near uniform; sharpen it so top-1 is defined
        out = teacher.apply({"params": t_params}, o)
        return ModelOutput(logits=8.0 * out.logits, value=out.value)

    result = distil(sharp_teacher, student, obs, legal, jax.random.key(0),
                    steps=800, learning_rate=3e-3)
    assert float(result.loss[-50:].mean()) < 0.2 * float(result.loss[:50].mean())
    assert result.held_out["top1_agreement"] > 0.9
    assert result.held_out["policy_kl"] < 0.05
    assert scale_width("conv", {"channels": 32, "blocks": 2}, 0.5) == {"channels": 16, "blocks": 2}
