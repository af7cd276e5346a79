"""``rljaxinterp launch --processes N [--devices-per-process K] -- <command ...>``: N local
processes of one JAX program.

Each child gets the variables of :mod:`rljaxinterp.distributed` (a free coordinator port on
this machine, its process id, the process count) and joins through
``jax.distributed.initialize`` before any JAX work, with gloo collectives on CPU. This is the
local stand-in for a cluster launcher (``srun``, ``mpirun``, a TPU pod's per-host command),
so the multi-process path runs and is tested on one machine. Output lines are prefixed with
the child's rank; if one child fails the others are stopped, and the exit code is the first
failure's (128 + signal for a child killed by a signal).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from rljaxinterp.cli import COMMANDS, ShowDefaults, help_of

GRACE = 5.0  # seconds a stopped child gets between SIGTERM and SIGKILL


def free_port(host: str = "localhost") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def child_command(command: list[str]) -> list[str]:
    """An rljaxinterp command runs in this interpreter's package; anything else (a Python
    script that calls ``rljaxinterp.distributed.initialize_from_env()``) runs as given."""
    if command and command[0] in COMMANDS:
        return [sys.executable, "-m", "rljaxinterp.cli", *command]
    return command


def _pump(stream, out, prefix: bytes, lock: threading.Lock) -> None:
    for line in iter(stream.readline, b""):
        with lock:
            out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
            out.flush()
    stream.close()


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def launch(command: list[str], processes: int, devices_per_process: int | None = None,
           timeout: float = 120.0, host: str = "localhost") -> int:
    """Run ``command`` as ``processes`` local processes; the first nonzero exit code, or 0."""
    from rljaxinterp import distributed

    if processes < 1:
        raise SystemExit(f"--processes must be at least 1; got {processes}")
    if devices_per_process is not None and devices_per_process < 1:
        raise SystemExit(f"--devices-per-process must be at least 1; got {devices_per_process}")
    if not command:
        raise SystemExit("launch: give the command after --, e.g. rljaxinterp launch --processes 2 -- train ...")
    if command[0] == "launch" or distributed.requested():
        raise SystemExit("launch: this process is already one of several; launch does not nest")
    address = f"{host}:{free_port(host)}"
    argv = child_command(command)
    lock, children, pumps = threading.Lock(), [], []
    for rank in range(processes):
        env = distributed.launch_environ(os.environ, address, processes, rank, devices_per_process, timeout)
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        children.append(child)
        prefix = f"[{rank}] ".encode()
        for stream, out in ((child.stdout, sys.stdout.buffer), (child.stderr, sys.stderr.buffer)):
            pump = threading.Thread(target=_pump, args=(stream, out, prefix, lock), daemon=True)
            pump.start()
            pumps.append(pump)
    first_failure = None
    try:
        while True:
            codes = [c.poll() for c in children]  # every child, so each returncode is current
            if all(code is not None for code in codes):
                break
            failed = [code for code in codes if code not in (None, 0)]
            if failed:
                first_failure = failed[0]
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        first_failure = -signal.SIGINT
    _stop([c for c in children if c.poll() is None])
    for pump in pumps:
        pump.join(timeout=GRACE)
    if first_failure is None:
        first_failure = next((c.returncode for c in children if c.returncode), 0)
    if first_failure:
        sys.stderr.write(f"launch: a process exited with code {_exit_code(first_failure)}; the others were stopped\n")
    return _exit_code(first_failure)


def _stop(children: list[subprocess.Popen]) -> None:
    for c in children:
        c.terminate()
    deadline = time.monotonic() + GRACE
    for c in children:
        try:
            c.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()


def run(args) -> int:
    command = list(args.child)
    if command[:1] == ["--"]:
        command = command[1:]
    return launch(command, args.processes, args.devices_per_process, args.timeout)


def add_parser(commands) -> None:
    p = commands.add_parser(
        "launch", help=help_of("launch"), formatter_class=ShowDefaults,
        description="Start N local processes of one JAX program (jax.distributed, gloo collectives on CPU): "
                    "rljaxinterp launch --processes 2 -- train alphazero --env tic_tac_toe --out runs/ttt. "
                    "On a cluster use its launcher instead (srun, mpirun) with RLJAXINTERP_DISTRIBUTED=auto.")
    p.add_argument("--processes", type=int, required=True, help="number of processes")
    p.add_argument("--devices-per-process", type=int, default=None,
                   help="CPU devices per process (jax_num_cpu_devices); default: JAX's own (one)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds for every process to join the coordinator before each gives up with an error")
    p.add_argument("child", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="an rljaxinterp command (train ..., sweep ...) or a program that calls "
                        "rljaxinterp.distributed.initialize_from_env()")
    p.set_defaults(run=run)
