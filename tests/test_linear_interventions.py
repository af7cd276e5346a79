"""Subspace interventions (projection ablation, subspace patching, rotated-basis patching)
against hand-computed linear algebra, finite differences and Python loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import interp
from rljaxinterp.models import make_model

SITE = "block0.resid_post"  # (token, d_model)
D = 8


@pytest.fixture(scope="module")
def setup():
    model = make_model("transformer", 9, (3, 3, 2), d_model=D, heads=2, layers=1, d_mlp=8)
    clean = jax.random.normal(jax.random.key(1), (4, 3, 3, 2))
    corrupted = jax.random.normal(jax.random.key(2), (4, 3, 3, 2))
    params = model.init(jax.random.key(0), clean)["params"]
    _, clean_cache = interp.run_with_cache(model, params, clean)
    _, source_cache = interp.run_with_cache(model, params, corrupted)
    return model, params, clean, clean_cache, source_cache


def random_rotation(key, n, dtype=jnp.float32):
    q, _ = jnp.linalg.qr(jax.random.normal(key, (n, n), dtype))
    return q


def edited(setup, ivs, site=SITE):
    model, params, clean, _, _ = setup
    return interp.run_with_interventions_and_cache(model, params, clean, ivs)[1][site]


def test_projection_ablation_removes_the_direction(setup):
    _, _, _, cache, _ = setup
    x = cache[SITE]
    d = jax.random.normal(jax.random.key(5), (D,))
    unit = d / jnp.linalg.norm(d)
    expected = x - (x @ unit)[..., None] * unit
    got = edited(setup, interp.project_out(SITE, d, axis="d_model"))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got @ unit).max() < 1e-5 and np.abs(x @ unit).max() > 0.1
    # axis=None acts along the last axis, the same one here
    np.testing.assert_allclose(edited(setup, interp.project_out(SITE, d)), expected, atol=1e-5)
    # along the token axis instead: a different, also hand-computable edit
    t = jax.random.normal(jax.random.key(6), (9,))
    t = t / jnp.linalg.norm(t)
    by_token = x - jnp.einsum("btd,t->bd", x, t)[:, None, :] * t[:, None]
    np.testing.assert_allclose(edited(setup, interp.project_out(SITE, t, axis="token")), by_token, atol=1e-5)


def test_full_basis_is_a_full_patch_and_empty_basis_is_no_patch(setup):
    model, params, clean, cache, source = setup
    rotation = random_rotation(jax.random.key(7), D)
    full = interp.run_with_interventions(model, params, clean, interp.subspace_patch(SITE, rotation, source[SITE]))
    patched = interp.run_with_interventions(model, params, clean, interp.patch(SITE, source[SITE]))
    np.testing.assert_allclose(full.logits, patched.logits, atol=1e-4)
    np.testing.assert_allclose(full.value, patched.value, atol=1e-5)
    empty = interp.run_with_interventions(model, params, clean, interp.rotated_patch(SITE, rotation, 0, source[SITE]))
    plain = model.apply({"params": params}, clean)
    np.testing.assert_allclose(empty.logits, plain.logits, atol=1e-6)
    assert not np.allclose(patched.logits, plain.logits, atol=1e-3)
    # a k-dimensional patch moves exactly the first k rotated coordinates to the source's
    k = 3
    got = edited(setup, interp.rotated_patch(SITE, rotation, k, source[SITE], axis="d_model"))
    np.testing.assert_allclose(got @ rotation[:, :k], source[SITE] @ rotation[:, :k], atol=1e-5)
    np.testing.assert_allclose(got @ rotation[:, k:], cache[SITE] @ rotation[:, k:], atol=1e-5)


@pytest.mark.slow
def test_gradient_wrt_rotation_matches_finite_differences(setup):
    model, params, clean, _, source = setup
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        obs = jnp.asarray(clean, jnp.float64)
        src = jnp.asarray(source[SITE], jnp.float64)

        def f(rotation):
            out = interp.run_with_interventions(model, p64, obs, interp.rotated_patch(SITE, rotation, 3, src))
            return out.value.sum() + out.logits[:, 0].sum()

        rotation = random_rotation(jax.random.key(8), D, jnp.float64)
        grad = jax.grad(f)(rotation)
        assert grad.dtype == jnp.float64
        eps = 1e-6
        for i in range(3):
            v = jax.random.normal(jax.random.key(20 + i), (D, D), jnp.float64)
            numeric = (f(rotation + eps * v) - f(rotation - eps * v)) / (2 * eps)
            np.testing.assert_allclose(jnp.vdot(grad, v), numeric, rtol=1e-6, atol=1e-9)
        assert np.abs(grad[:, 3:]).max() == 0  # columns past k do not enter
        assert np.abs(grad[:, :3]).max() > 1e-3


@pytest.mark.slow
def test_vmap_over_rotations_and_directions_equals_a_loop(setup):
    model, params, clean, _, source = setup
    rotations = jnp.stack([random_rotation(jax.random.key(30 + i), D) for i in range(3)])
    directions = jax.random.normal(jax.random.key(40), (3, D))

    def rotated(r):
        return interp.run_with_interventions(model, params, clean, interp.rotated_patch(SITE, r, 2, source[SITE]))

    def projected(d):
        return interp.run_with_interventions(model, params, clean, interp.project_out(SITE, d, axis="d_model"))

    batched = jax.jit(jax.vmap(rotated))(rotations)
    stacked = interp.stack([interp.rotated_patch(SITE, r, 2, source[SITE]) for r in rotations])
    via_stack = jax.vmap(lambda iv: interp.run_with_interventions(model, params, clean, iv))(stacked)
    by_direction = jax.vmap(projected)(directions)
    for i in range(3):
        np.testing.assert_allclose(batched.logits[i], rotated(rotations[i]).logits, atol=1e-5)
        np.testing.assert_allclose(via_stack.value[i], rotated(rotations[i]).value, atol=1e-6)
        np.testing.assert_allclose(by_direction.logits[i], projected(directions[i]).logits, atol=1e-5)
    assert not np.allclose(batched.logits[0], batched.logits[1], atol=1e-4)


def test_composition_with_an_elementwise_edit_follows_the_order_given(setup):
    _, _, _, cache, _ = setup
    x = cache[SITE]
    d = jax.nn.one_hot(2, D)
    v = jnp.linspace(1.0, 2.0, D)
    project = lambda y: y - (y @ d)[..., None] * d
    np.testing.assert_allclose(
        edited(setup, [interp.add(SITE, v), interp.project_out(SITE, d)]), project(x + v), atol=1e-5)
    np.testing.assert_allclose(
        edited(setup, [interp.project_out(SITE, d), interp.add(SITE, v)]), project(x) + v, atol=1e-5)
    # affine, subspace, affine: the two affine edits must not be merged across the projection
    np.testing.assert_allclose(
        edited(setup, [interp.scale(SITE, 2.0), interp.project_out(SITE, d), interp.add(SITE, v)]),
        project(2 * x) + v, atol=1e-5)
    assert not np.allclose(project(x + v), project(x) + v)


def test_no_intervention_compiles_to_the_plain_model(setup):
    model, params, clean, _, _ = setup
    plain = jax.make_jaxpr(lambda p, o: model.apply({"params": p}, o))(params, clean)
    none = jax.make_jaxpr(lambda p, o: interp.run_with_interventions(model, p, o, None))(params, clean)
    assert str(plain) == str(none)


def test_orthogonal_parametrisation_gives_rotations():
    q = interp.orthogonal(jax.random.normal(jax.random.key(9), (5, 5)))
    np.testing.assert_allclose(q.T @ q, jnp.eye(5), atol=1e-5)


def test_bad_subspace_input_names_the_bad_value_and_what_is_allowed(setup):
    model, params, clean, _, source = setup
    run = lambda iv: interp.run_with_interventions(model, params, clean, iv)
    with pytest.raises(ValueError, match=r"no axis 'channel'; allowed: \('token', 'd_model'\)"):
        run(interp.project_out(SITE, jnp.ones(D), axis="channel"))
    with pytest.raises(ValueError, match=r"basis has shape \(5, 2\); allowed: \(n, k\) with n = 8.*'d_model'"):
        run(interp.subspace_patch(SITE, jnp.ones((5, 2)), source[SITE], axis="d_model"))
    with pytest.raises(ValueError, match=r"source has shape \(3,\)"):
        run(interp.subspace_patch(SITE, jnp.eye(D)[:, :2], jnp.ones(3)))
    with pytest.raises(ValueError, match=r"rotation of shape \(8, 8\) with k=9; allowed"):
        interp.rotated_patch(SITE, jnp.eye(D), 9, source[SITE])
    with pytest.raises(ValueError, match="scalar per state"):
        run(interp.project_out("value", jnp.ones(1)))
    with pytest.raises(ValueError, match="one kind at one site and axis"):
        interp.stack([interp.project_out(SITE, jnp.ones(D)), interp.project_out(SITE, jnp.ones(9), axis="token")])
