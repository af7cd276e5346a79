"""A run folder: config.json, orbax checkpoints, metrics.jsonl and learning_curve.png.

``train(config, folder)`` resumes a run with the same config, refuses a different one, and
never deletes or overwrites a checkpoint. Checkpoints hold the whole ``TrainState``
(params, optimiser, live games, replay buffer) and iteration keys depend only on the seed
and iteration index, so a resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from rljaxinterp.agents.alphazero import (
    Agent,
    Params,
    TrainState,
    init_state,
    iteration_key,
    make_agent,
)
from rljaxinterp.agents.config import AlphaZeroConfig
from rljaxinterp.agents.parallel import make_mesh, make_sharded_iteration, state_shardings, usable_devices
from rljaxinterp.envs import Env
from rljaxinterp.models import ModelOutput

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "learning_curve.png"
CHECKPOINTS = "checkpoints"


class RunFolderError(ValueError):
    """The folder holds something this run must not touch (another config, a bad file)."""


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read (truncated or corrupted); nothing was deleted."""


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _manager(folder: Path, read_only: bool = False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None,  # keep all
        enable_async_checkpointing=False,  # a returned save is on disk
        cleanup_tmp_directories=False,  # never delete anything we did not just write
        create=not read_only,  # readers use a plain manager that never saves (read_only warns)
    )
    return ocp.CheckpointManager((folder / CHECKPOINTS).absolute(), options=options,
                                 item_names=("state", "meta"))


def read_config(folder: str | os.PathLike) -> AlphaZeroConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        raise RunFolderError(f"{path} does not exist; is {folder} a run folder?")
    try:
        return AlphaZeroConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise RunFolderError(f"{path} is not a valid AlphaZero config: {e}") from None


def _claim_folder(config: AlphaZeroConfig, folder: Path) -> None:
    """Write config.json, or check that the one present is the same config."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    if path.exists():
        existing = read_config(folder).to_dict()
        wanted = config.to_dict()
        if existing != wanted:
            diff = {k: (existing.get(k), wanted.get(k)) for k in wanted if existing.get(k) != wanted.get(k)}
            text = ", ".join(f"{k}: folder has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
            raise RunFolderError(
                f"{folder} holds a run with a different config ({text}); "
                "use another folder or the same config to resume")
    else:
        if (folder / CHECKPOINTS).exists():
            raise RunFolderError(f"{folder} has checkpoints but no {CONFIG_FILE}; refusing to mix runs")
        _atomic_write(path, json.dumps(config.to_dict(), indent=2) + "\n")


def _abstract_state(agent: Agent, shardings: TrainState | None = None) -> TrainState:
    """Shapes and dtypes of a state, each leaf with its target sharding (one device by
    default), so a checkpoint written on N devices reads back on any other device count."""
    abstract = jax.eval_shape(agent.init, jax.random.PRNGKey(agent.config.seed))
    if shardings is None:
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: one, abstract)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)


def restore(manager: ocp.CheckpointManager, agent: Agent, step: int,
            shardings: TrainState | None = None, params_only: bool = False) -> tuple[Any, dict]:
    """Read one checkpoint; any failure becomes a ``CheckpointError`` naming its path.

    ``params_only`` reads just the network parameters (a partial restore): faster, and it
    still works on runs whose replay buffer or optimiser state had another layout.
    """
    path = Path(manager.directory) / str(step)
    abstract = _abstract_state(agent, shardings)
    if params_only:
        item = {"params": abstract.params}
        state = ocp.args.PyTreeRestore(item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                                       partial_restore=True)
    else:
        state = ocp.args.StandardRestore(abstract)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(state=state, meta=ocp.args.JsonRestore()))
        if params_only:
            return restored["state"]["params"], dict(restored["meta"])
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
        first_line = (str(e).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} cannot be read; it is probably truncated or corrupted "
            f"({type(e).__name__}: {first_line}). Nothing was deleted; move that folder away to "
            "resume from the previous checkpoint.") from e
    return restored["state"], dict(restored["meta"])


def _read_metrics(folder: Path) -> list[dict]:
    path = folder / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            break
    return rows


def plot_learning_curve(folder: str | os.PathLike) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    rows = _read_metrics(folder)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    it = [r["iteration"] for r in rows]
    for k in ("loss", "policy_loss", "value_loss"):
        ax.plot(it, [r.get(k) for r in rows], label=k)
    ax.set_xlabel("iteration"), ax.set_title("training loss"), ax.legend()
    ax2.plot(it, [r.get("selfplay_draw_rate") for r in rows], label="self-play draw rate")
    ax2.plot(it, [r.get("root_value") for r in rows], label="mean root value")
    ax2.set_xlabel("iteration"), ax2.set_title("self-play"), ax2.legend()
    return save_figure(fig, folder / CURVE_FILE)


def save_figure(fig, out: Path) -> Path:
    """Write a matplotlib figure atomically (temp file + rename) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def train(config: AlphaZeroConfig, out_dir: str | os.PathLike, *, progress: bool = True,
          log: Callable[[str], None] | None = None, stop_after: int | None = None,
          devices: Sequence[jax.Device] | None = None) -> TrainState:
    """Train (or resume) the run in ``out_dir``; ``stop_after`` ends early after that many
    iterations of this call (for tests), leaving a resumable folder.

    Self-play games are sharded over ``devices`` (default: all of ``jax.devices()``, as many
    as split ``config.games`` evenly); a run gives the same parameters on any device count
    up to floating-point reduction order, and a checkpoint resumes on any device count.
    """
    from tqdm.auto import tqdm

    folder = Path(out_dir)
    _claim_folder(config, folder)
    agent = make_agent(config)
    devices = usable_devices(config, devices)
    place, iteration = make_sharded_iteration(config, devices)
    shardings = None if len(devices) == 1 else state_shardings(_abstract_state(agent), make_mesh(devices))
    manager = _manager(folder)
    latest = manager.latest_step()
    if latest is None:
        state, meta = place(init_state(config)), {"wall_time": 0.0}
        rows = []
    else:
        state, meta = restore(manager, agent, latest, shardings)
        rows = [r for r in _read_metrics(folder) if r["iteration"] <= latest]
    # Lines of iterations after the last checkpoint are recomputed identically: drop them.
    _atomic_write(folder / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))

    start = int(state.iteration)
    wall0 = time.perf_counter() - float(meta["wall_time"])
    say = log or (lambda s: tqdm.write(s, file=sys.stdout))

    def save(state: TrainState, metrics: dict) -> None:
        step = int(state.iteration)
        if step in manager.all_steps():
            return  # never overwrite
        meta = {"iteration": step, "env_steps": int(state.env_steps),
                "wall_time": time.perf_counter() - wall0, "metrics": metrics}
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()

    if latest is None:
        save(state, {})
    if len(devices) > 1 and (progress or log):
        say(f"self-play games sharded over {len(devices)} devices")
    end = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    bar = tqdm(range(start, end), initial=start, total=config.iterations, disable=not progress,
               desc=f"alphazero {config.env}", file=sys.stderr)
    with open(folder / METRICS_FILE, "a") as metrics_file:
        for i in bar:
            state, metrics = iteration(state, iteration_key(config, i))
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            row = {"iteration": i + 1, "env_steps": int(state.env_steps),
                   "wall_time": round(time.perf_counter() - wall0, 3), **metrics}
            metrics_file.write(json.dumps(row) + "\n")
            metrics_file.flush()
            bar.set_postfix(loss=f"{metrics['loss']:.3f}")
            if progress or log:
                say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            if (i + 1) % config.checkpoint_every == 0 or i + 1 == config.iterations:
                save(state, metrics)
                plot_learning_curve(folder)
    bar.close()
    manager.close()
    return state


