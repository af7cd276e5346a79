"""Sites declare their axes and producing layers; interp reads layouts from the model only."""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljaxinterp import interp
from rljaxinterp.models import AXES, ModelOutput, make_model, site


class Encoder(nn.Module):
    """A model interp has never heard of: a submodule, declared axes and a producing layer."""

    @nn.compact
    def __call__(self, obs):
        x = site(self, "cells", obs.reshape(*obs.shape[:-3], 9, 2), axes=("token", "feature"))
        h = site(self, "hidden", nn.relu(nn.Dense(5, name="enc")(x)), axes=("token", "unit"), produced_by="enc")
        return h


class NewNet(nn.Module):
    @nn.compact
    def __call__(self, obs):
        h = Encoder(name="encoder")(obs)
        logits = site(self, "logits", nn.Dense(9, name="policy")(h.reshape(*h.shape[:-2], -1)), axes=("action",))
        value = site(self, "value", nn.Dense(1, name="head")(h.mean((-2, -1), keepdims=False)[..., None])[..., 0],
                     axes=())
        return ModelOutput(logits=logits, value=value)


class Undeclared(nn.Module):
    @nn.compact
    def __call__(self, obs):
        x = site(self, "input", obs.reshape(obs.shape[0], -1))
        h = site(self, "hidden", nn.Dense(4, name="dense")(x))
        return ModelOutput(logits=h, value=h.sum(-1))


@pytest.fixture(scope="module")
def obs():
    return jax.random.normal(jax.random.key(1), (4, 3, 3, 2)), jax.random.normal(jax.random.key(2), (4, 3, 3, 2))


@pytest.fixture(scope="module")
def new_net(obs):
    model = NewNet()
    return model, model.init(jax.random.key(0), obs[0])["params"]


def test_models_declare_axes_and_batch_rank_comes_from_them():
    model = make_model("transformer", 9, (3, 3, 2), d_model=8, heads=2, layers=1, d_mlp=8)
    info = interp.site_info(model, jnp.zeros((2, 5, 3, 3, 2)))  # two batch axes
    assert info["block0.attn.z"].axes == ("token", "head", "d_head")
    assert info["block0.attn.pattern"].axes == ("head", "query", "key")
    assert info["block0.attn.z"].batch_shape == (2, 5) and info["block0.attn.z"].shape == (9, 2, 4)
    assert info["block0.mlp.post"].produced_by == ("block0", "mlp_up")
    assert interp.sites(model, jnp.zeros((2, 5, 3, 3, 2)))["value"] == ()
    assert interp.site_axes(model, jnp.zeros((3, 3, 2)))["embed"] == ("token", "d_model")
    mlp = make_model("mlp", 9, (3, 3, 2), hidden=(6,))
    assert interp.sites(mlp, jnp.zeros((2, 5, 3, 3, 2)))["layer0.post"] == (6,)
    assert interp.sites(mlp, jnp.zeros((3, 3, 2)))["layer0.post"] == (6,)


def test_a_new_model_gets_unit_position_and_removal_without_edits_in_interp(obs, new_net):
    model, params = new_net
    clean, corrupted = obs
    assert list(interp.sites(model, clean)) == ["encoder.cells", "encoder.hidden", "logits", "value"]
    site_name = "encoder.hidden"
    for unit in (0, 4):
        ablated = interp.run_with_interventions(
            model, params, clean, interp.zero_ablate(site_name, interp.unit_mask((9, 5), unit)))
        removed = model.apply({"params": interp.remove_unit(model, params, site_name, unit, clean)}, clean)
        np.testing.assert_allclose(removed.logits, ablated.logits, atol=1e-6)
    with pytest.raises(ValueError, match=r"'logits' of NewNet is not produced unit-by-unit.*removable sites: encoder.hidden"):
        interp.remove_unit(model, params, "logits", 0, clean)

    by_position = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, sites=[site_name],
                                        granularity="position")[site_name]
    by_unit = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, sites=[site_name],
                                    granularity="unit")[site_name]
    assert by_position.shape == (9,) and by_unit.shape == (5,)
    _, source = interp.run_with_cache(model, params, corrupted)
    base = model.apply({"params": params}, clean).value
    mask = jnp.zeros((9, 5)).at[4].set(1.0)
    out = interp.run_with_interventions(model, params, clean, interp.patch(site_name, source[site_name], mask))
    np.testing.assert_allclose(by_position[4], (out.value - base).mean(), atol=1e-6)
    assert np.abs(by_position).max() > 1e-4


