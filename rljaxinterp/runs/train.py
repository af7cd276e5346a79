"""Train (or resume) any registered agent kind in a run folder.

Checkpoints hold the whole training state (params, optimiser, live environments, replay
buffer, PRNG key) and the number of metric rows written up to them, and every step's key
depends only on the seed and step index, so a resumed run ends bit-identical to an
uninterrupted one. A folder holding another config is refused (a kind's ``extendable``
length fields excepted); no checkpoint is ever overwritten.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rljaxinterp import distributed
from rljaxinterp.agents.common import settings
from rljaxinterp.runs import folder as files
from rljaxinterp.runs.kinds import RunKind, abstract_state, kind_named, kind_of
from rljaxinterp.runs.progress import Progress


def read_config(folder: str | os.PathLike) -> tuple[RunKind, Any]:
    """The folder's agent kind and its parsed config."""
    name, data = files.read_config_json(folder)
    try:
        kind = kind_named(name)
    except ValueError as e:
        raise files.RunFolderError(f"{Path(folder) / files.CONFIG_FILE}: {e}") from None
    try:
        return kind, kind.config_cls.from_dict(data)
    except (TypeError, ValueError, KeyError) as e:
        raise files.RunFolderError(f"{Path(folder) / files.CONFIG_FILE} is not a valid {name} config: {e}") from None


def _claim(kind: RunKind, config: Any, folder: Path, total: int) -> str | None:
    """Claim ``folder`` for ``config`` (see ``folder.claim``). A kind's ``extendable`` fields
    may differ from the folder's: the run is lengthened (or ended early, but never before its
    last checkpoint) and config.json rewritten atomically; the returned note says so."""
    if not (folder / files.CONFIG_FILE).exists():
        files.claim(folder, kind.name, config.to_dict(), None)
        return None
    held, existing_config = read_config(folder)
    if held.name != kind.name:
        raise files.RunFolderError(f"{folder} holds a run of kind {held.name!r}, not {kind.name!r}; "
                                   "use another folder")
    # Labels (AlphaZeroConfig.preset) take no part: a folder from before presets had names
    # resumes under a config that carries one, and config.json keeps the folder's label.
    existing, asked = settings(existing_config), settings(config)
    changed = sorted(k for k in asked if existing.get(k) != asked[k])
    if not changed or not set(changed) <= set(kind.extendable):
        files.claim(folder, kind.name, asked, existing)  # equal, or refused with the differences named
        return None
    done = files.latest_step(folder)
    if done is not None and done > total:
        raise files.RunLengthError(f"{folder} has {done} {kind.step_name}s done; asked for {total} in all "
                                   f"({', '.join(f'{k}={asked[k]!r}' for k in changed)}): a run can only end at "
                                   "or after its last checkpoint")
    files.write_config(folder, kind.name, {**existing_config.to_dict(), **asked})
    return "run length changed: " + ", ".join(f"{k} {existing.get(k)!r} -> {asked[k]!r}" for k in changed)


def _env_steps(state: Any) -> int:
    """Environment steps so far (per seed when seeds are vmapped: equal for every seed)."""
    return int(np.asarray(state.env_steps).reshape(-1)[0])


def plot_learning_curve(folder: str | os.PathLike) -> Path:
    from rljaxinterp.reporting import plot_curves

    kind, _ = read_config(folder)
    return plot_curves(files.read_metrics(folder), kind.curves, Path(folder) / files.CURVE_FILE)


def train(config: Any, out_dir: str | os.PathLike, *, progress: bool = True,
          log: Callable[[str], None] | None = None, stop_after: int | None = None,
          devices: Sequence[jax.Device] | None = None) -> Any:
    """Train (or resume) the run in ``out_dir`` and return the final training state.

    ``stop_after`` ends this call after that many chunks of work (AlphaZero iterations,
    PPO/DQN segments), leaving a resumable folder (for tests). ``devices`` (AlphaZero)
    shards self-play games; a checkpoint resumes on any device count. ``progress`` shows a
    bar on a terminal and a summary line every few chunks otherwise; ``log`` receives those
    lines instead of stdout.
    """
    folder = Path(out_dir)
    kind = kind_of(config)
    trainer = kind.make_trainer(config, devices)
    # Several processes (rljaxinterp.distributed) train one run: process 0 claims the folder and
    # writes config, metrics and curves; orbax writes and reads checkpoints collectively.
    primary = distributed.is_primary()
    if jax.process_count() > 1 and trainer.shardings is None:
        raise ValueError(f"{kind.name} runs in one process; {jax.process_count()} processes were started "
                         "(only alphazero shards its training over processes)")
    note = distributed.on_primary(lambda: _claim(kind, config, folder, trainer.total), f"claiming {folder}")
    progress = progress and primary
    manager = files.checkpoint_manager(folder)
    latest = manager.latest_step()
    if latest is None:
        state, meta, rows = trainer.init(), {"wall_time": 0.0}, []
    else:
        abstract = files.with_shardings(abstract_state(trainer.agent), trainer.shardings)
        state, meta = files.restore_checkpoint(manager, latest, abstract)
        rows = files.read_metrics(folder)
        # The rows this checkpoint counted (older checkpoints did not count: rows up to its step).
        rows = rows[:meta["metric_rows"]] if "metric_rows" in meta else \
            [r for r in rows if r[kind.step_name] <= latest]
    if primary:
        files.rewrite_metrics(folder, rows)  # rows after the last checkpoint are recomputed identically
    distributed.barrier("rljaxinterp-train-start")  # every process has read the folder before it grows

    wall0 = time.perf_counter() - float(meta["wall_time"])

    written = len(rows)

    def save(state: Any, metrics: dict) -> None:
        step = trainer.step(state)
        files.save_checkpoint(manager, step, state, {
            kind.step_name: step, "env_steps": _env_steps(state), "metric_rows": written,
            "wall_time": time.perf_counter() - wall0, "metrics": metrics})

    if latest is None:
        save(state, {})
    done, total, every = trainer.step(state), trainer.total, trainer.every
    bar = Progress(f"{kind.name} {config.env}", total, done, trainer.chunk, enabled=progress, log=log)
    if note:
        bar.note(note)
    devices_used = getattr(trainer, "devices", ())
    if len(devices_used) > 1:
        bar.note(f"self-play games sharded over {len(devices_used)} devices")
    chunks = 0
    with open(folder / files.METRICS_FILE if primary else os.devnull, "a") as metrics_file:
        while done < total and (stop_after is None or chunks < stop_after):
            n = min(trainer.chunk, every - done % every, total - done)  # boundaries at multiples of `every`
            state, new_rows = trainer.advance(state, n)
            wall = round(time.perf_counter() - wall0, 3)
            for r in new_rows:
                r["wall_time"] = wall
                metrics_file.write(json.dumps(r) + "\n")
            metrics_file.flush()
            written += len(new_rows)
            done, chunks = trainer.step(state), chunks + 1
            summary = trainer.describe(new_rows)
            bar.update(n, done, summary, lambda: f"{kind.name} {config.env} {kind.step_name}={done}/{total} "
                                                 f"env_steps={_env_steps(state)} wall={wall:.1f}s {summary}")
            if done % every == 0 or done == total:
                save(state, {**trainer.summary(new_rows), kind.step_name: done})
                if primary:
                    plot_learning_curve(folder)
    bar.close()
    manager.close()
    return state

