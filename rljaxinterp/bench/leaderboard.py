"""Score interpretability methods against known truth: the method registry, the tasks and
the leaderboard.

A method is one function with a declared signature, registered under a family:

* ``"circuit"``: ``fn(model, params, obs, metric, data, key) -> {site: (units,) scores}``,
  how much each unit of each hidden site matters for ``metric`` (higher = more);
* ``"attribution"``: ``fn(model, params, obs, metric, data, key) -> (states, 3, 3)`` maps,
  how much each square matters for each state's decision.

``metric(out, data)`` is the logit of the move the rules choose, per state. Every task
compares the method's answer with the compiled network's truth (``compiled_ttt``) and
repeats it on untrained networks of the same shape (the control: a method that "finds" the
circuit there is reading the architecture, not the mechanism). The ``random`` and
``oracle`` rows bound every column.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import interp
from rljaxinterp.bench import compiled_ttt, metrics
from rljaxinterp.envs.boards import tic_tac_toe_reachable

FAMILIES = ("circuit", "attribution")
TIERS = {"quick": {"seeds": 3, "positions": 128}, "default": {"seeds": 5, "positions": 1024}}
IG_STEPS = 32
TASK_RULE = "win"  # circuit task: the units that take an immediate win
# The units on the win path of the compiled graph: two of mine in a line -> a threat at s ->
# the win rule at s -> win is the best rule at s -> the logit of s.
WIN_PATH = ("two_own_", "nothreat_own_", "win_sq", "choice_win_sq")


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    family: str
    fn: Callable[..., Any]
    oracle: bool = False


METHODS: dict[str, Method] = {}


def register_method(name: str, family: str, fn: Callable[..., Any], *, overwrite: bool = False) -> Method:
    """Add a method to the leaderboard (see the module docstring for the signatures)."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not allowed; use one of {FAMILIES}")
    if name in METHODS and not overwrite:
        raise ValueError(f"method {name!r} is already registered; pass overwrite=True to replace it")
    METHODS[name] = Method(name, family, fn)
    return METHODS[name]


# -- the tasks' data ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Task:
    obs: jax.Array  # (states, 3, 3, 2)
    data: dict  # {"move": (states,)} the rule move, read by ``rule_logit``
    units: dict[str, np.ndarray]  # circuit truth: site -> (units,) bool
    squares: np.ndarray  # attribution truth: (states, 9) bool


def rule_logit(out, data) -> jax.Array:
    return jnp.take_along_axis(out.logits, data["move"][:, None], -1)[:, 0]


def hidden_sites() -> list[str]:
    return [f"{layer}.post" for layer in compiled_ttt.HIDDEN_SITES]


def win_units() -> dict[str, np.ndarray]:
    names = compiled_ttt.truth().unit_concepts
    return {s: np.array([n.startswith(WIN_PATH) for n in names[s]]) for s in hidden_sites()}


def make_tasks(positions: int, seed: int) -> dict[str, Task]:
    """``circuit``: positions where the rule played is an immediate win; ``attribution``:
    any live position, truth = the squares its decision reads. ``positions`` drawn per task."""
    states, boards = tic_tac_toe_reachable()
    boards = np.asarray(boards)
    live = np.flatnonzero(~np.asarray(states.terminated))
    truth = compiled_ttt.truth()
    rules = np.array(truth.rule_of(boards[live]))
    rng = np.random.default_rng(seed)
    tasks = {}
    for name, pool in (("circuit", live[rules == TASK_RULE]), ("attribution", live)):
        chosen = np.sort(rng.choice(pool, min(positions, len(pool)), replace=False))
        moves = np.array([compiled_ttt.rule_move(b) for b in boards[chosen]])
        tasks[name] = Task(jnp.asarray(compiled_ttt.observations(boards[chosen])), {"move": jnp.asarray(moves)},
                           win_units(), truth.decision_squares(boards[chosen]))
    return tasks


# -- built-in methods ---------------------------------------------------------------------------
def _per_unit(effects) -> dict[str, np.ndarray]:
    return {s: np.abs(np.asarray(e)) for s, e in effects.items()}


def _patching(model, params, obs, metric, data, key):
    corrupted = obs[jax.random.permutation(key, obs.shape[0])]
    return _per_unit(interp.patching_sweep(model, params, obs, corrupted, metric, sites=hidden_sites(),
                                           granularity="unit", metric_data=data))


def _ablation(kind):
    def run(model, params, obs, metric, data, key):
        values = interp.ablation.ablation_values(model, params, obs, kind, hidden_sites(), key)
        return _per_unit(interp.patching.sweep_sources(model, params, obs, values, metric, "unit",
                                                       metric_data=data))
    return run


def _attribution_patching(model, params, obs, metric, data, key):
    corrupted = obs[jax.random.permutation(key, obs.shape[0])]
    # the gradient estimate per state: the metric is averaged inside, so pass one state's data each
    est = interp.attribution_patching.attribution_patching(
        model, params, obs, corrupted, lambda out: rule_logit(out, data), sites=hidden_sites())
    return _per_unit(est)


