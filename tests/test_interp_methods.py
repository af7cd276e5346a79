"""Attribution patching, path patching, ablations, circuits and probes against exact references."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import interp
from rljaxinterp.interp.ablation import ablation_sweep, circuit_faithfulness
from rljaxinterp.interp.attribution_patching import agreement, attribution_patching
from rljaxinterp.interp.path_patching import path_patching
from rljaxinterp.interp.probes import fit_probes, probe_split, site_features
from rljaxinterp.models import ModelOutput, make_model, site


class LinearNet(nn.Module):
    """A user-defined model: two linear layers with named sites and no nonlinearity."""

    @nn.compact
    def __call__(self, obs):
        x = site(self, "input", obs.reshape(obs.shape[0], -1))
        h = site(self, "hidden", nn.Dense(8, name="dense")(x))
        value = site(self, "value", nn.Dense(1, name="head")(h)[:, 0])
        return ModelOutput(logits=h[:, :4], value=value)


@pytest.fixture(scope="module")
def data():
    clean = jax.random.normal(jax.random.key(1), (32, 3, 3, 2))
    corrupted = jax.random.normal(jax.random.key(2), (32, 3, 3, 2))
    return clean, corrupted


@pytest.fixture(scope="module")
def mlp(data):
    model = make_model("mlp", 9, (3, 3, 2), hidden=(12, 10))
    return model, model.init(jax.random.key(0), data[0])["params"]


def test_attribution_patching_is_exact_on_a_linear_model(data):
    clean, corrupted = data
    model = LinearNet()
    params = model.init(jax.random.key(0), clean)["params"]
    exact = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, sites=["input", "hidden"])
    approx = attribution_patching(model, params, clean, corrupted, interp.metrics.value, sites=["input", "hidden"])
    for name in exact:
        np.testing.assert_allclose(approx[name], exact[name], atol=1e-5)
    assert agreement(exact, approx)["correlation"] > 0.9999


def test_attribution_patching_approximates_a_relu_network(data, mlp):
    model, params = mlp
    clean, corrupted = data
    # a small perturbation keeps the first-order estimate accurate
    near = clean + 0.01 * (corrupted - clean)
    exact = interp.patching_sweep(model, params, clean, near, interp.metrics.value, sites=["layer0.post"])
    approx = attribution_patching(model, params, clean, near, interp.metrics.value, sites=["layer0.post"])
    assert agreement(exact, approx, top_k=3)["correlation"] > 0.99


def test_integrated_attribution_patching_is_complete_and_beats_the_gradient_on_a_relu_network(data, mlp):
    model, params = mlp
    clean, corrupted = data
    sites = ["layer0.post"]
    exact = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, sites=sites)["layer0.post"]
    one = attribution_patching(model, params, clean, corrupted, interp.metrics.value, sites=sites)
    np.testing.assert_array_equal(  # steps=1 is the plain estimate
        attribution_patching(model, params, clean, corrupted, interp.metrics.value, sites=sites, steps=1)["layer0.post"],
        one["layer0.post"])
    ig = attribution_patching(model, params, clean, corrupted, interp.metrics.value, sites=sites, steps=256)["layer0.post"]
    # completeness: the estimates add up to the effect of patching the whole site at once
    whole = interp.run_with_interventions(model, params, clean, interp.patch(
        "layer0.post", interp.run_with_cache(model, params, corrupted, sites)[1]["layer0.post"]))
    total = float((whole.value - model.apply({"params": params}, clean).value).mean())
    assert float(ig.sum()) == pytest.approx(total, rel=1e-2, abs=1e-4)
    err = lambda est: float(np.abs(np.asarray(est) - np.asarray(exact)).mean())
    assert err(ig) < err(one["layer0.post"])
    with pytest.raises(ValueError, match=r"steps=0 must be an integer >= 1"):
        attribution_patching(model, params, clean, corrupted, interp.metrics.value, sites=sites, steps=0)


def test_path_patching_through_the_only_receiver_equals_activation_patching(data, mlp):
    model, params = mlp
    clean, corrupted = data
    exact = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, sites=["layer0.post"])
    path = path_patching(model, params, clean, corrupted, interp.metrics.value, "layer0.post", "layer1.pre")
    np.testing.assert_allclose(path, exact["layer0.post"], atol=1e-5)
    # through a receiver the sender does not reach, nothing flows
    none = path_patching(model, params, clean, corrupted, interp.metrics.value, "layer1.post", "layer0.pre")
    np.testing.assert_allclose(none, 0.0, atol=1e-7)


def test_ablation_sweep_matches_manual_ablation(data, mlp):
    model, params = mlp
    clean, _ = data
    effects = ablation_sweep(model, params, clean, interp.metrics.value, "zero", sites=["layer1.post"])["layer1.post"]
    base = model.apply({"params": params}, clean).value
    for unit in (0, 4):
        out = interp.run_with_interventions(model, params, clean, interp.zero_ablate("layer1.post", interp.unit_mask((10,), unit)))
        np.testing.assert_allclose(effects[unit], (out.value - base).mean(), atol=1e-6)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        ablation_sweep(model, params, clean, interp.metrics.value, "resample")
    with pytest.raises(ValueError, match="'median' is not allowed"):
        ablation_sweep(model, params, clean, interp.metrics.value, "median")


def test_circuit_keeping_everything_keeps_all_behaviour(data, mlp):
    model, params = mlp
    clean, _ = data
    everything = circuit_faithfulness(model, params, clean, interp.metrics.value, {"layer0.post": jnp.ones(12)})
    assert everything["fraction_kept"] == pytest.approx(1.0, abs=1e-5)
    nothing = circuit_faithfulness(model, params, clean, interp.metrics.value, {"layer0.post": jnp.zeros(12)})
    assert nothing["fraction_kept"] == pytest.approx(0.0, abs=1e-5)
    keep = jnp.zeros(12).at[3].set(1.0)
    partial = circuit_faithfulness(model, params, clean, interp.metrics.value, {"layer0.post": keep})
    _, cache = interp.run_with_cache(model, params, clean)
    mean = cache["layer0.post"].mean(0)
    circuit = interp.run_with_interventions(model, params, clean, interp.patch("layer0.post", mean, 1.0 - keep))
    assert partial["circuit"] == pytest.approx(float(circuit.value.mean()), abs=1e-6)


@pytest.mark.parametrize("kind", ["ridge", "logistic", "sparse"])
def test_probe_recovers_a_planted_linear_feature_and_fails_on_shuffled_labels(kind):
    x = jax.random.normal(jax.random.key(0), (1500, 20))
    w = jax.random.normal(jax.random.key(1), (20,))
    noise = jax.random.normal(jax.random.key(2), (1500, 6))
    concepts = {"linear": x @ w, "sign": (x @ w > 0).astype(jnp.float32)}
    scores = fit_probes({"planted": x, "noise": noise}, concepts, kind=kind, l2=1e-3)
    table = scores.table()
    assert table["planted"]["linear"] > 0.999
    assert table["planted"]["sign"] > 0.95
    assert table["noise"]["sign"] < 0.6 and table["noise"]["linear"] < 0.05
    control = fit_probes({"planted": x, "noise": noise}, concepts, kind=kind, l2=1e-3, shuffle_labels=True).table()
    assert control["planted"]["sign"] < 0.6 and control["planted"]["linear"] < 0.05


def _standardised_train(x, train):
    x = np.asarray(x, np.float64)
    mean, std = x[train].mean(0), x[train].std(0)
    return (x[train] - mean) / np.where(std > 1e-6, std, 1.0), mean, np.where(std > 1e-6, std, 1.0)


@pytest.mark.parametrize("kind", ["logistic", "sparse"])
def test_iterative_probes_reach_the_optimum_of_their_objective(kind):
    """First-order optimality, checked in float64 NumPy on the returned weights: the
    gradient vanishes (logistic), or the L1 subgradient conditions hold (sparse)."""
    latent = jax.random.normal(jax.random.key(3), (1200, 4))
    mix = jax.random.normal(jax.random.key(4), (4, 16))
    x = latent @ mix + 0.3 * jax.random.normal(jax.random.key(5), (1200, 16))  # correlated features
    y_real = latent[:, 0] - 0.5 * latent[:, 1] + 0.5 * jax.random.normal(jax.random.key(6), (1200,))
    concepts = {"real": y_real, "binary": (y_real > 0).astype(jnp.float32)}
    l2, l1 = 1.0, 1e-2
    scores = fit_probes({"x": x}, concepts, kind=kind, l2=l2, l1=l1, max_steps=5000, tol=1e-6)
    train, _ = probe_split(jax.random.key(0), 1200)
    xs, mean, scale = _standardised_train(x, train)
    n = len(train)
    for j, name in enumerate(scores.concepts):
        if kind == "logistic" and name == "real":
            continue  # closed-form ridge, checked against the planted feature elsewhere
        w_raw, b_raw = np.asarray(scores.weights[0, j], np.float64), float(scores.bias[0, j])
        w = w_raw * scale  # back on standardised features
        b = b_raw + mean @ w_raw
        z = xs @ w + b
        y = np.asarray(concepts[name], np.float64)[train]
        residual = 1 / (1 + np.exp(-z)) - y if name == "binary" else z - y
        grad_w = xs.T @ residual / n + l2 / n * w
        assert abs(residual.mean()) < 1e-4  # the unpenalised bias
        if kind == "logistic":
            assert np.abs(grad_w).max() < 1e-4
        else:
            zero = np.abs(w) < 1e-6
            assert zero.any() and (~zero).any()  # the L1 penalty is active on this problem
            assert np.abs(grad_w[zero]).max() <= l1 + 1e-4
            np.testing.assert_allclose(grad_w[~zero], -l1 * np.sign(w[~zero]), atol=1e-4)


@pytest.mark.slow
def test_probes_of_a_site_do_not_depend_on_the_other_sites():
    """Sites are fitted in width groups (narrow ones zero-padded together): a site's probes
    come out the same alone and next to sites of other widths."""
    x = jax.random.normal(jax.random.key(7), (400, 64))
    target = {"real": x[:, 0] - x[:, 3], "binary": (x[:, 1] + x[:, 2] > 0).astype(jnp.float32)}
    sites = {"wide": x, "narrow": x[:, :5], "narrower": x[:, :3]}
    for kind in ("ridge", "logistic"):
        together = fit_probes(sites, target, kind=kind)
        for i, (name, f) in enumerate(sites.items()):
            alone = fit_probes({name: f}, target, kind=kind)
            np.testing.assert_allclose(together.test[i], alone.test[0], atol=1e-6)
            np.testing.assert_allclose(together.weights[i, :, :f.shape[1]], alone.weights[0], rtol=1e-4, atol=1e-5)
            np.testing.assert_array_equal(together.weights[i, :, f.shape[1]:], 0.0)


@pytest.mark.slow
def test_probes_over_stacked_checkpoints_equal_separate_calls(data, mlp):
    model, params = mlp
    other = jax.tree.map(lambda p: p * 0.5, params)
    feats = [site_features(model, p, data[0]) for p in (params, other)]
    target = {"sum": data[0].reshape(32, -1).sum(1), "first": data[0].reshape(32, -1)[:, 0]}
    for kind in ("ridge", "logistic"):
        stacked = fit_probes({k: jnp.stack([f[k] for f in feats]) for k in feats[0]}, target, kind=kind)
        for c, f in enumerate(feats):
            single = fit_probes(f, target, kind=kind)
            np.testing.assert_allclose(stacked.test[c], single.test, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(stacked.weights[c], single.weights, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="the same for every site"):
        fit_probes({"a": feats[0]["input"], "b": feats[0]["input"][:10]}, target)


def test_probes_read_model_sites(data, mlp):
    model, params = mlp
    feats = site_features(model, params, data[0], sites=["input", "layer0.post"])
    assert feats["input"].shape == (32, 18) and feats["layer0.post"].shape == (32, 12)
    # a linear function of the observation is read back exactly from the input site
    target = data[0].reshape(32, -1) @ jnp.arange(18.0)
    scores = fit_probes(feats, {"input_sum": target}, l2=1e-4, test_fraction=0.25)
    assert scores.table()["input"]["input_sum"] > 0.999
    # the returned probe reads the raw activations
    i = scores.sites.index("input")
    pred = feats["input"] @ scores.weights[i, 0, :18] + scores.bias[i, 0]
    assert float(jnp.corrcoef(pred, target)[0, 1]) > 0.999
    with pytest.raises(ValueError, match="probe kind 'svm' is not allowed"):
        fit_probes(feats, {"t": target}, kind="svm")


@pytest.mark.slow
def test_position_granularity_and_denoising(data):
    clean, corrupted = data
    model = make_model("conv", 9, (3, 3, 2), channels=4, blocks=1, value_hidden=4)
    params = model.init(jax.random.key(0), clean)["params"]
    site = "block0.conv1.post"
    _, source = interp.run_with_cache(model, params, corrupted)
    effects = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, sites=[site],
                                    granularity="position")[site]
    assert effects.shape == (3, 3)
    base = model.apply({"params": params}, clean).value
    mask = jnp.zeros((3, 3, 4)).at[1, 2].set(1.0)
    out = interp.run_with_interventions(model, params, clean, interp.patch(site, source[site], mask))
    np.testing.assert_allclose(effects[1, 2], (out.value - base).mean(), atol=1e-6)
    # denoising patches clean activations into the corrupted run: the whole last block restores clean
    last = "block0.resid_post"
    logit0 = interp.metrics.logit_diff(0, 1)
    restored = interp.patching_sweep(model, params, clean, corrupted, logit0, sites=[last],
                                     direction="denoising", granularity="element")[last]
    _, clean_cache = interp.run_with_cache(model, params, clean)
    full = interp.run_with_interventions(model, params, corrupted, interp.patch(last, clean_cache[last]))
    np.testing.assert_allclose(full.logits, model.apply({"params": params}, clean).logits, atol=1e-5)
    one = jnp.zeros((3, 3, 4)).at[0, 1, 2].set(1.0)
    single = interp.run_with_interventions(model, params, corrupted, interp.patch(last, clean_cache[last], one))
    corrupted_out = model.apply({"params": params}, corrupted)
    np.testing.assert_allclose(restored[0, 1, 2], (logit0(single) - logit0(corrupted_out)).mean(), atol=1e-5)
    assert np.abs(restored).sum() > 0


@pytest.fixture(scope="module")
def transformer(data):
    model = make_model("transformer", 9, (3, 3, 2), d_model=16, heads=4, layers=1, d_mlp=16)
    return model, model.init(jax.random.key(3), data[0])["params"]


@pytest.mark.slow
def test_head_granularity_patches_whole_heads(data, transformer):
    model, params = transformer
    clean, corrupted = data
    attention = ["block0.attn.q", "block0.attn.k", "block0.attn.v", "block0.attn.pattern", "block0.attn.z"]
    metric = interp.metrics.value
    effects = interp.patching_sweep(model, params, clean, corrupted, metric, granularity="head", sizing=interp.Sizing(patches_per_step=3))
    assert sorted(effects) == sorted(attention)  # sites=None: every attention site, nothing else
    own = interp.patching_sweep(model, params, clean, clean, metric, sites=["block0.attn.pattern"], granularity="head")
    np.testing.assert_allclose(own["block0.attn.pattern"], np.zeros(4), atol=1e-6)  # own activation: no change

    # A Python loop over heads with masks written by hand: (tokens, heads, d_head) sites take
    # the head on axis 1, the (heads, query, key) pattern on axis 0.
    _, source = interp.run_with_cache(model, params, corrupted)
    base = metric(model.apply({"params": params}, clean))
    for name in attention:
        shape = source[name].shape[1:]
        patched = jax.jit(lambda m, name=name: metric(
            interp.run_with_interventions(model, params, clean, interp.patch(name, source[name], m))))
        for head in range(4):
            mask = np.zeros(shape, np.float32)
            if name.endswith("pattern"):
                mask[head] = 1
            else:
                mask[:, head] = 1
            np.testing.assert_allclose(effects[name][head], (patched(mask) - base).mean(), atol=1e-6)
        assert np.abs(effects[name]).max() > 1e-5  # heads matter, so the loop compared real effects

    with pytest.raises(ValueError, match=r"granularity='head' needs an attention site.*'block0.mlp.post'"):
        interp.patching_sweep(model, params, clean, corrupted, metric, sites=["block0.mlp.post"], granularity="head")


def test_state_tiles_with_padding_equal_one_tile(data, mlp):
    model, params = mlp
    clean, corrupted = data
    sweep = lambda steps, patches=None, **kw: interp.patching_sweep(
        model, params, clean, corrupted, interp.metrics.value, sites=["layer0.post"], granularity="unit",
        sizing=interp.Sizing(states_per_step=steps, patches_per_step=patches), **kw)["layer0.post"]
    whole = sweep(32, 12)
    tiled = sweep(5, 4)  # 7 tiles of 5: three padding rows, weighted zero
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-7)
    per_state = sweep(5, reduce=False)
    assert per_state.shape == (12, 32)
    np.testing.assert_allclose(per_state.mean(-1), whole, rtol=1e-5, atol=1e-7)


def test_sweeps_share_one_sizing_option_and_return_site_effects(data, mlp):
    model, params = mlp
    clean, corrupted = data
    effects = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, sites=["layer0.post"],
                                    granularity="unit", sizing=interp.Sizing(states_per_call=7, patches_per_step=2))
    assert isinstance(effects, interp.SiteEffects) and effects.granularity == "unit" and list(effects) == ["layer0.post"]
    ablated = interp.ablation.ablation_sweep(model, params, clean, interp.metrics.value, "zero", sites=["layer0.post"],
                                             sizing=interp.Sizing(states_per_step=4))
    assert isinstance(ablated, interp.SiteEffects) and ablated["layer0.post"].shape == effects["layer0.post"].shape
    doubled = jax.tree.map(lambda x: 2 * x, effects)  # a pytree: jit, vmap and tree maps see the arrays
    np.testing.assert_array_equal(doubled["layer0.post"], 2 * effects["layer0.post"])
    with pytest.raises(KeyError, match="no effects for site 'layer9.post'; sites: layer0.post"):
        effects["layer9.post"]
    with pytest.raises(ValueError, match=r"Sizing.states_per_call=0 is not allowed; need None or an integer >= 1"):
        interp.Sizing(states_per_call=0)


def test_clean_minus_corrupt_takes_each_states_own_actions():
    from rljaxinterp.interp.metrics import clean_minus_corrupt
    from rljaxinterp.models.base import ModelOutput

    out = ModelOutput(logits=jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), value=jnp.zeros(2))
    got = clean_minus_corrupt(out, {"clean": jnp.array([2, 0]), "corrupt": jnp.array([0, 1])})
    assert np.array_equal(np.asarray(got), [3.0 - 1.0, 4.0 - 5.0])
