"""Tier 5 of the zoo: agents trained the ordinary way, whose mechanism nobody knows but whose
game labels are exact.

AlphaZero on tic-tac-toe (the library's own config: a 128x128 MLP trained by Gumbel MuZero
self-play through mctx). Nothing says which of its units compute what, so only concept-level
scores apply: the probes and steering directions of ``concepts`` at its last hidden layer,
judged by the same rules-derived labels as on the compiled network, with no oracle and no
unit-level column. Its move is its best legal move, as in play.

Agents are trained once into run folders under a user cache (``RLJAXINTERP_CACHE``, default
``~/.cache/rljaxinterp``) and reused by every later leaderboard; the config fixes the
result, so a cached agent is the agent a fresh run would train.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from rljaxinterp import user_cache
from rljaxinterp.bench import concepts

SITE = "layer1.post"  # the MLP's last hidden layer
TIERS = {"quick": {"seeds": (0,), "iterations": 100}, "default": {"seeds": (0, 1), "iterations": 300}}


def cache_folder(seed: int, iterations: int) -> Path:
    return user_cache() / "bench" / f"alphazero_tic_tac_toe-seed{seed}-it{iterations}"


def agent(seed: int, iterations: int, folder: str | os.PathLike | None = None) -> tuple[concepts.Network, dict]:
    """The trained agent as a ``concepts.Network`` (its untrained control: the same MLP at
    random weights) and ``{"folder", "train_s", "cached"}``; trains (or finishes) the run when
    the folder does not hold it yet."""
    from rljaxinterp.agents.config import AlphaZeroConfig
    from rljaxinterp.runs import folder as files
    from rljaxinterp.runs import load_run
    from rljaxinterp.runs.train import read_config, train

    folder = Path(folder or cache_folder(seed, iterations))
    config = AlphaZeroConfig(seed=seed, iterations=iterations)
    t0 = time.perf_counter()
    cached = files.latest_step(folder) == iterations and read_config(folder)[1] == config
    if not cached:  # train() also refuses a folder that holds another run
        train(config, folder, progress=False)
    train_s = time.perf_counter() - t0
    run = load_run(folder)
    untrained = run.model.init(jax.random.key(1000 + seed), jnp.zeros((1, 3, 3, 2)))["params"]
    net = concepts.Network(run.model, run.params(), untrained, SITE, truth=None, legal_moves=True, legal_argmax=True)
    return net, {"folder": str(folder), "seed": seed, "iterations": iterations,
                 "train_s": train_s, "cached": cached}
