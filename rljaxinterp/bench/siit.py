"""Tier 2 of the benchmark zoo: ordinary MLPs trained by Strict Interchange Intervention
Training (SIIT) to implement a known causal graph.

The high-level model is the win/block part of the compiled strategy (``compiled_ttt``),
computed exactly from the board. ``own[s]``, ``opp[s]`` are the mover's and the opponent's
stones (the observation's planes 0 and 1), ``l`` ranges over the 8 lines::

    input (row, col, channel)
      └─ layer0  two_own[l]  line l holds two of the mover's stones and one empty square   8 nodes
                 two_opp[l]  the same with the opponent's stones                          8 nodes
                 empty[s]    square s is empty                                            9 nodes
          └─ layer1  win[s]   = empty[s] and two_own[l] for some line l through s         9 nodes
                     block[s] = empty[s] and two_opp[l] for some line l through s         9 nodes
              └─ output  the lowest s with win[s], else the lowest s with block[s], else
                         "none" (class 9): ten classes, the square the win and block rules
                         of ``compiled_ttt`` play, and "a lower rule decides" otherwise

On every live position the output equals ``compiled_ttt.rule_move`` where the rule applied
is ``win`` or ``block`` and is 9 elsewhere (``test_bench_siit`` checks all 4,520). The
graph is also defined off the board (``win[s]`` reads ``empty[s]`` and the line nodes as
they are after an intervention), which is what interchange interventions need.

The low-level model is ``rljaxinterp.models.mlp.MLP`` with two hidden layers of ``width``
units and ten logits. Node ``j`` of high-level layer ``k`` is aligned to the fixed block of
``units_per_node(width)`` consecutive units of ``layer{k}.post`` starting at
``j * units_per_node``; the remaining units of each layer are aligned to nothing. Training
(Adam, every step jitted, deterministic from the seed) minimises, per minibatch of
(base, source) pairs of live positions and one random node per pair:

* behaviour: cross-entropy of the base run to the high-level output (weight 1);
* IIT: patch the node's aligned units from the source run into the base run
  (``interp.patch`` at ``layer{k}.post``); cross-entropy to the high-level output under the
  same intervention (weight 1);
* strict: patch every non-aligned unit of both layers from the source; cross-entropy to the
  base's high-level output, which it must not change (weight 0.4),

as in InterpBench (Gupta et al. 2024). ``verify`` measures the result on fresh pairs.
``make_trained`` trains each network once into a run folder under the user cache
(``cached_train``) and reads it back afterwards.

``arch="restower"`` trains the same graph into ``models.conv.ResTower`` (the AlphaZero
agents' residual conv tower, two blocks of ``channels`` channels): the low-level sites are
``block0.resid_post`` and ``block1.resid_post``, shaped ``(3, 3, channels)``, and a unit is
one (row, col, channel) element, flattened in ``np.ravel`` order. Every node owns
``channels // 4`` consecutive channels at one square (consecutive flattened elements):
``empty[s]`` channel slot 0 and ``two_own[l]`` / ``two_opp[l]`` slots 1 / 2 at a square of
line ``l`` (``LINE_SQUARE``, distinct squares) in block 0; ``win[s]`` / ``block[s]`` slots
0 / 1 at square ``s`` in block 1. Square-local nodes suit the shared kernels, and the policy
head, a 1x1 conv to two channels per square before its dense layer, then has exactly one
channel per square for each of ``win[s]`` and ``block[s]``. Everything else (the high-level
graph, the losses, the bars) is the MLP's; the MLP is the default of every function.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rljaxinterp import interp, user_cache
from rljaxinterp.bench import init_params, metrics
from rljaxinterp.eval.minimax import LINES
from rljaxinterp.models.conv import ResTower
from rljaxinterp.models.mlp import MLP
from rljaxinterp.runs import folder as files

NODES: dict[str, tuple[str, ...]] = {
    "layer0": (*(f"two_own_line{l}" for l in range(8)), *(f"two_opp_line{l}" for l in range(8)),
               *(f"empty_sq{s}" for s in range(9))),
    "layer1": (*(f"win_sq{s}" for s in range(9)), *(f"block_sq{s}" for s in range(9))),
}
LAYERS: tuple[str, ...] = tuple(NODES)
# the MLP's sites; also the keys of the high-level graph's node masks for every architecture
SITES: tuple[str, ...] = tuple(f"{layer}.post" for layer in LAYERS)
ARCHS: tuple[str, ...] = ("mlp", "restower")
ARCH_SITES: dict[str, tuple[str, ...]] = {"mlp": SITES, "restower": ("block0.resid_post", "block1.resid_post")}
NONE_CLASS = 9  # "no win and no block": a lower rule of the strategy decides
N_CLASSES = 10
WIDTHS: tuple[int, ...] = (128, 160)
TIERS = {"quick": {"seeds": (0, 1), "widths": (128,)}, "default": {"seeds": (0, 1, 2, 3, 4), "widths": WIDTHS}}
LOSS_WEIGHTS = {"behaviour": 1.0, "iit": 1.0, "strict": 0.4}
STEPS, BATCH, LR = 4000, 512, 1e-2
# ResTower: width means channels. 16 and 20 channels pass the bars at the MLP's budget (seeds 0-4
# each; about 6 and 9 minutes a tower on the idle 2-core CPU, docs/BENCH.md tier 2); 8 and 12 did
# not (IIA 0.93, 0.9875)
RESTOWER_CHANNELS: tuple[int, ...] = (16, 20)
RESTOWER_TIERS = {"quick": {"seeds": (0,), "widths": (16,)},
                  "default": {"seeds": (0, 1, 2, 3, 4), "widths": RESTOWER_CHANNELS}}
RESTOWER_STEPS, RESTOWER_LR = 4000, 1e-2
HYPERS = {"mlp": {"steps": STEPS, "lr": LR}, "restower": {"steps": RESTOWER_STEPS, "lr": RESTOWER_LR}}
# ResTower: the square holding line l's two_own / two_opp nodes, on the line and all distinct
LINE_SQUARE: tuple[int, ...] = (1, 5, 7, 3, 4, 8, 0, 2)
CHANGING_SHARE = 0.5  # share of training triples whose node is drawn among those that change the output
# verify: IIA over random (base, source, node) triples, and the share of live positions whose
# argmax class changes when every non-aligned unit is resample-ablated
MIN_IIA, MAX_STRICT_CHANGE = 0.99, 0.01
VERIFY_PAIRS = 20_000

_LINE_AT = np.array([[s in line for line in LINES] for s in range(9)], np.float32)  # (9 squares, 8 lines)


def units_per_node(width: int) -> int:
    """Units aligned to each node: ``width // 32`` (4 at width 128, 5 at 160), which leaves
    free units in both layers (25 and 18 nodes)."""
    if width < 64 or width % 32:
        raise ValueError(f"width {width} is not allowed; use a multiple of 32 that is at least 64 (e.g. {WIDTHS})")
    return width // 32


def channels_per_node(channels: int) -> int:
    """ResTower channels per node at its square: ``channels // 4`` (4 at 16 channels), so block
    0's three slots leave a quarter of every square's channels free, block 1's two slots half."""
    if channels < 8 or channels % 4:
        raise ValueError(f"channels {channels} is not allowed; use a multiple of 4 that is at least 8 "
                         f"(e.g. {RESTOWER_CHANNELS})")
    return channels // 4