def _random_units(model, params, obs, metric, data, key):
    shapes = interp.sites(model, obs[:1], params)
    keys = jax.random.split(key, len(hidden_sites()))
    return {s: np.asarray(jax.random.uniform(k, shapes[s])) for s, k in zip(hidden_sites(), keys)}


def _squares(attr) -> np.ndarray:
    return np.abs(np.asarray(attr)).reshape(attr.shape[0], 9, -1).sum(-1).reshape(-1, 3, 3)


def _gradient(model, params, obs, metric, data, key):
    return _squares(interp.attribution.gradients(model, params, obs, metric, metric_data=data))


def _grad_x_input(model, params, obs, metric, data, key):
    return _squares(interp.attribution.gradient_x_input(model, params, obs, metric, metric_data=data))


def _integrated_gradients(model, params, obs, metric, data, key):
    return _squares(interp.attribution.integrated_gradients(model, params, obs, metric, steps=IG_STEPS,
                                                            metric_data=data))


def _occlusion(model, params, obs, metric, data, key):
    return np.abs(np.asarray(interp.attribution.occlusion(model, params, obs, metric, metric_data=data)))


def _random_map(model, params, obs, metric, data, key):
    return np.asarray(jax.random.uniform(key, (obs.shape[0], 3, 3)))


def _register_builtin() -> None:
    for name, family, fn in (
        ("activation patching (resample)", "circuit", _patching),
        ("zero ablation", "circuit", _ablation("zero")),
        ("mean ablation", "circuit", _ablation("mean")),
        ("attribution patching", "circuit", _attribution_patching),
        ("random", "circuit", _random_units),
        ("gradient", "attribution", _gradient),
        ("gradient x input", "attribution", _grad_x_input),
        ("integrated gradients", "attribution", _integrated_gradients),
        ("occlusion", "attribution", _occlusion),
        ("random map", "attribution", _random_map),
    ):
        register_method(name, family, fn, overwrite=True)
    METHODS["oracle (circuit)"] = Method("oracle (circuit)", "circuit", None, oracle=True)
    METHODS["oracle (attribution)"] = Method("oracle (attribution)", "attribution", None, oracle=True)


_register_builtin()


# -- scoring ------------------------------------------------------------------------------------
def _check_units(method: Method, scores: Any, shapes: dict[str, tuple[int, ...]]) -> Mapping[str, np.ndarray]:
    if not isinstance(scores, Mapping) or set(scores) != set(hidden_sites()):
        raise ValueError(f"method {method.name!r} must return {{site: scores}} for sites {hidden_sites()}; "
                         f"got {type(scores).__name__} with keys {sorted(scores) if isinstance(scores, Mapping) else '-'}")
    for s in hidden_sites():
        if np.shape(scores[s]) != shapes[s]:
            raise ValueError(f"method {method.name!r} returned shape {np.shape(scores[s])} at site {s!r}; "
                             f"need {shapes[s]} (one score per unit)")
    return scores


def score_circuit(method: Method, model, params, task: Task, key) -> dict[str, float]:
    """Node AUROC and precision at the true circuit size, all hidden units pooled."""
    shapes = {s: v for s, v in interp.sites(model, task.obs[:1], params).items() if s in hidden_sites()}
    if method.oracle:
        scores = {s: task.units[s].astype(float) for s in hidden_sites()}
    else:
        scores = _check_units(method, method.fn(model, params, task.obs, rule_logit, task.data, key), shapes)
    flat = np.concatenate([np.ravel(scores[s]) for s in hidden_sites()])
    truth = np.concatenate([task.units[s] for s in hidden_sites()])
    return {"auroc": metrics.auroc(flat, truth), "precision": metrics.precision_at_k(flat, truth)}


def score_attribution(method: Method, model, params, task: Task, key) -> dict[str, float]:
    """Share of |attribution| on the squares the decision reads (a state with no attribution
    at all scores 0; their share is ``silent``), and square-level AUROC over the states whose
    map is not constant."""
    n = task.obs.shape[0]
    if method.oracle:
        maps = task.squares.reshape(n, 3, 3).astype(float)
    else:
        maps = np.asarray(method.fn(model, params, task.obs, rule_logit, task.data, key))
        if maps.shape != (n, 3, 3):
            raise ValueError(f"method {method.name!r} returned maps shaped {maps.shape}; need {(n, 3, 3)}")
    flat = maps.reshape(n, 9)
    usable = [i for i in range(n) if 0 < task.squares[i].sum() < 9 and np.ptp(flat[i]) > 0]
    auroc = float(np.mean([metrics.auroc(flat[i], task.squares[i]) for i in usable])) if usable else 0.5
    silent = np.abs(flat).sum(-1) == 0  # the method pointed nowhere (e.g. a saturated gradient)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # counted here instead, as "silent"
        mass = metrics.attribution_mass(flat, task.squares)
    return {"mass": mass, "auroc": auroc, "silent": float(silent.mean())}


