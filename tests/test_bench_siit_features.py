"""Featurisers against the nodes SIIT trained into an MLP: the subspace cosine on a hand-computed
case, the counterfactual pairs against the high-level graph, and (slow) the scores of one
trained network, where the aligned blocks must be causal and random directions not."""

import numpy as np
import pytest

from rljaxinterp.bench import metrics, siit
from rljaxinterp.bench import siit_features as sf


def test_subspace_cosine_on_a_hand_computed_case():
    blocks = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], float)
    found = np.array([[3.0, 0, 0, 0],  # in block 0: cosine 1 with it, 0 with block 1
                      [1.0, 1, 1, 1],  # half in each: 1/sqrt(2) with both
                      [0, 0, 0, -2.0]])  # in block 1
    np.testing.assert_allclose(metrics.best_subspace_cosine(found[:2], blocks), [1.0, 2 ** -0.5])
    np.testing.assert_allclose(metrics.best_subspace_cosine(found, blocks), [1.0, 1.0])
    with pytest.raises(ValueError, match="blocks must be 0/1 rows"):
        metrics.best_subspace_cosine(found, blocks * 0.5)
    best = sf._best_directions(found, blocks)
    np.testing.assert_allclose(best, [[1, 0, 0, 0], [0, 0, 0, -1]])
    # node 0 best direction (1, 0, 1, 0, 1)/sqrt(3): a third of its norm² on each of its block, the other, no block
    blocks5 = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0]], float)
    spread = np.array([[1.0, 0, 1, 0, 1], [0, 0, 1, 0, 0]]) / np.array([[3 ** 0.5], [1.0]])
    where = sf.where_it_lies(spread, blocks5)  # node 0: 1/3 own, 1/3 other, 1/3 free; node 1: all own
    assert where == pytest.approx({"other_blocks": 1 / 6, "free_units": 1 / 6})


def test_node_pairs_change_the_graphs_output_and_expect_its_counterfactual():
    obs = siit.live_obs()
    for site in siit.SITES:
        pairs = sf.node_pairs(site, 16, seed=3)
        nodes = list(sf.node_range(site))
        assert pairs["base"].shape == pairs["expected"].shape == (len(nodes), 16)
        for i, j in enumerate(nodes):
            base, source = obs[pairs["base"][i]], obs[pairs["source"][i]]
            plain = np.asarray(siit.high_level(base))
            masks = siit.node_masks(np.full(16, j))
            np.testing.assert_array_equal(pairs["expected"][i], np.asarray(siit.high_level(base, source, masks)))
            assert np.all(pairs["expected"][i] != plain)  # every evaluation pair changes the output
    mixed = sf.node_pairs(siit.SITES[1], 64, seed=3, changing_share=0.5)
    assert mixed["base"].shape == (18, 64)


def test_unknown_tier_is_refused():
    with pytest.raises(ValueError, match=r"tier 'huge' is not allowed; use one of \('quick', 'default'\)"):
        sf.siit_features("huge")
    with pytest.raises(ValueError, match=r"site 'layer2.post' is not allowed; use one of \('layer0.post', 'layer1.post', "
                                         r"'block0.resid_post', 'block1.resid_post'\)"):
        sf.node_range("layer2.post")
    assert sf.node_range("block1.resid_post") == sf.node_range("layer1.post") == range(25, 43)
    with pytest.raises(ValueError, match=r"arch 'cnn' is not allowed; use one of \('mlp', 'restower'\)"):
        sf.siit_features("quick", arch="cnn")
    with pytest.raises(ValueError, match=r"channels 10 is not allowed; use a multiple of 4 that is at least 8"):
        sf.siit_features("quick", arch="restower", widths=[10])
    with pytest.raises(ValueError, match=r"changing_share 1.5 is not allowed; use a share in \[0, 1\]"):
        sf.node_pairs("layer1.post", 8, 0, changing_share=1.5)


