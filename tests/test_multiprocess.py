"""Several processes as one JAX program (``rljaxinterp launch``, ``rljaxinterp.distributed``):
2 local processes x 1 CPU device each, gloo collectives.

Equality, as measured: a 2-process run computes what a 1-process run on 2 devices computes,
bit for bit (the same partitioned program; a cross-device all-reduce over two shards adds
two numbers, which is exact whichever comes first). Against 1 device the sweep's tile sums
and AlphaZero's gradient reductions may associate differently, so there the bound is 1e-6
(sweep) and the existing 1-vs-2-device AlphaZero tolerance (test_alphazero); probes and SAEs
have theirs in ``assert_close_to_one_device``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from rljaxinterp import distributed
from rljaxinterp.cli.launch import free_port

LAUNCH = [sys.executable, "-m", "rljaxinterp.cli", "launch", "--processes", "2", "--"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("RLJAXINTERP_") or k == "RLJAXINTERP_CACHE"}


def launch(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(CLEAN_ENV, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return subprocess.run([*LAUNCH, sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def single(script: str, *args: str, devices: int = 1) -> subprocess.CompletedProcess:
    env = dict(CLEAN_ENV, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def rank_json(stdout: str, rank: int = 0) -> dict:
    """The last JSON line printed by ``rank`` (launch prefixes every line with ``[rank] ``)."""
    lines = [line[len(f"[{rank}] "):] for line in stdout.splitlines() if line.startswith(f"[{rank}] {{")]
    assert lines, stdout[-3000:]
    return json.loads(lines[-1])


def test_launch_prefixes_ranks_stops_the_others_and_returns_the_first_failure(tmp_path):
    """Rank 1 fails (once rank 0 has said hello, so the check of both prefixes is not a race
    between interpreter start-ups) while rank 0 would sleep for a minute: launch stops rank 0
    and exits with rank 1's code."""
    script = textwrap.dedent("""
        import os, pathlib, sys, time
        rank = int(os.environ["RLJAXINTERP_PROCESS_ID"])
        said = pathlib.Path(sys.argv[1])
        print(f"hello from {rank} of {os.environ['RLJAXINTERP_NUM_PROCESSES']}", flush=True)
        if rank == 1:
            deadline = time.time() + 20
            while not said.exists() and time.time() < deadline:
                time.sleep(0.05)
            sys.exit(3)
        said.touch()
        time.sleep(60)
    """)
    start = time.perf_counter()
    done = launch(script, str(tmp_path / "rank0_said_hello"), timeout=60)
    assert time.perf_counter() - start < 30
    assert done.returncode == 3, done.stderr
    assert "[0] hello from 0 of 2" in done.stdout and "[1] hello from 1 of 2" in done.stdout
    assert "exited with code 3" in done.stderr


@pytest.mark.parametrize("rank", [0, 1])
def test_a_coordinator_that_cannot_be_reached_is_a_clear_error(rank, tmp_path):
    """No other process ever comes: an error naming the address and the timeout, exit 1, no hang."""
    address = f"localhost:{free_port()}"
    env = distributed.launch_environ(CLEAN_ENV, address, 2, rank, timeout=2)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rljaxinterp.cli", "train", "alphazero", "--out", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert time.perf_counter() - start < 30
    assert done.returncode == 1, done.stderr[-2000:]
    assert address in done.stderr and "within 2 s" in done.stderr
    assert not (tmp_path / "run").exists()


SMALL_SWEEP = textwrap.dedent("""
    import json, sys
    from rljaxinterp.distributed import initialize_from_env
    initialize_from_env()
    import jax, jax.numpy as jnp, numpy as np
    from rljaxinterp import interp
    from rljaxinterp.models import make_model

    model = make_model("mlp", 9, (3, 3, 2), hidden=[8])
    clean = jax.random.bernoulli(jax.random.key(1), 0.3, (25, 3, 3, 2)).astype(jnp.float32)  # 25: padded to 26
    params = model.init(jax.random.key(0), clean)["params"]
    effects = interp.patching_sweep(model, params, clean, clean[::-1], interp.metrics.value,
                                    sites=["layer0.post"], granularity="unit")
    print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(),
                      "local": jax.local_device_count(),
                      "effects": {k: np.asarray(v).tolist() for k, v in effects.items()}}))
""")


