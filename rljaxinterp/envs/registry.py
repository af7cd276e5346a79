"""Names to environment factories, so experiments pick environments by string."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from rljaxinterp.envs.base import Env
from rljaxinterp.envs.gymnax_tasks import GYMNAX_TASKS, GymnaxTask
from rljaxinterp.envs.pgx_games import PGX_GAMES, PgxGame

Factory = Callable[..., Env]

# Factories are called only in ``make``, so listing names costs nothing.
_REGISTRY: dict[str, Factory] = {
    **{name: functools.partial(PgxGame, name) for name in PGX_GAMES},
    **{name: functools.partial(GymnaxTask, name) for name in GYMNAX_TASKS},
}


def available() -> list[str]:
    """Every registered name, sorted."""
    return sorted(_REGISTRY)


def register(name: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Add ``factory(**kwargs) -> Env`` under ``name`` for :func:`make`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"environment name must be a non-empty string; got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for {name!r} must be callable; got {factory!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"{name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def make(name: str, **kwargs: Any) -> Env:
    """Build the environment registered as ``name``; ``kwargs`` are its options."""
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown environment {name!r}; available: {', '.join(available())}") from None
    return factory(**kwargs)
