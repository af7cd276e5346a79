"""Default configs per game: tic-tac-toe is tuned to become unbeatable; the others are small
starting points that run end to end on a laptop CPU, not tuned for strength."""

from __future__ import annotations

from rljaxinterp.agents.config import AlphaZeroConfig

_BOARD = dict(model="conv", model_kwargs={"channels": 32, "blocks": 2}, num_simulations=16, exploration=0.3,
              unroll_length=8, minibatch_size=128, updates_per_iteration=8, iterations=100)

DEFAULTS: dict[str, dict] = {
    "tic_tac_toe": {},
    "connect_four": dict(_BOARD, games=32, replay_size=8192),
    "othello": dict(_BOARD, games=32, replay_size=8192),
    # no voluntary pass: see AlphaZeroConfig.restrict_pass and benchmarks/README.md
    "go_9x9": dict(_BOARD, games=16, replay_size=4096, restrict_pass=True),
    # mctx keeps games x (simulations + 1) chess states; keep both small
    "chess": dict(_BOARD, games=8, num_simulations=8, replay_size=2048),
}


def default_config(env: str, **changes) -> AlphaZeroConfig:
    """The default config of ``env`` (a tic-tac-toe-like small config for other games)."""
    base = dict(DEFAULTS.get(env, _BOARD if env != "tic_tac_toe" else {}))
    base.update(changes)
    return AlphaZeroConfig(env=env, **base)
