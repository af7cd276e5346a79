"""Seeded agent sets: N independently seeded runs of one config, in ``<base>/seed{k}``.

Any agent kind of the run layer works: the config must have a ``seed`` field. A folder that
already holds the finished run of the same config is reused without touching its training
state; one that holds an unfinished run of it is resumed; one that holds another config is
refused by the run layer (a ``RunFolderError`` naming the folder).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rljaxinterp.runs import Run


def total_steps(config: Any) -> int | None:
    """Steps a finished run of ``config`` has (AlphaZero iterations, PPO/DQN updates), if known."""
    for name in ("iterations", "num_updates"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def train_or_reuse(config: Any, folder: str | Path, log: Callable[[str], None] = print,
                   progress: bool = True) -> Run:
    """The finished run of ``config`` in ``folder``: reused if there, else trained or resumed."""
    from rljaxinterp.runs import load_run, train

    folder = Path(folder)
    if (folder / "config.json").exists():
        run = load_run(folder)
        total = total_steps(config)
        if run.config == config and total is not None and run.steps and run.steps[-1] >= total:
            return run  # finished: no need to restore the whole training state
    t0 = time.perf_counter()
    train(config, folder, progress=progress)
    log(f"agent ready in {folder} ({time.perf_counter() - t0:.0f} s)")
    return load_run(folder)


@dataclasses.dataclass(frozen=True)
class AgentSet:
    """``runs[k]`` is the run of ``seeds[k]``; ``base`` holds ``seed{s}`` folders."""

    base: Path
    seeds: tuple[int, ...]
    runs: tuple[Run, ...]

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self):
        return iter(self.runs)

    def describe(self) -> str:
        run = self.runs[0]
        steps = ", ".join(str(r.steps[-1]) for r in self.runs)
        return (f"{len(self)} agents of kind {run.kind.name} on {run.config.env} (seeds {list(self.seeds)}, "
                f"folders {self.base}/seed{{k}}, final steps {steps})")


def seeded_runs(config: Any, base: str | Path, n: int = 3, first_seed: int = 0,
                seeds: Sequence[int] | None = None, log: Callable[[str], None] = print,
                progress: bool = True) -> AgentSet:
    """``n`` runs of ``config`` that differ only in ``seed`` (``first_seed``, ``first_seed +
    1``, ... or the given ``seeds``), each trained or reused in ``<base>/seed{s}``.

    Seeds train one after another (AlphaZero has no vmapped-seed training yet); a killed
    call resumes where it stopped.
    """
    if not dataclasses.is_dataclass(config) or "seed" not in {f.name for f in dataclasses.fields(config)}:
        raise ValueError(f"config {type(config).__name__} has no seed field; a seeded agent set needs one")
    seeds = tuple(range(first_seed, first_seed + n)) if seeds is None else tuple(int(s) for s in seeds)
    if len(seeds) < 1 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {list(seeds)} must be distinct and at least one (n={n})")
    base = Path(base)
    runs = tuple(train_or_reuse(dataclasses.replace(config, seed=s), base / f"seed{s}", log, progress) for s in seeds)
    return AgentSet(base, seeds, runs)


# -- the tic-tac-toe agents the tic-tac-toe experiments interpret ------------------------------
# A residual conv tower (sites keep the 3x3 board layout). Pinned so the experiments' agents
# stay the same when the library's defaults are retuned. The quick tier trains a smaller
# tower for fewer iterations: the tier's reports say so, and its findings are about that agent.
TTT_PINNED = {"exploration": 0.3, "num_simulations": 32, "updates_per_iteration": 32, "symmetries": False}
TTT_MODEL_KWARGS = {"conv": {"channels": 32, "blocks": 2}, "mlp": {"hidden": [128, 128]},
                    "transformer": {"d_model": 32, "heads": 4, "layers": 2, "d_mlp": 64}}
TIERS = {
    "full": dict(TTT_PINNED, iterations=150, checkpoint_every=10),
    "quick": dict(TTT_PINNED, num_simulations=16, updates_per_iteration=8, games=64, iterations=30,
                  checkpoint_every=10),
}
QUICK_MODEL_KWARGS = {"conv": {"channels": 16, "blocks": 1}, "mlp": {"hidden": [64, 64]},
                      "transformer": {"d_model": 16, "heads": 2, "layers": 1, "d_mlp": 32}}


def tic_tac_toe_config(tier: str = "full", model: str = "conv", seed: int = 0, **changes: Any) -> Any:
    """The pinned AlphaZero config of the tic-tac-toe experiments for a tier (``full`` or ``quick``)."""
    if tier not in TIERS:
        raise ValueError(f"tier={tier!r} is not allowed; use one of {tuple(TIERS)}")
    if model not in TTT_MODEL_KWARGS:
        raise ValueError(f"model={model!r} is not allowed; use one of {tuple(TTT_MODEL_KWARGS)}")
    from rljaxinterp.runs import default_config

    kwargs = (TTT_MODEL_KWARGS if tier == "full" else QUICK_MODEL_KWARGS)[model]
    # preset="cpu": the findings were measured on these configs, on every backend
    return default_config("alphazero", "tic_tac_toe", preset="cpu", model=model, model_kwargs=kwargs,
                          seed=seed, **{**TIERS[tier], **changes})


def tic_tac_toe_agents(base: str | Path, n: int = 3, tier: str = "full", model: str = "conv",
                       log: Callable[[str], None] = print, **changes: Any) -> AgentSet:
    """``n`` seeded tic-tac-toe AlphaZero agents in ``<base>/seed{k}`` (trained or reused)."""
    return seeded_runs(tic_tac_toe_config(tier, model, **changes), base, n, log=log)


# -- the connect-four agents the search experiments interpret ---------------------------------
# The connect-four conv tower (``presets.CONNECT_FOUR_CONV``: 32x2, 16 simulations), trained per
# tier: quick 150 iterations (about 6 minutes each on 2 CPU cores), full 600.
C4_TIERS = {"quick": {"iterations": 150, "checkpoint_every": 10}, "full": {"iterations": 600, "checkpoint_every": 50}}


def connect_four_config(tier: str = "full", seed: int = 0, **changes: Any) -> Any:
    """The AlphaZero config of the connect-four experiments for a tier (``full`` or ``quick``)."""
    if tier not in C4_TIERS:
        raise ValueError(f"tier={tier!r} is not allowed; use one of {tuple(C4_TIERS)}")
    from rljaxinterp.runs import default_config
    from rljaxinterp.runs.presets import CONNECT_FOUR_CONV

    return default_config("alphazero", "connect_four", preset="cpu", seed=seed,  # pinned on every backend
                          **{**CONNECT_FOUR_CONV, **C4_TIERS[tier], **changes})


def connect_four_agents(base: str | Path, n: int = 3, tier: str = "full", log: Callable[[str], None] = print,
                        **changes: Any) -> AgentSet:
    """``n`` seeded connect-four AlphaZero agents in ``<base>/seed{k}`` (trained or reused)."""
    return seeded_runs(connect_four_config(tier, **changes), base, n, log=log)


def play_positions(agents: AgentSet, games: int, key: Any, epsilon: float = 0.3, max_moves: int = 64) -> Any:
    """The distinct live positions of ``games`` games split evenly over the agents, each game
    played by one agent greedily (its raw network) with a uniformly random legal move with
    probability ``epsilon``: positions every agent of the set reaches, not only the first one's."""
    import jax

    from rljaxinterp.agents.common import epsilon_greedy
    from rljaxinterp.envs.sampling import random_play_states, unique_states

    parts = []
    for a, run in enumerate(agents):
        params = run.params()
        greedy = jax.jit(lambda s, agent=run.agent, params=params: agent.greedy_action(params, s))
        n = games // len(agents) + (a < games % len(agents))
        if n:
            parts.append(random_play_states(run.env, n, max_moves, jax.random.fold_in(key, a),
                                            epsilon_greedy(greedy, epsilon)))
    return unique_states(jax.tree.map(lambda *x: jax.numpy.concatenate(x), *parts))
