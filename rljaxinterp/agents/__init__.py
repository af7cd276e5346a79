"""Agents that learn to play: AlphaZero with mctx, plus exact solvers and evaluation."""

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
from rljaxinterp.agents.configs import default_config

__all__ = [
    "Agent",
    "AlphaZeroConfig",
    "ReplayBuffer",
    "TrainState",
    "default_config",
    "init_state",
    "iteration_key",
    "make_agent",
    "make_iteration",
]
