"""Per-environment starting configs of every agent kind, each measured by a benchmark on a
2-core CPU.

AlphaZero: tic-tac-toe (``benchmarks/alphazero_tictactoe.py``) becomes unbeatable with a
perfect move in every position; the other games (``benchmarks/alphazero_games.py``) beat the
uniform-random player after a few minutes of training. An MLP over the flattened board is
the default for othello, Go and chess: on CPU it runs many times more self-play per second
than the residual conv tower, and in a few minutes the amount of self-play matters more
than the inductive bias. Board-sized games keep replay buffers and checkpoint intervals
modest, since every checkpoint holds the replay buffer.

PPO and DQN: the CartPole presets solve it (``benchmarks/ppo_dqn.py``).
"""

from __future__ import annotations

_CONV = dict(model="conv", model_kwargs={"channels": 32, "blocks": 2}, num_simulations=16, exploration=0.3,
             unroll_length=8, minibatch_size=128, updates_per_iteration=8, iterations=100)
_MLP = dict(model="mlp", model_kwargs={"hidden": [256, 256]}, num_simulations=16, exploration=0.3,
            unroll_length=8, games=64, minibatch_size=128, updates_per_iteration=16, replay_size=16384,
            checkpoint_every=100, iterations=1000)

ALPHAZERO: dict[str, dict] = {
    "tic_tac_toe": {},  # the AlphaZeroConfig defaults
    "connect_four": dict(_CONV, games=32, replay_size=8192),
    "othello": dict(_MLP),
    # restrict_pass: the agent passes only when forced or to end the game after an opponent pass
    "go_9x9": dict(_MLP, restrict_pass=True, iterations=300),
    # mctx keeps games x (simulations + 1) chess states, and each observation is 8x8x119 floats
    "chess": dict(_MLP, games=16, replay_size=2048, iterations=300),
}
ALPHAZERO_OTHER_GAMES = _CONV  # any other registered two-player game

_MINATAR_PPO = dict(num_envs=64, num_steps=128, num_minibatches=8, lr=5e-4, total_timesteps=2_000_000,
                    model_kwargs={"channels": 16, "blocks": 1}, checkpoint_every=10)
PPO: dict[str, dict] = {
    "CartPole-v1": dict(num_envs=8, num_steps=128, lr=1e-3, total_timesteps=500_000),
    **{f"{g}-MinAtar": _MINATAR_PPO for g in ("Breakout", "Asterix", "Freeway", "Seaquest", "SpaceInvaders")},
}
DQN: dict[str, dict] = {
    "CartPole-v1": {},  # the DQNConfig defaults
}
