"""Training algorithms: AlphaZero with mctx, PPO and DQN in the PureJaxRL style, distillation.

Run folders (configs, presets, checkpoints, resume) live in :mod:`rljaxinterp.runs`.
"""

from rljaxinterp.agents.alphazero import (
    Agent,
    ReplayBuffer,
    TrainState,
    init_state,
    iteration_key,
    make_agent,
    make_iteration,
)
from rljaxinterp.agents.config import AlphaZeroConfig

__all__ = [
    "Agent",
    "AlphaZeroConfig",
    "ReplayBuffer",
    "TrainState",
    "init_state",
    "iteration_key",
    "make_agent",
    "make_iteration",
]