def sites(arch: str = "mlp") -> tuple[str, ...]:
    """The two low-level sites aligned to the graph's layers 0 and 1."""
    if arch not in ARCH_SITES:
        raise ValueError(f"arch {arch!r} is not allowed; use one of {ARCHS}")
    return ARCH_SITES[arch]


def arch_of(model) -> str:
    """``"mlp"`` or ``"restower"``, from the model's class (the losses need no extra argument)."""
    if isinstance(model, MLP):
        return "mlp"
    if isinstance(model, ResTower):
        return "restower"
    raise ValueError(f"no SIIT alignment for {type(model).__name__}; use make_model(width, arch) with arch in {ARCHS}")


def _check_arch(model, arch: str) -> None:
    sites(arch)
    if arch_of(model) != arch:
        raise ValueError(f"arch {arch!r} does not match the model, a {type(model).__name__}")


def alignment(width: int, arch: str = "mlp") -> dict[str, np.ndarray]:
    """``site -> (nodes, units)`` 0/1: which units of the site implement each node (for the
    ResTower, units are the site's (row, col, channel) elements flattened in ``np.ravel`` order)."""
    sites(arch)  # raises on an unknown arch
    if arch == "restower":
        return _restower_alignment(width)
    k = units_per_node(width)
    out = {}
    for layer, site in zip(LAYERS, SITES, strict=True):
        a = np.zeros((len(NODES[layer]), width), np.float32)
        for j in range(len(NODES[layer])):
            a[j, j * k:(j + 1) * k] = 1.0
        out[site] = a
    return out


