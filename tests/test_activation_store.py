"""The activation store: what is read back is what run_with_cache computed, bit for bit;
streamed probes and CKA equal the in-memory ones; a store is never overwritten and never
half-valid."""

import os
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from rljaxinterp import envs, interp
from rljaxinterp.interp import concepts, factorisation, probes, sae, similarity
from rljaxinterp.interp import store as st
from rljaxinterp.models import make_model

SITES = ["block0.resid_post", "value.hidden.post"]
CONCEPTS = ["immediate_win", "height_col3"]


@pytest.fixture(scope="module")
def net():
    env = envs.make("connect_four")
    model = make_model("conv", env.num_actions, env.observation_shape, channels=8, blocks=1)
    params = model.init(jax.random.key(1), env.init(jax.random.key(0)).observation[None])["params"]
    return env, model, params


@pytest.fixture(scope="module")
def written(net, tmp_path_factory):
    """A store written from a generator of uneven batches, and the states it saw."""
    env, model, params = net
    seen = []

    def source():
        for obs, labels in st.random_play_batches(env, 3000, jax.random.key(2), CONCEPTS, games=128, moves=42):
            seen.append((obs, labels))
            yield obs, labels

    path = tmp_path_factory.mktemp("store") / "c4"
    store = st.write_store(path, model, params, source(), SITES, states_per_call=1000, chunk_states=256,
                           attrs={"env": "connect_four"})
    obs = np.concatenate([o for o, _ in seen])
    labels = {c: np.concatenate([lab[c] for _, lab in seen]) for c in CONCEPTS}
    return store, obs, labels


def test_round_trip_is_bit_identical_to_run_with_cache(net, written):
    env, model, params = net
    store, obs, labels = written
    assert len(store) == len(obs) == 3000 and store.attrs == {"env": "connect_four"}
    _, cache = interp.run_with_cache(model, params, obs, SITES)
    for shuffle in (False, True):
        batches = list(store.batches(700, shuffle=shuffle, seed=3))
        assert [len(b.index) for b in batches] == [700] * 4 + [200]
        index = np.concatenate([b.index for b in batches])
        assert sorted(index) == list(range(3000)) and (shuffle or np.array_equal(index, np.arange(3000)))
        for s in SITES:
            np.testing.assert_array_equal(np.concatenate([b.sites[s] for b in batches]), np.asarray(cache[s])[index])
        for c in CONCEPTS:
            np.testing.assert_array_equal(np.concatenate([b.labels[c] for b in batches]), labels[c][index])
    states = jax.tree.map(lambda x: x[:5], jax.vmap(env.init)(jax.random.split(jax.random.key(0), 5)))
    assert set(concepts.compute("connect_four", states, CONCEPTS)) == set(store.labels)
    again = [b.index for b in store.batches(700, shuffle=True, seed=3)]
    assert all(np.array_equal(a, b.index) for a, b in zip(again, batches))  # deterministic per seed


def test_streamed_ridge_equals_the_in_memory_fit(net, written):
    """Equal to 1e-6 relative, not bit for bit: the sums run in another order and the
    streamed statistics are float64. Compared under x64 so both sides are double precision
    (the in-memory fit still keeps labels, hence means and biases, in float32); the default
    float32 in-memory fit agrees to about 1e-4 (its float32 Gram matrix and solve)."""
    _, model, params = net
    store, obs, labels = written
    feats = probes.site_features(model, params, obs, SITES)
    streamed = st.ridge_probe(store, SITES, CONCEPTS, l2=1.0, batch_size=500)
    with jax.enable_x64(True):
        exact = probes.fit_probes({k: np.asarray(v, np.float64) for k, v in feats.items()}, labels, "ridge", l2=1.0)
        exact = jax.tree.map(np.asarray, exact)
        again = jax.tree.map(np.asarray, st.ridge_probe(store, SITES, CONCEPTS, l2=1.0, batch_size=500))
    for name in ("weights", "bias", "test", "train", "balanced", "baseline"):
        want, got = getattr(exact, name), getattr(again, name)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max(), err_msg=name)
    default = probes.fit_probes(feats, labels, "ridge", l2=1.0)
    np.testing.assert_allclose(streamed.weights, default.weights, rtol=0, atol=1e-4 * np.abs(streamed.weights).max())
    np.testing.assert_allclose(streamed.test, default.test, atol=1e-5)
    assert streamed.sites == tuple(SITES) and streamed.concepts == tuple(CONCEPTS)


