"""Do featurisers find the nodes SIIT trained into a network? Neurons, PCA, NMF, SAE features
and DAS on the SIIT MLPs (and ResTowers) of tier 2, against the units each node was trained into.

On the compiled network every concept is one unit (``feature_recovery``); a SIIT network is an
ordinary trained MLP whose node ``j`` owns a block of ``siit.units_per_node(width)`` units
(``siit.alignment``), and *how* the node is written inside its block is whatever training
found. So the truth is a subspace per node, and a featuriser's direction ``f`` recovers node
``j`` as far as it lies in that block: the subspace cosine ``|P_j f| / |f|``
(``metrics.best_subspace_cosine``; 1 when ``f`` is in the block, 0 when orthogonal to it). It
says where a direction is, not that it carries the node: any one of a block's units has cosine 1.
Per site and method: the mean over nodes of the best subspace cosine of any of the method's
directions, the share of nodes recovered at cosine >= ``RECOVERED``, where the rest of each
node's best direction lies (the share of its squared norm on other nodes' blocks and on units
aligned to no node), and the interchange intervention accuracy of each node's best direction
(for neurons, of the block's unit that swaps best on pairs drawn with another seed).

IIA is measured against the high-level causal model, as MIB does: for (base, source) pairs
where setting node ``j`` to its source value changes the graph's output, swap the component
along the direction from the source run into the base run and count the pairs whose argmax
class is the graph's counterfactual output (doing nothing scores 0). The ``aligned block`` row
swaps the node's whole block, the intervention SIIT trained (its IIA is the network's own);
``random`` is as many random directions as the site has units. DAS learns one direction per
node from pairs drawn with another seed, by cross-entropy against the graph's counterfactual
output (Geiger et al. 2023).

Activations are taken in the network's own basis: the blocks are axis-aligned, so neurons are
a fair baseline here, not the answer (a node is spread over its block's units as training left
it). Sites: ``layer0.post`` (25 nodes) and ``layer1.post`` (18 nodes). On a ResTower
(``arch="restower"``) the sites are ``block0.resid_post`` and ``block1.resid_post``, their
(row, col, channel) elements flattened to units as ``siit.alignment`` numbers them (a node owns
some channels at one square); every direction lives in that flattened space.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rljaxinterp import interp
from rljaxinterp.bench import metrics, siit
from rljaxinterp.bench.feature_recovery import DAS_PAIR_SEED, RECOVERED

PAIRS_PER_NODE = 256  # evaluation pairs per node, all of them pairs where the node's swap changes the output
DAS = {"pairs_per_node": 512, "steps": 400, "batch": 64, "lr": 1e-2}
SAE = {"multiple": 2, "topk": (4, 8), "steps": 3000}
NMF_ITERATIONS = 500
ARCH_NAMES = {"mlp": "MLPs", "restower": "ResTowers"}


def node_range(site: str) -> range:
    """The indices of the site's nodes among all 43 (layer 0's first, as ``siit.node_masks``);
    ``site`` is either architecture's."""
    layer = [siit.sites(arch).index(site) for arch in siit.ARCHS if site in siit.sites(arch)]
    if not layer:
        allowed = tuple(s for arch in siit.ARCHS for s in siit.sites(arch))
        raise ValueError(f"site {site!r} is not allowed; use one of {allowed}")
    n0 = len(siit.NODES["layer0"])
    return range(n0) if layer[0] == 0 else range(n0, siit.n_nodes())


def _units(a: jax.Array) -> jax.Array:
    """(states, ...) -> (states, units): a ResTower site's (row, col, channel) elements in
    ``np.ravel`` order, as ``siit.alignment`` numbers them."""
    return a.reshape(a.shape[0], -1)


def _swap(model, params, site: str, basis, base, src) -> jax.Array:
    """Logits of the runs on ``base`` with the component of ``site`` (flattened to units) in
    span(``basis``) ((units, k) orthonormal columns) set to that of ``src`` ((states, units)):
    ``interp.subspace_patch`` on a (states, units) site; on a ResTower site, whose units span
    three axes, the same edit ``x + B Bᵀ (src - x)`` as an ``add`` to the base run's activation."""
    if siit.arch_of(model) == "mlp":
        return interp.run_with_interventions(model, params, base, interp.subspace_patch(site, basis, src)).logits
    x = interp.run_with_cache(model, params, base, [site])[1][site]
    delta = (src - _units(x)) @ basis @ basis.T
    return interp.run_with_interventions(model, params, base, interp.add(site, delta.reshape(x.shape))).logits


