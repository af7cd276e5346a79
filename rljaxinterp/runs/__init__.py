"""One run-folder layer for every agent kind: configs and presets, training with resume,
orbax checkpoints, metrics and learning curves, and reading a run back.

```python
from rljaxinterp import runs
config = runs.default_config("ppo", "CartPole-v1", total_timesteps=100_000)
runs.train(config, "runs/cartpole")           # resumes if the folder holds this config
run = runs.load_run("runs/cartpole")           # run.params(step), run.metrics(), run.evaluate()
```
"""

from rljaxinterp.runs import sequence_kinds  # noqa: F401  (registers the dt and ad kinds)
from rljaxinterp.runs.folder import CheckpointError, RunFolderError, RunLengthError
from rljaxinterp.runs.kinds import KINDS, RunKind, Trainer, kind_named, kind_of, register_kind
from rljaxinterp.runs.run import Run, load_run
from rljaxinterp.runs.train import plot_learning_curve, read_config, train


def default_config(kind: str, env: str, preset: str = "auto", **changes):
    """The preset config of agent ``kind`` ("alphazero", "ppo", "dqn", ...) for ``env``.

    ``preset``: "cpu", "accelerator", or "auto" (the accelerator one on a GPU/TPU backend);
    see :mod:`rljaxinterp.runs.presets`. Any other name raises ``ValueError``.
    """
    return kind_named(kind).default_config(env, preset, **changes)


__all__ = [
    "KINDS", "CheckpointError", "Run", "RunFolderError", "RunLengthError", "RunKind", "Trainer", "default_config", "kind_named",
    "kind_of", "load_run", "plot_learning_curve", "read_config", "register_kind", "train",
]
