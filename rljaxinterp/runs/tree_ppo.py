"""The ``tree_ppo`` run kind: the trainer of :mod:`rljaxinterp.agents.tree_ppo`, its metric
rows (per update a value per seed, per world a value per seed and world; a chunk's last row
also holds the fresh-forest check), reading them back, and importing the npz progress files
``experiments/tree_gridworld.py`` wrote before the run layer."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.agents.tree_ppo import TreePPOConfig, make_agent, make_segment
from rljaxinterp.eval.tree_worlds import make_fresh_eval
from rljaxinterp.runs import folder as files
from rljaxinterp.runs.seeds import SeedsTrainer, first_seed, listed, per_seed

POPULATION = ("trees", "extinct", "reward_rate", "alive_chop_rate", "entropy", "value_mean")
WORLDS = ("world_trees", "world_chops", "world_extinct_steps")
FRESH = ("extinct", "trees", "reward_rate", "hazard", "alive_rate")
FRESH_KEY = 10_000  # fresh forests before training use this key, after chunk c key FRESH_KEY + 1 + c


def update_rows(metrics: dict[str, np.ndarray], first_update: int, steps_before: int, batch: int) -> list[dict]:
    """One metrics row per update from a segment's (seeds, updates, ...) records."""
    n = np.asarray(metrics["trees"]).shape[1]
    return [{"update": first_update + u + 1, "env_steps": steps_before + (u + 1) * batch,
             **{k: listed(np.asarray(metrics[k])[:, u]) for k in (*POPULATION, *WORLDS)}} for u in range(n)]


def records(rows: list[dict]) -> dict[str, Any]:
    """The run's rows as arrays: ``curves`` (seeds, updates), ``worlds`` (seeds, updates,
    worlds), ``fresh`` (seeds, evaluations) and ``fresh_steps`` (env steps per seed at each)."""
    updates = [r for r in rows if "trees" in r]
    evals = [r for r in rows if "fresh" in r]
    return dict(curves={k: per_seed(updates, k) for k in POPULATION},
                worlds={k: np.stack([np.asarray(r[k]) for r in updates], 1) for k in WORLDS},
                fresh={k: per_seed([r["fresh"] for r in evals], k) for k in FRESH},
                fresh_steps=[r["env_steps"] for r in evals])


def _seeds(v: Any, digits: int) -> str:
    return "[" + ", ".join("-" if x is None else f"{x:.{digits}f}" for x in v) + "]"


class TreePPOTrainer(SeedsTrainer):
    """All seeds' chunk of updates as one jitted vmapped scan, then the fresh-forest check."""

    def _build(self):
        config = self.config
        agent = make_agent(config)
        return (agent, jax.jit(agent.init), make_segment(agent.base, config.updates_per_chunk),
                make_fresh_eval(agent.base, config.eval_forests, config.eval_steps))

    def fresh(self, params, evaluation: int) -> dict:
        """The frozen policies on fresh forests: evaluation 0 before training, c + 1 after chunk c."""
        f = jax.device_get(self._evaluate(params, jax.random.PRNGKey(FRESH_KEY + evaluation)))
        return {k: listed(f[k]) for k in FRESH}

    def advance(self, state, n: int):
        self.check_chunk(n)
        done = self.step(state)
        rows = [{"update": 0, "env_steps": 0, "fresh": self.fresh(state.params, 0)}] if done == 0 else []
        steps_before = first_seed(state.env_steps)
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
        rate = per_seed(rows, "reward_rate").mean(1)
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
    """Turn an earlier progress file (:func:`read_progress`) into a new run folder that
    :func:`rljaxinterp.runs.train` resumes bit-identically; returns the updates done. The
    folder is written beside its place and renamed into it, so a crash leaves no half import."""
    path, folder = Path(path), Path(folder)
    if folder.exists():
        raise files.RunFolderError(f"{folder} exists; an import only creates a new run folder")
    state, metrics, fresh, fresh_steps, wall = read_progress(path, config)
    done = first_seed(state.update)
    if done > config.chunks * config.updates_per_chunk or done % config.updates_per_chunk:
        raise ValueError(f"{path} has {done} updates done; it needs chunks of {config.updates_per_chunk} updates "
                         f"and at least {-(-done // config.updates_per_chunk)} of them")
    rows = [{"update": 0, "env_steps": 0}, *(update_rows(metrics, 0, 0, config.batch_size) if metrics else [])]
    for i, steps in enumerate(fresh_steps):
        rows[steps // config.batch_size]["fresh"] = {k: listed(fresh[k][:, i]) for k in FRESH}
    for r in rows:
        r["wall_time"] = wall
    tmp = folder.with_name(folder.name + ".importing")
    shutil.rmtree(tmp, ignore_errors=True)  # what a crashed import left; never the run folder itself
    files.claim(tmp, "tree_ppo", config.to_dict(), None)
    files.rewrite_metrics(tmp, rows)
    manager = files.checkpoint_manager(tmp)
    files.save_checkpoint(manager, done, state, {"update": done, "env_steps": done * config.batch_size,
                                                 "metric_rows": len(rows), "wall_time": wall,
                                                 "metrics": {"imported_from": path.name}})
    manager.close()
    tmp.rename(folder)
    return done
