"""Patching sweeps give the same numbers on one device, on two, and in state chunks, also with
parameters that live on one device."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp
from rljaxinterp import interp
from rljaxinterp.models import make_model

model = make_model("conv", 9, (3, 3, 2), channels=8, blocks=1, value_hidden=8)
clean = jax.random.bernoulli(jax.random.key(1), 0.3, (64, 3, 3, 2)).astype(jnp.float32)
corrupted = clean[::-1]
params = model.init(jax.random.key(0), clean)["params"]
out = {}
for chunk in (None, 16):
    effects = interp.patching_sweep(model, params, clean, corrupted, interp.metrics.value,
                                    granularity="unit", sizing=interp.Sizing(states_per_call=chunk))
    out[str(chunk)] = {k: jnp.asarray(v).tolist() for k, v in effects.items()}
pinned = jax.device_put(params, jax.local_devices()[0])  # on one device, as a restored checkpoint's are
effects = interp.patching_sweep(model, pinned, clean, corrupted, interp.metrics.value, granularity="unit")
out["pinned"] = {k: jnp.asarray(v).tolist() for k, v in effects.items()}
from rljaxinterp.interp.patching import shard_states
spread = len(shard_states(clean).sharding.device_set)
print(json.dumps({"devices": jax.device_count(), "spread": spread, "effects": out}))
"""


def run(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sharded_and_chunked_sweeps_equal_the_single_device_sweep():
    one, two = run(1), run(2)
    assert one["devices"] == 1 and two["devices"] == 2 and two["spread"] == 2
    reference = one["effects"]["None"]
    for result in (one["effects"]["16"], two["effects"]["None"], two["effects"]["16"], two["effects"]["pinned"]):
        for site, values in reference.items():
            np.testing.assert_allclose(result[site], values, rtol=1e-5, atol=1e-6, err_msg=site)
