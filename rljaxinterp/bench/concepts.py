"""Probes and steering directions scored against concepts whose labels are exact and whose
location is known (the compiled network, the SIIT MLPs) or not (AlphaZero agents, ``label_only``).

The compiled tic-tac-toe network's ``rules.post`` site has one unit per (rule, square), and
two of its rules are exact booleans of the board: ``win_sq{s}`` (the mover completes a line
at s) and ``block_sq{s}`` (the opponent would). Each is computed at that site and nowhere
before it, so both method families have an exact answer:

* a **probe** for a concept, trained on the site's activations, must predict it on held-out
  positions (F1), and must do so because of the network: against the same probe on shuffled
  labels (the control task, Hewitt & Liang 2019: selectivity), on an untrained network of
  the same architecture (the random-network gap, as in Jenner et al.'s look-ahead probes)
  and on the board itself (a concept a linear probe reads from the input needs no network);
* a **steering direction** for a concept, added to the site, must make the network act as
  the concept predicts, judged by the rules: "a win is available at s", added to a position
  with no win anywhere and s empty, must make it play s ("a threat at s": no win and no threat
  anywhere); where s is occupied the concept cannot apply and the move must not change
  (collateral). Every direction is scaled to the norm of the concept's difference of means,
  so methods differ only in where they point; a random direction of that norm is the control.

The same concepts are the layer-1 nodes of the SIIT MLPs (a known block of units each), and
an AlphaZero agent is scored on them with no unit-level truth. Positions are every live
reachable position, split per seed into training rows (the methods see only these) and
held-out rows (every score is on these).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import interp
from rljaxinterp.bench import compiled_ttt, metrics

SITE = "rules.post"
RULES = ("win", "block")
CONCEPTS = tuple(f"{rule}_sq{s}" for rule in RULES for s in range(9))
STEER_SCALES = (0.5, 1.0, 2.0)  # multiples of the concept's difference-of-means norm
TEST_FRACTION = 0.25

# fn(x_train (n, d), y_train (n, concepts), key) -> (weights (concepts, d), biases (concepts,)):
# a linear probe, predicting the concept where x @ w + b > 0
ProbeFn = Callable[[np.ndarray, np.ndarray, jax.Array], tuple[np.ndarray, np.ndarray]]
# fn(x_train (n, d), y_train (n, concepts), key) -> (concepts, d) directions
DirectionFn = Callable[[np.ndarray, np.ndarray, jax.Array], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ConceptTask:
    obs: jax.Array  # (n, 3, 3, 2) every live position
    boards: np.ndarray  # (n, 9)
    labels: np.ndarray  # (n, concepts) bool
    train: np.ndarray  # row indices the methods learn from
    test: np.ndarray  # row indices every score is taken on


@dataclasses.dataclass(frozen=True)
class Network:
    """A network to score on the concepts, with the units that implement each when they are known."""

    model: Any
    params: Any
    untrained: Any  # the same architecture at random weights (the probe's control)
    site: str
    truth: np.ndarray | None  # (concepts, width) bool: the units that implement each concept (None: unknown)
    legal_moves: bool  # it never plays an occupied square, so "s occupied" is where a concept cannot apply
    legal_argmax: bool = False  # its move is the best *legal* move (an agent's raw policy, as in play)
    shuffled: Any = None  # the same architecture trained on shuffled targets (tier 4), when there is one


def make_task(seed: int) -> ConceptTask:
    boards = compiled_ttt._reachable()[0]
    boards = boards[np.array([compiled_ttt.rule_applied(b) != compiled_ttt.NONE for b in boards])]
    names = compiled_ttt.unit_names()["rules"]
    labels = compiled_ttt.concept_values(boards)[SITE][:, [names.index(c) for c in CONCEPTS]] > 0.5
    order = np.random.default_rng(seed).permutation(len(boards))
    cut = round(len(boards) * (1 - TEST_FRACTION))
    return ConceptTask(jnp.asarray(compiled_ttt.observations(boards)), boards, labels, np.sort(order[:cut]),
                       np.sort(order[cut:]))


def compiled_network(model, params, untrained) -> Network:
    names = compiled_ttt.unit_names()["rules"]
    truth = np.eye(len(names), dtype=bool)[[names.index(c) for c in CONCEPTS]]
    return Network(model, params, untrained, SITE, truth, legal_moves=True)


def siit_network(model, params, untrained, width: int, shuffled=None) -> Network:
    """A SIIT MLP (``siit``): its ``layer1`` nodes are these concepts, in this order;
    ``shuffled``: its shuffled-target twin's params (``bench.shuffled``)."""
    from rljaxinterp.bench import siit

    assert siit.NODES["layer1"] == CONCEPTS, "the SIIT graph's layer-1 nodes must be the concepts, in order"
    return Network(model, params, untrained, siit.SITES[1], siit.alignment(width)[siit.SITES[1]] > 0,
                   legal_moves=False, shuffled=shuffled)


