"""Several processes as one JAX program, on JAX's own distributed runtime (``jax.distributed``).

A process joins the program from environment variables, so the same command runs alone or as
one of N processes: ``rljaxinterp launch`` sets them for N local processes (CPU collectives
over gloo, which makes the multi-process path testable on one machine), and
``RLJAXINTERP_DISTRIBUTED=auto`` hands the choice to ``jax.distributed.initialize()``'s own
cluster detection (SLURM, Open MPI, Cloud TPU pods, ...). Every ``rljaxinterp`` command calls
:func:`initialize_from_env` before any JAX work; without those variables it does nothing and
does not even import JAX.

After that, ``jax.devices()`` lists every process's devices. The code that shards (AlphaZero
self-play, patching sweeps, activation caching for probes and SAEs, SAE training) builds its
meshes over them, every process runs the same program
on its own shards, only process 0 writes files (:func:`is_primary`), and orbax writes
checkpoints collectively. This module imports no other rljaxinterp module.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TypeVar

COORDINATOR = "RLJAXINTERP_COORDINATOR"  # host:port of process 0's coordination service
NUM_PROCESSES = "RLJAXINTERP_NUM_PROCESSES"
PROCESS_ID = "RLJAXINTERP_PROCESS_ID"
CPU_DEVICES = "RLJAXINTERP_CPU_DEVICES"  # CPU devices per process (jax_num_cpu_devices)
TIMEOUT = "RLJAXINTERP_INIT_TIMEOUT"  # seconds to wait for every process to join
MODE = "RLJAXINTERP_DISTRIBUTED"  # "auto": jax.distributed.initialize() detects the cluster
DEFAULT_TIMEOUT = 300  # jax.distributed.initialize's own default
CPU_COLLECTIVES = "gloo"  # cross-process collectives on CPU (jax_cpu_collectives_implementation)

T = TypeVar("T")


class DistributedError(RuntimeError):
    """The processes could not form one program (bad variables, unreachable coordinator)."""


def launch_environ(base: Mapping[str, str], coordinator: str, num_processes: int, process_id: int,
                   cpu_devices: int | None = None, timeout: float | None = None) -> dict[str, str]:
    """``base`` plus the variables that make a process join as ``process_id`` of ``num_processes``."""
    env = {k: v for k, v in base.items() if k not in (MODE, CPU_DEVICES)}
    env.update({COORDINATOR: coordinator, NUM_PROCESSES: str(num_processes), PROCESS_ID: str(process_id),
                "PYTHONUNBUFFERED": "1"})  # lines reach the launcher as they are printed
    if cpu_devices is not None:
        env[CPU_DEVICES] = str(cpu_devices)
    if timeout is not None:
        env[TIMEOUT] = str(timeout)
    return env


def _int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise DistributedError(f"{name}={environ[name]!r} is not an integer") from None


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks this process to join a multi-process program."""
    return COORDINATOR in environ or environ.get(MODE, "").lower() == "auto"