def _restower_alignment(channels: int) -> dict[str, np.ndarray]:
    """Each node owns ``channels_per_node`` channels of one slot at one square (module docstring)."""
    k = channels_per_node(channels)

    def owns(square: int, slot: int) -> np.ndarray:
        row = np.zeros(9 * channels, np.float32)
        row[square * channels + slot * k:square * channels + (slot + 1) * k] = 1.0
        return row

    layer0 = [owns(LINE_SQUARE[l], 1) for l in range(8)] + [owns(LINE_SQUARE[l], 2) for l in range(8)]
    layer0 += [owns(s, 0) for s in range(9)]
    layer1 = [owns(s, 0) for s in range(9)] + [owns(s, 1) for s in range(9)]
    return dict(zip(sites("restower"), (np.stack(layer0), np.stack(layer1)), strict=True))


def make_model(width: int, arch: str = "mlp") -> MLP | ResTower:
    """The MLP (two hidden layers of ``width`` units) or the two-block ResTower of ``width`` channels."""
    sites(arch)  # raises on an unknown arch
    if arch == "restower":
        channels_per_node(width)
        return ResTower(num_actions=N_CLASSES, channels=width, blocks=2)
    units_per_node(width)
    return MLP(num_actions=N_CLASSES, obs_ndim=3, hidden=(width, width))


# -- the high-level causal model -------------------------------------------------------------------
def high_layer0(obs) -> jax.Array:
    """(n, 25): two_own[l], two_opp[l], empty[s] from (n, 3, 3, 2) observations."""
    x = jnp.asarray(obs, jnp.float32).reshape(-1, 9, 2)
    own, opp = x[..., 0], x[..., 1]
    empty = 1.0 - own - opp
    lines = jnp.asarray(_LINE_AT)
    n_empty = empty @ lines
    two = [((p @ lines == 2) & (n_empty == 1)).astype(jnp.float32) for p in (own, opp)]
    return jnp.concatenate([*two, empty], -1)


def high_layer1(h0) -> jax.Array:
    """(n, 18): win[s], block[s] from the layer-0 nodes (as they are, intervened or not)."""
    lines = jnp.asarray(_LINE_AT)
    empty = h0[:, 16:]
    win = empty * (h0[:, :8] @ lines.T > 0)
    block = empty * (h0[:, 8:16] @ lines.T > 0)
    return jnp.concatenate([win, block], -1)


def high_output(h1) -> jax.Array:
    """(n,) class: the lowest win square, else the lowest block square, else ``NONE_CLASS``."""
    priority = jnp.where(h1[:, :9] > 0, 2.0, jnp.where(h1[:, 9:] > 0, 1.0, 0.0))
    priority = jnp.concatenate([priority, jnp.full((h1.shape[0], 1), 0.5)], -1)
    return jnp.argmax(priority, -1)  # argmax takes the first maximum: the lowest square


def high_level(base, source=None, masks: dict[str, jax.Array] | None = None) -> jax.Array:
    """The high-level output on ``base`` with, per pair, the nodes ``masks[site] == 1``
    (``(n, nodes)``) set to their value on ``source``; no masks: the plain output."""
    h0 = high_layer0(base)
    if masks is None:
        return high_output(high_layer1(h0))
    s0 = high_layer0(source)
    s1 = high_layer1(s0)
    h0 = h0 + masks[SITES[0]] * (s0 - h0)
    h1 = high_layer1(h0)
    h1 = h1 + masks[SITES[1]] * (s1 - h1)
    return high_output(h1)


