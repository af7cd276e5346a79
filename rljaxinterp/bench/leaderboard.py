"""Score interpretability methods against known truth: the method registry, the tasks and
the leaderboard.

A method is one function with a declared signature, registered under a family:

* ``"circuit"``: ``fn(model, params, obs, metric, data, key) -> {site: (units,) scores}``,
  how much each unit of each hidden site matters for ``metric`` (higher = more);
* ``"attribution"``: ``fn(model, params, obs, metric, data, key) -> (states, rows, cols)``
  maps, how much each square (each cell of the observation's first two axes) matters for
  each state's decision;
* ``"probe"``: ``fn(x_train, y_train, key) -> (weights (concepts, width), biases (concepts,))``,
  a linear probe per concept (present where ``x @ w + b > 0``) learned from a site's
  activations on the training rows (``concepts``);
* ``"steering"``: ``fn(x_train, y_train, key) -> (concepts, width)`` one direction per
  concept, added to the site to make the network act on it (``concepts``); a method that
  needs to run the network (DAS) declares a fourth parameter ``counterfactuals``
  (``concepts.Counterfactuals``).

``metric(out, data)`` is the logit of the move the rules choose, per state. Every task
compares the method's answer with the compiled network's truth (``compiled_ttt``) and
repeats it on untrained networks of the same shape (the control: a method that "finds" the
circuit there is reading the architecture, not the mechanism). Circuit methods are also
scored on the tier's SIIT networks (``siit``: trained MLPs whose win-path units are known),
with two controls of the same width: an untrained MLP and a twin trained on shuffled targets
(``shuffled``); the networks are trained once per leaderboard, on first use, and that time
is reported apart from every method's. The ``random`` and ``oracle`` rows bound every column.

Circuit methods are also scored by their faithfulness curve on the compiled network and the
SIIT networks (keep the top-k units by |score|, mean-ablate the rest, for every k), and, when
any circuit method is scored, the edge-level table on the compiled MLP (``edges``: exact edge
patching, edge attribution patching and baselines against the win circuit's edges, with their
edge faithfulness curves and the same scores at random weights).
Attribution methods are also scored on the spurious-cue pairs (``spurious_cue``; tic-tac-toe,
and at the default tier also a maze gridworld): the share of the map on the cue's cell for
model A, which reads the cue, and for model B, which ignores it, and by the saliency sanity
checks (model randomisation and board symmetry on the compiled network, data randomisation
on the SIIT networks). Probe and steering methods are scored on the win/threat concepts of the
compiled network's rules layer, the SIIT MLPs' layer-1 nodes and AlphaZero agents whose units
are unknown (``concepts``, ``label_only``).
"""

from __future__ import annotations

import dataclasses
import functools
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
from rljaxinterp.agents.symmetry import dihedral
from rljaxinterp.bench import (
    compiled_conv,
    compiled_ttt,
    concepts,
    edges,
    init_params,
    label_only,
    metrics,
    shuffled,
    siit,
    spurious_cue,
)
from rljaxinterp.envs.boards import tic_tac_toe_reachable
from rljaxinterp.models.conv import ResTower

FAMILIES = ("circuit", "attribution", "probe", "steering")
# cue_worlds: the spurious-cue pairs whose column groups the tier fills (``CUE_GROUPS``)
TIERS = {"quick": {"seeds": 3, "positions": 128, "cue_worlds": ("tic_tac_toe",)},
         "default": {"seeds": 5, "positions": 1024, "cue_worlds": ("tic_tac_toe", "cheese_maze")}}
IG_STEPS = 32
TASK_RULE = "win"  # circuit task: the units that take an immediate win
# The units on the win path of the compiled graph: two of mine in a line -> a threat at s ->
# the win rule at s -> win is the best rule at s -> the logit of s.
WIN_PATH = ("two_own_", "nothreat_own_", "win_sq", "choice_win_sq")
CUE_MARGIN = 0.1  # a map separates the cue pair when its cue mass on A exceeds B's by more than this


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


def hidden_sites(model=None) -> list[str]:
    """The sites a circuit method scores: the compiled network's five hidden layers (also for
    ``model=None``; the same five for its conv variant), or every ``layer{i}.post`` of an MLP
    (the SIIT networks of tier 2)."""
    if model is None or isinstance(model, compiled_ttt.CompiledRules):
        return [f"{layer}.post" for layer in compiled_ttt.HIDDEN_SITES]
    if isinstance(model, compiled_conv.CompiledConv):
        return compiled_conv.hidden_sites()
    if isinstance(model, ResTower):  # a SIIT tower: the two residual-stream sites its graph is aligned to
        return list(siit.sites("restower"))
    if not isinstance(getattr(model, "hidden", None), (tuple, list)):
        raise TypeError(f"no hidden sites known for a {type(model).__name__}; allowed: CompiledRules, CompiledConv, "
                        "an MLP or a SIIT ResTower")
    return [f"layer{i}.post" for i in range(len(model.hidden))]


def win_units() -> dict[str, np.ndarray]:
    names = compiled_ttt.truth().unit_concepts
    return {s: np.array([n.startswith(WIN_PATH) for n in names[s]]) for s in hidden_sites()}


def untrained_params(model, seed: int, obs: jax.Array):
    """The control network of ``seed``: ``model`` at random weights, ``key(1000 + seed)``."""
    return init_params(model, jax.random.key(1000 + seed), obs[:1])


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
    return _per_unit(interp.patching_sweep(model, params, obs, corrupted, metric, sites=hidden_sites(model),
                                           granularity="element", metric_data=data))


def _ablation(kind):
    def run(model, params, obs, metric, data, key):
        values = interp.ablation.ablation_values(model, params, obs, kind, hidden_sites(model), key)
        return _per_unit(interp.patching.sweep_sources(model, params, obs, values, metric, "element",
                                                       metric_data=data))
    return run


def _attribution_patching(steps: int):
    def run(model, params, obs, metric, data, key):
        corrupted = obs[jax.random.permutation(key, obs.shape[0])]
        est = interp.attribution_patching.attribution_patching(
            model, params, obs, corrupted, rule_logit, sites=hidden_sites(model), steps=steps, metric_data=data)
        return _per_unit(est)
    return run


def _random_units(model, params, obs, metric, data, key):
    shapes = interp.sites(model, obs[:1], params)
    keys = jax.random.split(key, len(hidden_sites(model)))
    return {s: np.asarray(jax.random.uniform(k, shapes[s])) for s, k in zip(hidden_sites(model), keys)}


def _squares(attr) -> np.ndarray:
    """|attribution| summed over each square's planes: (states, rows, cols)."""
    return np.abs(np.asarray(attr)).sum(-1)


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
    return np.asarray(jax.random.uniform(key, obs.shape[:3]))


