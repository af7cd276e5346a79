"""Identities that pin down caching, interventions, parameter edits and patching sweeps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import interp
from rljaxinterp.models import KINDS, make_model

OBS_SHAPE = (3, 3, 2)
SMALL = {
    "mlp": {"hidden": (16, 12)},
    "conv": {"channels": 8, "blocks": 2, "value_hidden": 8},
    "transformer": {"d_model": 16, "heads": 2, "layers": 2, "d_mlp": 24},
}
LAST_LAYER = {"mlp": "layer1.post", "conv": "block1.resid_post", "transformer": "block1.resid_post"}
HIDDEN_UNIT_SITE = {"mlp": "layer0.post", "conv": "block0.conv1.post", "transformer": "block1.mlp.post"}


def boards(key, n):
    """Random tic-tac-toe-like observations: two disjoint binary planes."""
    cells = jax.random.randint(key, (n, 3, 3), 0, 3)
    return jnp.stack([cells == 1, cells == 2], -1).astype(jnp.float32)


@pytest.fixture(scope="module", params=[pytest.param(k, marks=pytest.mark.slow) if k == "transformer" else k
                                        for k in KINDS])
def setup(request):
    kind = request.param
    model = make_model(kind, 9, OBS_SHAPE, **SMALL[kind])
    clean = boards(jax.random.key(1), 6)
    corrupted = boards(jax.random.key(2), 6)
    params = model.init(jax.random.key(0), clean)["params"]
    return kind, model, params, clean, corrupted


def assert_same_output(a, b, atol=0.0):
    np.testing.assert_allclose(a.logits, b.logits, atol=atol, rtol=0)
    np.testing.assert_allclose(a.value, b.value, atol=atol, rtol=0)


def test_site_names_are_stable_and_in_forward_order():
    model = make_model("mlp", 9, OBS_SHAPE, hidden=(16, 12))
    assert interp.sites(model, jnp.zeros(OBS_SHAPE)) == {
        "input": (18,), "layer0.pre": (16,), "layer0.post": (16,), "layer1.pre": (12,),
        "layer1.post": (12,), "logits": (9,), "value": (),
    }
    conv = interp.sites(make_model("conv", 9, OBS_SHAPE, channels=8, blocks=1), jnp.zeros((5, *OBS_SHAPE)))
    assert list(conv)[:7] == [
        "input", "stem.pre", "stem.post", "block0.conv1.pre", "block0.conv1.post", "block0.conv2.pre",
        "block0.resid_post",
    ]
    assert conv["block0.conv1.post"] == (3, 3, 8)


def test_cache_matches_sites_and_plain_output(setup):
    _kind, model, params, clean, _ = setup
    out, cache = interp.run_with_cache(model, params, clean)
    assert_same_output(out, model.apply({"params": params}, clean))
    shapes = interp.sites(model, clean)
    assert list(cache) == list(shapes)
    for name, act in cache.items():
        assert act.shape == (clean.shape[0], *shapes[name]), name
    np.testing.assert_array_equal(cache["logits"], out.logits)
    np.testing.assert_array_equal(cache["value"], out.value)
    _, some = interp.run_with_cache(model, params, clean, sites=lambda n: n.endswith("post"))
    assert some and all(n.endswith("post") for n in some)


def test_patching_every_site_with_its_own_activation_changes_nothing(setup):
    _kind, model, params, clean, _ = setup
    out, cache = interp.run_with_cache(model, params, clean)
    patched = interp.run_with_interventions(model, params, clean, [interp.patch(n, a) for n, a in cache.items()])
    assert_same_output(patched, out)


def test_patching_the_last_layer_with_corrupted_activations_gives_corrupted_output(setup):
    kind, model, params, clean, corrupted = setup
    corrupted_out, corrupted_cache = interp.run_with_cache(model, params, corrupted)
    clean_out = model.apply({"params": params}, clean)
    site = LAST_LAYER[kind]
    patched = interp.run_with_interventions(model, params, clean, interp.patch(site, corrupted_cache[site]))
    assert_same_output(patched, corrupted_out, atol=1e-6)
    assert not np.allclose(patched.logits, clean_out.logits)


def test_parameter_removal_equals_activation_zero_ablation(setup):
    kind, model, params, clean, _ = setup
    site = HIDDEN_UNIT_SITE[kind]
    shape = interp.sites(model, clean)[site]
    for unit in (0, 3):
        ablated = interp.run_with_interventions(
            model, params, clean, interp.zero_ablate(site, interp.unit_mask(shape, unit))
        )
        edited = model.apply({"params": interp.remove_unit(model, params, site, unit, clean)}, clean)
        assert_same_output(edited, ablated, atol=1e-6)
        assert not np.allclose(ablated.logits, model.apply({"params": params}, clean).logits)


def test_each_intervention_kind_does_what_it_says(setup):
    kind, model, params, clean, _corrupted = setup
    site = HIDDEN_UNIT_SITE[kind]
    _, cache = interp.run_with_cache(model, params, clean)
    x = cache[site]
    mask = interp.unit_mask(x.shape[1:], 1)

    def edited(iv):
        return interp.run_with_interventions_and_cache(model, params, clean, iv)[1][site]

    np.testing.assert_allclose(edited(interp.zero_ablate(site, mask)), x * (1 - mask), atol=0)
    np.testing.assert_allclose(edited(interp.scale(site, 3.0, mask)), x * (1 + 2 * mask), rtol=1e-6)
    vec = jnp.arange(x.shape[-1], dtype=jnp.float32)
    np.testing.assert_allclose(edited(interp.add(site, vec)), x + vec, rtol=1e-6)
    np.testing.assert_allclose(edited(interp.mean_ablate(site, x)), jnp.broadcast_to(x.mean(0), x.shape), rtol=1e-6)
    resampled = edited(interp.resample_ablate(site, x, jax.random.key(3)))
    assert sorted(map(tuple, np.asarray(resampled.reshape(len(x), -1)))) == sorted(
        map(tuple, np.asarray(x.reshape(len(x), -1)))
    )
    # several interventions compose in the order given
    np.testing.assert_allclose(
        edited([interp.scale(site, 2.0), interp.add(site, 1.0)]), 2 * x + 1, rtol=1e-6
    )
    np.testing.assert_allclose(
        edited([interp.add(site, 1.0), interp.scale(site, 2.0)]), 2 * x + 2, rtol=1e-6
    )
    # and edits at one site propagate to later ones
    out, _ = interp.run_with_cache(model, params, clean)
    assert not np.allclose(interp.run_with_interventions(model, params, clean, interp.add(site, vec)).logits, out.logits)


def test_vmapped_sweep_over_mixed_sites_equals_python_loop(setup):
    _kind, model, params, clean, corrupted = setup
    _, source = interp.run_with_cache(model, params, corrupted)
    shapes = interp.sites(model, clean)
    chosen = [s for s in shapes if s not in ("input", "tokens")][:4]
    # batch item j patches element j of site chosen[j % 4]; other sites get a zero mask
    items = []
    for j in range(8):
        site = chosen[j % len(chosen)]
        flat = np.zeros(int(np.prod(shapes[site])), np.float32)
        flat[j % flat.size] = 1.0
        items.append({site: flat.reshape(shapes[site])})
    stacked = [
        interp.stack([interp.patch(s, source[s], it.get(s, np.zeros(shapes[s], np.float32))) for it in items])
        for s in chosen
    ]
    batched = jax.jit(jax.vmap(lambda ivs: interp.run_with_interventions(model, params, clean, ivs)))(stacked)
    for j, it in enumerate(items):
        ((site, mask),) = it.items()
        single = interp.run_with_interventions(model, params, clean, interp.patch(site, source[site], mask))
        np.testing.assert_allclose(batched.logits[j], single.logits, atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(batched.value[j], single.value, atol=1e-6, rtol=1e-6)


def test_vmap_over_states_and_jit_compiles_once_per_shape(setup):
    kind, model, params, clean, _ = setup
    site = HIDDEN_UNIT_SITE[kind]
    shape = interp.sites(model, clean)[site]

    @jax.jit
    def run(obs, mask):
        return jax.vmap(lambda o: interp.run_with_interventions(model, params, o, interp.zero_ablate(site, mask)))(obs)

    per_state = run(clean, interp.unit_mask(shape, 0))
    run(clean, interp.unit_mask(shape, 2))
    assert run._cache_size() == 1
    together = interp.run_with_interventions(model, params, clean, interp.zero_ablate(site, interp.unit_mask(shape, 0)))
    np.testing.assert_allclose(per_state.logits, together.logits, atol=1e-5)


def test_gradient_through_mask_is_the_attribution_patching_estimate(setup):
    kind, model, params, clean, corrupted = setup
    site = HIDDEN_UNIT_SITE[kind]
    _, clean_cache = interp.run_with_cache(model, params, clean)
    _, source = interp.run_with_cache(model, params, corrupted)
    shape = clean_cache[site].shape[1:]

    def metric_after(iv):
        return interp.run_with_interventions(model, params, clean, iv).value.sum()

    d_mask = jax.grad(lambda m: metric_after(interp.patch(site, source[site], m)))(jnp.zeros(shape))
    d_act = jax.grad(lambda v: metric_after(interp.add(site, v)))(jnp.zeros(clean_cache[site].shape))
    expected = ((source[site] - clean_cache[site]) * d_act).sum(0)
    np.testing.assert_allclose(d_mask, expected, rtol=1e-4, atol=1e-6)
    assert np.abs(d_mask).sum() > 0


def test_patching_sweep_matches_single_patches(setup):
    kind, model, params, clean, corrupted = setup
    site = HIDDEN_UNIT_SITE[kind]
    effects = interp.patching_sweep(
        model, params, clean, corrupted, interp.metrics.value, sites=[site], granularity="unit", sizing=interp.Sizing(patches_per_step=3)
    )[site]
    _, source = interp.run_with_cache(model, params, corrupted)
    base = model.apply({"params": params}, clean).value
    shape = source[site].shape[1:]
    for unit in (0, 1, shape[-1] - 1):
        out = interp.run_with_interventions(model, params, clean, interp.patch(site, source[site], interp.unit_mask(shape, unit)))
        np.testing.assert_allclose(effects[unit], (out.value - base).mean(), atol=1e-5)
    per_state = interp.patching_sweep(
        model, params, clean, corrupted, interp.metrics.value, sites=[site], reduce=False
    )[site]
    assert per_state.shape == (*shape, clean.shape[0])


def test_bad_input_names_the_bad_value_and_what_is_allowed(setup):
    _kind, model, params, clean, _ = setup
    with pytest.raises(KeyError, match=r"unknown site 'nope'.*available sites: .*logits"):
        interp.run_with_interventions(model, params, clean, interp.zero_ablate("nope"))
    with pytest.raises(ValueError, match=r"mask has shape \(5,\).*allowed"):
        interp.run_with_interventions(model, params, clean, interp.zero_ablate("logits", jnp.ones(5)))
    with pytest.raises(ValueError, match=r"shift has shape \(2, 9\)"):
        interp.run_with_interventions(model, params, clean, interp.patch("logits", jnp.ones((2, 9))))
    with pytest.raises(KeyError, match=r"unknown site\(s\) \['nope'\]"):
        interp.run_with_cache(model, params, clean, sites=["nope"])
    with pytest.raises(ValueError, match="granularity='heads' is not allowed"):
        interp.patching_sweep(model, params, clean, clean, interp.metrics.value, granularity="heads")
    with pytest.raises(ValueError, match="not produced unit-by-unit"):
        interp.remove_unit(model, params, "logits", 0, clean)


def test_unknown_model_kind_lists_kinds():
    with pytest.raises(ValueError, match="unknown model kind 'rnn'; allowed: mlp, conv, transformer"):
        make_model("rnn", 9, OBS_SHAPE)


@pytest.mark.slow
def test_state_chunks_with_per_state_metric_data_equal_one_pass(setup):
    _kind, model, params, clean, corrupted = setup
    reference = model.apply({"params": params}, clean).logits
    legal = jnp.arange(9) % 2 == 0
    legal = jnp.broadcast_to(legal, reference.shape)
    sites = list(interp.sites(model, clean[:1]))[::3]  # every third site: one compile per site and call
    whole = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.policy_kl(reference, legal),
                                  sites=sites, granularity="unit")
    chunked = interp.patching_sweep(
        model, params, clean, corrupted, interp.metrics.policy_kl_to_reference, sites=sites, granularity="unit",
        sizing=interp.Sizing(states_per_call=4), metric_data={"reference_logits": reference, "legal_mask": legal},
    )
    assert list(whole) == list(chunked) == sites
    for site in whole:
        np.testing.assert_allclose(chunked[site], whole[site], rtol=1e-5, atol=1e-7)
    per_state = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, granularity="unit",
                                      sizing=interp.Sizing(states_per_call=4), reduce=False, sites=["logits"])
    assert per_state["logits"].shape == (9, clean.shape[0])
