"""Compile once, then time one run: the split every throughput benchmark here reports; and a
clock of the seconds JAX spends compiling, for programs that compile inside a call."""

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


COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


class CompileClock:
    """Seconds JAX spends tracing, lowering and compiling (its own monitoring events)."""

    def __init__(self):
        self.seconds = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._event)

    def _event(self, name, duration, **_):
        if name in COMPILE_EVENTS:
            self.seconds += duration
