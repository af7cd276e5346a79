"""PPO living online in Tree Gridworld (Shah et al., 2022): several seeds under one ``vmap``,
each acting in ``num_envs`` worlds that never reset, a run kind of the one run layer.

One checkpoint per chunk of ``updates_per_chunk`` updates. Every update logs, per seed, the
population figures of its worlds and, per world, its trees standing, chops and steps with no
tree standing (from which :mod:`rljaxinterp.eval.tree_worlds` reads extinctions and
regrowths to the step); every chunk also judges the frozen policy on fresh forests. A run
may be lengthened or ended early by asking for another number of ``chunks``
(``RunKind.extendable``): with a constant learning rate nothing else depends on the length.
Progress files of the experiment's earlier, npz-based format are imported by
:func:`import_progress`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.agents.common import compiled
from rljaxinterp.agents.ppo import PPO, PPOConfig, make_ppo
from rljaxinterp.agents.seeds import SeedsAgent, listed
from rljaxinterp.eval.tree_worlds import NEVER, SPEC, make_fresh_eval, world_stats

POPULATION = ("trees", "extinct", "reward_rate", "alive_chop_rate", "entropy", "value_mean")
WORLDS = ("world_trees", "world_chops", "world_extinct_steps")
FRESH = ("extinct", "trees", "reward_rate", "hazard", "alive_rate")
FRESH_KEY = 10_000  # fresh forests before training use this key, after chunk c key FRESH_KEY + 1 + c


@dataclasses.dataclass(frozen=True)
class TreePPOConfig(PPOConfig):
    """A PPO config for ``seeds`` agents on a continuing TreeGrid, trained in ``chunks`` of
    ``updates_per_chunk`` updates; ``total_timesteps`` and ``checkpoint_every`` follow from
    them. Frozen policies are evaluated on ``eval_forests`` fresh forests for ``eval_steps``."""

    env: str = "TreeGrid"
    env_kwargs: dict = dataclasses.field(default_factory=lambda: {**SPEC, "max_steps": NEVER})
    model: str = "mlp"
    model_kwargs: dict = dataclasses.field(default_factory=lambda: {"hidden": [64, 64]})
    num_envs: int = 128
    lr: float = 1e-3
    anneal_lr: bool = False  # online: nothing anneals, so a run can be lengthened
    seeds: int = 2
    chunks: int = 12
    updates_per_chunk: int = 1
    eval_forests: int = 64
    eval_steps: int = 4000

    def __post_init__(self) -> None:
        for name in ("seeds", "chunks", "updates_per_chunk", "eval_forests", "eval_steps"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ValueError(f"TreePPOConfig.{name}={v!r} is not allowed; need an integer >= 1")
        object.__setattr__(self, "total_timesteps", self.chunks * self.updates_per_chunk * self.batch_size)
        object.__setattr__(self, "checkpoint_every", self.updates_per_chunk)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        self._need(self.env == "TreeGrid", "env", "this kind records TreeGrid worlds; use the ppo kind otherwise")
        self._need(self.anneal_lr is False, "anneal_lr", "must be False (online training; runs are lengthened)")


def make_agent(config: TreePPOConfig) -> SeedsAgent:
    return SeedsAgent(config, make_ppo(config))


def make_segment(agent: PPO, updates: int):
    """``updates`` PPO updates of every seed (vmapped), with world statistics after each."""
    steps = agent.config.num_steps

    def one(state, _):
        before = state.env_state.inner
        state, m = agent.update(state)
        inner = state.env_state.inner
        stats = world_stats(inner, before.chopped, steps)
        # Per world (num_envs,): trees standing at the end of the rollout, its chops and the
        # steps it spent with no tree standing during the rollout (for ``world_phases``).
        per_world = {"world_trees": jnp.sum(inner.trees, (-2, -1)).astype(jnp.int32),
                     "world_chops": inner.chopped - before.chopped,
                     "world_extinct_steps": inner.extinctions - before.extinctions}
        return state, {**stats, **per_world, "entropy": m["entropy"], "value_mean": m["value_mean"]}

    return jax.jit(jax.vmap(lambda s: jax.lax.scan(one, s, None, updates)))


def update_rows(metrics: dict[str, np.ndarray], first_update: int, steps_before: int, batch: int) -> list[dict]:
    """One metrics row per update from a segment's (seeds, updates, ...) records."""
    n = np.asarray(metrics["trees"]).shape[1]
    return [{"update": first_update + u + 1, "env_steps": steps_before + (u + 1) * batch,
             **{k: listed(np.asarray(metrics[k])[:, u]) for k in (*POPULATION, *WORLDS)}} for u in range(n)]


def records(rows: list[dict]) -> dict[str, Any]:
    """The run's rows as arrays: ``curves`` (seeds, updates), ``worlds`` (seeds, updates,
    worlds), ``fresh`` (seeds, evaluations) and ``fresh_steps`` (env steps per seed at each)."""
    updates = [r for r in rows if "trees" in r]
    nan = lambda v: np.nan if v is None else v
    curves = {k: np.array([[nan(v) for v in r[k]] for r in updates], np.float64).T for k in POPULATION}
    worlds = {k: np.stack([np.asarray(r[k]) for r in updates], 1) for k in WORLDS}
    evals = [r for r in rows if "fresh" in r]
    fresh = {k: np.array([[nan(v) for v in r["fresh"][k]] for r in evals], np.float64).T for k in FRESH}
    return dict(curves=curves, worlds=worlds, fresh=fresh, fresh_steps=[r["env_steps"] for r in evals])


def _seeds(v: Any, digits: int) -> str:
    return "[" + ", ".join("-" if x is None else f"{x:.{digits}f}" for x in v) + "]"


