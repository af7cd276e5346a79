"""Board and card games from pgx behind the common protocol."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import pgx

from rljaxinterp.envs.base import Array, Env, EnvState, check_options, describe

# pgx ids verified to construct, init and step offline with pgx 2.6.
# pgx's own MinAtar ports also work offline but are left out on purpose:
# MinAtar comes from gymnax ("Breakout-MinAtar", ...), and two slightly
# different implementations of one game under two names invite mix-ups.
# bridge_bidding is excluded because it needs a downloaded deal table.
PGX_GAMES: tuple[str, ...] = (
    "2048",
    "animal_shogi",
    "backgammon",
    "chess",
    "connect_four",
    "gardner_chess",
    "go_9x9",
    "go_19x19",
    "hex",
    "kuhn_poker",
    "leduc_holdem",
    "othello",
    "shogi",
    "sparrow_mahjong",
    "tic_tac_toe",
)


class PgxGame(Env):
    """A pgx environment; pgx's state is kept whole as ``inner``.

    pgx chooses at random which player id moves first, so
    ``current_player`` after ``init`` is 0 or 1 (use
    :func:`rljaxinterp.envs.boards.from_actions` for a fixed first player).
    Observations are cast to float32 so every environment feeds models alike.
    """

    def __init__(self, name: str, **options: Any) -> None:
        check_options(name, options, [])
        self.pgx_env = pgx.make(name)
        self.name = name
        self.num_players = int(self.pgx_env.num_players)
        spec = describe(self.init)
        self.num_actions = int(spec.legal_action_mask.shape[-1])
        self.observation_shape = tuple(spec.observation.shape)

    def init(self, key: Array) -> EnvState:
        return from_pgx(self.pgx_env.init(key))

    def step(self, state: EnvState, action: Array, key: Array) -> EnvState:
        # Push the outer flags down so that clearing or setting them (auto-reset,
        # time limits) is what pgx sees; pgx itself no-ops on done states.
        inner = state.inner.replace(terminated=state.terminated, truncated=state.truncated)
        return from_pgx(self.pgx_env.step(inner, action, key))


def from_pgx(state: pgx.State) -> EnvState:
    """Wrap a (possibly batched) pgx state without changing it."""
    return EnvState(
        observation=jnp.asarray(state.observation, jnp.float32),
        legal_action_mask=state.legal_action_mask,
        rewards=jnp.asarray(state.rewards, jnp.float32),
        terminated=state.terminated,
        truncated=state.truncated,
        current_player=jnp.asarray(state.current_player, jnp.int32),
        step_count=jnp.asarray(state._step_count, jnp.int32),
        inner=state,
    )


def game_state(state: EnvState) -> Any:
    """The game's own state of a (possibly batched) wrapped pgx state: ``board`` (pgx's
    encoding, -1 for an empty square), ``color`` (the side to move) and game-specific fields.
    pgx keeps it in a private field, so this adapter is the only reader of pgx's internals."""
    if not hasattr(state.inner, "_x"):
        raise ValueError(f"not a wrapped pgx state: {type(state.inner).__name__}")
    return state.inner._x


def go_consecutive_passes(state: EnvState) -> Array:
    """How many passes in a row led to a (possibly batched) pgx Go state: 0 after a stone
    was placed, 1 right after the opponent passed."""
    game = game_state(state)
    if not hasattr(game, "consecutive_pass_count"):
        raise ValueError(f"not a pgx Go state: {type(state.inner).__name__}")
    return game.consecutive_pass_count
