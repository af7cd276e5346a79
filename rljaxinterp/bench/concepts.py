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
held-out rows (every score is on these). Connect four has the same two rules per column
(``win_col{c}``, ``block_col{c}``), scored on AlphaZero agents over random-play positions.

Most steering methods see activations and labels only; DAS must run the network, and a
method that declares a ``counterfactuals`` parameter gets what it needs (``Counterfactuals``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

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
    """One game's concepts on a set of positions, with what each concept calls for.

    Each concept is "move ``moves[j]`` takes or blocks an immediate win": where no rule above it
    applies anywhere on the board and its move is legal (``quiet``), a network acting on the
    concept plays that move; where its move is illegal it cannot apply."""

    game: str
    names: tuple[str, ...]
    obs: jax.Array  # (n, *observation) every position
    labels: np.ndarray  # (n, concepts) bool
    moves: np.ndarray  # (concepts,) the action each concept calls for
    quiet: np.ndarray  # (n, concepts) bool: no higher rule applies anywhere and the concept's move is legal
    legal: np.ndarray  # (n, actions) bool
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


GAMES = ("tic_tac_toe", "connect_four")
C4_POSITIONS = 6000  # distinct live connect-four positions from random play


def _task(game: str, names, obs, wins: np.ndarray, blocks: np.ndarray, legal: np.ndarray, seed: int) -> ConceptTask:
    """``wins``/``blocks``: (n, actions) bool, the moves that win now / stop the opponent's win."""
    win_any, block_any = wins.any(1, keepdims=True), blocks.any(1, keepdims=True)
    quiet = np.concatenate([~win_any & legal, ~win_any & ~block_any & legal], 1)
    order = np.random.default_rng(seed).permutation(len(obs))
    cut = round(len(obs) * (1 - TEST_FRACTION))
    actions = legal.shape[1]
    return ConceptTask(game, tuple(names), jnp.asarray(obs), np.concatenate([wins, blocks], 1),
                       np.tile(np.arange(actions), 2), quiet, legal, np.sort(order[:cut]), np.sort(order[cut:]))


def make_task(seed: int, game: str = "tic_tac_toe") -> ConceptTask:
    """The concepts of ``game`` on its positions, split 75/25 by ``seed``. Tic-tac-toe: every
    live position where a rule of the strategy applies; connect four (``win_col{c}``,
    ``block_col{c}``): ``C4_POSITIONS`` distinct live positions of random play (drawn with
    ``seed``)."""
    if game == "tic_tac_toe":
        boards = compiled_ttt._reachable()[0]
        boards = boards[np.array([compiled_ttt.rule_applied(b) != compiled_ttt.NONE for b in boards])]
        names = compiled_ttt.unit_names()["rules"]
        labels = compiled_ttt.concept_values(boards)[SITE][:, [names.index(c) for c in CONCEPTS]] > 0.5
        return _task(game, CONCEPTS, compiled_ttt.observations(boards), labels[:, :9], labels[:, 9:], boards == -1,
                     seed)
    if game == "connect_four":
        from rljaxinterp.envs.registry import make as make_env
        from rljaxinterp.envs.sampling import sample_states
        from rljaxinterp.interp.concepts import connect_four as c4

        states, _ = sample_states(make_env(game), C4_POSITIONS, jax.random.key(seed))
        own, opp, empty = c4.planes(states)
        h = c4.heights(states)
        wins, blocks = (np.asarray(c4.wins_after_drop(p, empty, h)) for p in (own, opp))
        names = [f"{rule}_col{c}" for rule in RULES for c in range(7)]
        return _task(game, names, np.asarray(states.observation, np.float32), wins, blocks, np.asarray(h) < 6, seed)
    raise ValueError(f"game {game!r} is not allowed; use one of {GAMES}")


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
            return net.truth.astype(np.float32), np.full(len(task.names), -0.5, np.float32)
        x = features[where]
        out = fn(x[task.train], labels[task.train], key)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(f"method {name!r} must return (weights (concepts, width), biases (concepts,)); "
                             f"got {type(out).__name__}")
        return (_check(name, out[0], (len(task.names), x.shape[1]), "probe weights"),
                _check(name, out[1], (len(task.names),), "probe biases"))

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
    fit = interp.probes.fit_probes({"x": jnp.asarray(x_train)}, {f"c{j}": y for j, y in enumerate(y_train.T)},
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
    return np.asarray(interp.steering.mean_differences(x_train, y_train))


def _random_direction(x_train, y_train, key):
    return np.asarray(jax.random.normal(key, (y_train.shape[1], x_train.shape[1])))


def steering_states(task: ConceptTask, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(concepts, test rows) bool each: where the concept predicts a new move (no rule above
    it applies anywhere, its move is legal and the network does not already play it) and where
    it cannot apply (its move is illegal). ``clean``: the unedited moves on the test rows."""
    quiet, legal = task.quiet[task.test].T, task.legal[task.test].T  # (concepts, rows), (actions, rows)
    return quiet & (clean[None] != task.moves[:, None]), ~legal[task.moves]


@dataclasses.dataclass(frozen=True)
class Counterfactuals:
    """What a steering method may ask of the network besides its activations (declare a
    fourth parameter ``counterfactuals``): the rules' answer to "what if this concept held".

    ``logits(rows, acts)``: the network's move logits on training rows ``rows`` with the
    site's activation replaced by ``acts`` ((len(rows), width), flattened as ``x_train``);
    on training row ``i`` with ``quiet[i, j]``, making concept ``j`` true must make the
    network play ``moves[j]``."""

    logits: Callable[[jax.Array, jax.Array], jax.Array]
    moves: np.ndarray  # (concepts,)
    quiet: np.ndarray  # (training rows, concepts) bool


def _counterfactuals(net: Network, task: ConceptTask) -> Counterfactuals:
    obs = task.obs[task.train]
    shape = interp.sites(net.model, obs[:1], net.params)[net.site]

    def logits(rows, acts):
        edit = interp.patch(net.site, acts.reshape(-1, *shape))
        return interp.run_with_interventions(net.model, net.params, obs[rows], [edit]).logits
    return Counterfactuals(logits, task.moves, task.quiet[task.train])


def _directions(name: str, fn: DirectionFn, x_train, y_train, key, net: Network, task: ConceptTask) -> np.ndarray:
    takes = "counterfactuals" in inspect.signature(fn).parameters
    out = fn(x_train, y_train, key, _counterfactuals(net, task)) if takes else fn(x_train, y_train, key)
    return _check(name, out, (len(task.names), x_train.shape[1]), "steering directions")


def score_steering(name: str, fn: DirectionFn | None, net: Network, task: ConceptTask, key) -> dict:
    """Per scale in ``STEER_SCALES``, mean over concepts: the target rate (the network plays
    the concept's move where the concept predicts it), the off-target rate (it plays another
    new move there) and, for a network that never plays an illegal move, the collateral rate
    (the move changes where the concept's move is illegal). The oracle (``fn=None``) adds the
    concept's own units, as the difference of means restricted to them."""
    if fn is None and net.truth is None:
        return {}
    x = activations(net.model, net.params, task.obs, net.site)
    y = task.labels
    mean_diff = _mean_difference(x[task.train], y[task.train], key)
    scale = np.linalg.norm(mean_diff, axis=1)  # (concepts,)
    if fn is None:
        directions = np.where(net.truth, mean_diff, 0.0)
    else:
        directions = _directions(name, fn, x[task.train], y[task.train], key, net, task)
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"method {name!r} returned a zero direction; every concept needs one")
    vectors = directions / norms * scale[:, None]
    obs = task.obs[task.test]
    shape = interp.sites(net.model, obs[:1], net.params)[net.site]
    scaled = np.array(STEER_SCALES)[:, None, None] * vectors[None]
    legal = jnp.asarray(task.legal[task.test]) if net.legal_argmax else None
    moves = np.asarray(_steered_moves(net.model, net.params, obs, net.site,
                                      jnp.asarray(scaled.reshape(-1, *shape), jnp.float32), legal))
    clean = moves[-1]  # (test,): the last vector is zero
    target, illegal = steering_states(task, clean)
    n = len(task.names)
    rate = lambda hit, where: float(np.mean([np.mean(hit[j, where[j]]) for j in range(n) if where[j].any()]))
    out = {}
    for i, coef in enumerate(STEER_SCALES):
        m = moves[:-1].reshape(len(STEER_SCALES), n, -1)[i]
        out[f"target_x{coef:g}"] = rate(m == task.moves[:, None], target)
        out[f"off_target_x{coef:g}"] = rate((m != task.moves[:, None]) & (m != clean), target)
        if net.legal_moves:
            out[f"collateral_x{coef:g}"] = rate(m != clean, illegal)
    return out


@functools.partial(jax.jit, static_argnames=("model", "site"))
def _steered_moves(model, params, obs, site: str, vectors, legal=None):
    """(vectors + 1, states) argmax moves with each vector (shaped like the site) added at
    ``site`` (the last row unedited); compiled once per network shape, whatever the
    parameters; with ``legal`` ((states, actions) bool), over the legal moves only."""
    flat = jnp.concatenate([vectors, jnp.zeros((1, *vectors.shape[1:]))])

    def moves(u):
        logits = interp.run_with_interventions(model, params, obs, [interp.add(site, u)]).logits
        return jnp.argmax(logits if legal is None else jnp.where(legal, logits, -jnp.inf), -1)
    return jax.lax.map(moves, flat)


DAS_STEPS, DAS_BATCH, DAS_LR = 200, 32, 1e-2


def das_direction(x_train, y_train, key, counterfactuals: Counterfactuals) -> np.ndarray:
    """Distributed alignment search for one direction per concept (Geiger et al. 2024): learn
    ``d`` so that swapping the component along ``d`` of a quiet base row for that of a row
    where the concept holds makes the network play the concept's move (cross-entropy, Adam,
    ``DAS_STEPS`` steps of ``DAS_BATCH`` pairs per concept, all concepts in one jitted scan),
    signed so that rows with the concept project higher."""
    cf = counterfactuals
    x = jnp.asarray(x_train)
    y = jnp.asarray(y_train, bool)
    quiet = jnp.asarray(cf.quiet)
    n_concepts, width = y.shape[1], x.shape[1]
    moves = jnp.asarray(cf.moves)
    init_key, data_key = jax.random.split(key)
    opt = optax.adam(DAS_LR)

    def sampler(mask):
        """Uniform (concepts, batch) row indices among each concept's rows where ``mask`` holds:
        an index into the rows sorted mask-first (a categorical over every row costs ~100x more)."""
        first = jnp.argsort(~mask, axis=0, stable=True).T  # (concepts, rows)
        count = jnp.maximum(mask.sum(0), 1)[:, None]
        return lambda k: jnp.take_along_axis(first, jax.random.randint(k, (n_concepts, DAS_BATCH), 0, count), 1)
    quiet_rows, concept_rows = sampler(quiet), sampler(y)

    def loss(d, key):
        kb, ks = jax.random.split(key)
        # (concepts, batch) row indices: bases among the quiet rows, sources among the concept's rows
        base, source = quiet_rows(kb), concept_rows(ks)
        u = d / jnp.linalg.norm(d, axis=1, keepdims=True)
        xb, xs = x[base], x[source]  # (concepts, batch, width)
        edited = xb + jnp.einsum("cbw,cw->cb", xs - xb, u)[..., None] * u[:, None]
        logits = cf.logits(base.reshape(-1), edited.reshape(-1, width)).reshape(n_concepts, DAS_BATCH, -1)
        target = jnp.broadcast_to(moves[:, None], (n_concepts, DAS_BATCH))
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), target[..., None], -1).mean()

    def step(carry, key):
        d, state = carry
        grads = jax.grad(loss)(d, key)
        updates, state = opt.update(grads, state, d)
        return (optax.apply_updates(d, updates), state), None

    d0 = jax.random.normal(init_key, (n_concepts, width))
    d = jax.jit(lambda d: jax.lax.scan(step, (d, opt.init(d)), jax.random.split(data_key, DAS_STEPS))[0][0])(d0)
    d = np.asarray(d / jnp.linalg.norm(d, axis=1, keepdims=True))
    y_np = np.asarray(y_train, bool)
    sign = np.array([np.sign(np.mean(x_train[y_np[:, j]] @ d[j]) - np.mean(x_train[~y_np[:, j]] @ d[j])) or 1.0
                     for j in range(n_concepts)])
    return d * sign[:, None]


PROBES: dict[str, ProbeFn] = {f"{kind} probe": _probe(kind) for kind in interp.probes.KINDS}
PROBES["random probe"] = _random_probe
DIRECTIONS: dict[str, DirectionFn] = {"mean difference": _mean_difference,
                                      **{f"{kind} probe direction": _probe_direction(kind) for kind in interp.probes.KINDS},
                                      "DAS direction": das_direction,
                                      "random direction": _random_direction}
