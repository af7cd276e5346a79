"""Tier 5 of the zoo: agents trained the ordinary way, whose mechanism nobody knows but whose
game labels are exact.

AlphaZero on tic-tac-toe (the library's default config: a 128x128 MLP trained by Gumbel
MuZero self-play through mctx) and on connect four (the library's conv tower, ``presets.CONNECT_FOUR_CONV``:
32 channels x 2 blocks). Nothing says which of their units compute what, so only
concept-level scores apply: the probes and steering directions of ``concepts`` at the last
layer before the heads, judged by the game's own labels (``concepts.make_task``), with no
oracle and no unit-level column. Their move is their best legal move, as in play.

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

# the last layer before the policy and value heads
SITES = {"tic_tac_toe": "layer1.post", "connect_four": "block1.resid_post"}
OBSERVATION = {"tic_tac_toe": (3, 3, 2), "connect_four": (6, 7, 2)}
# Connect four only in the default tier: probing its 1,344-wide site with cross-validated
# logistic and sparse probes costs about a minute, a third of the quick tier's budget.
TIERS = {"quick": {"tic_tac_toe": {"seeds": (0,), "iterations": 100}},
         "default": {"tic_tac_toe": {"seeds": (0, 1), "iterations": 300},
                     "connect_four": {"seeds": (0, 1), "iterations": 150}}}


def cache_folder(game: str, seed: int, iterations: int) -> Path:
    return user_cache() / "bench" / f"alphazero_{game}-seed{seed}-it{iterations}"


def config(game: str, seed: int, iterations: int):
    """The library's CPU preset of ``game``, connect four's conv tower (pinned on every backend,
    so a cached agent is the same agent everywhere)."""
    from rljaxinterp.runs import default_config
    from rljaxinterp.runs.presets import CONNECT_FOUR_CONV

    if game not in SITES:
        raise ValueError(f"game {game!r} is not allowed; use one of {tuple(SITES)}")
    model = CONNECT_FOUR_CONV if game == "connect_four" else {}
    return default_config("alphazero", game, preset="cpu", **{**model, "seed": seed, "iterations": iterations})


def agent(game: str, seed: int, iterations: int, folder: str | os.PathLike | None = None
          ) -> tuple[concepts.Network, dict]:
    """The trained agent as a ``concepts.Network`` (its untrained control: the same network
    at random weights) and ``{"game", "folder", "seed", "iterations", "train_s", "cached"}``;
    trains (or finishes) the run when the folder does not hold it yet."""
    from rljaxinterp.runs import folder as files
    from rljaxinterp.runs import load_run
    from rljaxinterp.runs.train import read_config, train

    cfg = config(game, seed, iterations)
    folder = Path(folder or cache_folder(game, seed, iterations))
    t0 = time.perf_counter()
    cached = files.latest_step(folder) == iterations and read_config(folder)[1] == cfg
    if not cached:  # train() also refuses a folder that holds another run
        train(cfg, folder, progress=False)
    train_s = time.perf_counter() - t0
    run = load_run(folder)
    untrained = run.model.init(jax.random.key(1000 + seed), jnp.zeros((1, *OBSERVATION[game])))["params"]
    net = concepts.Network(run.model, run.params(), untrained, SITES[game], truth=None, legal_moves=True,
                           legal_argmax=True)
    return net, {"game": game, "folder": str(folder), "seed": seed, "iterations": iterations,
                 "train_s": train_s, "cached": cached}