def test_a_restower_swap_is_the_masked_patch_of_the_same_units():
    """On a ResTower site (three axes) the subspace swap is an ``add``; swapping the axis-aligned
    subspace of a node's block must equal patching exactly those elements from the source run."""
    import jax
    import jax.numpy as jnp

    from rljaxinterp import interp

    model = siit.make_model(16, "restower")
    obs = jnp.asarray(siit.live_obs()[:64])
    params = model.init(jax.random.key(0), obs[:1])["params"]
    base, source = obs[:32], obs[32:]
    site = siit.sites("restower")[1]
    acts = interp.run_with_cache(model, params, source, [site])[1][site]
    block = siit.alignment(16, "restower")[site][3] > 0  # win_sq3's channels at square 3
    got = sf._swap(model, params, site, jnp.eye(block.size)[:, block], base, acts.reshape(32, -1))
    want = interp.run_with_interventions(model, params, base, interp.patch(site, acts, block.reshape(acts.shape[1:])))
    np.testing.assert_allclose(got, want.logits, atol=1e-5)
    assert not np.allclose(got, model.apply({"params": params}, base).logits, atol=1e-3)  # the swap did something
    # the same swap as the jitted map over nodes that IIA and DAS use
    argmax = sf._swap_argmax(model, site, params, base[None], acts.reshape(1, 32, -1), jnp.eye(block.size)[None][:, :, block])
    np.testing.assert_array_equal(argmax[0], np.argmax(want.logits, -1))


@pytest.mark.slow
def test_the_aligned_blocks_are_causal_and_das_finds_the_win_and_block_nodes():
    trained, _ = siit.make_trained(siit.TIERS["quick"]["widths"][0], 0)
    scores = sf.score_network(trained, 0)
    for rows in scores.values():
        assert rows["aligned block"]["iia"] >= 0.95  # the intervention SIIT trained, on changing pairs
        assert rows["random"]["iia"] < 0.1 and rows["random"]["recovered"] == 0.0
        assert rows["neurons"]["subspace_cosine"] == 1.0  # a block's units are neurons: the best one lies in it
        assert rows["neurons"]["free_units"] == rows["neurons"]["other_blocks"] == 0.0
    assert scores["layer1.post"]["das"]["iia"] > 0.9


@pytest.mark.slow
def test_cli_writes_the_report_and_never_overwrites(monkeypatch, tmp_path, capsys):
    import json

    import jax

    from rljaxinterp.cli import main

    def untrained(width, seed, arch="mlp"):  # stands in for siit.make_trained: the wiring is under test
        model = siit.make_model(width, arch)
        params = model.init(jax.random.key(seed), siit.live_obs()[:1])["params"]
        return siit.Trained(width, seed, model, params, 0.0, arch), {"iia": 0.5}

    monkeypatch.setitem(siit.TIERS, "quick", {"seeds": (0,), "widths": (64,)})
    monkeypatch.setattr(siit, "make_trained", untrained)
    monkeypatch.setattr(sf, "SAE", {**sf.SAE, "steps": 20, "topk": (4,)})
    monkeypatch.setattr(sf, "DAS", {**sf.DAS, "steps": 5})
    monkeypatch.setattr(sf, "NMF_ITERATIONS", 10)
    for expected in ("r", "r-1"):
        assert main(["bench", "siit-features", "--out", str(tmp_path / "r")]) == 0
        folder = tmp_path / expected
        assert {"siit_features.json", "siit_features.md", "siit_features.png"} <= {p.name for p in folder.iterdir()}
    result = json.loads((tmp_path / "r" / "siit_features.json").read_text())
    assert result["networks"] == [{"width": 64, "seed": 0, "iia": 0.5, "cached": False,
                                   "score_s": result["networks"][0]["score_s"]}]
    rows = result["sites"]["layer1.post"]
    assert set(rows) == {"aligned block", "neurons", "pca", "nmf", "sae topk 2x width, k=4", "das", "random"}
    assert rows["neurons"]["subspace_cosine"]["mean"] == 1.0 and "norm² on free units" in (tmp_path / "r" / "siit_features.md").read_text()
    assert "| aligned block | 1.000 ± 0.000 | 1.000 ± 0.000 |" in capsys.readouterr().out
    # a ResTower, its widths and seeds given instead of the tier's
    assert main(["bench", "siit-features", "--out", str(tmp_path / "t"), "--arch", "restower", "--widths", "8",
                 "--seeds", "3"]) == 0
    result = json.loads((tmp_path / "t" / "siit_features.json").read_text())
    assert result["arch"] == "restower" and [(n["width"], n["seed"]) for n in result["networks"]] == [(8, 3)]
    assert set(result["sites"]) == {"block0.resid_post", "block1.resid_post"}
    assert "### block1.resid_post (18 nodes)" in (tmp_path / "t" / "siit_features.md").read_text()
