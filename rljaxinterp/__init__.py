"""rljaxinterp: mechanistic interpretability of reinforcement-learning agents, in pure JAX."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import rljaxinterp` stays cheap (no jax/orbax import) until a run is opened.
    if name == "load_run":
        from rljaxinterp.runs import load_run

        return load_run
    raise AttributeError(f"module 'rljaxinterp' has no attribute {name!r}")
