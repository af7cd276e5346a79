"""The files of a run folder, the same for every agent kind.

```
RUN/
  config.json          {"agent": kind, ...config fields}; written once (only a kind's
                       ``extendable`` length fields may be changed later, atomically)
  metrics.jsonl        one JSON row per logged step, appended as training goes
  learning_curve.png   redrawn at every checkpoint
  checkpoints/<step>/  orbax: "state" (the whole training state) and "meta" (JSON)
```

Nothing here deletes or overwrites what it did not just write: config.json (and the
metrics file when a resume trims it to the rows its checkpoint counted) is written to a
temporary file and renamed, new metric rows are appended, checkpoints are never saved twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "learning_curve.png"
CHECKPOINTS = "checkpoints"
AGENT_FIELD = "agent"
DEFAULT_KIND = "alphazero"  # folders written before config.json named its agent kind


class RunFolderError(ValueError):
    """The folder holds something this run must not touch (another config, a bad file)."""


class RunLengthError(RunFolderError):
    """A resumed run was asked to end before its last checkpoint."""


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read (truncated or corrupted); nothing was deleted."""


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_config_json(folder: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``(agent kind, config fields)`` of ``folder/config.json``."""
    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        raise RunFolderError(f"{path} does not exist; is {folder} a run folder?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} must hold a JSON object; got {type(data).__name__}")
    kind = data.pop(AGENT_FIELD, DEFAULT_KIND)
    return kind, data


def write_config(folder: Path, kind: str, config: Mapping[str, Any]) -> None:
    atomic_write(Path(folder) / CONFIG_FILE, json.dumps({AGENT_FIELD: kind, **config}, indent=2) + "\n")


def claim(folder: Path, kind: str, config: Mapping[str, Any], existing: Mapping[str, Any] | None) -> None:
    """Write config.json for a new run, or check that ``existing`` (the folder's config,
    parsed by its kind) is the config asked for, so a run only ever resumes itself."""
    folder.mkdir(parents=True, exist_ok=True)
    if existing is None:
        for taken in (CONFIG_FILE, CHECKPOINTS):
            if (folder / taken).exists():
                raise RunFolderError(f"{folder} already holds {taken}; refusing to start a new run over it")
        write_config(folder, kind, config)
        return
    if existing != config:
        text = ", ".join(f"{k}: folder has {existing.get(k)!r}, asked {v!r}"
                         for k, v in config.items() if existing.get(k) != v)
        raise RunFolderError(f"{folder} holds a run with a different config ({text}); "
                             "use another folder or the same config to resume")


def latest_step(folder: Path) -> int | None:
    """The last checkpoint's step, read from the folder names (no orbax needed)."""
    steps = [int(p.name) for p in (Path(folder) / CHECKPOINTS).glob("*") if p.name.isdigit()]
    return max(steps, default=None)


def read_metrics(folder: str | os.PathLike) -> list[dict]:
    """Rows of metrics.jsonl; a last line cut by a kill is dropped."""
    path = Path(folder) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def rewrite_metrics(folder: Path, rows: list[dict]) -> None:
    atomic_write(folder / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))


def checkpoint_manager(folder: Path, read_only: bool = False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None,  # keep all
        enable_async_checkpointing=False,  # a returned save is on disk
        cleanup_tmp_directories=False,  # never delete anything we did not just write
        create=not read_only,  # readers use a plain manager that never saves (read_only warns)
    )
    return ocp.CheckpointManager((Path(folder) / CHECKPOINTS).absolute(), options=options,
                                 item_names=("state", "meta"))


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict) -> None:
    """Save ``state`` at ``step`` unless that step exists (never overwrite)."""
    if step in manager.all_steps():
        return
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()


def restore_checkpoint(manager: ocp.CheckpointManager, step: int, abstract_state: Any,
                       params_only: bool = False) -> tuple[Any, dict]:
    """Read one checkpoint; any failure becomes a ``CheckpointError`` naming its path.

    ``abstract_state`` gives shapes, dtypes and target shardings (a checkpoint written on N
    devices reads back on any device count). ``params_only`` reads just ``state.params``
    (a partial restore): faster, and it still works on runs whose replay buffer or
    optimiser state had another layout.
    """
    path = Path(manager.directory) / str(step)
    if params_only:
        item = {"params": abstract_state.params}
        state = ocp.args.PyTreeRestore(item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                                       partial_restore=True)
    else:
        state = ocp.args.StandardRestore(abstract_state)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(state=state, meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
        first_line = (str(e).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} cannot be read; it is probably truncated or corrupted "
            f"({type(e).__name__}: {first_line}). Nothing was deleted; move that folder away to "
            "resume from the previous checkpoint.") from e
    state = restored["state"]["params"] if params_only else restored["state"]
    return state, dict(restored["meta"])


def with_shardings(abstract: Any, shardings: Any | None = None) -> Any:
    """``abstract`` (shapes and dtypes) with each leaf's target sharding (default: this
    process's first device, so every process of a multi-process program reads a whole copy)."""
    if shardings is None:
        one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        shardings = jax.tree.map(lambda _: one, abstract)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)
