"""CLI runs keep JAX's compiled programs in a persistent cache: where it goes, how to move or
switch it off, and that a program compiled by one process is written there for the next."""

import os
import subprocess
import sys
from pathlib import Path

from rljaxinterp.cli import use_compile_cache


def test_the_cache_folder_and_its_overrides(tmp_path):
    env = {"RLJAXINTERP_CACHE": str(tmp_path)}
    assert use_compile_cache(env) == str(tmp_path / "jax") == env["JAX_COMPILATION_CACHE_DIR"]
    env = {"RLJAXINTERP_COMPILE_CACHE": str(tmp_path / "elsewhere")}
    assert use_compile_cache(env) == str(tmp_path / "elsewhere")
    env = {"JAX_COMPILATION_CACHE_DIR": "/mine", "RLJAXINTERP_COMPILE_CACHE": str(tmp_path)}
    assert use_compile_cache(env) == "/mine"  # the user's own JAX setting wins
    env = {"RLJAXINTERP_COMPILE_CACHE": "off"}
    assert use_compile_cache(env) is None and "JAX_COMPILATION_CACHE_DIR" not in env
    assert use_compile_cache({}).endswith(os.path.join(".cache", "rljaxinterp", "jax"))


def test_a_compiled_program_is_written_to_the_cache(tmp_path):
    code = ("from rljaxinterp.cli import use_compile_cache\n"
            "use_compile_cache()\n"
            "import jax, jax.numpy as jnp\n"
            "print(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).sum())\n")
    env = {**os.environ, "RLJAXINTERP_CACHE": str(tmp_path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.pop("RLJAXINTERP_COMPILE_CACHE", None)
    done = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(p.is_file() for p in Path(tmp_path, "jax").rglob("*"))