def initialize_from_env(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Join the multi-process program the environment describes, before any JAX work.

    Returns False (and imports nothing) when no variable asks for it, True once this process
    is one of several. An unreachable coordinator, or processes that do not all join within
    ``RLJAXINTERP_INIT_TIMEOUT`` seconds, raise :class:`DistributedError` naming the address
    and the timeout instead of hanging (or dying inside XLA's coordination client).
    """
    if not requested(environ):
        return False
    import jax

    if jax.distributed.is_initialized():
        return True
    timeout = float(environ.get(TIMEOUT, DEFAULT_TIMEOUT))
    if CPU_DEVICES in environ:
        jax.config.update("jax_num_cpu_devices", _int(environ, CPU_DEVICES))
    if hasattr(jax.config, "jax_cpu_collectives_implementation"):
        jax.config.update("jax_cpu_collectives_implementation", CPU_COLLECTIVES)
    if environ.get(MODE, "").lower() == "auto" and COORDINATOR not in environ:
        _with_deadline(lambda: jax.distributed.initialize(initialization_timeout=int(timeout) + 5),
                       "the address jax.distributed detects from the cluster", timeout)
        return True
    address = environ[COORDINATOR]
    num, pid = _int(environ, NUM_PROCESSES), _int(environ, PROCESS_ID)
    if num < 1 or not 0 <= pid < num:
        raise DistributedError(f"{PROCESS_ID}={pid} must be in 0..{num - 1} ({NUM_PROCESSES}={num})")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"{COORDINATOR}={address!r} is not host:port")
    start = time.monotonic()
    if pid != 0:
        _wait_for_port(host, int(port), address, timeout)
    remaining = max(1.0, timeout - (time.monotonic() - start))
    # XLA's own deadline is a little later than ours, so ours reports the failure.
    _with_deadline(lambda: jax.distributed.initialize(address, num, pid,
                                                      initialization_timeout=int(remaining) + 5),
                   address, remaining, f"process {pid} of {num}")
    return True


def _wait_for_port(host: str, port: int, address: str, timeout: float) -> None:
    """Process 0 may still be starting: retry the TCP connection until ``timeout``."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        try:
            socket.create_connection((host, port), timeout=min(5.0, timeout)).close()
            return
        except OSError as err:
            last = err
        if time.monotonic() >= deadline:
            raise DistributedError(f"cannot reach the JAX coordinator at {address} within {timeout:g} s "
                                   f"({last}); is process 0 running, and is {TIMEOUT} long enough?")
        time.sleep(0.2)


def _with_deadline(connect: Callable[[], Any], address: str, timeout: float, who: str = "this process") -> None:
    """Run ``connect``; if it has not returned after ``timeout`` seconds, say why and exit.

    XLA's client aborts the process (SIGABRT with a C++ stack) when registration times out;
    a clear line and exit code 1 a moment earlier is what a user can act on."""
    def expire():
        sys.stderr.write(f"rljaxinterp: {who} could not join the other processes through the JAX coordinator at "
                         f"{address} within {timeout:g} s (did every process start? raise {TIMEOUT} if they "
                         "start slowly)\n")
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        connect()
    finally:
        timer.cancel()


# -- helpers for code that runs in every process ----------------------------------------------
def process_count() -> int:
    import jax

    return jax.process_count()


def is_primary() -> bool:
    """True in process 0 (and in a single-process run): the one process that writes files."""
    import jax

    return jax.process_index() == 0


def host_local(x: Any) -> Any:
    """Every leaf as an array this process holds whole (on its default device), gathered from
    every process's shards. In a single-process run the tree is returned unchanged."""
    import jax

    if jax.process_count() == 1:
        return x
    import jax.numpy as jnp
    from jax.experimental import multihost_utils

    def one(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return jnp.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return leaf

    return jax.tree.map(one, x)


def put(tree: Any, shardings: Any) -> Any:
    """``jax.device_put(tree, shardings)`` for a tree every process holds whole (the same
    values everywhere, e.g. computed from the same seed): each process supplies its own
    shards. In jax 0.10.2, device_put of a process-local array to a replicated multi-process
    sharding builds an array whose shards cannot be read back (orbax fails on it), so several
    processes build theirs with ``jax.make_array_from_callback``."""
    import jax

    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)
    import numpy as np

    def one(leaf, sharding):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return jax.device_put(leaf, sharding)  # already global: a reshard inside XLA
        whole = np.asarray(leaf)
        return jax.make_array_from_callback(whole.shape, sharding, lambda index: whole[index])

    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda leaf: one(leaf, shardings), tree)
    return jax.tree.map(one, tree, shardings)


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier of this name (no-op for one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def on_primary(fn: Callable[[], T], what: str) -> T | None:
    """Run ``fn`` on process 0 only; every process raises if it raised there.

    For file-system work that must happen once (claiming a run folder): the others learn the
    outcome from a broadcast, so an error on process 0 stops every process instead of leaving
    them waiting at the next collective. Returns ``fn()`` on process 0, None elsewhere."""
    import jax

    if jax.process_count() == 1:
        return fn()
    import numpy as np
    from jax.experimental import multihost_utils

    result, error = None, None
    if is_primary():
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 -- re-raised below, after the others know
            error = err
    failed = bool(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
    if error is not None:
        raise error
    if failed:
        raise DistributedError(f"{what} failed on process 0 (its output says why)")
    return result
