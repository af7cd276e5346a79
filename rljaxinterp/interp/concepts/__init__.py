"""Concept libraries: human-meaningful quantities computed in JAX from environment states.

A concept is a function ``EnvState (batched) -> (states,)`` array, binary or real. Each
environment has a library; ``register`` adds to it, ``compute`` evaluates a library (or a
chosen part of it) over a batch of states in one jitted call, ready for ``fit_probes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax

from rljaxinterp.envs.base import EnvState

Concept = Callable[[EnvState], jax.Array]
_LIBRARY: dict[str, dict[str, Concept]] = {}


def register(env_name: str, name: str, fn: Concept, *, overwrite: bool = False) -> None:
    """Add concept ``name`` for environment ``env_name``."""
    library = _LIBRARY.setdefault(env_name, {})
    if name in library and not overwrite:
        raise ValueError(f"concept {name!r} is already registered for {env_name!r}; pass overwrite=True")
    library[name] = fn


def available(env_name: str) -> list[str]:
    if env_name not in _LIBRARY:
        raise ValueError(f"no concept library for {env_name!r}; libraries exist for: {', '.join(sorted(_LIBRARY))}")
    return list(_LIBRARY[env_name])


def compute(env_name: str, states: EnvState, names: Iterable[str] | None = None) -> dict[str, jax.Array]:
    """Every requested concept of ``env_name`` over a batch of states."""
    known = available(env_name)
    names = known if names is None else list(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown concept(s) {unknown} for {env_name!r}; available: {', '.join(known)}")
    fns = {n: _LIBRARY[env_name][n] for n in names}
    values = jax.jit(lambda s: {n: f(s) for n, f in fns.items()})(states)
    return {n: values[n] for n in names}  # jit sorts dict keys; keep the library's order


from rljaxinterp.interp.concepts import chess, connect_four, gridworlds, tic_tac_toe  # noqa: E402,F401  (register)
