"""Compile once, then time one run: the split every throughput benchmark here reports."""

from __future__ import annotations

import time
from typing import Any

import jax


def compile_and_run(fn, *args) -> tuple[Any, float, float]:
    """``(output, compile seconds, run seconds)`` of the jitted ``fn`` on ``args``."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, compile_s, time.perf_counter() - t0
