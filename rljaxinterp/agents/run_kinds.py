"""Which code opens a run folder, by the ``"agent"`` field of its config.json.

AlphaZero folders (no ``"agent"`` field, or ``"alphazero"``) stay with ``runs.load_run``;
other agent kinds register a loader here, named as ``"module:function"`` so nothing is
imported until a folder of that kind is opened. ``runs.load_run`` needs one line::

    if (run := run_kinds.load_registered(folder)) is not None: return run
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

AGENT_FIELD = "agent"
_LOADERS: dict[str, str] = {
    "ppo": "rljaxinterp.agents.rl_runs:load_rl_run",
    "dqn": "rljaxinterp.agents.rl_runs:load_rl_run",
}


def register(kind: str, loader: str) -> None:
    """``loader`` is ``"package.module:function"``; ``function(folder)`` returns a run."""
    if ":" not in loader:
        raise ValueError(f"loader must look like 'package.module:function'; got {loader!r}")
    _LOADERS[kind] = loader


def agent_kind(folder: str | os.PathLike) -> str | None:
    """The ``"agent"`` field of ``folder/config.json``; None if absent or unreadable."""
    try:
        data = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data.get(AGENT_FIELD) if isinstance(data, dict) else None


def load_registered(folder: str | os.PathLike) -> Any | None:
    """Open ``folder`` with its registered loader, or None if it is not a registered kind."""
    kind = agent_kind(folder)
    if kind not in _LOADERS:
        return None
    module, name = _LOADERS[kind].split(":")
    return getattr(importlib.import_module(module), name)(folder)