class TreePPOTrainer:
    """All seeds' chunk of updates as one jitted vmapped scan, then the fresh-forest check."""

    shardings = None

    def __init__(self, config: TreePPOConfig, devices=None):
        if devices is not None and len(devices) > 1:
            raise ValueError(f"tree_ppo runs on one device (its seeds are vmapped); got devices={list(devices)}")
        self.config = config
        self.total = config.chunks * config.updates_per_chunk
        self.every = self.chunk = config.updates_per_chunk

        def build():
            agent = make_agent(config)
            return (agent, jax.jit(agent.init), make_segment(agent.base, config.updates_per_chunk),
                    make_fresh_eval(agent.base, config.eval_forests, config.eval_steps))
        self.agent, self._init, self._segment, self._fresh = compiled("tree_ppo", config, build)

    def init(self):
        return self._init(jax.random.PRNGKey(self.config.seed))

    def step(self, state) -> int:
        return int(np.asarray(state.update).reshape(-1)[0])

    def fresh(self, params, evaluation: int) -> dict:
        """The frozen policies on fresh forests: evaluation 0 before training, c + 1 after chunk c."""
        f = jax.device_get(self._fresh(params, jax.random.PRNGKey(FRESH_KEY + evaluation)))
        return {k: listed(f[k]) for k in FRESH}

    def advance(self, state, n: int):
        if n != self.chunk:
            raise ValueError(f"tree_ppo advances in whole chunks of {self.chunk} updates; asked {n}")
        done = self.step(state)
        rows = [{"update": 0, "env_steps": 0, "fresh": self.fresh(state.params, 0)}] if done == 0 else []
        steps_before = int(np.asarray(state.env_steps).reshape(-1)[0])
        state, metrics = self._segment(state)
        rows += update_rows(jax.device_get(metrics), done, steps_before, self.config.batch_size)
        rows[-1]["fresh"] = self.fresh(state.params, (done + n) // self.chunk)
        return state, rows

    def summary(self, rows: list[dict]) -> dict:
        last = rows[-1]
        return {**{k: last[k] for k in ("trees", "extinct", "reward_rate")}, "fresh": last.get("fresh")}

    def describe(self, rows: list[dict]) -> str:
        last = rows[-1]
        fresh = last.get("fresh") or {}
        rate = np.nanmean(np.array([[np.nan if v is None else v for v in r["reward_rate"]] for r in rows
                                    if "reward_rate" in r], np.float64), 0)
        text = (f"worlds: trees={_seeds(last['trees'], 1)} extinct={_seeds(last['extinct'], 2)} "
                f"reward_rate={_seeds(rate.tolist(), 3)}")
        if fresh:
            text += f" | fresh: extinct={_seeds(fresh['extinct'], 2)} reward_rate={_seeds(fresh['reward_rate'], 3)}"
        return text


# -- progress files of the earlier experiment script ---------------------------------------------
def read_progress(path: str | Path, config: TreePPOConfig) -> tuple[Any, dict, dict, list[int], float]:
    """``(state, metrics, fresh, fresh_steps, wall)`` of a ``progress_gamma*.npz`` written by
    ``experiments/tree_gridworld.py`` before the run layer: the whole vmapped state and the
    records after its last finished chunk."""
    path = Path(path)
    template = jax.eval_shape(make_agent(config).init, jax.random.PRNGKey(config.seed))
    with np.load(path) as f:
        leaves, treedef = jax.tree.flatten(template)
        saved = [f[f"state_{i}"] for i in range(sum(k.startswith("state_") for k in f.files))]
        if [(x.shape, x.dtype) for x in saved] != [(x.shape, np.dtype(x.dtype)) for x in leaves]:
            raise ValueError(f"{path} holds a state of another shape than this config's (seeds={config.seeds}, "
                             f"num_envs={config.num_envs}); was the run started with other --seeds/--envs?")
        state = jax.tree.unflatten(treedef, [jnp.asarray(x) for x in saved])
        metrics = {k[len("metric_"):]: f[k] for k in f.files if k.startswith("metric_")}
        fresh = {k[len("fresh_"):]: f[k] for k in f.files if k.startswith("fresh_")}
        return state, metrics, fresh, f["steps_at_eval"].tolist(), float(f["wall"])


def import_progress(path: str | Path, config: TreePPOConfig, folder: str | Path) -> int:
    """Turn an earlier progress file (:func:`read_progress`) into a run folder that
    :func:`rljaxinterp.runs.train` resumes bit-identically. Returns the updates done."""
    from rljaxinterp.runs import folder as files

    path, folder = Path(path), Path(folder)
    state, metrics, fresh, fresh_steps, wall = read_progress(path, config)
    done = int(np.asarray(state.update).reshape(-1)[0])
    if done > config.chunks * config.updates_per_chunk:
        raise ValueError(f"{path} has {done} updates done; ask for at least {done // config.updates_per_chunk} chunks")
    rows = [{"update": 0, "env_steps": 0}, *(update_rows(metrics, 0, 0, config.batch_size) if metrics else [])]
    for i, steps in enumerate(fresh_steps):
        rows[steps // config.batch_size]["fresh"] = {k: listed(fresh[k][:, i]) for k in FRESH}
    files.claim(folder, "tree_ppo", config.to_dict(), None)
    files.rewrite_metrics(folder, rows)
    manager = files.checkpoint_manager(folder)
    files.save_checkpoint(manager, done, state, {"update": done, "env_steps": done * config.batch_size,
                                                 "wall_time": wall, "metrics": {"imported_from": path.name}})
    manager.close()
    return done