def test_two_process_sweep_equals_the_one_process_sweep():
    """The cheapest 2-process case (fast suite): a small patching sweep with its states padded
    to whole shards equals the same sweep in this process (1 device), on both ranks."""
    done = launch(SMALL_SWEEP)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [rank_json(done.stdout, r) for r in (0, 1)]
    assert [(r["processes"], r["devices"], r["local"]) for r in ranks] == [(2, 2, 1)] * 2
    assert ranks[0]["effects"] == ranks[1]["effects"]

    from rljaxinterp import interp
    from rljaxinterp.models import make_model

    model = make_model("mlp", 9, (3, 3, 2), hidden=[8])
    clean = jax.random.bernoulli(jax.random.key(1), 0.3, (25, 3, 3, 2)).astype(np.float32)
    params = model.init(jax.random.key(0), clean)["params"]
    reference = interp.patching_sweep(model, params, clean, clean[::-1], interp.metrics.value,
                                      sites=["layer0.post"], granularity="unit")
    for site, values in reference.items():
        np.testing.assert_allclose(ranks[0]["effects"][site], np.asarray(values), rtol=0, atol=1e-6, err_msg=site)


FULL_SWEEP = textwrap.dedent("""
    import json
    from rljaxinterp.distributed import initialize_from_env, is_primary
    initialize_from_env()
    import jax, jax.numpy as jnp, numpy as np
    from rljaxinterp import interp
    from rljaxinterp.models import make_model

    model = make_model("conv", 9, (3, 3, 2), channels=8, blocks=1, value_hidden=8)
    clean = jax.random.bernoulli(jax.random.key(1), 0.3, (64, 3, 3, 2)).astype(jnp.float32)
    params = model.init(jax.random.key(0), clean)["params"]
    out = {}
    for chunk in (None, 24):
        effects = interp.patching_sweep(model, params, clean, clean[::-1], interp.metrics.value,
                                        granularity="unit", sizing=interp.Sizing(states_per_call=chunk))
        out[str(chunk)] = {k: np.asarray(v).tolist() for k, v in effects.items()}
    if is_primary():
        print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(), "effects": out}))
""")


@pytest.mark.slow
def test_two_process_sweep_is_bit_identical_to_two_devices_in_one_process():
    """Every site of a conv network, whole and in chunks of 24 states: 2 processes equal
    1 process on 2 devices bit for bit, and 1 device to 1e-6."""
    done = launch(FULL_SWEEP)
    assert done.returncode == 0, done.stderr[-3000:]
    two_processes = rank_json(done.stdout)
    two_devices = json.loads(single(FULL_SWEEP, devices=2).stdout.splitlines()[-1])
    one_device = json.loads(single(FULL_SWEEP, devices=1).stdout.splitlines()[-1])
    assert (two_processes["processes"], two_processes["devices"]) == (2, 2)
    assert (two_devices["processes"], two_devices["devices"]) == (1, 2)
    assert two_processes["effects"] == two_devices["effects"]  # bit-identical
    for chunk, sites in one_device["effects"].items():
        for site, values in sites.items():
            np.testing.assert_allclose(two_processes["effects"][chunk][site], values, rtol=0, atol=1e-6,
                                       err_msg=f"{chunk} {site}")


TRAIN = textwrap.dedent("""
    import json, sys
    from rljaxinterp.distributed import initialize_from_env
    initialize_from_env()
    import jax
    from rljaxinterp.agents import AlphaZeroConfig
    from rljaxinterp.agents.parallel import usable_devices
    from rljaxinterp.runs import train
    cfg = AlphaZeroConfig.from_dict({config!r})
    try:
        usable_devices(cfg.replace(games=7))
        print(json.dumps({{"error": None}}))
    except ValueError as err:
        print(json.dumps({{"error": str(err)}}))
    for folder in sys.argv[1:]:
        stop = folder.endswith("-half")
        train(cfg, folder.removesuffix("-half"), progress=False, stop_after=2 if stop else None)
""")


@pytest.mark.slow
def test_two_process_alphazero_training_is_bit_identical_to_two_devices_and_resumes_across_counts(tmp_path):
    """A tiny tic-tac-toe run (4 iterations) trained by 2 processes ends with the params and
    metrics of a 1-process 2-device run, bit for bit. A checkpoint written by 2 processes
    resumes in 1 process, one written by 1 process resumes in 2, and both end identical.
    Games that do not divide over the processes' devices are refused, naming both numbers."""
    from rljaxinterp.agents import AlphaZeroConfig
    from rljaxinterp.runs import load_run

    cfg = AlphaZeroConfig(games=8, num_simulations=2, iterations=4, checkpoint_every=2, replay_size=256,
                          minibatch_size=16, updates_per_iteration=2, model_kwargs={"hidden": [16]})
    script = TRAIN.format(config=cfg.to_dict())
    f = {name: str(tmp_path / name) for name in ("two_processes", "two_then_one", "one_then_two", "reference")}
    done = launch(script, f["two_processes"], f["two_then_one"] + "-half")
    assert done.returncode == 0, done.stderr[-3000:]
    error = rank_json(done.stdout)["error"]
    assert "games=7" in error and "2 devices of 2 processes" in error, error
    assert load_run(f["two_then_one"]).steps == [0, 2]
    single(script, f["reference"], f["two_then_one"], f["one_then_two"] + "-half", devices=2)
    assert load_run(f["one_then_two"]).steps == [0, 2]
    done = launch(script, f["one_then_two"])
    assert done.returncode == 0, done.stderr[-3000:]

    reference = load_run(f["reference"])
    for name in ("two_processes", "two_then_one", "one_then_two"):
        run = load_run(f[name])
        assert run.steps == reference.steps == [0, 2, 4], name
        for x, y in zip(jax.tree.leaves(run.params()), jax.tree.leaves(reference.params()), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)
        assert without_wall_time(run.metrics()) == without_wall_time(reference.metrics()), name