def activations(model, params, obs, site: str) -> np.ndarray:
    _, cache = interp.run_with_cache(model, params, obs, [site])
    return np.asarray(cache[site], np.float32).reshape(obs.shape[0], -1)


def _check(name: str, got, shape: tuple[int, ...], what: str) -> np.ndarray:
    got = np.asarray(got, np.float32)
    if got.shape != shape:
        raise ValueError(f"method {name!r} returned {what} shaped {got.shape}; need {shape}")
    if not np.all(np.isfinite(got)):
        raise ValueError(f"method {name!r} returned non-finite {what}")
    return got


# -- probes ------------------------------------------------------------------------------------
def _f1(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean F1 over the concepts present in the held-out rows."""
    return float(np.mean([metrics.f1(pred[:, j], labels[:, j]) for j in np.flatnonzero(labels.any(0))]))


def score_probe(name: str, fn: ProbeFn | None, net: Network, task: ConceptTask, key, board: bool = True) -> dict:
    """F1 at the concept's site, on shuffled labels, on the untrained network, on the
    shuffled-target network when the network has one and (``board``) on the raw input, and
    the share of the probe's weight on the concept's own units.

    ``fn=None`` is the oracle, defined where each concept is one unit (the compiled network):
    it predicts the concept when that unit of the network it is given exceeds 0.5."""
    y = task.labels
    shuffled = y[np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1))).permutation(len(y))]
    features = {"site": activations(net.model, net.params, task.obs, net.site),
                "untrained": activations(net.model, net.untrained, task.obs, net.site)}
    if net.shuffled is not None:
        features["shuffled_net"] = activations(net.model, net.shuffled, task.obs, net.site)
    if board:
        features["board"] = np.asarray(task.obs).reshape(len(y), -1)
    oracle = fn is None
    if oracle and (net.truth is None or not np.all(net.truth.sum(1) == 1)):
        return {}

    def fit(where: str, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if oracle:
            return net.truth.astype(np.float32), np.full(len(CONCEPTS), -0.5, np.float32)
        x = features[where]
        out = fn(x[task.train], labels[task.train], key)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(f"method {name!r} must return (weights (concepts, width), biases (concepts,)); "
                             f"got {type(out).__name__}")
        return (_check(name, out[0], (len(CONCEPTS), x.shape[1]), "probe weights"),
                _check(name, out[1], (len(CONCEPTS),), "probe biases"))

    def f1(where: str, labels: np.ndarray, wb=None) -> float:
        if oracle and where == "board":
            return float("nan")
        w, b = wb if wb is not None else fit(where, labels)
        return _f1(features[where][task.test] @ w.T + b > 0, labels[task.test])

    site_fit = fit("site", y)
    out = {"f1": f1("site", y, site_fit), "f1_shuffled": f1("site", shuffled), "f1_untrained": f1("untrained", y)}
    if net.shuffled is not None:
        out["f1_shuffled_net"] = f1("shuffled_net", y)
        out["gap_shuffled_net"] = out["f1"] - out["f1_shuffled_net"]
    if board:
        out["f1_board"] = f1("board", y)
    out.update(selectivity=metrics.selectivity(out["f1"], out["f1_shuffled"]), gap=out["f1"] - out["f1_untrained"])
    if net.truth is not None:
        out["weight_on_units"] = metrics.attribution_mass(site_fit[0], net.truth)  # share of |w| on the concept's units
    return out


def _fit(kind: str, x_train, y_train, key) -> tuple[np.ndarray, np.ndarray]:
    """``interp.probes.fit_probes`` with l2 chosen by 3-fold cross-validation, as a hyperplane
    (``x @ w + b > 0``); it holds out 10% of the rows it is given as its own check, so the probe
    learns from 90% of the training rows."""
    fit = interp.probes.fit_probes({"x": jnp.asarray(x_train)}, {c: y_train[:, j] for j, c in enumerate(CONCEPTS)},
                                   kind, key, test_fraction=0.1, l2="cv", l2_grid=(0.1, 1.0, 10.0), folds=3)
    threshold = 0.5 if kind == "ridge" else 0.0  # ridge regresses the 0/1 labels; the others fit logits
    return np.asarray(fit.weights[0]), np.asarray(fit.bias[0]) - threshold


def _probe(kind: str) -> ProbeFn:
    return lambda x_train, y_train, key: _fit(kind, x_train, y_train, key)


def _probe_direction(kind: str) -> DirectionFn:
    return lambda x_train, y_train, key: _fit(kind, x_train, y_train, key)[0]


def _random_probe(x_train, y_train, key):
    """A random hyperplane whose bias puts each concept's training base rate above it."""
    w = np.asarray(jax.random.normal(key, (y_train.shape[1], x_train.shape[1])))
    z = x_train @ w.T
    return w, -np.array([np.quantile(z[:, j], 1 - y_train[:, j].mean()) for j in range(y_train.shape[1])])


# -- steering ------------------------------------------------------------------------------------
def _mean_difference(x_train, y_train, key):
    return np.stack([np.asarray(interp.steering.mean_difference(jnp.asarray(x_train[y]), jnp.asarray(x_train[~y])))
                     for y in y_train.T.astype(bool)])


def _random_direction(x_train, y_train, key):
    return np.asarray(jax.random.normal(key, (y_train.shape[1], x_train.shape[1])))


def steering_states(task: ConceptTask, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(concepts, test rows) bool each: where the concept predicts a new move (its square s is
    empty, no rule above it applies anywhere and the network does not already play s) and
    where it cannot apply (s is occupied). ``clean``: the unedited moves on the test rows."""
    boards = task.boards[task.test]
    wins, blocks = task.labels[task.test][:, :9].any(1), task.labels[task.test][:, 9:].any(1)
    empty = boards == -1
    target, occupied = [], []
    for c in CONCEPTS:
        rule, s = c.split("_sq")[0], int(c.split("_sq")[1])
        quiet = ~wins if rule == "win" else ~wins & ~blocks
        target.append(quiet & empty[:, s] & (clean != s))
        occupied.append(~empty[:, s])
    return np.stack(target), np.stack(occupied)


def score_steering(name: str, fn: DirectionFn | None, net: Network, task: ConceptTask, key) -> dict:
    """Per scale in ``STEER_SCALES``, mean over concepts: the target rate (the network plays s
    where the concept predicts it), the off-target rate (it plays another new move there) and,
    for a network that never plays an occupied square, the collateral rate (the move changes
    where s is occupied). The oracle (``fn=None``) adds the concept's own units, as the
    difference of means restricted to them."""
    if fn is None and net.truth is None:
        return {}
    x = activations(net.model, net.params, task.obs, net.site)
    y = task.labels
    mean_diff = _mean_difference(x[task.train], y[task.train], key)
    scale = np.linalg.norm(mean_diff, axis=1)  # (concepts,)
    if fn is None:
        directions = np.where(net.truth, mean_diff, 0.0)
    else:
        directions = _check(name, fn(x[task.train], y[task.train], key), (len(CONCEPTS), x.shape[1]),
                            "steering directions")
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"method {name!r} returned a zero direction; every concept needs one")
    vectors = directions / norms * scale[:, None]
    squares = np.array([int(c.split("_sq")[1]) for c in CONCEPTS])
    moves = np.asarray(_steered_moves(net.model, net.params, task.obs[task.test], net.site,
                                      jnp.asarray(np.array(STEER_SCALES)[:, None, None] * vectors[None], jnp.float32),
                                      net.legal_argmax))
    clean = moves[-1]  # (test,): the last vector is zero
    target, occupied = steering_states(task, clean)
    rate = lambda hit, where: float(np.mean([np.mean(hit[j, where[j]]) for j in range(len(CONCEPTS)) if where[j].any()]))
    out = {}
    for i, coef in enumerate(STEER_SCALES):
        m = moves[:-1].reshape(len(STEER_SCALES), len(CONCEPTS), -1)[i]
        out[f"target_x{coef:g}"] = rate(m == squares[:, None], target)
        out[f"off_target_x{coef:g}"] = rate((m != squares[:, None]) & (m != clean), target)
        if net.legal_moves:
            out[f"collateral_x{coef:g}"] = rate(m != clean, occupied)
    return out


@functools.partial(jax.jit, static_argnames=("model", "site", "legal_argmax"))
def _steered_moves(model, params, obs, site: str, vectors, legal_argmax: bool = False):
    """(scales * concepts + 1, states) argmax moves with each vector added at ``site`` (the
    last row unedited); compiled once per network shape, whatever the parameters;
    ``legal_argmax``: over the empty squares only."""
    flat = jnp.concatenate([vectors.reshape(-1, vectors.shape[-1]), jnp.zeros((1, vectors.shape[-1]))])
    occupied = obs.reshape(obs.shape[0], 9, -1).sum(-1) > 0

    def moves(u):
        logits = interp.run_with_interventions(model, params, obs, [interp.add(site, u)]).logits
        return jnp.argmax(jnp.where(occupied, -jnp.inf, logits) if legal_argmax else logits, -1)
    return jax.lax.map(moves, flat)


PROBES: dict[str, ProbeFn] = {f"{kind} probe": _probe(kind) for kind in interp.probes.KINDS}
PROBES["random probe"] = _random_probe
DIRECTIONS: dict[str, DirectionFn] = {"mean difference": _mean_difference,
                                      **{f"{kind} probe direction": _probe_direction(kind) for kind in interp.probes.KINDS},
                                      "random direction": _random_direction}
