"""Data-parallel AlphaZero over devices with ``jax.sharding``.

The self-play games (the live env states) are split along their batch axis over a 1-D
``games`` mesh; params, optimiser state and the replay buffer are replicated. The same
``Agent.iteration`` is jitted with those shardings and XLA's partitioner does the rest: each
device searches its own games, the new positions are gathered into the replicated buffer,
and the (cheap) updates run replicated. Self-play dominates the cost, so this is where the
devices help. Random keys are split the same way whatever the sharding (JAX's partitionable
threefry), so a run on 1 or N devices differs only by floating-point reduction order.

:func:`rljaxinterp.runs.train` uses :func:`make_sharded_iteration` over all devices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rljaxinterp import distributed
from rljaxinterp.agents.alphazero import TrainState, make_agent, make_iteration
from rljaxinterp.agents.common import compiled
from rljaxinterp.agents.config import AlphaZeroConfig

AXIS = "games"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    return Mesh(np.array(list(devices or jax.devices())), (AXIS,))


def state_shardings(state: TrainState, mesh: Mesh) -> TrainState:
    """Games sharded along their first axis, everything else replicated."""
    replicated = NamedSharding(mesh, P())
    games = NamedSharding(mesh, P(AXIS))
    shardings = jax.tree.map(lambda _: replicated, state)
    return shardings.replace(env_state=jax.tree.map(lambda _: games, state.env_state))


def usable_devices(config: AlphaZeroConfig, devices: Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """The most of ``devices`` (all by default) that split ``config.games`` evenly.

    With several processes every device must take part (a process without a shard could not
    join the program), so games that do not divide over them all are an error."""
    devices = list(devices or jax.devices())
    if jax.process_count() > 1 and config.games % len(devices):
        raise ValueError(f"AlphaZeroConfig.games={config.games} does not divide over the {len(devices)} devices "
                         f"of {jax.process_count()} processes; choose games as a multiple of {len(devices)}")
    n = max(k for k in range(1, len(devices) + 1) if config.games % k == 0)
    return devices[:n]


def make_sharded_iteration(config: AlphaZeroConfig, devices: Sequence[jax.Device] | None = None
                           ) -> tuple[Callable[[TrainState], TrainState],
                                      Callable[[TrainState, jax.Array], tuple[TrainState, dict]]]:
    """Returns ``(place, iteration)``: ``place(state)`` puts a state on the mesh, and
    ``iteration(state, key)`` is the usual jitted iteration, partitioned over the games.

    On one device this is the plain :func:`make_iteration` (``place`` is the identity).
    Cached per config and device set, so a second call does not compile again.
    """
    devices = list(devices or jax.devices())
    if config.games % len(devices):
        raise ValueError(f"AlphaZeroConfig.games={config.games} must be a multiple of the "
                         f"number of devices ({len(devices)}) to shard the games evenly")
    if len(devices) == 1:
        return (lambda state: state), make_iteration(config)
    return compiled("alphazero-sharded", config, lambda: _sharded(config, tuple(devices)), tuple(devices))


def _sharded(config: AlphaZeroConfig, devices: tuple[jax.Device, ...]):
    mesh = make_mesh(devices)
    agent = make_agent(config)
    abstract = jax.eval_shape(agent.init, jax.random.PRNGKey(config.seed))
    shardings = state_shardings(abstract, mesh)
    replicated = NamedSharding(mesh, P())
    iteration = jax.jit(agent.iteration, in_shardings=(shardings, replicated),
                        out_shardings=(shardings, replicated))

    def place(state: TrainState) -> TrainState:
        return distributed.put(state, shardings)

    return place, iteration