def test_streamed_cka_equals_the_in_memory_cka(net, written, tmp_path):
    _, model, params = net
    store, obs, _ = written
    feats = probes.site_features(model, params, obs, SITES)
    want = float(similarity.linear_cka(feats[SITES[0]], feats[SITES[1]]))
    assert st.linear_cka(store, *SITES, batch_size=333) == pytest.approx(want, rel=1e-5)  # float32 in memory
    other_params = model.init(jax.random.key(7), obs[:1])["params"]  # another network, same states
    other = st.write_store(tmp_path / "other", model, other_params, obs, SITES[0])
    other_feats = probes.site_features(model, other_params, obs, SITES[:1])
    want = float(similarity.linear_cka(feats[SITES[0]], other_feats[SITES[0]]))
    assert st.linear_cka(store, SITES[0], SITES[0], other=other) == pytest.approx(want, rel=1e-5)


def test_an_existing_store_is_never_overwritten(net, written):
    _, model, params = net
    store, obs, _ = written
    before = sorted(os.listdir(store.path))
    with pytest.raises(FileExistsError, match="never overwritten"):
        st.write_store(store.path, model, params, obs[:10], SITES)
    assert sorted(os.listdir(store.path)) == before and len(st.ActivationStore(store.path)) == 3000


def test_a_failed_write_leaves_no_valid_looking_store(net, tmp_path):
    env, model, params = net

    def failing():
        for i, (obs, labels) in enumerate(st.random_play_batches(env, 4000, jax.random.key(3), CONCEPTS[:1],
                                                                 games=64, moves=42)):
            if i == 2:
                raise RuntimeError("the state source broke")
            yield obs, labels

    with pytest.raises(RuntimeError, match="source broke"):
        st.write_store(tmp_path / "broken", model, params, failing(), SITES, states_per_call=256, chunk_states=64)
    assert os.listdir(tmp_path) == []  # neither the store nor its hidden partial folder
    (tmp_path / "killed").mkdir()  # what a killed writer would leave: arrays, no manifest
    with pytest.raises(FileNotFoundError, match="not a complete activation store"):
        st.ActivationStore(tmp_path / "killed")


def test_bad_names_are_refused_with_the_allowed_ones(net, written, tmp_path):
    _, model, params = net
    store, obs, _ = written
    with pytest.raises(KeyError, match="available sites: input, stem.pre") as err:
        st.write_store(tmp_path / "s", model, params, obs[:10], ["block9.resid_post"])
    assert "block9.resid_post" in str(err.value) and "value.hidden.post" in str(err.value)
    assert not (tmp_path / "s").exists() and os.listdir(tmp_path) == []
    with pytest.raises(KeyError, match="stored sites: block0.resid_post, value.hidden.post"):
        next(store.batches(10, sites=["stem.pre"]))
    with pytest.raises(KeyError, match="stored labels: immediate_win, height_col3"):
        st.ridge_probe(store, SITES, ["centre"])


@pytest.mark.slow
def test_saes_and_nmf_train_from_the_store(net, written):
    _, model, params = net
    store, obs, _ = written
    rows = store.rows("block0.resid_post")
    memory = sae.site_rows(model, params, obs, ["block0.resid_post"])["block0.resid_post"]
    assert rows.shape == memory.shape == (3000 * 42, 8)
    np.testing.assert_array_equal(rows[5:1000], memory[5:1000])
    pick = np.array([3, 41, 42, 125_999, 77])
    np.testing.assert_array_equal(rows[pick], memory[pick])
    config = sae.SAEConfig(steps=200, batch_size=256, learning_rate=2e-3, steps_per_chunk=100)
    grid = sae.fit_saes({"block0.resid_post": rows}, "topk", 16, [4], config, progress=False)
    on_disk, in_memory = (sae.evaluate_saes(grid, {"block0.resid_post": r})[0] for r in (rows, memory))
    assert on_disk["fve"] == in_memory["fve"] and on_disk["fve"] > 0.5
    x = np.asarray(interp.run_with_cache(model, params, obs, SITES[1:])[1][SITES[1]])
    full = float(factorisation.nmf(x, 6).relative_error)
    streamed = st.online_nmf(store, SITES[1], 6, epochs=4, batch_size=256)
    assert streamed.components.shape == (6, 64) and np.all(streamed.components >= 0)
    assert streamed.relative_error < full + 0.03, (streamed.relative_error, full)


@pytest.mark.slow
def test_readme_example(net, tmp_path):
    """The README's 'Activation store' example runs as written (env, model, params from here)."""
    env, model, params = net
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("### Activation store"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]
    scope = {"env": env, "model": model, "params": params, "path": tmp_path / "c4-store", "key": jax.random.key(0),
             "n": 2000}
    exec(code, scope)  # noqa: S102 -- the README text is the code under test
    assert len(scope["acts"]) == 2000 and scope["scores"].test.shape == (1, 1) and len(scope["grid"]) == 1
    assert scope["cka"] == pytest.approx(1.0)