def without_wall_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in rows]


# Probes and SAEs over the activations of 61 states (an odd count: padded to 62 for 2 devices,
# and the padding row must enter no result). ``compute`` runs as it is in every process.
PROBES_AND_SAES = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from rljaxinterp.interp import probes, sae
    from rljaxinterp.models import make_model

    def compute(arch, probe_kinds):
        kwargs = {"channels": 8, "blocks": 1, "value_hidden": 8} if arch == "conv" else {"hidden": [8, 8]}
        model = make_model(arch, 9, (3, 3, 2), **kwargs)
        obs = jax.random.bernoulli(jax.random.key(1), 0.3, (61, 3, 3, 2)).astype(jnp.float32)
        params = model.init(jax.random.key(0), obs)["params"]
        features = probes.site_features(model, params, obs)
        concepts = {"centre": np.asarray(obs[:, 1, 1, 0]), "pieces": np.asarray(obs.sum((1, 2, 3)))}
        out = {"processes": jax.process_count(), "devices": jax.device_count(), "sites": list(features),
               "features": {k: np.asarray(v).tolist() for k, v in features.items()}}
        for kind in probe_kinds:
            s = probes.fit_probes(features, concepts, kind=kind)
            out[kind] = {k: np.asarray(getattr(s, k)).tolist() for k in ("test", "train", "weights", "bias")}
        sites = [s for s in features if s.endswith("post")][-2:]  # conv: block0.resid_post, value.hidden.post
        rows = sae.site_rows(model, params, obs, sites, states_per_call=25)
        out["rows"] = {k: v.tolist() for k, v in rows.items()}
        config = sae.SAEConfig(steps=20, batch_size=32, steps_per_chunk=10, dead_window=5)
        grid = sae.fit_saes(rows, "topk", 16, [4], config, progress=False)
        out["sae"] = [{**{k: np.asarray(getattr(s, k)).tolist() for k in ("w_enc", "b_enc", "w_dec", "b_dec")},
                       **{k: v.tolist() for k, v in h.items()}} for s, h in zip(grid.saes, grid.history)]
        try:
            sae.fit_saes(rows, "topk", 16, [4], sae.SAEConfig(steps=1, batch_size=33), progress=False)
            out["odd_batch"] = None
        except ValueError as err:
            out["odd_batch"] = str(err)
        return out
""")
PROBES_AND_SAES_SCRIPT = textwrap.dedent("""
    import json, sys
    from rljaxinterp.distributed import initialize_from_env
    initialize_from_env()