# -- data --------------------------------------------------------------------------------------------
@functools.cache
def live_obs() -> np.ndarray:
    """(4520, 3, 3, 2) observations of every live (non-terminal) reachable position."""
    from rljaxinterp.envs.boards import tic_tac_toe_reachable

    states, _ = tic_tac_toe_reachable()
    return np.asarray(states.observation, np.float32)[~np.asarray(states.terminated)]


def node_masks(node: jax.Array) -> dict[str, jax.Array]:
    """One-hot ``(n, nodes)`` masks per site for node indices (n,) over all 43 nodes,
    layer 0's first."""
    n0 = len(NODES["layer0"])
    return {SITES[0]: jax.nn.one_hot(node, n0), SITES[1]: jax.nn.one_hot(node - n0, len(NODES["layer1"]))}


def n_nodes() -> int:
    return sum(len(v) for v in NODES.values())


def changes_output(base, source) -> jax.Array:
    """(n, 43) bool: setting node j to its source value changes the high-level output."""
    plain = high_level(base)
    eye = jnp.eye(n_nodes())
    n0 = len(NODES["layer0"])

    def one(row):
        masks = {SITES[0]: jnp.broadcast_to(row[:n0], (base.shape[0], n0)),
                 SITES[1]: jnp.broadcast_to(row[n0:], (base.shape[0], n_nodes() - n0))}
        return high_level(base, source, masks) != plain
    return jax.vmap(one, out_axes=1)(eye)


def sample_nodes(key, base, source) -> jax.Array:
    """One node per pair: uniform over all nodes with probability 1 - ``CHANGING_SHARE``, else
    uniform over the nodes whose intervention changes the high-level output (uniform over all
    when none does). Uniform sampling alone rarely changes the output (about 8% of triples), so
    the IIT loss would mostly teach the network to ignore the source."""
    changed = changes_output(base, source).astype(jnp.float32)
    uniform = jnp.full_like(changed, 1.0 / n_nodes())
    count = changed.sum(-1, keepdims=True)
    focused = jnp.where(count > 0, changed / jnp.maximum(count, 1.0), uniform)
    probs = (1.0 - CHANGING_SHARE) * uniform + CHANGING_SHARE * focused
    return jax.random.categorical(key, jnp.log(probs))


# -- the low-level model under interventions ----------------------------------------------------------
def _run_patched(model, params, base, source_cache, unit_masks) -> jax.Array:
    """Patch ``unit_masks`` (flat ``(n, units)`` per low-level site, reshaped here to the site's
    shape, e.g. ``(n, 3, 3, channels)``) from the source run into the base run."""
    edits = [interp.patch(s, source_cache[s], m.reshape(source_cache[s].shape)) for s, m in unit_masks.items()]
    return interp.run_with_interventions(model, params, base, edits).logits


def _source_cache(model, params, source) -> dict[str, jax.Array]:
    return interp.run_with_cache(model, params, source, list(sites(arch_of(model))))[1]