@dataclasses.dataclass
class Run:
    """A trained (or training) run, read from its folder."""

    folder: Path
    config: AlphaZeroConfig
    agent: Agent

    @property
    def env(self) -> Env:
        return self.agent.env

    @property
    def model(self):
        return self.agent.model

    @property
    def steps(self) -> list[int]:
        """Iterations with a checkpoint, ascending."""
        manager = _manager(self.folder, read_only=True)
        try:
            return sorted(manager.all_steps())
        finally:
            manager.close()

    def _step(self, step: int | None) -> int:
        steps = self.steps
        if not steps:
            raise CheckpointError(f"{self.folder / CHECKPOINTS} holds no checkpoint")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise ValueError(f"no checkpoint at step {step} in {self.folder}; available: {steps}")
        return step

    def state(self, step: int | None = None) -> tuple[TrainState, dict]:
        """Whole training state and its metadata (iteration, env_steps, wall_time, metrics)."""
        manager = _manager(self.folder, read_only=True)
        try:
            return restore(manager, self.agent, self._step(step))
        finally:
            manager.close()

    def params(self, step: int | None = None) -> Params:
        """Network parameters at ``step`` (latest by default)."""
        manager = _manager(self.folder, read_only=True)
        try:
            return restore(manager, self.agent, self._step(step), params_only=True)[0]
        finally:
            manager.close()

    def policy_value(self, params: Params, observation: jax.Array) -> ModelOutput:
        """Raw network; pure, so usable under jit and vmap."""
        return self.agent.policy_value(params, observation)

    def metrics(self) -> list[dict[str, Any]]:
        return _read_metrics(self.folder)


def load_run(folder: str | os.PathLike) -> Run:
    """Open a run folder written by :func:`train` (or by another agent kind's trainer)."""
    from rljaxinterp.agents import run_kinds

    if (run := run_kinds.load_registered(folder)) is not None:
        return run
    folder = Path(folder)
    config = read_config(folder)
    return Run(folder=folder, config=config, agent=make_agent(config))


def curve_summary(rows: list[dict]) -> dict[str, float]:
    """First and last loss, for quick reports."""
    if not rows:
        return {}
    return {"first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"],
            "last_wall_time": rows[-1]["wall_time"], "iterations": rows[-1]["iteration"],
            "loss_drop": float(np.float64(rows[0]["loss"]) - rows[-1]["loss"])}