""") + PROBES_AND_SAES + "\nprint(json.dumps(compute(sys.argv[1], sys.argv[2:])))\n"


def assert_close_to_one_device(result: dict, one_device: dict) -> None:
    """Against 1 device the numbers differ by float rounding only: the sharded forward pass
    is one jitted program per half of the states (1 device runs the model op by op on all of
    them; measured up to 4.5e-8 apart at the value head), and the SAE's gradients are sums
    over two half-batches added across devices instead of one sum. Measured: probe weights
    up to 7.6e-6 apart (on raw activations; scores 1.8e-7), SAE parameters 6e-8, losses 2.4e-7."""
    assert result["sites"] == one_device["sites"]
    for site, values in one_device["features"].items():
        np.testing.assert_allclose(result["features"][site], values, rtol=0, atol=1e-6, err_msg=site)
    for kind in ("ridge", "logistic"):
        if kind not in one_device:
            continue
        for field in ("test", "train", "bias"):
            np.testing.assert_allclose(result[kind][field], one_device[kind][field], rtol=0, atol=1e-5,
                                       err_msg=f"{kind} {field}")
        np.testing.assert_allclose(result[kind]["weights"], one_device[kind]["weights"], rtol=1e-4, atol=1e-4,
                                   err_msg=f"{kind} weights")
    for site, values in one_device["rows"].items():
        np.testing.assert_allclose(result["rows"][site], values, rtol=0, atol=1e-6, err_msg=site)
    for member, (got, want) in enumerate(zip(result["sae"], one_device["sae"], strict=True)):
        for field, values in want.items():
            np.testing.assert_allclose(got[field], values, rtol=0, atol=1e-5, err_msg=f"member {member} {field}")


def test_two_process_probes_and_saes_equal_the_one_process_result():
    """Fast suite, a small MLP: site activations sharded over 2 processes (61 states padded
    to 62), ridge probes fitted on them and a 20-step data-parallel top-k SAE grid are the
    same on both ranks, equal the 1-device result in this process to float rounding, and an
    SAE batch that does not split over the devices is refused naming both numbers."""
    done = launch(PROBES_AND_SAES_SCRIPT, "mlp", "ridge")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [rank_json(done.stdout, r) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # every process holds the whole result
    two_processes = ranks[0]
    assert (two_processes["processes"], two_processes["devices"]) == (2, 2)
    assert "batch_size=33" in two_processes["odd_batch"] and "2 devices of 2 processes" in two_processes["odd_batch"]
    assert all(len(f) == 61 for f in two_processes["features"].values())

    namespace = {}
    exec(PROBES_AND_SAES, namespace)  # noqa: S102 -- the same code as the launched processes, here on 1 device
    one_device = namespace["compute"]("mlp", ["ridge"])
    assert one_device["odd_batch"] is None  # any batch splits over 1 device
    assert_close_to_one_device(two_processes, one_device)


@pytest.mark.slow
def test_two_process_probes_and_saes_are_bit_identical_to_two_devices_in_one_process():
    """A conv network, ridge and logistic probes and the SAE grid: 2 processes x 1 device
    equal 1 process x 2 devices bit for bit (one partitioned program; the cross-device sums
    add two numbers, exact in either order), and 1 device within the rounding of
    ``assert_close_to_one_device``."""
    args = ("conv", "ridge", "logistic")
    done = launch(PROBES_AND_SAES_SCRIPT, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    two_processes = rank_json(done.stdout)
    two_devices = json.loads(single(PROBES_AND_SAES_SCRIPT, *args, devices=2).stdout.splitlines()[-1])
    one_device = json.loads(single(PROBES_AND_SAES_SCRIPT, *args, devices=1).stdout.splitlines()[-1])
    assert (two_devices["processes"], two_devices["devices"]) == (1, 2)
    assert "batch_size=33" in two_devices["odd_batch"] and "2 devices" in two_devices["odd_batch"]
    same = lambda r: {k: v for k, v in r.items() if k not in ("processes", "odd_batch")}
    assert same(two_processes) == same(two_devices)  # bit-identical
    assert_close_to_one_device(two_processes, one_device)


def numbers_close(got, want, atol: float, where: str = "") -> None:
    """Two JSON trees with the same structure and strings, numbers within ``atol``."""
    if isinstance(want, dict):
        assert list(got) == list(want), where
        for k in want:
            numbers_close(got[k], want[k], atol, f"{where}/{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            numbers_close(g, w, atol, f"{where}[{i}]")
    elif isinstance(want, float) and isinstance(got, float):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=where)
    else:
        assert got == want, where


@pytest.mark.slow
def test_probe_and_sae_commands_under_launch_write_what_one_process_writes(tmp_path):
    """``rljaxinterp launch --processes 2 -- probe|sae RUN`` on a tiny tic-tac-toe run (all
    4,520 live positions): process 0 writes the same probes.json and SAE results.json as 1
    process on 2 devices, bit for bit (the SAE's wall time aside), and 1 device to 1e-6
    (measured: the probes bit-identical, the SAEs' FVE and MSE 1.1e-7 apart)."""
    from rljaxinterp.runs import default_config, train

    run = tmp_path / "ttt"
    config = default_config("alphazero", "tic_tac_toe", iterations=2, checkpoint_every=2, games=16, num_simulations=4,
                            max_num_considered_actions=4, updates_per_iteration=1, minibatch_size=32,
                            replay_size=512, model_kwargs={"hidden": [16]})
    train(config, run, progress=False)
    commands = {"probe": ([], "probes.json"),
                "sae": (["--steps", "40", "--widths", "16", "--sparsities", "2", "4", "--batch-size", "64"],
                        "results.json")}
    for command, (options, written) in commands.items():
        cli = ["-m", "rljaxinterp.cli", command, str(run), *options, "--out"]
        done = subprocess.run([*LAUNCH, sys.executable, *cli, str(tmp_path / f"{command}-2p")],
                              env=dict(CLEAN_ENV, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=600,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        for devices in (1, 2):
            single("import sys; from rljaxinterp.cli import main; sys.exit(main(sys.argv[1:]))", *cli[2:],
                   str(tmp_path / f"{command}-{devices}d"), devices=devices)

        def read(name, written=written):
            return {k: v for k, v in json.loads((tmp_path / name / written).read_text()).items() if k != "wall_seconds"}

        assert read(f"{command}-2p") == read(f"{command}-2d"), command  # bit-identical
        numbers_close(read(f"{command}-2p"), read(f"{command}-1d"), 1e-6, command)