def _unit_masks(node_mask: dict[str, jax.Array], align: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Node masks (keyed by ``SITES``, the graph's layers) to unit masks (keyed by ``align``'s sites)."""
    return {s: node_mask[h] @ jnp.asarray(align[s]) for h, s in zip(SITES, align, strict=True)}


def _free_masks(align: dict[str, np.ndarray], n: int) -> dict[str, jax.Array]:
    return {s: jnp.broadcast_to(1.0 - jnp.asarray(align[s]).sum(0), (n, align[s].shape[1])) for s in align}


def _ce(logits, target) -> jax.Array:
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), target[:, None], -1).mean()


def losses(model, params, base, source, node, align) -> dict[str, jax.Array]:
    """The three SIIT losses on one minibatch of (base, source, node) triples."""
    cache = _source_cache(model, params, source)
    masks = node_masks(node)
    behaviour = _ce(model.apply({"params": params}, base).logits, high_level(base))
    iit = _ce(_run_patched(model, params, base, cache, _unit_masks(masks, align)), high_level(base, source, masks))
    strict = _ce(_run_patched(model, params, base, cache, _free_masks(align, base.shape[0])), high_level(base))
    return {"behaviour": behaviour, "iit": iit, "strict": strict}


@dataclasses.dataclass(frozen=True)
class Trained:
    width: int  # units per hidden layer (MLP) or channels (ResTower)
    seed: int
    model: MLP | ResTower
    params: dict
    train_s: float  # wall clock, compilation included (of the run that trained it, when read from a cache)
    arch: str = "mlp"
    cached: bool = False  # read back from a run folder


def train(width: int, seed: int, steps: int | None = None, arch: str = "mlp") -> Trained:
    """SIIT from ``seed``: Adam on behaviour + IIT + strict (weights ``LOSS_WEIGHTS``), minibatches
    of ``BATCH`` (base, source, node) triples drawn from the live positions; the whole run is one
    jitted scan, so it is deterministic given the seed. ``steps`` and the learning rate default
    to the architecture's ``HYPERS``."""
    model, align = make_model(width, arch), alignment(width, arch)
    steps = HYPERS[arch]["steps"] if steps is None else steps
    obs = jnp.asarray(live_obs())
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = init_params(model, init_key, obs[:1])
    opt = optax.adam(HYPERS[arch]["lr"])

    def total(p, base, source, node):
        parts = losses(model, p, base, source, node, align)
        return sum(LOSS_WEIGHTS[k] * v for k, v in parts.items())

    def step(carry, key):
        p, state = carry
        k_base, k_src, k_node = jax.random.split(key, 3)
        base = obs[jax.random.randint(k_base, (BATCH,), 0, obs.shape[0])]
        source = obs[jax.random.randint(k_src, (BATCH,), 0, obs.shape[0])]
        node = sample_nodes(k_node, base, source)
        value, grads = jax.value_and_grad(total)(p, base, source, node)
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), value

    t0 = time.perf_counter()
    run = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), jax.random.split(data_key, steps))[0][0])
    params = jax.block_until_ready(run(params))
    return Trained(width, seed, model, params, time.perf_counter() - t0, arch)


# -- verification -------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _iia_batch(model, params, base, source, node, width, arch):
    align = alignment(width, arch)
    masks = node_masks(node)
    logits = _run_patched(model, params, base, _source_cache(model, params, source), _unit_masks(masks, align))
    return jnp.argmax(logits, -1), high_level(base, source, masks), high_level(base)


def interchange_accuracy(model, params, width: int, pairs: int = VERIFY_PAIRS, seed: int = 0,
                         arch: str = "mlp") -> dict:
    """IIA over ``pairs`` random (base, source, node) triples of live positions (node uniform
    over all 43): overall, on the triples where the intervention changes the high-level output
    (``iia_changed``; plain IIA's floor is the share where it does not), and the lowest per node."""
    _check_arch(model, arch)
    obs = live_obs()
    rng = np.random.default_rng(seed)
    base, source = rng.integers(0, len(obs), pairs), rng.integers(0, len(obs), pairs)
    node = rng.integers(0, n_nodes(), pairs)
    got, want, plain = (np.asarray(a) for a in _iia_batch(model, params, jnp.asarray(obs[base]),
                                                            jnp.asarray(obs[source]), jnp.asarray(node), width, arch))
    changed = want != plain
    per_node = [metrics.interchange_intervention_accuracy(got[node == j], want[node == j])
                for j in range(n_nodes()) if np.any(node == j)]
    return {"iia": metrics.interchange_intervention_accuracy(got, want),
            "iia_changed": metrics.interchange_intervention_accuracy(got[changed], want[changed]),
            "changed_share": float(changed.mean()), "iia_min_node": float(min(per_node)), "pairs": pairs}


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _ablated_batch(model, params, obs, perm, width, arch):
    align = alignment(width, arch)
    cache = _source_cache(model, params, obs[perm])
    ablated = _run_patched(model, params, obs, cache, _free_masks(align, obs.shape[0]))
    plain = model.apply({"params": params}, obs).logits
    return jnp.argmax(ablated, -1), jnp.argmax(plain, -1), jnp.abs(ablated - plain).max(-1)