def _register_builtin() -> None:
    for name, family, fn in (
        ("activation patching (resample)", "circuit", _patching),
        ("zero ablation", "circuit", _ablation("zero")),
        ("mean ablation", "circuit", _ablation("mean")),
        ("attribution patching", "circuit", _attribution_patching(1)),
        ("attribution patching (IG)", "circuit", _attribution_patching(IG_STEPS)),
        ("random", "circuit", _random_units),
        ("gradient", "attribution", _gradient),
        ("gradient x input", "attribution", _grad_x_input),
        ("integrated gradients", "attribution", _integrated_gradients),
        ("occlusion", "attribution", _occlusion),
        ("random map", "attribution", _random_map),
    ):
        register_method(name, family, fn, overwrite=True)
    for name, fn in concepts.PROBES.items():
        register_method(name, "probe", fn, overwrite=True)
    for name, fn in concepts.DIRECTIONS.items():
        register_method(name, "steering", fn, overwrite=True)
    for family in FAMILIES:
        METHODS[f"oracle ({family})"] = Method(f"oracle ({family})", family, None, oracle=True)


_register_builtin()


# -- scoring ------------------------------------------------------------------------------------
def _check_units(method: Method, scores: Any, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The method's scores per site, flattened: a unit is every scalar of a site's activation
    (a conv site's (row, col, channel) elements), so the scores are shaped like the site or
    already flat."""
    if not isinstance(scores, Mapping) or set(scores) != set(shapes):
        raise ValueError(f"method {method.name!r} must return {{site: scores}} for sites {list(shapes)}; "
                         f"got {type(scores).__name__} with keys {sorted(scores) if isinstance(scores, Mapping) else '-'}")
    for s, shape in shapes.items():
        if np.shape(scores[s]) not in (shape, (int(np.prod(shape)),)):
            raise ValueError(f"method {method.name!r} returned shape {np.shape(scores[s])} at site {s!r}; "
                             f"need {shape} (one score per unit)")
    return {s: np.ravel(scores[s]) for s in shapes}


@functools.partial(jax.jit, static_argnums=0)
def _kept_metric(model, params, obs, data, values, keep) -> jax.Array:
    """Mean rule-move logit with the units ``keep[site] == 1`` kept and the rest of every
    hidden site replaced by ``values``; ``keep`` has a leading axis of circuits."""
    def one(mask):
        edits = [interp.patch(s, values[s], 1.0 - mask[s]) for s in hidden_sites(model)]
        return rule_logit(interp.run_with_interventions(model, params, obs, edits), data).mean()
    return jax.vmap(one)(keep)


def faithfulness_curve(model, params, task: Task, scores: Mapping[str, np.ndarray]) -> dict:
    """f(C_k) for the top-k units by |score| (all hidden sites pooled), every k from 0 to all
    units, the rest mean-ablated over the task's positions; CPR and CMD over that curve.

    Every k is evaluated, so the areas are exact for the curve and need no grid choice.
    m(empty) is the logit with every hidden unit at its mean, m(full) the unedited logit.
    """
    sites = hidden_sites(model)
    shapes = interp.sites(model, task.obs[:1], params)
    sizes = [len(task.units[s]) for s in sites]
    n = sum(sizes)
    fractions = np.arange(n + 1) / n
    flat = np.concatenate([np.ravel(scores[s]) for s in sites])
    masks = metrics.ranked_circuits(flat, fractions, absolute=True).astype(np.float32)
    bounds = np.cumsum([0, *sizes])
    keep = {s: jnp.asarray(masks[:, bounds[i]:bounds[i + 1]].reshape(-1, *shapes[s])) for i, s in enumerate(sites)}
    values = interp.ablation.ablation_values(model, params, task.obs, "mean", sites)
    m = np.asarray(_kept_metric(model, params, task.obs, task.data, values, keep), np.float64)
    f = metrics.faithfulness(m, m[0], m[-1])
    return {**metrics.faithfulness_curve_areas(fractions, f), "curve": f.tolist()}


def score_circuit(method: Method, model, params, task: Task, key, curve: bool = False) -> dict[str, float]:
    """Node AUROC and precision at the true circuit size, all hidden units pooled; with
    ``curve``, also CPR, CMD and the faithfulness curve (``faithfulness_curve``)."""
    sites = hidden_sites(model)
    shapes = {s: v for s, v in interp.sites(model, task.obs[:1], params).items() if s in sites}
    if method.oracle:
        scores = {s: task.units[s].astype(float) for s in sites}
    else:
        scores = _check_units(method, method.fn(model, params, task.obs, rule_logit, task.data, key), shapes)
    flat = np.concatenate([np.ravel(scores[s]) for s in sites])
    truth = np.concatenate([task.units[s] for s in sites])
    out = {"auroc": metrics.auroc(flat, truth), "precision": metrics.precision_at_k(flat, truth)}
    return {**out, **faithfulness_curve(model, params, task, scores)} if curve else out


def _maps(method: Method, model, params, obs, data, key) -> np.ndarray:
    n = obs.shape[0]
    maps = np.asarray(method.fn(model, params, obs, rule_logit, data, key))
    if maps.shape != (n, *obs.shape[1:3]):
        raise ValueError(f"method {method.name!r} returned maps shaped {maps.shape}; need {(n, *obs.shape[1:3])}")
    return maps


@dataclasses.dataclass(frozen=True)
class CueTask:
    obs: jax.Array  # (states, rows, cols, planes + 1): the world's planes and the cue where the right action goes
    data: dict  # {"move": (states,)}
    cue: np.ndarray  # (states, cells) bool: the cue's cell
    depends: dict[str, np.ndarray]  # kind -> (states,) bool: moving the cue changes the model's action


def make_cue_task(pair: spurious_cue.Pair, positions: int, seed: int) -> CueTask:
    """``positions`` of the pair's evaluation positions with the cue on its target (where the
    right action goes): model A's training distribution, and a part of model B's, so both
    maps are taken on identical inputs and only the model differs."""
    pos = spurious_cue.WORLDS[pair.world].eval_positions()
    chosen = np.sort(np.random.default_rng(seed).choice(len(pos.moves), min(positions, len(pos.moves)), replace=False))
    target = pos.target[chosen]
    return CueTask(spurious_cue.with_cue(pos.obs[chosen], target), {"move": jnp.asarray(pos.moves[chosen])},
                   np.eye(pos.candidates.shape[1], dtype=bool)[target],
                   {k: d["depends"][chosen] for k, d in pair.dependence.items()})


def score_cue(method: Method, pair: spurious_cue.Pair, task: CueTask, key) -> dict[str, float]:
    """Share of |attribution| on the cue's cell for model A and for model B, their gap, and
    whether the gap exceeds ``CUE_MARGIN`` (1.0 or 0.0). The oracle puts its whole map on the
    cue's cell where moving the cue changes that model's action, and off it elsewhere, so its
    cue mass is the measured dependence share."""
    out = {}
    for label, kind in zip(("A", "B"), spurious_cue.KINDS, strict=True):
        if method.oracle:
            dep = task.depends[kind][:, None]
            maps = np.where(dep, task.cue, ~task.cue).astype(float)
        else:
            maps = _maps(method, pair.model, pair.params[kind], task.obs, task.data, key).reshape(task.cue.shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a silent state counts as 0 mass on the cue
            out[f"mass_{label}"] = metrics.attribution_mass(maps, task.cue)
    out["gap"] = out["mass_A"] - out["mass_B"]
    out["separates"] = float(out["gap"] > CUE_MARGIN)
    return out


def score_attribution(method: Method, model, params, task: Task, key, maps: np.ndarray | None = None) -> dict[str, float]:
    """Share of |attribution| on the squares the decision reads (a state with no attribution
    at all scores 0; their share is ``silent``), and square-level AUROC over the states whose
    map is not constant. ``maps``: the method's maps on ``task``, when already computed."""
    n = task.obs.shape[0]
    if method.oracle:
        maps = task.squares.reshape(n, 3, 3).astype(float)
    elif maps is None:
        maps = _maps(method, model, params, task.obs, task.data, key)
    flat = maps.reshape(n, 9)
    usable = [i for i in range(n) if 0 < task.squares[i].sum() < 9 and np.ptp(flat[i]) > 0]
    auroc = float(np.mean([metrics.auroc(flat[i], task.squares[i]) for i in usable])) if usable else 0.5
    silent = np.abs(flat).sum(-1) == 0  # the method pointed nowhere (e.g. a saturated gradient)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # counted here instead, as "silent"
        mass = metrics.attribution_mass(flat, task.squares)
    return {"mass": mass, "auroc": auroc, "silent": float(silent.mean())}


def _board_symmetries() -> tuple[np.ndarray, np.ndarray]:
    """(7, 9) each: the non-identity board symmetries as square permutations (image ``g`` holds
    original square ``perm[g, t]`` at square ``t``) and their inverses (square ``s`` goes to
    ``inverse[g, s]``)."""
    perm = np.asarray(dihedral(jnp.arange(9).reshape(1, 3, 3))).reshape(8, 9)[1:]
    return perm, np.argsort(perm, axis=1)


def score_attribution_checks(method: Method, model, params, random_params, task: Task, key,
                             maps: np.ndarray | None = None) -> dict[str, float]:
    """The sanity checks of a saliency map (Adebayo et al. 2018) on the compiled network.

    ``randomisation``: mean over states of the Spearman correlation between the map of the
    network and the map of the same architecture at random weights (states where either map
    is constant left out); a map that explains the network must change with its weights, so
    lower is better and a map blind to the model scores 1. ``symmetry``: the network's
    rule-move logit is exactly equivariant under the 8 board symmetries (its only asymmetry,
    the tie-break, is a per-square bias), so a faithful map must rotate with the board:
    ``metrics.symmetry_error`` between the map of every rotated or reflected position and the
    rotated map, pooled over the 7 non-identity symmetries. The oracle's map is the truth by
    construction, so it has neither number. ``maps``: the method's maps on ``task``, when
    already computed."""
    if method.oracle:
        return {}
    n = task.obs.shape[0]
    maps = _maps(method, model, params, task.obs, task.data, key) if maps is None else maps
    randomised = _maps(method, model, random_params, task.obs, task.data, key)
    perm, inverse = _board_symmetries()
    cells = task.obs.reshape(n, 9, -1)
    obs = jnp.concatenate([cells[:, p].reshape(task.obs.shape) for p in perm])
    moves = jnp.asarray(np.concatenate([inv[np.asarray(task.data["move"])] for inv in inverse]))
    turned = _maps(method, model, params, obs, {"move": moves}, key).reshape(-1, 9)
    expected = np.concatenate([maps.reshape(n, 9)[:, p] for p in perm])
    symmetric = metrics.symmetry_error(turned, expected) if np.abs(expected).sum() > 0 else float("nan")
    return {"randomisation": map_rank_correlation(maps, randomised), "symmetry": symmetric}


def map_rank_correlation(maps: np.ndarray, other: np.ndarray) -> float:
    """Mean over states of the Spearman correlation of two networks' maps of the same state,
    leaving out states where either map is constant (NaN when every state is)."""
    a, b = maps.reshape(len(maps), -1), other.reshape(len(other), -1)
    usable = (np.ptp(a, 1) > 0) & (np.ptp(b, 1) > 0)
    rho = [metrics.spearman(a[i], b[i]) for i in np.flatnonzero(usable)]
    return float(np.mean(rho)) if rho else float("nan")


def score_data_randomisation(method: Method, net: SiitNetwork, key) -> dict[str, float]:
    """Adebayo et al.'s data randomisation test on a SIIT network: the rank correlation of the
    method's maps with its maps on the shuffled-target twin (tier 4), on the SIIT win task.
    A map that explains what the network learned must differ from the map of a network that
    learned nothing about the game, so lower is better."""
    if method.oracle:
        return {}
    t, task = net.trained, net.task
    maps = _maps(method, t.model, t.params, task.obs, task.data, key)
    return {"data_randomisation": map_rank_correlation(
        maps, _maps(method, t.model, net.twin.trained.params, task.obs, task.data, key))}


@dataclasses.dataclass(frozen=True)
class SiitNetwork:
    trained: siit.Trained
    checked: dict  # siit.verify's numbers
    task: Task  # positions whose output is a win; truth: the units aligned to the win path
    untrained: dict  # params of the same MLP at random weights (the control)
    twin: shuffled.Twin  # the same MLP trained on shuffled targets (the tier-4 control)


def make_siit_network(width: int, seed: int, positions: int) -> SiitNetwork:
    """Train and verify one SIIT network (``siit.make_trained``: raises if it misses the bars,
    since a network that does not implement its graph has no known circuit), its task and its
    shuffled-target twin."""
    trained, checked = siit.make_trained(width, seed)
    task = siit.win_task(width, positions, seed)
    untrained = untrained_params(trained.model, seed, task.obs)
    return SiitNetwork(trained, checked, task, untrained, shuffled.train(width, seed))


def leaderboard(tier: str = "quick", methods: Sequence[str] | None = None, log=print) -> dict:
    """Every chosen method on the compiled network and on untrained controls, over seeds;
    circuit methods also on the tier's SIIT networks (``siit.TIERS[tier]``)."""
    if tier not in TIERS:
        raise ValueError(f"tier {tier!r} is not allowed; use one of {tuple(TIERS)}")
    names = list(METHODS) if methods is None else list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; registered: {', '.join(METHODS)}")
    spec = TIERS[tier]
    t_total = time.perf_counter()
    model, params, _ = compiled_ttt.make_compiled()
    conv_model, conv_params, _ = compiled_conv.make_compiled_conv()
    conv_units = compiled_conv.win_units("element")
    seeds = range(spec["seeds"])
    tasks = [make_tasks(spec["positions"], seed) for seed in seeds]
    # (world, seed) -> pair and task, trained on first use (after the cheaper checks)
    cue: dict[tuple[str, int], tuple[spurious_cue.Pair, CueTask]] = {}
    cue_walls: dict[str, float] = {}  # world -> seconds training its pairs

    def cue_pair(world: str, seed: int) -> tuple[spurious_cue.Pair, CueTask]:
        if (world, seed) not in cue:
            t0 = time.perf_counter()
            pair = spurious_cue.make_pair(seed, world)
            cue[world, seed] = pair, make_cue_task(pair, spec["positions"], seed)
            cue_walls[world] = cue_walls.get(world, 0.0) + time.perf_counter() - t0
            log(f"spurious-cue pair {world} {seed}: moving the cue changes the action in "
                f"{pair.dependence['predictive']['moved']:.3f} of positions for A, "
                f"{pair.dependence['noise']['moved']:.3f} for B ({time.perf_counter() - t0:.1f} s)")
        return cue[world, seed]

    nets: list[SiitNetwork] = []  # trained on first use, like the cue pairs
    siit_wall = 0.0

    def siit_networks() -> list[SiitNetwork]:
        nonlocal siit_wall
        if not nets:
            for width in siit.TIERS[tier]["widths"]:
                for seed in siit.TIERS[tier]["seeds"]:
                    t0 = time.perf_counter()
                    nets.append(make_siit_network(width, seed, spec["positions"]))
                    siit_wall += time.perf_counter() - t0
                    c = nets[-1].checked
                    twin = nets[-1].twin
                    read = " (read from its run folder)" if nets[-1].trained.cached else ""
                    log(f"SIIT network width {width} seed {seed}{read}: IIA {c['iia']:.4f}, strict ablation changes "
                        f"the argmax on {c['argmax_changed']:.4f} of live positions; its shuffled-target twin "
                        f"memorised {twin.memorised:.3f}, follows the rules on {twin.rule_accuracy:.3f} "
                        f"({time.perf_counter() - t0:.1f} s)")
        return nets

    agents: list[tuple[concepts.Network, dict]] = []  # tier 5, trained (or read from the cache) on first use
    agents_wall = 0.0

    def label_only_agents() -> list[tuple[concepts.Network, dict]]:
        nonlocal agents_wall
        if not agents:
            for game, spec5 in label_only.TIERS[tier].items():
                for seed in spec5["seeds"]:
                    t0 = time.perf_counter()
                    agents.append(label_only.agent(game, seed, spec5["iterations"]))
                    agents_wall += time.perf_counter() - t0
                    info = agents[-1][1]
                    log(f"AlphaZero {game} agent seed {seed} ({spec5['iterations']} iterations): "
                        f"{'read from' if info['cached'] else 'trained into'} {info['folder']} "
                        f"({time.perf_counter() - t0:.1f} s)")
        return agents

    concept_tasks: dict[tuple[int, str], concepts.ConceptTask] = {}

    def concept_task(seed: int, game: str = "tic_tac_toe") -> concepts.ConceptTask:
        if (seed, game) not in concept_tasks:
            concept_tasks[seed, game] = concepts.make_task(seed, game)
        return concept_tasks[seed, game]

    rows = {}
    for name in names:
        method = METHODS[name]
        per = {"compiled": [], **EXTRA_GROUPS[method.family]()}
        if method.family == "attribution":
            per.update({CUE_GROUPS[world]: [] for world in spec["cue_worlds"]})
        t0, cue_before, siit_before, agents_before = time.perf_counter(), sum(cue_walls.values()), siit_wall, agents_wall
        for seed in seeds:
            key = jax.random.key(seed)
            random_params = untrained_params(model, seed, tasks[seed]["circuit"].obs)
            if method.family in CONCEPT_FAMILIES:
                net = concepts.compiled_network(model, params, random_params)
                per["compiled"].append(_score_concepts(method, net, concept_task(seed), key))
                continue
            task = tasks[seed][method.family]
            if method.family == "circuit":
                per["compiled"].append(score_circuit(method, model, params, task, key, curve=True))
                per["untrained"].append(score_circuit(method, model, random_params, task, key))
                conv = score_circuit(method, conv_model, conv_params, dataclasses.replace(task, units=conv_units), key,
                                     curve=True)
                conv.pop("curve")  # the areas are kept; the curves plotted are the MLP's
                per["compiled_conv"].append(conv)
            else:
                conv_random = untrained_params(conv_model, seed, task.obs)
                networks = {"compiled": (model, params, random_params),
                            "compiled_conv": (conv_model, conv_params, conv_random)}
                for group, (m, p, p_random) in networks.items():
                    maps = None if method.oracle else _maps(method, m, p, task.obs, task.data, key)
                    per[group].append({**score_attribution(method, m, p, task, key, maps),
                                       **score_attribution_checks(method, m, p, p_random, task, key, maps)})
                per["untrained"].append(score_attribution(method, model, random_params, task, key))
                for world in spec["cue_worlds"]:
                    per[CUE_GROUPS[world]].append(score_cue(method, *cue_pair(world, seed), key))
        if method.family == "circuit":  # after the compiled network, so a bad method fails before any training
            for net in siit_networks():
                key = jax.random.key(net.trained.seed)
                scores = score_circuit(method, net.trained.model, net.trained.params, net.task, key, curve=True)
                scores.pop("curve")  # one length per width: the areas are kept, the curves are not averaged
                per["siit"].append(scores)
                per["siit_untrained"].append(score_circuit(method, net.trained.model, net.untrained, net.task, key))
                per["siit_shuffled"].append(score_circuit(method, net.trained.model, net.twin.trained.params,
                                                          net.task, key))
        if method.family == "attribution":
            for net in siit_networks():
                scores = score_data_randomisation(method, net, jax.random.key(net.trained.seed))
                if scores:
                    per["siit"].append(scores)
        if method.family in CONCEPT_FAMILIES:
            for net in siit_networks():
                t = net.trained
                scores = _score_concepts(method, concepts.siit_network(t.model, t.params, net.untrained, t.width,
                                                                       shuffled=net.twin.trained.params),
                                         concept_task(t.seed), jax.random.key(t.seed))
                if scores:  # the probe oracle is undefined where a concept spans several units
                    per["siit"].append(scores)
            for net, info in label_only_agents():
                scores = _score_concepts(method, net, concept_task(info["seed"], info["game"]),
                                         jax.random.key(info["seed"]))
                if scores:  # no oracle where the units are unknown
                    per[LABEL_ONLY_GROUPS[info["game"]]].append(scores)
        # training the cue pairs and the SIIT networks is not the method's
        wall = (time.perf_counter() - t0 - (sum(cue_walls.values()) - cue_before) - (siit_wall - siit_before)
                - (agents_wall - agents_before))
        rows[name] = {"family": method.family, "wall_s": wall, **{t: _aggregate(runs) for t, runs in per.items()}}
        summary = {t: {k: round(v["mean"], 3) for k, v in rows[name][t].items() if k != "curve"} for t in per}
        log(f"{name}: {json.dumps(summary)} ({wall:.1f} s)")
    edge_result = (score_edge_section([tasks[seed]["circuit"] for seed in seeds], spec["positions"], nets)
                   if any(METHODS[n].family == "circuit" for n in names) else None)
    result = {"tier": tier, "seeds": spec["seeds"], "positions": spec["positions"], "rows": rows,
              "wall_s": time.perf_counter() - t_total}
    if edge_result is not None:
        result["edges"] = edge_result
    for world, wall in cue_walls.items():
        result[CUE_GROUPS[world]] = {
            "world": world, "margin": CUE_MARGIN, "wall_s": wall,
            "truth": {label: [cue[world, seed][0].dependence[kind]["moved"] for seed in seeds]
                      for label, kind in zip(("A", "B"), spurious_cue.KINDS, strict=True)}}
    if agents:
        result["label_only"] = {"agents": [info for _, info in agents], "wall_s": agents_wall}
    if nets:
        result["siit"] = {"networks": [{"width": n.trained.width, "seed": n.trained.seed, "train_s": n.trained.train_s,
                                        "cached": n.trained.cached, **n.checked, "twin": {"memorised": n.twin.memorised,
                                                              "rule_accuracy": n.twin.rule_accuracy,
                                                              "chance": shuffled.chance_accuracy(n.trained.seed),
                                                              "train_s": n.twin.trained.train_s}} for n in nets],
                          "positions": [int(n.task.obs.shape[0]) for n in nets], "wall_s": siit_wall}
    return result


def score_edge_section(tasks: Sequence[Task], positions: int, nets: Sequence[SiitNetwork] = ()) -> dict:
    """The edge-level circuit tables (``edges``): every edge method on each seed's circuit
    task of the compiled MLP, mean ± std over seeds (the curve elementwise, at ``fractions``),
    and under ``"siit"`` on each SIIT network's win task (``edges.score_siit_edges``), mean ±
    std over the networks; a method's wall is summed over seeds (networks)."""
    t0 = time.perf_counter()
    runs = [edges.score_edges(seed, positions, task=task) for seed, task in enumerate(tasks)]
    truth = edges.flat(edges.edge_truth(compiled_ttt.compiled_params()))
    out = {"rows": {m: _aggregate([r[m] for r in runs]) for m in runs[0]},
           "truth_edges": int(truth.sum()), "candidates": int(truth.size),
           "fractions": edges.curve_fractions(truth.size, int(truth.sum())).tolist(), "wall_s": time.perf_counter() - t0}
    if nets:
        t0 = time.perf_counter()
        runs = [edges.score_siit_edges(n.trained, n.task, n.untrained) for n in nets]
        for run in runs:
            for row in run.values():
                row.pop("curve")  # its circuit sizes differ between widths
                row.pop("auroc_wired")  # a trained MLP has no zero weights: equals the AUROC
        sizes = {}
        for n in nets:
            t = edges.flat(siit.edge_truth(n.trained.width), siit.DENSES)
            sizes[n.trained.width] = {"truth_edges": int(t.sum()), "candidates": int(t.size)}
        out["siit"] = {"rows": {m: _aggregate([r[m] for r in runs]) for m in runs[0]}, "widths": sizes,
                       "networks": [[n.trained.width, n.trained.seed] for n in nets],
                       "wall_s": time.perf_counter() - t0}
    return out


CONCEPT_FAMILIES = ("probe", "steering")
# the groups of columns each family fills besides "compiled"
EXTRA_GROUPS: dict[str, Callable[[], dict[str, list]]] = {
    "circuit": lambda: {"compiled_conv": [], "untrained": [], "siit": [], "siit_untrained": [], "siit_shuffled": []},
    "attribution": lambda: {"compiled_conv": [], "untrained": [], "siit": []},  # and the tier's cue groups
    "probe": lambda: {"siit": [], "label_only": [], "label_only_c4": []},
    "steering": lambda: {"siit": [], "label_only": [], "label_only_c4": []},
}
LABEL_ONLY_GROUPS = {"tic_tac_toe": "label_only", "connect_four": "label_only_c4"}
CUE_GROUPS = {"tic_tac_toe": "cue", "cheese_maze": "cue_maze"}  # the spurious-cue pairs' column groups


def _score_concepts(method: Method, net: concepts.Network, task: concepts.ConceptTask, key) -> dict:
    fn = None if method.oracle else method.fn
    if method.family == "probe":
        return concepts.score_probe(method.name, fn, net, task, key, board=net.site == concepts.SITE)
    return concepts.score_steering(method.name, fn, net, task, key)


_aggregate = metrics.over_seeds  # shared with bench/feature_recovery.py


# -- output -----------------------------------------------------------------------------------------
COLUMNS = {"circuit": ("auroc", "precision", "cpr", "cmd"),
           "attribution": ("mass", "auroc", "silent", "randomisation", "symmetry"),
           "probe": ("f1", "selectivity", "gap", "gap_shuffled_net", "f1_board", "weight_on_units"),
           "steering": ("target_x0.5", "off_target_x0.5", "collateral_x0.5", "target_x1", "off_target_x1",
                        "collateral_x1")}
HEADERS = {("circuit", "auroc"): "node AUROC", ("circuit", "precision"): "precision at true size",
           ("circuit", "cpr"): "CPR", ("circuit", "cmd"): "CMD",
           ("attribution", "mass"): "mass on true squares", ("attribution", "auroc"): "square AUROC",
           ("attribution", "silent"): "states with no attribution",
           ("attribution", "randomisation"): "rank correlation with a randomised network (lower is better)",
           ("attribution", "symmetry"): "symmetry error (0: the map rotates with the board)",
           ("attribution", "data_randomisation"): "rank correlation with the shuffled-target twin (lower is better)",
           ("probe", "f1"): "F1", ("probe", "f1_shuffled"): "F1 on shuffled labels",
           ("probe", "selectivity"): "selectivity", ("probe", "f1_untrained"): "F1 on an untrained network",
           ("probe", "gap"): "random-network gap", ("probe", "f1_board"): "F1 on the board",
           ("probe", "f1_shuffled_net"): "F1 on the shuffled-target twin",
           ("probe", "gap_shuffled_net"): "gap to the shuffled-target twin",
           ("probe", "weight_on_units"): "weight on the concept's units",
           **{("steering", f"{kind}_x{c:g}"): f"{kind.replace('_', '-')} rate at {c:g}x" for c in concepts.STEER_SCALES
              for kind in ("target", "off_target", "collateral")}}
TITLES = {"circuit": "Circuit discovery: which units take an immediate win",
          "attribution": "Attribution: which squares each decision reads",
          "probe": "Probes: is the concept read from the site where it is computed",
          "steering": "Steering: does adding the concept make the network act on it"}
INTROS = {
    "attribution": ("The two compiled networks compute the same function, so a map that reads only inputs and "
                    "outputs (occlusion) is identical on both. "
                    "Rank correlation: Spearman correlation, per position, of the map with the map of the same "
                    "architecture at random weights (Adebayo et al. 2018's model-randomisation test; a map that "
                    "explains the network changes with its weights). Symmetry error: the compiled network is "
                    "exactly equivariant under the 8 board symmetries, so the map of a rotated or reflected "
                    "position must be the rotated map (0 when it is). *SIIT*: Adebayo et al.'s data "
                    "randomisation test, the same rank correlation between the map of each SIIT network and the map "
                    "of its shuffled-target twin (tier 4), on the SIIT win positions."),
    "probe": (f"The 18 concepts of the compiled network's `{concepts.SITE}` site (`win_sq{{s}}`: a win is "
              "available at s; `block_sq{s}`: the opponent threatens one), probed on every live position (75% to "
              "train, 25% held out, split per seed; l2 by cross-validation on the training rows). F1: mean over "
              "concepts on the held-out rows. Selectivity: F1 minus F1 of the same probe on shuffled labels (the "
              "control task); random-network gap: F1 minus F1 at the same site of an untrained network; F1 on the "
              "board: the same probe on the raw input (a concept read there needs no network). The oracle reads "
              "the concept's own unit. *SIIT*: the same concepts are the layer-1 nodes of the SIIT MLPs (tier 2), "
              "each owning a block of `layer1.post` units; there the random-network gap is against the untrained "
              "MLP, the gap to the shuffled-target twin is F1 minus F1 at the same site of the same MLP trained "
              "on shuffled targets (tier 4), and the oracle is undefined (a concept spans several units). Weight "
              "on the concept's units: "
              "share of the probe's |w| on the units that implement the concept. *AlphaZero*: the label-only agents "
              "of tier 5 (section below) at their last hidden layer, against the same network untrained; *AlphaZero "
              "connect four*: the same for connect four's 14 concepts (`win_col{c}`, `block_col{c}`)."),
    "steering": ("Each method's direction per concept, scaled to c times the norm of the concept's difference of "
                 "means, is added to `" + concepts.SITE + "` on the held-out positions. Target rate: share of "
                 "positions where the concept predicts a new move (its square s empty, no higher rule anywhere, "
                 "s not already played) on which the network now plays s. Collateral: share of positions with s "
                 "occupied (the concept cannot apply) whose move changes; off-target: share of the target "
                 "positions on which the network now plays another new move. The oracle adds the difference of "
                 "means restricted to the concept's own units; the random direction has the same norm. *SIIT*: the "
                 "same at the SIIT MLPs' `layer1.post`, without the collateral rate (their causal model itself "
                 "plays an intervened win on an occupied square, so no change is not the right answer there). "
                 "*AlphaZero*: the label-only agents of tier 5 (section below), their best legal move; connect "
                 "four's concepts call for a column, which a full column cannot take (collateral). The DAS "
                 "direction is learned, per concept, so that swapping a quiet position's component along it for "
                 "that of a position where the concept holds makes the network play the concept's move "
                 "(distributed alignment search; it is the one method here that runs the network)."),
}
CUE_COLUMNS = {"mass_A": "cue mass on A", "mass_B": "cue mass on B", "gap": "A - B",
               "separates": f"seeds with A - B > {CUE_MARGIN}"}


_cell = metrics.mean_std  # shared with bench/feature_recovery.py


def _table(header: list[str]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]


GROUPS = {"compiled": "compiled", "compiled_conv": "compiled conv", "untrained": "untrained", "siit": "SIIT", "siit_untrained": "untrained MLP",
          "siit_shuffled": "shuffled-target MLP", "label_only": "AlphaZero", "label_only_c4": "AlphaZero connect four"}


def _siit_section(siit_result: dict) -> list[str]:
    nets = siit_result["networks"]
    widths = sorted({n["width"] for n in nets})
    seeds = sorted({n["seed"] for n in nets})
    lines = ["## SIIT networks (tier 2)", "",
             (f"{len(nets)} MLPs (`rljaxinterp/bench/siit.py`; widths {', '.join(map(str, widths))}, seeds "
              f"{', '.join(map(str, seeds))}), {_read_or_trained(nets)} and verified for this leaderboard in "
              f"{siit_result['wall_s']:.0f} s, which no method's wall column includes (training (s): the run that "
              "trained the network). Verification: IIA over "
              f"fresh (base, source, node) triples (bar {siit.MIN_IIA}) and the share of live positions whose "
              f"argmax changes when every non-aligned unit is resample-ablated (bar {siit.MAX_STRICT_CHANGE}). "
              "Each has a shuffled-target twin (tier 4, `rljaxinterp/bench/shuffled.py`): the same MLP, width and "
              "seed trained on the graph's outputs permuted across positions; *memorised*: share of positions "
              "whose argmax is its shuffled target; *follows the rules*: share whose argmax is the graph's real "
              "output, beside the chance level of a network that answers with the class frequencies."), ""]
    lines += _table(["width", "seed", "behaviour accuracy", "IIA", "IIA where the output changes", "lowest node IIA",
                     "argmax changed by strict ablation", "training (s)", "twin: memorised",
                     "twin: follows the rules (chance)"])
    for n in nets:
        tw = n["twin"]
        lines.append(f"| {n['width']} | {n['seed']} | {n['accuracy']:.4f} | {n['iia']:.4f} | {n['iia_changed']:.4f} | "
                     f"{n['iia_min_node']:.4f} | {n['argmax_changed']:.4f} | {n['train_s']:.0f} | "
                     f"{tw['memorised']:.3f} | {tw['rule_accuracy']:.3f} ({tw['chance']:.3f}) |")
    return [*lines, ""]


def _read_or_trained(nets: list[dict]) -> str:
    read = sum(bool(n.get("cached")) for n in nets)
    if not read:
        return "trained"
    return "read from their run folders" if read == len(nets) else f"{read} read from their run folders, the rest trained"


def _label_only_section(label: dict) -> list[str]:
    lines = ["## AlphaZero agents (tier 5, labels only)", "",
             ("Agents trained by the library's own AlphaZero (`rljaxinterp/bench/label_only.py`: tic-tac-toe's CPU "
              "preset, connect four's conv tower), probed and steered at the last layer before their heads; their units are unknown, so they "
              "have no oracle and no weight-on-units column, and their move is the best legal one. Connect-four "
              f"concepts (`win_col{{c}}`, `block_col{{c}}`) on {concepts.C4_POSITIONS} distinct positions of random "
              "play per seed. Trained once into a user cache and reused: "
              f"{label['wall_s']:.0f} s here, in no method's wall column."), ""]
    lines += _table(["game", "seed", "iterations", "site", "training (s)"])
    for a in label["agents"]:
        how = "read from the cache" if a["cached"] else f"{a['train_s']:.0f}"
        lines.append(f"| {a['game']} | {a['seed']} | {a['iterations']} | `{label_only.SITES[a['game']]}` | {how} |")
    return [*lines, ""]


EDGE_COLUMNS = {"auroc": "edge AUROC", "precision": "precision at true size",
                "auroc_wired": "edge AUROC among nonzero-weight edges", "cpr": "CPR", "cmd": "CMD",
                "f_true_size": "f at true size", "auroc_untrained": "edge AUROC, untrained"}


def edges_section(edge_result: dict) -> list[str]:
    """The "Edges, compiled MLP" table of ``score_edge_section``'s result, and the SIIT MLPs'
    when it has them, as markdown lines."""
    lines = ["## Edges, compiled MLP", "",
             (f"The circuit task at edge level (`rljaxinterp/bench/edges.py`): {edge_result['truth_edges']} true "
              f"edges among {edge_result['candidates']} candidates (every kernel entry of the compiled MLP's Dense "
              "layers on the way to the logits, zero or not). A true edge has a nonzero weight and both ends on "
              "the win path, the board and the logits counting as its ends (not the input -> logit legality "
              "skip). Edges ranked by |score|; most candidates have zero weight, so the third column ranks only "
              "the nonzero-weight ones, where the weight-magnitude row shows what sparsity alone gives. "
              "CPR and CMD: areas under the edge faithfulness curve (edges ranked by |score|, the top k kept and "
              f"every other edge mean-ablated, at {len(edge_result['fractions'])} circuit sizes from none to all, "
              "`edges.curve_fractions`); f at true size: the curve at the true number of edges. Untrained: the "
              "same method on the same architecture at random weights, against the same true edges. "
              f"The section took {edge_result['wall_s']:.1f} s (compilation included)."), ""]
    lines += _edge_table(edge_result["rows"], EDGE_COLUMNS)
    if "siit" in edge_result:
        siit_result = edge_result["siit"]
        sizes = "; ".join(f"width {w}: {s['truth_edges']} true of {s['candidates']}"
                          for w, s in siit_result["widths"].items())
        lines += ["", "### Edges, SIIT MLPs", "",
                  (f"The same methods on the {len(siit_result['networks'])} SIIT MLPs of the tier (tier 2) and their "
                   "win tasks (the node table's SIIT column). Candidates: every kernel entry of the three Dense layers "
                   "(board -> layer 0 -> layer 1 -> logits). A true edge joins two units whose nodes are joined by an "
                   "edge of the high-level graph on the win path (`siit.edge_truth`: the board's squares -> "
                   "`two_own[l]` and `empty[s]`, those -> `win[s]`, `win[s]` -> every logit); unaligned units are on "
                   f"no edge ({sizes}). A trained MLP has no zero weights, so every candidate is wired. The curve's "
                   "sizes differ between widths; only its areas are averaged. Cells: mean ± std over the networks. "
                   f"The section took {siit_result['wall_s']:.1f} s."), ""]
        lines += _edge_table(siit_result["rows"], {k: v for k, v in EDGE_COLUMNS.items() if k != "auroc_wired"})
    return [*lines, ""]


def _edge_table(rows: dict, columns: dict[str, str]) -> list[str]:
    lines = _table(["method", *columns.values(), "wall (s)"])
    for name, row in rows.items():
        cells = [_cell(row.get(c)) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {sum(row['wall_s']['per_seed']):.1f} |")
    return lines


def markdown(result: dict) -> str:
    intro = (f"{result['seeds']} seeds, {result['positions']} positions per task, {result['wall_s']:.0f} s in all. "
             "*compiled*: the hand-compiled tic-tac-toe rule network (`rljaxinterp/bench/compiled_ttt.py`, "
             "verified on every reachable position); *compiled conv*: the same strategy compiled into shared-kernel "
             "convolutions (`rljaxinterp/bench/compiled_conv.py`, verified the same way), its units the (square, "
             "channel) elements of each conv site; *untrained*: the same MLP architecture with random weights "
             "(a method that scores well there reads the architecture, not the mechanism). Cells: mean ± std "
             "over seeds. Metric definitions: `docs/BENCH_METRICS.md`.")
    lines = [f"# Interpretability methods against known truth ({result['tier']} tier)", "", intro, ""]
    present = {row["family"] for row in result["rows"].values()}
    for family in (f for f in FAMILIES if f in present):
        title, cols = TITLES[family], COLUMNS[family]
        groups = {"compiled": cols}
        if family in ("circuit", "attribution"):
            groups["compiled_conv"] = cols
            groups["untrained"] = cols[:3] if family == "attribution" else ("auroc", "precision")
        if family == "circuit" and "siit" in result:
            groups.update(siit=cols, siit_untrained=("auroc", "precision"), siit_shuffled=("auroc", "precision"))
        if family == "attribution" and "siit" in result:
            groups["siit"] = ("data_randomisation",)
        if family in CONCEPT_FAMILIES:  # the other networks at 1x only, to keep the table readable
            keep = lambda c, *out: c not in ("f1_board", *out) and not c.endswith("x0.5")
            groups["compiled"] = tuple(c for c in cols if c != "gap_shuffled_net")  # only SIIT networks have a twin
            if "siit" in result:
                groups["siit"] = tuple(c for c in cols if keep(c, "collateral_x1"))
            if "label_only" in result:
                games = {a["game"] for a in result["label_only"]["agents"]}
                for group in (g for game, g in LABEL_ONLY_GROUPS.items() if game in games):
                    groups[group] = tuple(c for c in cols if keep(c, "weight_on_units", "gap_shuffled_net"))
        header = ["method", *(f"{GROUPS[g]}: {HEADERS[family, c]}" for g, cs in groups.items() for c in cs), "wall (s)"]
        lines += [f"## {title}", ""]
        if family in INTROS:
            lines += [INTROS[family], ""]
        if family == "circuit":
            lines += [("CPR and CMD: areas under the faithfulness curve (units ranked by |score|, every circuit "
                       "size, the rest mean-ablated) of the compiled networks"
                       + (" and of each SIIT network" if "siit" in result else "") + "; not computed on untrained "
                       "networks, where mean-ablating everything barely moves the logit.")]
            if "siit" in result:
                n = len(result["siit"]["networks"])
                lines += ["", (f"*SIIT*: the {n} SIIT-trained MLPs of tier 2 (section below) on positions whose output is "
                           "a win (the win move's logit as the metric), the truth being the units aligned to the "
                           "win path (`two_own`, `empty`, `win` nodes); *untrained MLP*: the same MLP at random "
                           "weights, same truth; *shuffled-target MLP*: the same MLP trained on shuffled targets "
                           f"(tier 4), same truth. Cells over the {n} networks; wall excludes their training.")]
            lines.append("")
        lines += _table(header)
        for name, row in result["rows"].items():
            if row["family"] == family:
                cells = [_cell(row[g].get(c)) if g in row else "–" for g, cs in groups.items() for c in cs]
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['wall_s']:.1f} |")
        lines.append("")
    if "edges" in result:
        lines += edges_section(result["edges"])
    if "siit" in result:
        lines += _siit_section(result["siit"])
    if "label_only" in result:
        lines += _label_only_section(result["label_only"])
    for group in CUE_GROUPS.values():
        if group in result:
            lines += _cue_section(result, group)
    return "\n".join(lines)


CUE_TEXT = {  # world -> (title, what moving the cue means, where A's and B's cue is in training)
    "tic_tac_toe": ("tic-tac-toe", "to another empty square changes the move in {A} of live positions",
                    "on the rule move", "on a random empty square"),
    "cheese_maze": ("maze gridworld (CheeseMaze, 11x11)",
                    "to another open cell next to the mouse changes the action in {A} of the measured levels",
                    "on the first step towards the cheese", "on a random open cell next to the mouse"),
}


def _cue_section(result: dict, group: str) -> list[str]:
    cue = result[group]
    title, moved, on_a, on_b = CUE_TEXT[cue["world"]]
    truth = cue["truth"]
    lines = [f"## Spurious cue, {title}: does the map find the cue model A reads and model B ignores", "",
             (f"Moving the cue {moved.format(A=_cell(_stats(truth['A'])))} for model A (cue {on_a} in training) "
              f"and {_cell(_stats(truth['B']))} for model B (cue {on_b}); training the pairs took "
              f"{cue['wall_s']:.0f} s. Cue mass: share of |attribution| on the cue's cell, the cue {on_a} for both "
              "models."), ""]
    lines += _table(["method", *CUE_COLUMNS.values()])
    for name, row in result["rows"].items():
        if row.get(group):
            sep = row[group]["separates"]["per_seed"]
            cells = [_cell(row[group][c]) for c in CUE_COLUMNS if c != "separates"] + [f"{sum(sep):.0f}/{len(sep)}"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _stats(values) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


# (family, bar label, how to read a row's stats) per panel of the summary figure
PANELS = {
    "circuit": ("node AUROC", {"compiled": ("compiled", "auroc"), "untrained": ("untrained", "auroc"),
                               "SIIT": ("siit", "auroc"), "untrained MLP": ("siit_untrained", "auroc"),
                               "shuffled-target MLP": ("siit_shuffled", "auroc")}),
    "attribution": ("mass on true squares", {"compiled": ("compiled", "mass"), "untrained": ("untrained", "mass")}),
    "cue": ("cue mass (spurious-cue pairs)", {"tic-tac-toe A": ("cue", "mass_A"), "tic-tac-toe B": ("cue", "mass_B"),
                                               "maze A": ("cue_maze", "mass_A"), "maze B": ("cue_maze", "mass_B")}),
    "probe": ("probe F1", {"site": ("compiled", "f1"), "shuffled labels": ("compiled", "f1_shuffled"),
                           "untrained": ("compiled", "f1_untrained"), "board": ("compiled", "f1_board"),
                           "SIIT": ("siit", "f1"), "AlphaZero": ("label_only", "f1")}),
    "steering": ("steering at 1x", {"target rate": ("compiled", "target_x1"),
                                    "collateral": ("compiled", "collateral_x1"), "SIIT target": ("siit", "target_x1"),
                                    "AlphaZero target": ("label_only", "target_x1")}),
}


def plot(result: dict, path: Path) -> Path:
    """One panel per scored family (and the cue pair): each method's headline score on the
    compiled network beside its controls, mean ± std over seeds."""
    from rljaxinterp.reporting import pyplot, save_figure

    plt = pyplot()
    panels = []
    for panel, (title, bars) in PANELS.items():
        rows = {n: r for n, r in result["rows"].items() if (r["family"] == panel or (panel == "cue" and "cue" in r))}
        bars = {label: where for label, where in bars.items()
                if all(where[0] in r for r in rows.values()) and any(r[where[0]] for r in rows.values())}
        if rows:
            panels.append((title, rows, bars))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, rows, bars) in zip(axes[0], panels, strict=True):
        x = np.arange(len(rows))
        width = 0.8 / len(bars)
        for i, (label, (group, key)) in enumerate(bars.items()):
            stats = [r[group].get(key, {"mean": np.nan, "std": 0.0}) for r in rows.values()]
            ax.bar(x + (i - (len(bars) - 1) / 2) * width, [st["mean"] for st in stats], width,
                   yerr=[st["std"] for st in stats], label=label)
        ax.set_xticks(x, list(rows), rotation=30, ha="right", fontsize=8)
        ax.set_title(title), ax.set_ylim(0, 1.05), ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_faithfulness(result: dict, path: Path) -> Path:
    """f(C) against circuit size for every circuit method on the compiled network (mean over
    seeds), with the true circuit's size marked."""
    from rljaxinterp.reporting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for name, row in result["rows"].items():
        if row["family"] == "circuit":
            f = np.asarray(row["compiled"]["curve"]["mean"])
            ax.plot(np.arange(f.size) / (f.size - 1), f,
                    label=f"{name} (CPR {row['compiled']['cpr']['mean']:.2f}, CMD {row['compiled']['cmd']['mean']:.2f})")
    units = win_units()
    ax.axvline(sum(u.sum() for u in units.values()) / sum(u.size for u in units.values()), color="grey", ls=":",
               label="true circuit size")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xlabel("share of hidden units kept (top by |score|; the rest mean-ablated)")
    ax.set_ylabel("faithfulness f(C)"), ax.set_title("Faithfulness curves, compiled network")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, path)


def _json_safe(x):
    """NaN (a score that does not apply, e.g. the oracle's board F1) as null: strict JSON."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return None if isinstance(x, float) and np.isnan(x) else x


def write(result: dict, out: str | Path) -> Path:
    """``leaderboard.md``, ``leaderboard.json``, ``leaderboard.png`` and (with circuit
    methods) ``faithfulness.png`` in a fresh folder (``out``, or ``out-N`` when ``out``
    already holds a leaderboard)."""
    from rljaxinterp.reporting import fresh_folder

    folder = fresh_folder(Path(out), "leaderboard.json")
    plot(result, folder / "leaderboard.png")
    text = markdown(result) + "\n![Node AUROC, attribution mass and cue mass](leaderboard.png)\n"
    if any(r["family"] == "circuit" for r in result["rows"].values()):
        plot_faithfulness(result, folder / "faithfulness.png")
        text += "\n![Faithfulness curves](faithfulness.png)\n"
    (folder / "leaderboard.md").write_text(text)
    (folder / "leaderboard.json").write_text(json.dumps(_json_safe(result), indent=1, allow_nan=False))
    return folder
