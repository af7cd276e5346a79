"""Concept libraries: human-meaningful quantities computed in JAX from environment states.

A concept is a function ``EnvState (batched) -> (states,)`` array, binary or real. Each
environment has a library; ``register`` adds to it, ``compute`` evaluates a library (or a
chosen part of it) over a batch of states in one jitted call, ready for ``fit_probes``.
``register_group`` adds many concepts that one function computes together (a per-square
map, or several counts read off one flood fill), so that ``compute`` runs it once however
many of its members are asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence

import jax

from rljaxinterp.envs.base import EnvState

Concept = Callable[[EnvState], jax.Array]
_LIBRARY: dict[str, dict[str, Concept]] = {}
_GRIDWORLDS = ("CoinAtEnd", "CheeseMaze", "KeysChests", "TreeGrid", "MonsterGrid")
# The built-in libraries (env -> module), each imported the first time its env is named: pgx's
# chess alone takes seconds to import, and a command needs only its own game's library.
BUILT_IN = {"tic_tac_toe": "tic_tac_toe", "connect_four": "connect_four", "chess": "chess", "go_9x9": "go",
            "go_19x19": "go", "GraphPaths-v0": "graph_paths", "DarkRoom-v0": "dark_room",
            "DarkRoomHard-v0": "dark_room", **dict.fromkeys(_GRIDWORLDS, "gridworlds")}


def _load(env_name: str) -> None:
    if env_name in BUILT_IN:
        # a first use may come inside a traced function: the module's constants must stay concrete
        with jax.ensure_compile_time_eval():
            importlib.import_module(f"{__name__}.{BUILT_IN[env_name]}")


class _Member:
    """Concept ``index`` of a group function returning ``(states, members)``."""

    def __init__(self, group: Callable[[EnvState], jax.Array], index: int):
        self.group, self.index = group, index

    def __call__(self, state: EnvState) -> jax.Array:
        return self.group(state)[..., self.index]


def register(env_name: str, name: str, fn: Concept, *, overwrite: bool = False) -> None:
    """Add concept ``name`` for environment ``env_name``."""
    _load(env_name)
    library = _LIBRARY.setdefault(env_name, {})
    if name in library and not overwrite:
        raise ValueError(f"concept {name!r} is already registered for {env_name!r}; pass overwrite=True")
    library[name] = fn


def register_group(
    env_name: str, names: Sequence[str], fn: Callable[[EnvState], jax.Array], *, overwrite: bool = False
) -> None:
    """Add concepts ``names``, all computed by ``fn``: ``EnvState (batched) -> (states, len(names))``."""
    _load(env_name)
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError(f"register_group for {env_name!r}: names must be distinct; got {names}")
    library = _LIBRARY.setdefault(env_name, {})
    taken = [n for n in names if n in library]
    if taken and not overwrite:
        raise ValueError(f"concept(s) {taken} already registered for {env_name!r}; pass overwrite=True")
    for i, name in enumerate(names):
        library[name] = _Member(fn, i)


def available(env_name: str) -> list[str]:
    _load(env_name)
    if env_name not in _LIBRARY:
        known = sorted({*_LIBRARY, *BUILT_IN})
        raise ValueError(f"no concept library for {env_name!r}; libraries exist for: {', '.join(known)}")
    return list(_LIBRARY[env_name])


def compute(env_name: str, states: EnvState, names: Iterable[str] | None = None) -> dict[str, jax.Array]:
    """Every requested concept of ``env_name`` over a batch of states."""
    known = available(env_name)
    names = known if names is None else list(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown concept(s) {unknown} for {env_name!r}; available: {', '.join(known)}")
    fns = {n: _LIBRARY[env_name][n] for n in names}

    def evaluate(s):
        groups = {}  # each group function traced once, however many members are requested
        out = {}
        for n, f in fns.items():
            if isinstance(f, _Member):
                if f.group not in groups:
                    groups[f.group] = f.group(s)
                out[n] = groups[f.group][..., f.index]
            else:
                out[n] = f(s)
        return out

    values = jax.jit(evaluate)(states)
    return {n: values[n] for n in names}  # jit sorts dict keys; keep the library's order