def strict_ablation(model, params, width: int, resamples: int = 4, seed: int = 0, arch: str = "mlp") -> dict:
    """Resample-ablate every non-aligned unit of both layers (each live position gets another
    live position's activations there, ``resamples`` draws): the share of (position, draw)
    whose argmax class changes, and the mean largest |logit change|."""
    _check_arch(model, arch)
    obs = jnp.asarray(live_obs())
    rng = np.random.default_rng(seed)
    changed, logit = [], []
    for _ in range(resamples):
        got, plain, delta = _ablated_batch(model, params, obs, jnp.asarray(rng.permutation(obs.shape[0])), width, arch)
        changed.append(np.asarray(got != plain)), logit.append(np.asarray(delta))
    return {"argmax_changed": float(np.mean(changed)), "max_logit_change": float(np.mean(logit))}


def behaviour_accuracy(model, params) -> float:
    obs = jnp.asarray(live_obs())
    got = np.argmax(np.asarray(model.apply({"params": params}, obs).logits), -1)
    return float(np.mean(got == np.asarray(high_level(obs))))


def verify(model, params, width: int, arch: str = "mlp") -> dict:
    """Measure the trained network against its graph; raise ``ValueError`` with the numbers
    unless IIA >= ``MIN_IIA`` and resample-ablating every non-aligned unit changes the argmax
    class on at most ``MAX_STRICT_CHANGE`` of live positions."""
    out = {"accuracy": behaviour_accuracy(model, params), **interchange_accuracy(model, params, width, arch=arch),
           **strict_ablation(model, params, width, arch=arch)}
    if out["iia"] < MIN_IIA or out["argmax_changed"] > MAX_STRICT_CHANGE:
        raise ValueError(
            f"the SIIT network ({arch}, width {width}) does not implement its graph: IIA {out['iia']:.4f} over "
            f"{out['pairs']} pairs (need >= {MIN_IIA}; {out['iia_changed']:.4f} where the output changes), "
            f"resample-ablating the non-aligned units changes the argmax on {out['argmax_changed']:.4f} of live "
            f"positions (need <= {MAX_STRICT_CHANGE}); behaviour accuracy {out['accuracy']:.4f}")
    return out


# -- the zoo's cache: each network trained once into a run folder --------------------------------------
RUN_KIND = "siit"
# bump when a change to the graph, the losses or the sampling changes what training produces (the
# config below already holds the hyperparameters, the model, the alignment and the library versions)
TRAINING_VERSION = 1


def run_config(width: int, seed: int, arch: str = "mlp") -> dict:
    """What fixes a trained network, as its run folder's config.json stores it: the training
    hyperparameters, the model's fields, a digest of the alignment, and the versions of the
    libraries whose random numbers and initialisers training depends on."""
    align = alignment(width, arch)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(align[s]).tobytes() for s in sites(arch))).hexdigest()
    return {"version": TRAINING_VERSION, "arch": arch, "width": width, "seed": seed, **HYPERS[arch], "batch": BATCH,
            "loss_weights": LOSS_WEIGHTS, "changing_share": CHANGING_SHARE, "model": repr(make_model(width, arch)),
            "alignment_sha256": digest, "libraries": {m.__name__: m.__version__ for m in (jax, flax, optax)}}


def cache_folder(width: int, seed: int, arch: str = "mlp") -> Path:
    """``RLJAXINTERP_CACHE/bench/siit_{arch}{width}-seed{seed}-{digest of run_config}``: a change
    to anything that fixes the network gives a new folder, so a stale one is never read."""
    key = hashlib.sha256(json.dumps(run_config(width, seed, arch), sort_keys=True).encode()).hexdigest()[:12]
    return user_cache() / "bench" / f"siit_{arch}{width}-seed{seed}-{key}"


