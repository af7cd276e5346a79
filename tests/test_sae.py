"""Sparse autoencoders: planted directions recovered, the sparsifiers exact, the grid equal to
members trained alone, spliced SAEs as ordinary interventions, features scored as concepts."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp.bench.metrics import best_cosine
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.interp import feature_concepts as fc
from rljaxinterp.interp import metrics, run_with_cache, run_with_interventions, sae
from rljaxinterp.models import make_model

SMALL = sae.SAEConfig(steps=300, batch_size=128, learning_rate=1e-3, steps_per_chunk=100)


def planted(n=20000, d=16, features=24, p=0.05, seed=0):
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(features, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    mags = rng.uniform(0.5, 2.0, (n, features)) * (rng.random((n, features)) < p)
    return (mags @ dirs).astype(np.float32), dirs


@pytest.fixture(scope="module")
def planted_grid():
    x, dirs = planted()
    config = sae.SAEConfig(steps=2000, batch_size=256, learning_rate=2e-3, steps_per_chunk=500)
    topk = sae.fit_saes({"a": x}, "topk", 48, [2], config, progress=False)
    relu = sae.fit_saes({"a": x}, "relu", 48, [1.0], config, progress=False)
    return x, dirs, topk, relu


@pytest.mark.parametrize("which", ["topk", "relu"])
def test_an_sae_recovers_planted_sparse_directions(planted_grid, which):
    x, dirs, topk, relu = planted_grid
    fit = {"topk": topk, "relu": relu}[which]
    cos = best_cosine(np.asarray(fit[0].w_dec), dirs)
    assert cos.min() > 0.95, cos
    result = sae.evaluate_saes(fit, {"a": x})[0]
    assert result["fve"] > 0.9 and result["l0"] < 4  # the data has 1.2 active directions per row


def test_topk_keeps_exactly_k_active():
    x = jax.random.normal(jax.random.key(0), (64, 12))
    w = jax.random.normal(jax.random.key(1), (12, 40))
    for k in (1, 5, 17):
        s = sae.SAE(w, jnp.zeros(40), w.T, jnp.zeros(12), jnp.zeros(40), jnp.asarray(1.0), "a", "topk", k)
        f = np.asarray(s.encode(x))
        pre = np.asarray(x @ w)
        # Reference: the k largest pre-activations, kept where positive.
        kth = np.sort(pre, axis=1)[:, -k][:, None]
        np.testing.assert_array_equal(f, np.where((pre >= kth) & (pre > 0), pre, 0.0))
        assert np.all((f > 0).sum(1) == np.minimum(k, (pre > 0).sum(1)))


def test_jumprelu_and_batchtopk_inference_apply_their_thresholds():
    x = jax.random.normal(jax.random.key(0), (32, 6))
    w = jnp.eye(6)
    theta = jnp.linspace(0.1, 0.6, 6)
    jump = sae.SAE(w, jnp.zeros(6), w, jnp.zeros(6), theta, jnp.asarray(1.0), "a", "jumprelu")
    np.testing.assert_array_equal(jump.encode(x), jnp.where(x > theta, x, 0.0))
    batch = sae.SAE(w, jnp.zeros(6), w, jnp.zeros(6), jnp.full(6, 0.3), jnp.asarray(1.0), "a", "batchtopk", 2)
    np.testing.assert_array_equal(batch.encode(x), jnp.where(x > 0.3, x, 0.0))


def test_batchtopk_keeps_k_per_row_on_average_while_training():
    x, _ = planted(n=4000)
    fit = sae.fit_saes({"a": x}, "batchtopk", 32, [3], SMALL, progress=False)
    l0 = fit.history[0]["l0"]
    assert np.allclose(l0, 3.0, atol=0.05), l0  # exactly k·batch kept over each batch (ties aside)
    assert float(fit[0].threshold[0]) > 0  # an inference threshold was learned


GRID_SPARSITIES = {"topk": [2, 4], "relu": [0.3, 1.0], "batchtopk": [3], "jumprelu": [0.1]}


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k in ("batchtopk", "jumprelu", "topk") else k
                                  for k in GRID_SPARSITIES])
def test_the_vmapped_grid_equals_members_trained_alone(kind):
    """Two sites of different sizes and two widths, so most members are padded both ways."""
    x, _ = planted(n=3000)
    data = {"a": x, "b": x[:, :10] * 2.0}
    config = dataclasses.replace(SMALL, steps=200)
    grid = sae.fit_saes(data, kind, [16, 24], GRID_SPARSITIES[kind], config, progress=False)
    assert len(grid) == 2 * 2 * len(GRID_SPARSITIES[kind])
    for field in ("w_enc", "w_dec", "b_enc", "b_dec", "threshold"):
        assert all(np.all(np.isfinite(getattr(s, field))) for s in grid.saes), field
    i = grid.select(site="b", width=16)[-1]  # the narrower site and width
    m = grid.members[i]
    alone = sae.fit_saes({m.site: data[m.site]}, kind, m.width, [m.sparsity], config, progress=False)
    for field in ("w_enc", "w_dec", "b_enc", "b_dec", "threshold"):
        np.testing.assert_allclose(getattr(grid[i], field), getattr(alone[0], field), atol=2e-4, err_msg=field)


def test_same_seed_same_bits_and_rows_on_disk_stream_identically(tmp_path):
    x, _ = planted(n=3000)
    np.save(tmp_path / "rows.npy", x)
    on_disk = np.load(tmp_path / "rows.npy", mmap_mode="r")
    a = sae.fit_saes({"a": x}, "relu", 16, [1.0], SMALL, progress=False)
    b = sae.fit_saes({"a": on_disk}, "relu", 16, [1.0], SMALL, progress=False)
    for field in ("w_enc", "w_dec", "b_enc", "b_dec"):
        np.testing.assert_array_equal(getattr(a[0], field), getattr(b[0], field))


def test_bad_input_is_refused_with_the_allowed_values():
    x, _ = planted(n=500)
    with pytest.raises(ValueError, match="unknown SAE kind.*allowed"):
        sae.fit_saes({"a": x}, "gated", 16, [1.0], SMALL, progress=False)
    with pytest.raises(ValueError, match="k=20 is larger than the dictionary"):
        sae.fit_saes({"a": x}, "topk", 16, [20], SMALL, progress=False)
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        sae.fit_saes({"a": bad}, "relu", 16, [1.0], SMALL, progress=False)
    with pytest.raises(ValueError, match="must be a \\(rows, features\\) array"):
        sae.fit_saes({"a": x[None]}, "relu", 16, [1.0], SMALL, progress=False)


# -- SAEs inside the agent ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def agent():
    states, _ = tic_tac_toe_reachable()
    live = np.flatnonzero(~np.asarray(states.terminated))[:600]
    obs = jnp.asarray(states.observation[live], jnp.float32)
    model = make_model("conv", 9, (3, 3, 2), channels=8, blocks=1, value_hidden=16)
    return model, model.init(jax.random.key(0), obs[:1])["params"], obs, jnp.asarray(states.legal_action_mask[live])


def identity_sae(site: str, d: int) -> sae.SAE:
    """relu(x) - relu(-x) = x: a dictionary that reconstructs every input exactly."""
    eye = jnp.eye(d)
    return sae.SAE(jnp.concatenate([eye, -eye], 1), jnp.zeros(2 * d), jnp.concatenate([eye, -eye], 0),
                   jnp.zeros(d), jnp.zeros(2 * d), jnp.asarray(1.0), site, "relu")


def test_splicing_a_perfect_reconstruction_changes_nothing(agent):
    model, params, obs, legal = agent
    site = "block0.conv1.post"
    clean, cache = run_with_cache(model, params, obs, [site])
    perfect = identity_sae(site, cache[site].shape[-1])
    out = run_with_interventions(model, params, obs, sae.splice(perfect, cache[site]))
    np.testing.assert_allclose(out.logits, clean.logits, atol=1e-6)
    np.testing.assert_allclose(out.value, clean.value, atol=1e-6)
    grid = sae.SAEGrid((sae.Member(site, "relu", perfect.width, 1.0),), (perfect,), ({},), SMALL)
    cost = sae.splice_cost(model, params, obs, grid, legal_mask=legal)[0]
    assert cost["policy_kl"] < 1e-9 and cost["value_mse"] < 1e-12 and cost["greedy_changed"] == 0
    assert cost["policy_kl_mean_ablation"] > 1e-4 and cost["kl_recovered"] > 0.999


def test_feature_interventions_are_exact_edits(agent):
    model, params, obs, _ = agent
    site = "block0.conv1.post"
    clean, cache = run_with_cache(model, params, obs, [site])
    acts = cache[site]
    rows = np.asarray(acts).reshape(-1, acts.shape[-1])
    fit = sae.fit_saes({site: rows}, "topk", 16, [3], SMALL, progress=False)
    s = fit[0]
    # Ablating no feature and patching features from the run itself change nothing.
    for iv in (sae.ablate_features(s, acts, []), sae.patch_features(s, acts, acts, [0, 1, 2])):
        out = run_with_interventions(model, params, obs, iv)
        np.testing.assert_allclose(out.logits, clean.logits, atol=1e-5)
    # Ablating feature j removes exactly f_j(x) d_j from the site.
    j = int(np.argmax(np.asarray((s.encode(acts) > 0).mean((0, 1, 2)))))
    iv = sae.ablate_features(s, acts, [j])
    expected = acts - s.encode(acts)[..., j:j + 1] * s.direction(j)
    np.testing.assert_allclose(iv.shift, expected, atol=1e-5)
    # A feature sweep of a run patched with itself measures no effect; a real source does.
    zero = sae.feature_patching_sweep(model, params, obs, obs, metrics.value, s)
    np.testing.assert_allclose(zero, 0.0, atol=1e-6)
    other = obs[jax.random.permutation(jax.random.key(1), obs.shape[0])]
    effects = sae.feature_patching_sweep(model, params, obs, other, metrics.value, s, features=[j, (j + 1) % 16])
    direct = run_with_interventions(model, params, obs, sae.patch_features(s, acts, run_with_cache(
        model, params, other, [site])[1][site], [j]))
    np.testing.assert_allclose(effects[0], jnp.mean(direct.value) - jnp.mean(clean.value), atol=1e-5)


def test_site_rows_flatten_positions_into_rows(agent):
    model, params, obs, _ = agent
    rows = sae.site_rows(model, params, obs, ["block0.conv1.post", "value.hidden.post"], states_per_call=256)
    assert rows["block0.conv1.post"].shape == (obs.shape[0] * 9, 8)
    _, cache = run_with_cache(model, params, obs, ["value.hidden.post"])
    np.testing.assert_allclose(rows["value.hidden.post"], np.asarray(cache["value.hidden.post"]).reshape(obs.shape[0], -1),
                               atol=1e-6)


# -- features as concepts --------------------------------------------------------------------------
def test_concept_auroc_and_correlation_match_hand_computed_values():
    f = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 0.0], [3.0, 3.0]])
    y = np.array([0, 0, 1, 1])
    real = np.array([1.0, 2.0, 3.0, 5.0])
    match = fc.match_concepts(f, {"y": y, "real": real})
    # Feature 0 ranks both positives above both negatives; feature 1 orders 2 of the 4
    # (positive, negative) pairs right (values 0 and 3 against 1 and 2).
    np.testing.assert_allclose(match.score[:, 0], [1.0, 0.5])
    np.testing.assert_allclose(match.score[:, 1], [np.corrcoef(f[:, 0], real)[0, 1], np.corrcoef(f[:, 1], real)[0, 1]])
    assert match.best_feature()["y"] == (0, 1.0)
    # Many zeros and ties, as SAE features have: agrees with the benchmark's one-column AUROC.
    from rljaxinterp.bench.metrics import auroc

    rng = np.random.default_rng(0)
    g = np.maximum(rng.normal(size=(500, 4)), 0).round(1)
    yy = rng.random(500) < 0.3
    np.testing.assert_allclose(fc.match_concepts(g, {"y": yy}).score[:, 0], [auroc(g[:, i], yy) for i in range(4)])
    assert match.best()[0][0] == "y"


def test_coverage_and_board_reconstruction_on_a_hand_built_board():
    rng = np.random.default_rng(0)
    board = rng.random((400, 6)) < 0.3
    perfect = board.astype(float) * rng.uniform(1, 2, board.shape)  # one exact detector per fact
    np.testing.assert_allclose(fc.coverage(perfect, board), 1.0)
    assert fc.board_reconstruction_f1(perfect, board) == pytest.approx(1.0)
    noise = rng.random((400, 6))  # features unrelated to the board
    assert fc.coverage(noise, board).mean() < 0.6
    assert fc.board_reconstruction_f1(noise, board) < 0.2
    table, names = fc.square_table({"own": board[:, :3], "empty": board[:, 3:]})
    assert names[:2] == ["own@0", "own@1"] and table.shape == (400, 6)


def test_site_rows_refuses_an_unknown_site(agent):
    model, params, obs, _ = agent
    with pytest.raises(KeyError, match="unknown site.*available sites"):
        sae.site_rows(model, params, obs[:4], ["block9.nowhere"])


# -- ground truth: the compiled network's planted units -------------------------------------------
def test_planted_directions_are_the_rotated_units_of_the_compiled_network():
    from rljaxinterp.bench import feature_recovery as fr

    sites = fr.planted_sites(seed=0, sites=("choice.post",))
    x, p = sites["choice.post"]["x"], sites["choice.post"]["planted"]
    # The planted rows are orthonormal, and every activation is a combination of them with the
    # units' own (non-negative, sparse) values as coefficients.
    np.testing.assert_allclose(p @ p.T, np.eye(len(p)), atol=1e-6)
    units = x @ p.T
    assert units.min() > -1e-4 and np.mean(np.abs(units) > 1e-4) < 0.2
    np.testing.assert_allclose(units @ p, x, atol=1e-4)
    site = {**sites["choice.post"], "name": "choice.post"}
    truth = fr._score(p, site)
    assert truth["recovered"] == 1.0 and truth["iia"] == 1.0  # a method returning the truth scores 1
    scores = fr.baselines(sites, nmf_iterations=50)["choice.post"]
    assert scores["neurons"]["recovered"] < 0.1  # in the rotated basis no neuron is a unit
    assert scores["neurons"]["iia"] < 0.5


@pytest.mark.slow
def test_saes_recover_the_compiled_networks_choice_units_where_neurons_and_pca_do_not():
    from rljaxinterp.bench.feature_recovery import feature_recovery

    result = feature_recovery("quick")
    choice = result["sites"]["choice.post"]["methods"]
    best_sae = max(v["recovered"] for k, v in choice.items() if k.startswith("sae topk"))
    assert best_sae >= 0.9
    assert max(choice[m]["recovered"] for m in ("neurons", "pca", "nmf")) < 0.5


@pytest.mark.slow
def test_cli_sae_writes_a_dashboard_on_a_tiny_run(tmp_path):
    import json

    from rljaxinterp.cli import main
    from rljaxinterp.runs import default_config, train

    run = tmp_path / "ttt"
    config = default_config("alphazero", "tic_tac_toe", iterations=2, checkpoint_every=2, games=16, num_simulations=4,
                            max_num_considered_actions=4, updates_per_iteration=1, minibatch_size=32,
                            replay_size=512, model_kwargs={"hidden": [16]})
    train(config, run, progress=False)
    out = tmp_path / "sae"
    args = ["sae", str(run), "--out", str(out), "--steps", "40", "--widths", "16", "--sparsities", "2", "4",
            "--batch-size", "64"]
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())
    assert [(m["site"], m["sparsity"]) for m in result["members"]] == [
        ("layer0.post", 2.0), ("layer0.post", 4.0)]
    for m in result["members"]:
        assert m["l0"] <= m["sparsity"] + 1e-6 and m["fve"] <= 1.0 and m["policy_kl"] >= 0
        assert 0 <= m["coverage_mean"] <= 1 and 0 <= m["board_f1"] <= 1
    assert {"README.md", "pareto.png", "features-layer0_post.png"} <= {p.name for p in out.iterdir()}
    with pytest.raises(SystemExit, match="unknown site"):
        main(["sae", str(run), "--out", str(tmp_path / "bad"), "--sites", "layer7.post"])
