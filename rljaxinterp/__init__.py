"""rljaxinterp: mechanistic interpretability of reinforcement-learning agents, in pure JAX."""

import os
from collections.abc import Mapping
from pathlib import Path

__version__ = "0.1.0"


def user_cache(environ: Mapping[str, str] = os.environ) -> Path:
    """Where rljaxinterp keeps what it can rebuild (compiled programs, the benchmark's agents):
    ``$RLJAXINTERP_CACHE``, default ``~/.cache/rljaxinterp``."""
    return Path(environ.get("RLJAXINTERP_CACHE", Path.home() / ".cache" / "rljaxinterp"))


def __getattr__(name: str):
    # Lazy, so `import rljaxinterp` stays cheap (no jax/orbax import) until a run is opened.
    if name == "load_run":
        from rljaxinterp.runs import load_run

        return load_run
    raise AttributeError(f"module 'rljaxinterp' has no attribute {name!r}")