def cached_train(width: int, seed: int, arch: str = "mlp", folder: str | os.PathLike | None = None) -> Trained:
    """``train`` through a run folder (default ``cache_folder``, under ``RLJAXINTERP_CACHE``):
    read back when the folder holds this config's network, else trained and saved there
    (atomically, by orbax; a folder left by a killed run is trained again). A folder holding
    another config is refused, never overwritten; two processes training the same network into
    one folder at once make the second fail, not overwrite. A ResTower takes minutes to train,
    so every later benchmark reuses it."""
    cfg = run_config(width, seed, arch)
    folder = Path(folder or cache_folder(width, seed, arch))
    existing = files.read_config_json(folder) if (folder / files.CONFIG_FILE).exists() else None
    if existing is not None and existing[0] != RUN_KIND:
        raise files.RunFolderError(f"{folder} holds a {existing[0]!r} run, not a SIIT network; use another folder")
    files.claim(folder, RUN_KIND, cfg, None if existing is None else existing[1])
    manager = files.checkpoint_manager(folder)
    steps = cfg["steps"]
    if files.latest_step(folder) == steps:
        model = make_model(width, arch)
        example = jnp.asarray(live_obs()[:1])
        abstract = jax.eval_shape(lambda: init_params(model, jax.random.key(seed), example))
        params, meta = files.restore_checkpoint(manager, steps, abstract)
        return Trained(width, seed, model, params, meta["train_s"], arch, cached=True)
    trained = train(width, seed, arch=arch)
    files.save_checkpoint(manager, steps, trained.params, {"train_s": trained.train_s})
    return trained


def tiers(arch: str = "mlp") -> dict:
    """The tiers of SIIT networks of ``arch``: ``TIERS`` (MLPs) or ``RESTOWER_TIERS``."""
    return RESTOWER_TIERS if sites(arch) == ARCH_SITES["restower"] else TIERS


def make_trained(width: int, seed: int, arch: str = "mlp") -> tuple[Trained, dict]:
    """A trained (``cached_train``) and verified SIIT network and its ``verify`` numbers, also
    kept in memory so the tests and the scoring read each (width, seed, arch) once."""
    return _make_trained(width, seed, arch)


@functools.cache
def _make_trained(width: int, seed: int, arch: str) -> tuple[Trained, dict]:
    trained = cached_train(width, seed, arch)
    return trained, verify(trained.model, trained.params, width, arch)


# -- scoring circuit methods on the SIIT networks ---------------------------------------------------------
# The decision path of an immediate win: two of mine in a line -> win at its empty square (which
# also reads empty[s]) -> the output. Blocks and the opponent's lines do not decide a win.
WIN_PATH = ("two_own_", "empty_", "win_")


def win_units(width: int, arch: str = "mlp") -> dict[str, np.ndarray]:
    """``site -> (units,)`` bool: the units aligned to the nodes on the win path (ResTower: the
    site's elements flattened in ``np.ravel`` order)."""
    align = alignment(width, arch)
    out = {}
    for layer, site in zip(LAYERS, sites(arch), strict=True):
        on_path = np.array([name.startswith(WIN_PATH) for name in NODES[layer]])
        out[site] = align[site][on_path].sum(0) > 0
    return out


# The MLP's Dense layers on the way to the logits, as ``edges.Denses`` (receiver, senders); the
# input is the board flattened from (3, 3, 2), so square s's planes are elements 2s and 2s + 1
DENSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "layer0": ("layer0.pre", ("input",)), "layer1": ("layer1.pre", ("layer0.post",)),
    "policy_head": ("logits", ("layer1.post",))}


def graph_edges() -> dict[str, np.ndarray]:
    """The high-level graph's edges on the win path, per Dense of ``DENSES``, node to node:
    (18 board elements, 25 layer-0 nodes), (25, 18 layer-1 nodes), (18, 10 output classes).
    A line node reads both planes of its three squares, ``empty[s]`` both planes of s;
    ``win[s]`` reads ``empty[s]`` and the ``two_own`` nodes of its lines; every ``win`` node
    feeds every class (the output is the lowest win square, and any win rules out the blocks
    and "none")."""
    into0 = np.zeros((18, len(NODES["layer0"])), bool)
    into1 = np.zeros((len(NODES["layer0"]), len(NODES["layer1"])), bool)
    for l, line in enumerate(LINES):
        for s in line:
            into0[2 * s:2 * s + 2, l] = True  # the board -> two_own[l]
            into1[l, s] = True  # two_own[l] -> win[s]
    for s in range(9):
        into0[2 * s:2 * s + 2, 16 + s] = True  # the board -> empty[s]
        into1[16 + s, s] = True  # empty[s] -> win[s]
    out = np.zeros((len(NODES["layer1"]), N_CLASSES), bool)
    out[:9] = True
    return {"layer0": into0, "layer1": into1, "policy_head": out}


