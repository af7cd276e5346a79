"""Per-environment starting configs of every agent kind, per backend.

Two presets: ``"cpu"`` (measured on a 2-core CPU) and ``"accelerator"`` (GPU/TPU);
``preset="auto"`` picks by ``jax.default_backend()``. Only AlphaZero's differ: the right
network size and self-play batch depend on the hardware by orders of magnitude. The chosen
name is printed by ``rljaxinterp train`` and kept in ``AlphaZeroConfig.preset``, a label that
equality and resume checks ignore and ``to_dict`` omits when unset: the least disruptive
place, since run folders and cached configs from before load and compare unchanged. Configs
whose results are quoted (the quickstart, ``findings`` agent sets) pin ``preset="cpu"``.

CPU, AlphaZero: tic-tac-toe (``benchmarks/alphazero_tictactoe.py``) becomes unbeatable with a
perfect move in every position; the other games (``benchmarks/alphazero_games.py``) beat the
uniform-random player after a few minutes of training. An MLP over the flattened board is
the default for connect four, othello, Go and chess: on CPU it runs many times more self-play
per second than the residual conv tower, and in a few minutes the amount of self-play matters
more than the inductive bias. Connect four measured (``alphazero_games.py --minutes 10``,
2 cores): the 2x256 MLP runs about 27 iterations of 64 games a second, the 32x2 conv tower
(``CONNECT_FOUR_CONV``) 0.6 of 32 games; after 10 minutes the raw MLP beat pure MCTS with 200
simulations in 97 of 100 games, the conv tower in 77. Board-sized games keep replay buffers and checkpoint intervals
modest, since every checkpoint holds the replay buffer.

Accelerator, AlphaZero: the pgx AlphaZero example (sotetsuk/pgx, ``examples/alphazero/
train.py``; mctx's own examples are search demos without a trained network): a residual
tower of 6 blocks x 128 channels, 1024 self-play games, 32 Gumbel-MuZero simulations,
training batches of 4096, learning rate 1e-3 (our default), and as many training samples
per iteration as new positions (pgx trains on each position once). pgx plays 256 moves per
iteration; our games live across iterations, so 16 moves suffice and keep self-play close
to the current network (16,384 positions = 4 batches of 4096). The replay holds pgx's
262,144 positions (1024 x 256) where that stays small; Go (5.9 kB a position) keeps 65,536
and chess (54 kB) one iteration's 16,384, since every checkpoint holds the buffer. Othello,
Go and chess run pgx's 400 iterations' worth of positions (6,400 of ours), connect four 1,000
and tic-tac-toe the default 300. Not measured on an accelerator here; the slow tests run one
shrunk iteration of each on CPU.

PPO and DQN: the CartPole presets solve it (``benchmarks/ppo_dqn.py``). They serve every
backend: their networks are small, and more parallel environments on an accelerator would
change what the algorithm learns per step (batch size, staleness), not only its speed, so a
GPU variant would need its own measurement first.
"""

from __future__ import annotations

from rljaxinterp.agents.config import PRESETS

CHOICES = ("auto", *PRESETS)
ACCELERATOR_BACKENDS = ("gpu", "cuda", "rocm", "tpu")  # jax.default_backend() names


def backend_preset(backend: str | None = None) -> str:
    """``"accelerator"`` on a GPU or TPU backend, else ``"cpu"``."""
    if backend is None:
        import jax

        backend = jax.default_backend()
    return "accelerator" if backend.lower() in ACCELERATOR_BACKENDS else "cpu"


def resolve(preset: str = "auto") -> str:
    """The preset ``preset`` names (``"auto"``: the backend's); ``ValueError`` for other names."""
    if preset == "auto":
        return backend_preset()
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(CHOICES)}")
    return preset


# -- CPU ---------------------------------------------------------------------------------------
_CONV = dict(model="conv", model_kwargs={"channels": 32, "blocks": 2}, num_simulations=16, exploration=0.3,
             unroll_length=8, minibatch_size=128, updates_per_iteration=8, iterations=100)
_MLP = dict(model="mlp", model_kwargs={"hidden": [256, 256]}, num_simulations=16, exploration=0.3,
            unroll_length=8, games=64, minibatch_size=128, updates_per_iteration=16, replay_size=16384,
            checkpoint_every=100, iterations=1000)

ALPHAZERO: dict[str, dict] = {
    "tic_tac_toe": {},  # the AlphaZeroConfig defaults
    # ~27 iterations a second here; 5,000 take about 3 minutes
    "connect_four": dict(_MLP, iterations=5000, checkpoint_every=500),
    "othello": dict(_MLP),
    # restrict_pass: the agent passes only when forced or to end the game after an opponent pass
    "go_9x9": dict(_MLP, restrict_pass=True, iterations=300),
    # mctx keeps games x (simulations + 1) chess states, and each observation is 8x8x119 floats
    "chess": dict(_MLP, games=16, replay_size=2048, iterations=300),
}
ALPHAZERO_OTHER_GAMES = _CONV  # any other registered two-player game
# connect four's residual conv tower, the CPU preset until the MLP overtook it: the agent the
# connect-four interpretability experiments, docs and benchmarks study (channels are spatial
# maps there), named so they keep training and caching the same agent
CONNECT_FOUR_CONV = dict(_CONV, games=32, replay_size=8192)


# -- accelerator -------------------------------------------------------------------------------
_TOWER = dict(model="conv", model_kwargs={"channels": 128, "blocks": 6}, num_simulations=32, games=1024,
              unroll_length=16, minibatch_size=4096, updates_per_iteration=4, replay_size=262144)
ALPHAZERO_ACCELERATOR: dict[str, dict] = {
    "tic_tac_toe": dict(_TOWER, replay_size=65536),  # keeps the default exploration 0.7, 300 iterations
    "connect_four": dict(_TOWER, exploration=0.3, iterations=1000, checkpoint_every=100),
    "othello": dict(_TOWER, exploration=0.3, iterations=6400, checkpoint_every=400),
    "go_9x9": dict(_TOWER, exploration=0.3, restrict_pass=True, replay_size=65536, iterations=6400,
                   checkpoint_every=400),
    "chess": dict(_TOWER, exploration=0.3, replay_size=16384, iterations=6400, checkpoint_every=800),
}
ALPHAZERO_ACCELERATOR_OTHER_GAMES = dict(_TOWER, exploration=0.3, replay_size=65536, iterations=1000,
                                         checkpoint_every=100)

_MINATAR_PPO = dict(num_envs=64, num_steps=128, num_minibatches=8, lr=5e-4, total_timesteps=2_000_000,
                    model_kwargs={"channels": 16, "blocks": 1}, checkpoint_every=10)
PPO: dict[str, dict] = {
    "CartPole-v1": dict(num_envs=8, num_steps=128, lr=1e-3, total_timesteps=500_000),
    **{f"{g}-MinAtar": _MINATAR_PPO for g in ("Breakout", "Asterix", "Freeway", "Seaquest", "SpaceInvaders")},
}
DQN: dict[str, dict] = {
    "CartPole-v1": {},  # the DQNConfig defaults
}