def _best_directions(found: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """(nodes, units) for each node the row of ``found`` with the largest subspace cosine, unit norm."""
    f = found / np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
    return f[np.sqrt((f ** 2) @ blocks.T).argmax(0)]


def where_it_lies(best: np.ndarray, blocks: np.ndarray) -> dict[str, float]:
    """Mean over nodes of the share of the squared norm of the node's best direction (unit
    norm, ``(nodes, units)``) on the other nodes' blocks and on the units aligned to no node
    (the rest, the subspace cosine squared, is on the node's own block)."""
    squared = best ** 2
    own = (squared * blocks).sum(1)
    free = squared @ (1.0 - blocks.sum(0))
    return {"other_blocks": float(np.mean(1.0 - own - free)), "free_units": float(np.mean(free))}


def node_pairs(site: str, per_node: int, seed: int, changing_share: float = 1.0, pool: int = 20_000) -> dict:
    """Per node of ``site``, ``per_node`` (base, source) indices into ``siit.live_obs()`` drawn
    with ``seed``: a ``changing_share`` of them among the pairs where the node's swap changes the
    graph's output, the rest uniform (without replacement where there are enough); with the
    graph's counterfactual output for each, and ``distinct``: the fewest distinct changing
    pairs of any node."""
    if not 0.0 <= changing_share <= 1.0:
        raise ValueError(f"changing_share {changing_share!r} is not allowed; use a share in [0, 1]")
    obs = siit.live_obs()
    rng = np.random.default_rng(seed)
    base, source = rng.integers(0, len(obs), pool), rng.integers(0, len(obs), pool)
    changes = np.asarray(siit.changes_output(jnp.asarray(obs[base]), jnp.asarray(obs[source])))
    nodes = list(node_range(site))
    picked = np.zeros((len(nodes), per_node), np.int64)
    n_change, distinct = round(changing_share * per_node), per_node
    for i, j in enumerate(nodes):
        changing = np.flatnonzero(changes[:, j])
        if not len(changing):
            raise ValueError(f"node {j} never changes the output on {pool} pairs; use a larger pool")
        chosen = rng.choice(changing, n_change, replace=len(changing) < n_change)
        distinct = min(distinct, len(np.unique(chosen)))
        picked[i] = np.concatenate([chosen, rng.integers(0, pool, per_node - n_change)])
    b, s = base[picked], source[picked]
    expected = np.stack([np.asarray(siit.high_level(jnp.asarray(obs[b[i]]), jnp.asarray(obs[s[i]]),
                                                    siit.node_masks(jnp.full(per_node, j))))
                         for i, j in enumerate(nodes)])
    return {"base": b, "source": s, "expected": expected, "distinct": distinct}


def _inputs(trained: siit.Trained, site: str, pairs: dict) -> tuple[jax.Array, jax.Array]:
    """(nodes, pairs, 3, 3, 2) base observations and (nodes, pairs, units) source activations."""
    obs = jnp.asarray(siit.live_obs())
    acts = _units(interp.run_with_cache(trained.model, trained.params, obs, [site])[1][site])
    return obs[pairs["base"]], acts[pairs["source"]]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _swap_argmax(model, site: str, params, base, src, bases) -> jax.Array:
    """(nodes, pairs) argmax class after swapping span(``bases[i]``) ((units, k) orthonormal
    columns) from ``src[i]`` into the runs on ``base[i]``, node by node."""
    def one(args):
        basis, b, s = args
        return jnp.argmax(_swap(model, params, site, basis, b, s), -1)
    return jax.lax.map(one, (bases, base, src))


def node_accuracies(trained: siit.Trained, site: str, bases: np.ndarray, pairs: dict) -> np.ndarray:
    """(nodes,) IIA of one subspace per node (``bases`` (nodes, units, k)) on that node's
    ``pairs`` (``node_pairs`` with every pair changing the output); every node has as many
    pairs, so their mean is the pooled IIA."""
    base, src = _inputs(trained, site, pairs)
    got = np.asarray(_swap_argmax(trained.model, site, trained.params, base, src, jnp.asarray(bases, jnp.float32)))
    return np.array([metrics.interchange_intervention_accuracy(g, e) for g, e in zip(got, pairs["expected"], strict=True)])


def das_directions(trained: siit.Trained, site: str, seed: int) -> np.ndarray:
    """One unit-norm direction per node of ``site`` (``(nodes, units)``), trained at once by Adam
    on the cross-entropy of the 1-D swap against the graph's counterfactual output, on pairs half
    of which change the output (drawn with ``seed + DAS_PAIR_SEED``)."""
    pairs = node_pairs(site, DAS["pairs_per_node"], seed + DAS_PAIR_SEED, changing_share=0.5)
    base, src = _inputs(trained, site, pairs)
    w0 = jax.random.normal(jax.random.key(seed), (len(node_range(site)), src.shape[-1]))
    w = _das_train(trained.model, site, DAS["steps"], DAS["batch"], DAS["lr"], trained.params, base, src,
                   jnp.asarray(pairs["expected"]), w0, jax.random.key(seed + 1))
    w = np.asarray(w, np.float64)
    return w / np.linalg.norm(w, axis=1, keepdims=True)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _das_train(model, site: str, steps: int, batch: int, lr: float, params, base, src, expected, w0, key) -> jax.Array:
    opt = optax.adam(lr)
    take = jax.vmap(lambda a, i: a[i])

    def loss(w, b, s, y):
        logits = _swap(model, params, site, (w / jnp.linalg.norm(w))[:, None], b, s)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(carry, key):
        w, state = carry
        idx = jax.random.randint(key, (w.shape[0], batch), 0, base.shape[1])
        grad = jax.grad(lambda w: jax.vmap(loss)(w, take(base, idx), take(src, idx), take(expected, idx)).sum())(w)
        updates, state = opt.update(grad, state)
        return (optax.apply_updates(w, updates), state), None

    return jax.lax.scan(step, (w0, opt.init(w0)), jax.random.split(key, steps))[0][0]


def featurisers(trained: siit.Trained, site: str, seed: int) -> dict[str, np.ndarray]:
    """Every method's directions at ``site`` (rows, in the network's basis), from the
    activations of every live position: neurons, PCA (all components), NMF (rank = the site's
    nodes; post-ReLU activations are non-negative), top-k SAEs (``SAE``), DAS and random."""
    from rljaxinterp.interp import sae
    from rljaxinterp.interp.factorisation import nmf, pca

    acts = interp.run_with_cache(trained.model, trained.params, jnp.asarray(siit.live_obs()), [site])[1][site]
    x = np.asarray(_units(acts))
    d, nodes = x.shape[1], len(node_range(site))
    found = {"neurons": np.eye(d), "pca": np.asarray(pca(jnp.asarray(x), d).components),
             "nmf": np.asarray(nmf(jnp.asarray(x), nodes, NMF_ITERATIONS, key=jax.random.key(seed)).components)}
    config = sae.SAEConfig(steps=SAE["steps"], batch_size=512, learning_rate=1e-3, seed=seed)
    grid = sae.fit_saes({site: x}, "topk", [SAE["multiple"] * d], list(SAE["topk"]), config, progress=False)
    for i, member in enumerate(grid.members):
        found[f"sae topk {SAE['multiple']}x width, k={member.sparsity:g}"] = np.asarray(grid[i].w_dec)
    found["das"] = das_directions(trained, site, seed)
    found["random"] = np.asarray(jax.random.normal(jax.random.key(10_000 + seed), (d, d)))
    return found


def _best_neurons(trained: siit.Trained, site: str, blocks: np.ndarray, seed: int) -> np.ndarray:
    """(nodes, units) one-hot: per node the unit of its block whose swap has the highest IIA on
    pairs drawn with ``seed + DAS_PAIR_SEED`` (as DAS's), not on the pairs it is scored on."""
    eye = np.eye(blocks.shape[1])
    units = np.stack([np.flatnonzero(r) for r in blocks])  # (nodes, k)
    select = node_pairs(site, PAIRS_PER_NODE, seed + DAS_PAIR_SEED)
    iia = np.stack([node_accuracies(trained, site, eye[units[:, i]][:, :, None], select) for i in range(units.shape[1])])
    return eye[units[np.arange(len(units)), iia.argmax(0)]]


def score_network(trained: siit.Trained, seed: int) -> dict:
    """``{site: {method: {"subspace_cosine", "recovered", "other_blocks", "free_units", "iia"}}}``
    for one SIIT network. Each node is scored with the method's direction of largest subspace
    cosine; for neurons, where every unit of the block ties at 1, with the unit that swaps best
    on other pairs (``_best_neurons``)."""
    out = {}
    align = siit.alignment(trained.width, trained.arch)
    for site in siit.sites(trained.arch):
        blocks = align[site]
        pairs = node_pairs(site, PAIRS_PER_NODE, seed)
        eye = np.eye(blocks.shape[1])
        rows = {"aligned block": {"subspace_cosine": 1.0, "recovered": 1.0, "other_blocks": 0.0, "free_units": 0.0,
                                  "iia": float(node_accuracies(trained, site, np.stack([eye[:, r > 0] for r in blocks]),
                                                               pairs).mean())}}
        for name, found in featurisers(trained, site, seed).items():
            cos = metrics.best_subspace_cosine(found, blocks)
            best = _best_neurons(trained, site, blocks, seed) if name == "neurons" else _best_directions(found, blocks)
            rows[name] = {"subspace_cosine": float(cos.mean()), "recovered": float(np.mean(cos >= RECOVERED)),
                          **where_it_lies(best, blocks),
                          "iia": float(node_accuracies(trained, site, best[:, :, None], pairs).mean())}
        out[site] = rows
    return out


def siit_features(tier: str = "quick", log=print, arch: str = "mlp", widths=None, seeds=None) -> dict:
    """Every featuriser on every SIIT network of ``tier`` (``siit.TIERS``; for
    ``arch="restower"``, ``siit.RESTOWER_TIERS``), or of the given ``widths`` and ``seeds``
    where given, mean ± std over the networks per site and method."""
    tiers = siit.tiers(arch)
    if tier not in tiers:
        raise ValueError(f"tier {tier!r} is not allowed; use one of {tuple(tiers)}")
    widths, seeds = widths or tiers[tier]["widths"], seeds or tiers[tier]["seeds"]
    for width in widths:
        siit.make_model(width, arch)  # a bad width fails here, not after the first network's minutes
    t0, runs, networks = time.perf_counter(), [], []
    for width in widths:
        for seed in seeds:
            trained, checked = siit.make_trained(width, seed, arch)
            t1 = time.perf_counter()
            runs.append(score_network(trained, seed))
            networks.append({"width": width, "seed": seed, "iia": checked["iia"], "cached": trained.cached,
                             "score_s": time.perf_counter() - t1})
            log(f"width {width} seed {seed}: " + "; ".join(
                f"{site} DAS IIA {runs[-1][site]['das']['iia']:.3f}" for site in siit.sites(arch)))
    sites = {site: {m: metrics.over_seeds([r[site][m] for r in runs]) for m in runs[0][site]} for site in siit.sites(arch)}
    return {"tier": tier, "arch": arch, "widths": list(widths), "seeds": list(seeds), "networks": networks,
            "sites": sites, "recovered_at": RECOVERED, "wall_s": time.perf_counter() - t0}


def table(result: dict) -> list[str]:
    """Markdown: one table per site, a row per method, mean ± std over the networks."""
    lines = []
    for site, rows in result["sites"].items():
        header = (f"| method | best subspace cosine | nodes recovered (>= {result['recovered_at']}) | "
                  "norm² on other nodes' blocks | norm² on free units | IIA |")
        lines += [f"### {site} ({len(node_range(site))} nodes)", "", header, "|---|---|---|---|---|---|"]
        lines += [f"| {m} | " + " | ".join(metrics.mean_std(r[k]) for k in
                                            ("subspace_cosine", "recovered", "other_blocks", "free_units", "iia")) + " |"
                  for m, r in rows.items()]
        lines.append("")
    return lines


def plot(result: dict, path):
    """IIA and best subspace cosine per method, one panel per site, mean ± std over networks."""
    from rljaxinterp.reporting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(result["sites"]), figsize=(7 * len(result["sites"]), 4), squeeze=False)
    for ax, (site, rows) in zip(axes[0], result["sites"].items(), strict=True):
        x = np.arange(len(rows))
        for i, (key, label) in enumerate((("iia", "IIA"), ("subspace_cosine", "best subspace cosine"))):
            ax.bar(x + (i - 0.5) * 0.4, [r[key]["mean"] for r in rows.values()], 0.4,
                   yerr=[r[key]["std"] for r in rows.values()], label=label)
        ax.set_xticks(x, list(rows), rotation=30, ha="right", fontsize=8)
        ax.set_title(f"SIIT {ARCH_NAMES[result.get('arch', 'mlp')]}, {site}"), ax.set_ylim(0, 1.25)
        ax.legend(fontsize=8, loc="upper center", ncol=2)
    return save_figure(fig, path)
