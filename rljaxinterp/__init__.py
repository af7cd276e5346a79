"""rljaxinterp: mechanistic interpretability of reinforcement-learning agents, in pure JAX."""

__version__ = "0.1.0"
