"""A run folder opened for reading: config, agent, checkpoints, metrics."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax

from rljaxinterp.models import ModelOutput
from rljaxinterp.runs import folder as files
from rljaxinterp.runs.kinds import RunKind, abstract_state
from rljaxinterp.runs.train import read_config

Params = Any


@dataclasses.dataclass
class Run:
    """A trained (or training) run of any agent kind; ``agent`` has ``env``, ``model`` and
    ``policy_value(params, obs)``."""

    folder: Path
    kind: RunKind
    config: Any
    agent: Any

    @property
    def env(self):
        return self.agent.env

    @property
    def model(self):
        return self.agent.model

    @property
    def steps(self) -> list[int]:
        """Steps (iterations, updates) with a checkpoint, ascending."""
        manager = files.checkpoint_manager(self.folder, read_only=True)
        try:
            return sorted(manager.all_steps())
        finally:
            manager.close()

    def _step(self, step: int | None) -> int:
        steps = self.steps
        if not steps:
            raise files.CheckpointError(f"{self.folder / files.CHECKPOINTS} holds no checkpoint")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise ValueError(f"no checkpoint at step {step} in {self.folder}; available: {steps}")
        return step

    def _restore(self, step: int | None, params_only: bool):
        manager = files.checkpoint_manager(self.folder, read_only=True)
        try:
            abstract = files.with_shardings(abstract_state(self.agent))
            return files.restore_checkpoint(manager, self._step(step), abstract, params_only=params_only)
        finally:
            manager.close()

    def state(self, step: int | None = None) -> tuple[Any, dict]:
        """Whole training state and its metadata (step, env_steps, wall_time, metrics)."""
        return self._restore(step, params_only=False)

    def params(self, step: int | None = None) -> Params:
        """Network parameters at ``step`` (latest by default)."""
        return self._restore(step, params_only=True)[0]

    def policy_value(self, params: Params, observation: jax.Array) -> ModelOutput:
        """Raw network; pure, so usable under jit and vmap."""
        return self.agent.policy_value(params, observation)

    def metrics(self) -> list[dict[str, Any]]:
        return files.read_metrics(self.folder)

    def evaluate(self, step: int | None = None, **options: Any) -> Any:
        """The kind's evaluation of a checkpoint: AlphaZero plays matches (a report dict),
        PPO/DQN return the returns of full episodes."""
        if self.kind.evaluate is None:
            raise NotImplementedError(f"agent kind {self.kind.name!r} has no evaluation")
        return self.kind.evaluate(self, step, **options)


def load_run(folder: str | os.PathLike) -> Run:
    """Open a run folder of any registered agent kind (folders of earlier versions included)."""
    folder = Path(folder)
    kind, config = read_config(folder)
    return Run(folder=folder, kind=kind, config=config, agent=kind.agent(config))
