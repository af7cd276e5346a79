"""Environments behind one pure ``init``/``step`` protocol (pgx games, gymnax tasks)."""

from rljaxinterp.envs.base import Env, EnvOptionError, EnvState, tree_select
from rljaxinterp.envs.boards import (
    counterfactual_pair,
    flip_square,
    from_actions,
    from_boards,
    tic_tac_toe_boards,
    tic_tac_toe_reachable,
    winning_lines,
)
from rljaxinterp.envs.gymnax_tasks import GYMNAX_TASKS, GymnaxTask
from rljaxinterp.envs.pgx_games import PGX_GAMES, PgxGame, from_pgx
from rljaxinterp.envs.registry import available, make, register
from rljaxinterp.envs.wrappers import AutoReset, Batched, Wrapper

__all__ = [
    "GYMNAX_TASKS",
    "PGX_GAMES",
    "AutoReset",
    "Batched",
    "Env",
    "EnvOptionError",
    "EnvState",
    "GymnaxTask",
    "PgxGame",
    "Wrapper",
    "available",
    "counterfactual_pair",
    "flip_square",
    "from_actions",
    "from_boards",
    "from_pgx",
    "make",
    "register",
    "tic_tac_toe_boards",
    "tic_tac_toe_reachable",
    "tree_select",
    "winning_lines",
]
import rljaxinterp.envs.dark_room  # registers DarkRoom-v0, DarkRoomHard-v0
import rljaxinterp.envs.graph_paths  # registers GraphPaths-v0
import rljaxinterp.envs.gridworlds  # noqa: F401  (registers the gridworlds)