def leaderboard(tier: str = "quick", methods: Sequence[str] | None = None, log=print) -> dict:
    """Every chosen method on the compiled network and on untrained controls, over seeds."""
    if tier not in TIERS:
        raise ValueError(f"tier {tier!r} is not allowed; use one of {tuple(TIERS)}")
    names = list(METHODS) if methods is None else list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; registered: {', '.join(METHODS)}")
    spec = TIERS[tier]
    model, params, _ = compiled_ttt.make_compiled()
    t_total = time.perf_counter()
    tasks = [make_tasks(spec["positions"], seed) for seed in range(spec["seeds"])]
    rows = {}
    for name in names:
        method = METHODS[name]
        score = score_circuit if method.family == "circuit" else score_attribution
        per = {"compiled": [], "untrained": []}
        t0 = time.perf_counter()
        for seed in range(spec["seeds"]):
            task = tasks[seed][method.family]
            key = jax.random.key(seed)
            per["compiled"].append(score(method, model, params, task, key))
            random_params = model.init(jax.random.key(1000 + seed), task.obs[:1])["params"]
            per["untrained"].append(score(method, model, random_params, task, key))
        wall = time.perf_counter() - t0
        rows[name] = {"family": method.family, "wall_s": wall, **{
            tier_name: {k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs])),
                            "per_seed": [r[k] for r in runs]} for k in runs[0]}
            for tier_name, runs in per.items()}}
        log(f"{name}: {json.dumps({t: {k: round(v['mean'], 3) for k, v in rows[name][t].items()} for t in per})} "
            f"({wall:.1f} s)")
    return {"tier": tier, "seeds": spec["seeds"], "positions": spec["positions"], "rows": rows,
            "wall_s": time.perf_counter() - t_total}


# -- output -----------------------------------------------------------------------------------------
COLUMNS = {"circuit": ("auroc", "precision"), "attribution": ("mass", "auroc", "silent")}
HEADERS = {("circuit", "auroc"): "node AUROC", ("circuit", "precision"): "precision at true size",
           ("attribution", "mass"): "mass on true squares", ("attribution", "auroc"): "square AUROC",
           ("attribution", "silent"): "states with no attribution"}


def _cell(stats: dict) -> str:
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def markdown(result: dict) -> str:
    intro = (f"{result['seeds']} seeds, {result['positions']} positions per task, {result['wall_s']:.0f} s in all. "
             "*compiled*: the hand-compiled tic-tac-toe rule network (`rljaxinterp/bench/compiled_ttt.py`, "
             "verified on every reachable position); *untrained*: the same architecture with random weights "
             "(a method that scores well there reads the architecture, not the mechanism). Cells: mean ± std "
             "over seeds. Metric definitions: `docs/BENCH_METRICS.md`.")
    lines = [f"# Interpretability methods against known truth ({result['tier']} tier)", "", intro, ""]
    for family, title in (("circuit", "Circuit discovery: which units take an immediate win"),
                          ("attribution", "Attribution: which squares each decision reads")):
        cols = COLUMNS[family]
        header = ["method", *(f"compiled: {HEADERS[family, c]}" for c in cols),
                  *(f"untrained: {HEADERS[family, c]}" for c in cols), "wall (s)"]
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, row in result["rows"].items():
            if row["family"] == family:
                cells = [_cell(row[t][c]) for t in ("compiled", "untrained") for c in cols]
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['wall_s']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path:
    from rljaxinterp.reporting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, family, key in ((axes[0], "circuit", "auroc"), (axes[1], "attribution", "mass")):
        rows = {n: r for n, r in result["rows"].items() if r["family"] == family}
        x = np.arange(len(rows))
        for offset, t in ((-0.2, "compiled"), (0.2, "untrained")):
            ax.bar(x + offset, [r[t][key]["mean"] for r in rows.values()], 0.4,
                   yerr=[r[t][key]["std"] for r in rows.values()], label=t)
        ax.set_xticks(x, list(rows), rotation=30, ha="right", fontsize=8)
        ax.set_title(HEADERS[family, key]), ax.set_ylim(0, 1.05), ax.legend(fontsize=8)
    return save_figure(fig, path)


def write(result: dict, out: str | Path) -> Path:
    """``leaderboard.md``, ``leaderboard.json`` and ``leaderboard.png`` in a fresh folder
    (``out``, or ``out-N`` when ``out`` already holds a leaderboard)."""
    from rljaxinterp.reporting import fresh_folder

    folder = fresh_folder(Path(out), "leaderboard.json")
    plot(result, folder / "leaderboard.png")
    (folder / "leaderboard.md").write_text(markdown(result) + "\n![AUROC and attribution mass](leaderboard.png)\n")
    (folder / "leaderboard.json").write_text(json.dumps(result, indent=1))
    return folder