def edge_truth(width: int) -> dict[str, np.ndarray]:
    """``{layer: (inputs, units) bool}``: unit u -> unit v is a true edge when u's node -> v's
    node is an edge of ``graph_edges`` (the truth at the units' granularity: every unit of a
    node's block stands for the node; unaligned units are on no edge). A board element or a
    logit stands for itself."""
    a0, a1 = (alignment(width)[site].astype(int) for site in SITES)
    g = {k: v.astype(int) for k, v in graph_edges().items()}
    return {"layer0": g["layer0"] @ a0 > 0, "layer1": a0.T @ g["layer1"] @ a1 > 0, "policy_head": a1.T @ g["policy_head"] > 0}


def win_task(width: int, positions: int, seed: int, arch: str = "mlp"):
    """``positions`` live positions whose high-level output is a win (drawn with ``seed``), the
    win move as the metric's data, and the win-path units as the circuit truth."""
    from rljaxinterp.bench.leaderboard import Task

    obs = live_obs()
    h1 = np.asarray(high_layer1(high_layer0(obs)))
    pool = np.flatnonzero(h1[:, :9].any(-1))
    chosen = np.sort(np.random.default_rng(seed).choice(pool, min(positions, len(pool)), replace=False))
    moves = np.asarray(high_level(obs[chosen]))
    return Task(jnp.asarray(obs[chosen]), {"move": jnp.asarray(moves)}, win_units(width, arch), np.zeros((len(chosen), 9), bool))


def score_circuit_methods(methods, tier: str = "quick", positions: int = 128, log=print, arch: str = "mlp") -> dict:
    """Node AUROC and precision at the true size of the leaderboard's circuit methods on every
    SIIT network of ``tier`` (truth: the units aligned to the win path, ``win_units``), and on an
    untrained network of the same architecture and width (the control). Returns ``{method:
    {"siit": [...], "untrained": [...]}}``, one score dict per (width, seed), and the networks'
    verify numbers. ``arch="restower"`` scores the ResTower networks of ``RESTOWER_TIERS``,
    which the leaderboard leaves out (one takes about 6 minutes to train on the idle 2-core CPU)."""
    from rljaxinterp.bench import leaderboard

    if tier not in tiers(arch):
        raise ValueError(f"tier {tier!r} is not allowed; use one of {tuple(tiers(arch))}")
    unknown = [m for m in methods if m not in leaderboard.METHODS]
    wrong = [m for m in methods if m in leaderboard.METHODS and leaderboard.METHODS[m].family != "circuit"]
    if unknown or wrong:
        raise ValueError(f"method(s) {unknown + wrong} are not registered circuit methods; circuit methods: "
                         f"{', '.join(n for n, m in leaderboard.METHODS.items() if m.family == 'circuit')}")
    spec = tiers(arch)[tier]
    rows = {m: {"siit": [], "untrained": []} for m in methods}
    networks = []
    for width in spec["widths"]:
        for seed in spec["seeds"]:
            trained, checked = make_trained(width, seed, arch=arch)
            networks.append({"width": width, "seed": seed, "train_s": trained.train_s, **checked})
            task = win_task(width, positions, seed, arch=arch)
            untrained = trained.model.init(jax.random.key(1000 + seed), task.obs[:1])["params"]
            for name in methods:
                method, key = leaderboard.METHODS[name], jax.random.key(seed)
                rows[name]["siit"].append(leaderboard.score_circuit(method, trained.model, trained.params, task, key))
                rows[name]["untrained"].append(leaderboard.score_circuit(method, trained.model, untrained, task, key))
            log(f"width {width} seed {seed}: " + ", ".join(
                f"{n} {rows[n]['siit'][-1]['auroc']:.3f}" for n in methods))
    return {"methods": rows, "networks": networks}