def test_position_groups_follow_declared_axes_on_attention_sites(obs):
    model = make_model("transformer", 9, (3, 3, 2), d_model=8, heads=2, layers=1, d_mlp=8)
    clean, corrupted = obs
    params = model.init(jax.random.key(0), clean)["params"]
    name = "block0.attn.z"  # (token, head, d_head): a position is a token, across heads
    effects = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, sites=[name],
                                    granularity="position")[name]
    assert effects.shape == (9,)
    _, source = interp.run_with_cache(model, params, corrupted)
    base = model.apply({"params": params}, clean).value
    mask = jnp.zeros((9, 2, 4)).at[3].set(1.0)
    out = interp.run_with_interventions(model, params, clean, interp.patch(name, source[name], mask))
    np.testing.assert_allclose(effects[3], (out.value - base).mean(), atol=1e-6)


def test_sites_without_axes_still_work_and_refuse_granularities_needing_axes(obs):
    clean, corrupted = obs
    model = Undeclared()
    params = model.init(jax.random.key(0), clean)["params"]
    info = interp.site_info(model, clean)
    assert info["hidden"].axes is None and info["hidden"].shape == (4,) and info["hidden"].batch_ndim == 1
    effects = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, sites=["hidden"])
    assert effects["hidden"].shape == (4,)
    with pytest.raises(ValueError, match=r"granularity='unit' needs the axes of site 'hidden'.*does not declare"):
        interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value, sites=["hidden"],
                              granularity="unit")
    with pytest.raises(ValueError, match=r"'hidden' of Undeclared is not produced unit-by-unit"):
        interp.remove_unit(model, params, "hidden", 0, clean)
    # the subspace edits still act along the last axis
    d = jnp.array([1.0, 0.0, 0.0, 0.0])
    _, cache = interp.run_with_interventions_and_cache(model, params, clean, interp.project_out("hidden", d))
    assert np.abs(cache["hidden"][:, 0]).max() == 0 and np.abs(cache["hidden"][:, 1]).max() > 0


def test_bad_axes_are_refused_at_the_site():
    class Bad(nn.Module):
        axes: tuple

        @nn.compact
        def __call__(self, obs):
            return site(self, "x", obs, axes=self.axes)

    with pytest.raises(ValueError, match=r"site 'x': unknown axis name\(s\) \['time'\]; allowed: .*'token'"):
        Bad(("token", "time")).init(jax.random.key(0), jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"3 axes .* for an activation of shape \(2, 3\)"):
        Bad(("row", "col", "channel")).init(jax.random.key(0), jnp.zeros((2, 3)))
    assert "head" in AXES and "d_model" in AXES


def run_fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_method_modules_are_attributes_and_importing_interp_is_light():
    out = run_fresh(
        "import sys\n"
        "import rljaxinterp.interp\n"
        "print('matplotlib' in sys.modules)\n"
        "from rljaxinterp import interp\n"
        "print(callable(interp.probes.fit_probes), callable(interp.path_patching.path_patching))\n"
        "print(hasattr(interp, 'commands'), hasattr(interp, 'report'))\n"
    )
    assert out.split() == ["False", "True", "True", "False", "False"]
    for name in interp.MODULES:
        assert getattr(interp, name).__name__ == f"rljaxinterp.interp.{name}"
