"""Do dictionary methods find the units a network is known to compute? Planted directions from
the compiled tic-tac-toe network, scored for SAEs and DAS beside neurons, PCA and NMF.

The compiled network's hidden units are sparse and each computes a known concept (a line
detector, a rule, a choice). In its own basis the answer is trivial (neurons are the truth),
so each site's activations are first turned by a random rotation ``Q``: unit ``j`` then writes
along row ``Q[j]``, a direction no single neuron holds. Those rows are the planted directions
(units with the same activation on every position, or constant ones, are merged or left out,
since no method could tell them apart). Every method is scored by the best |cosine| of any of
its directions with each planted one: the mean over planted directions, and the share
recovered at cosine >= ``RECOVERED``. Rotating the data and rotating the network are the same
for this question: the rotated network computes the same outputs from the rotated site.
Unlike the unsupervised methods, DAS is told each unit's counterfactual moves (what swapping the
unit does) and learns one direction per unit from them: the localisation that MIB (Mueller et
al. 2025) scores, where DAS beat SAEs. ``feature_recovery_seeds`` repeats all of it over seeds
(by default 5: each a new rotation, SAE and DAS seed) and reports mean ± std per site and method.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp.bench.compiled_ttt import CompiledRules, _reachable, make_compiled
from rljaxinterp.bench.metrics import best_cosine, mean_std, over_seeds

SITES = ("lines.post", "rules.post", "choice.post")
RECOVERED = 0.9
SEEDS = (0, 1, 2, 3, 4)  # issue #14's control for the featuriser row: 5 rotations, SAE and DAS seeds
DAS_PAIR_SEED = 1000  # DAS trains on pairs drawn with seed + 1000; interchange_accuracy evaluates on seed 0
TIERS = {"quick": {"steps": 1500, "widths": (2,), "topk": (4, 8), "relu": (1.0,), "das_steps": 300},
         "default": {"steps": 3000, "widths": (2, 4), "topk": (4, 8, 16), "relu": (0.3, 1.0, 3.0), "das_steps": 1000}}


def planted_sites(seed: int = 0, sites=SITES) -> dict[str, dict[str, np.ndarray]]:
    """Per site: ``x``, the rotated activations over every reachable position ``(positions, d)``;
    ``planted``, the planted directions ``(units, d)`` (distinct, non-constant units only);
    ``units``, their indices at the site; ``rotation``, ``Q`` (rotated = original @ Q)."""
    from rljaxinterp.interp import run_with_cache

    model, params, _ = make_compiled()
    _, obs, _, _ = _reachable()
    _, cache = run_with_cache(model, params, jnp.asarray(obs), list(sites))
    rng = np.random.default_rng(seed)
    out = {}
    for site in sites:
        x = np.asarray(cache[site], np.float64).reshape(len(obs), -1)
        q, _ = np.linalg.qr(rng.normal(size=(x.shape[1], x.shape[1])))
        _, first = np.unique(x.T, axis=0, return_index=True)
        units = np.sort([j for j in first if np.ptp(x[:, j]) > 0])
        out[site] = {"x": (x @ q).astype(np.float32), "planted": q[units], "units": units, "rotation": q}
    return out


def _pairs(pairs: int, seed: int) -> tuple[jax.Array, jax.Array]:
    """Random (base, source) observations from the reachable positions."""
    _, obs, _, _ = _reachable()
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(obs[rng.integers(0, len(obs), pairs)]) for _ in range(2))


def _activations(site: str, obs: jax.Array) -> jax.Array:
    from rljaxinterp.interp import run_with_cache

    model, params, _ = make_compiled()
    return run_with_cache(model, params, obs, [site])[1][site]


@functools.partial(jax.jit, static_argnums=0)
def _swapped(site: str, params, base: jax.Array, src: jax.Array, bases: jax.Array) -> jax.Array:
    from rljaxinterp.interp import run_with_interventions, subspace_patch

    run = lambda b: run_with_interventions(CompiledRules(), params, base, subspace_patch(site, b, src)).logits
    return jax.lax.map(run, bases)


def _swap_logits(site: str, base: jax.Array, src: jax.Array, bases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The clean logits at ``base`` ``(pairs, moves)`` and, per basis in ``bases`` ``(n, d, k)``
    (the network's basis), the logits after swapping that subspace in from the source
    activations ``src`` ``(pairs, d)``."""
    model, params, _ = make_compiled()
    swapped = _swapped(site, params, base, src, jnp.asarray(bases, jnp.float32))
    return np.asarray(model.apply({"params": params}, base).logits), np.asarray(swapped)


def interchange_accuracy(site: str, rotation: np.ndarray, units: np.ndarray, directions: np.ndarray,
                         pairs: int = 512, seed: int = 0) -> float:
    """Interchange intervention accuracy of a method's directions for the planted units: for each
    unit, swap the component along the method's direction (``directions[i]`` for ``units[i]``, in
    the rotated basis) from a source position into a base position, and count the pairs whose
    chosen move then equals the move chosen when the unit itself is swapped (Geiger et al. 2021).
    Only pairs where swapping the unit changes the move are counted, so doing nothing scores 0."""
    from rljaxinterp.bench.metrics import interchange_intervention_accuracy

    base, source = _pairs(pairs, seed)
    d = rotation.shape[0]
    truth_basis = np.eye(d)[units][:, :, None]  # (units, d, 1): the unit's own axis
    v = directions @ rotation.T  # back to the network's basis: rotated x' = x Q, so x-direction = Q d'
    method_basis = (v / np.linalg.norm(v, axis=1, keepdims=True))[:, :, None]
    logits = _swap_logits(site, base, _activations(site, source), np.concatenate([truth_basis, method_basis]))
    clean, swapped = (x.argmax(-1) for x in logits)
    expected, predicted = np.split(swapped, 2)  # (units, pairs) each
    changing = expected != clean[None]
    if not changing.any():
        raise ValueError(f"swapping no unit of site {site!r} changes a move on {pairs} pairs; use more pairs")
    return interchange_intervention_accuracy(predicted[changing], expected[changing])


def das_directions(site_name: str, site: dict, pairs: int = 8192, steps: int = 300, batch: int = 128,
                   learning_rate: float = 3e-2, seed: int = 0, soft_targets: bool = False,
                   init: np.ndarray | None = None, stats: dict | None = None) -> np.ndarray:
    """Distributed alignment search (Geiger et al. 2023) supervised by the causal model: per
    planted unit one direction (rotated basis, ``(units, d)``) whose 1-D interchange from a source
    into a base position gives the move that swapping the unit itself gives, by cross-entropy
    against that move (``soft_targets``: against that swap's move distribution, whose minimum is
    the unit itself; the hard move's is not, see the tests). All units train at once in one jitted
    scan of Adam steps. The ``pairs`` (base, source) pairs are drawn with seed ``seed +
    DAS_PAIR_SEED``, not ``interchange_accuracy``'s seed 0 (from the same reachable positions, so
    0.14 of its 512 pairs are expected among 8,192 training pairs). Half of each unit's batch comes
    from the pairs where its swap changes the move (about 1% of all pairs, too few to learn from
    otherwise). Directions start random (from ``seed``; ``init`` only for tests). A unit whose swap
    changes no training move learns from unchanged moves only: ``stats["no_signal"]`` counts them."""
    _, params, _ = make_compiled()
    units, q = site["units"], jnp.asarray(site["rotation"], jnp.float32)
    base, source = _pairs(pairs, seed + DAS_PAIR_SEED)
    src = _activations(site_name, source)
    clean, swapped = _swap_logits(site_name, base, src, np.eye(q.shape[0])[units][:, :, None])
    moves = swapped.argmax(-1)  # (units, pairs)
    targets = jax.nn.softmax(swapped) if soft_targets else jax.nn.one_hot(moves, swapped.shape[-1])
    changing = moves != clean.argmax(-1)[None]
    signal = changing.any(1, keepdims=True)
    weights = 1 / pairs + np.where(signal, changing / changing.sum(1, keepdims=True).clip(1), 1 / pairs)
    cdf = jnp.asarray(np.cumsum(weights, 1) / weights.sum(1, keepdims=True), jnp.float32)
    if stats is not None:
        stats["no_signal"] = int((~signal).sum())
    init_key, step_key = jax.random.split(jax.random.PRNGKey(seed))
    w0 = jax.random.normal(init_key, (len(units), q.shape[0])) if init is None else jnp.asarray(init, jnp.float32)
    w = np.asarray(_das_train(site_name, steps, batch, learning_rate, params, q, base, src,
                              jnp.asarray(targets, jnp.float32), cdf, w0, step_key), np.float64)
    return w / np.linalg.norm(w, axis=1, keepdims=True)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _das_train(site: str, steps: int, batch: int, learning_rate: float, params, q: jax.Array, base: jax.Array,
               src: jax.Array, targets: jax.Array, cdf: jax.Array, w0: jax.Array, key: jax.Array) -> jax.Array:
    """Every unit's direction (rows of ``w0``) trained at once in one scan of Adam steps, each unit
    on its own minibatch of pairs drawn from its sampling ``cdf`` ``(units, pairs)``."""
    import optax

    from rljaxinterp.interp import run_with_interventions, subspace_patch

    units, pairs = cdf.shape

    def loss(w: jax.Array, target: jax.Array, idx: jax.Array) -> jax.Array:
        v = q @ w  # rotated direction w is Q w in the network's basis (as in interchange_accuracy)
        patch = subspace_patch(site, (v / jnp.linalg.norm(v))[:, None], src[idx])
        logits = run_with_interventions(CompiledRules(), params, base[idx], patch).logits
        return optax.softmax_cross_entropy(logits, target[idx]).mean()

    optimiser = optax.adam(learning_rate)

    def step(carry, key):
        w, state = carry
        idx = jnp.minimum(jax.vmap(jnp.searchsorted)(cdf, jax.random.uniform(key, (units, batch))), pairs - 1)
        grad = jax.grad(lambda w: jax.vmap(loss)(w, targets, idx).sum())(w)
        updates, state = optimiser.update(grad, state)
        return (optax.apply_updates(w, updates), state), None

    return jax.lax.scan(step, (w0, optimiser.init(w0)), jax.random.split(key, steps))[0][0]


def _best_match(found: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """For each planted direction, the found direction with the largest |cosine|."""
    f = found / np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
    return f[np.abs(planted @ f.T).argmax(1)]


def _score(found: np.ndarray, site: dict, iia: bool = True) -> dict:
    cos = best_cosine(found, site["planted"])
    scores = {"mean_best_cosine": float(cos.mean()), "recovered": float(np.mean(cos >= RECOVERED))}
    if iia:
        scores["iia"] = interchange_accuracy(site["name"], site["rotation"], site["units"],
                                             _best_match(found, site["planted"]))
    return scores


def baselines(sites: dict[str, dict], nmf_iterations: int = 500, iia: bool = True) -> dict:
    """Neurons (the rotated axes), PCA (every component) and NMF (of the signed data split into
    positive and negative parts, rank = the number of planted units) per site."""
    from rljaxinterp.interp.factorisation import nmf, nonnegative_parts, pca

    out = {}
    for name, site in sites.items():
        x, planted = site["x"], site["planted"]
        d = x.shape[1]
        fit = nmf(nonnegative_parts(x), len(planted), nmf_iterations)
        c = np.asarray(fit.components)
        site = {**site, "name": name}
        out[name] = {"neurons": _score(np.eye(d), site, iia), "pca": _score(np.asarray(pca(x, d).components), site, iia),
                     "nmf": _score(c[:, :d] - c[:, d:], site, iia)}
    return out


def feature_recovery(tier: str = "quick", seed: int = 0, progress: bool = False) -> dict:
    """SAE members (topk and relu, widths as multiples of the site size) and DAS against the
    baselines, per site: recovery of the planted directions, the SAE's variance explained and L0,
    and DAS's units without training signal."""
    from rljaxinterp.interp import sae

    settings = TIERS[_check_tier(tier)]
    start = time.time()
    sites = planted_sites(seed, SITES)
    result = {"tier": tier, "seed": seed, "sites": {}, "recovered_at": RECOVERED}
    for site, scores in baselines(sites).items():
        result["sites"][site] = {"units": len(sites[site]["planted"]), "d": sites[site]["x"].shape[1],
                                 "methods": scores}
    das_start = time.time()
    for name, site in sites.items():
        stats = {}
        found = das_directions(name, site, steps=settings["das_steps"], seed=seed, stats=stats)
        result["sites"][name]["methods"]["das"] = {**_score(found, {**site, "name": name}), **stats}
    result["das_seconds"] = time.time() - das_start
    config = sae.SAEConfig(steps=settings["steps"], batch_size=512, learning_rate=1e-3, seed=seed)
    sae_start = time.time()
    for kind in ("topk", "relu"):
        for site, planted in sites.items():
            x = planted["x"]
            widths = [m * x.shape[1] for m in settings["widths"]]
            grid = sae.fit_saes({site: x}, kind, widths, settings[kind], config, progress=progress)
            quality = sae.evaluate_saes(grid, {site: x})
            for i, member in enumerate(grid.members):
                name = (f"sae {kind} {member.width // x.shape[1]}x width, "
                        f"{sae.SPARSITY_MEANING[kind].split()[0]}={member.sparsity:g}")
                result["sites"][site]["methods"][name] = {
                    **_score(np.asarray(grid[i].w_dec), {**planted, "name": site}),
                    "fve": quality[i]["fve"], "l0": quality[i]["l0"], "dead": quality[i]["dead"]}
    result["sae_seconds"] = time.time() - sae_start
    result["wall_s"] = time.time() - start
    return result


def _check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise ValueError(f"tier={tier!r} is not allowed; use one of {tuple(TIERS)}")
    return tier


def _check_seeds(seeds) -> tuple[int, ...]:
    """Distinct integer seeds, at least one: a repeated seed would shrink the reported std."""
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError(f"seeds={seeds!r} is empty; give at least one integer seed, e.g. {SEEDS}")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, (int, np.integer))]
    if bad:
        raise ValueError(f"seeds={seeds!r} holds {bad!r}; seeds must be integers, e.g. {SEEDS}")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds={seeds!r} repeats a seed; give distinct integers, e.g. {SEEDS}")
    return tuple(int(s) for s in seeds)


def feature_recovery_seeds(tier: str = "quick", seeds=SEEDS, progress: bool = False, log=print) -> dict:
    """``feature_recovery`` at every seed (each one a new rotation, SAE and DAS seed) and its
    scores aggregated over them (``aggregate``): one seed's ranking of the methods can be the
    rotation's luck. With ``progress``, logs each seed's wall time as it finishes."""
    tier, seeds = _check_tier(tier), _check_seeds(seeds)
    runs = []
    for i, seed in enumerate(seeds):
        run = feature_recovery(tier, seed, progress=progress)
        runs.append(run)
        if progress:
            log(f"seed {seed} ({i + 1}/{len(seeds)}) done in {run['wall_s']:.0f} s "
                f"({run['sae_seconds']:.0f} s SAEs, {run['das_seconds']:.0f} s DAS)")
    return aggregate(runs)


def aggregate(runs: list[dict]) -> dict:
    """Per site and method, mean, std and per-seed values (``metrics.over_seeds``) of every
    score of single-seed ``feature_recovery`` results of one tier; the runs themselves are kept
    under ``per_seed``. Refuses runs that do not score the same sites, units and methods, since a
    mean over different things would read as a mean over seeds."""
    if not runs:
        raise ValueError("runs is empty; aggregate needs at least one feature_recovery result")
    first = runs[0]
    for run in runs[1:]:
        if run["tier"] != first["tier"]:
            raise ValueError(f"runs mix tiers {first['tier']!r} and {run['tier']!r}; aggregate one tier at a time")
        if set(run["sites"]) != set(first["sites"]):
            raise ValueError(f"seed {run['seed']} scores sites {sorted(run['sites'])}, seed {first['seed']} "
                             f"{sorted(first['sites'])}; aggregate runs of the same sites")
        for site, s in first["sites"].items():
            other = run["sites"][site]
            if other["units"] != s["units"] or set(other["methods"]) != set(s["methods"]):
                raise ValueError(f"seed {run['seed']} scores site {site!r} with other units or methods than seed "
                                 f"{first['seed']}: {other['units']} units, {sorted(other['methods'])} against "
                                 f"{s['units']}, {sorted(s['methods'])}")
    sites = {site: {"units": s["units"], "d": s["d"],
                    "methods": {m: over_seeds([r["sites"][site]["methods"][m] for r in runs]) for m in s["methods"]}}
             for site, s in first["sites"].items()}
    totals = {k: float(sum(r[k] for r in runs)) for k in ("wall_s", "sae_seconds", "das_seconds")}
    return {"tier": first["tier"], "seeds": [r["seed"] for r in runs], "recovered_at": first["recovered_at"],
            "sites": sites, **totals, "per_seed": runs}


def table(result: dict) -> list[str]:
    """Markdown: one row per method, per site its mean best cosine, recovered share and IIA
    (``mean ± std`` over seeds, under a line naming them, for an ``aggregate`` result)."""
    sites = list(result["sites"])
    methods = list(dict.fromkeys(m for s in sites for m in result["sites"][s]["methods"]))
    head = "| method | " + " | ".join(f"{s} ({result['sites'][s]['units']} units)" for s in sites) + " |"
    lines = [head, "|---|" + "---|" * len(sites)]
    cell = _seeds_cell if "seeds" in result else _cell
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(cell(result["sites"][s]["methods"].get(m)) for s in sites) + " |")
    if "seeds" not in result:
        return lines
    seeds = result["seeds"]
    header = (f"Mean ± std (population std) over {len(seeds)} seeds ({', '.join(map(str, seeds))}), tier "
              f"{result['tier']}: mean best cosine (recovered share at cosine >= {result['recovered_at']:g}, IIA, "
              "and for SAEs FVE and L0).")
    return [header, "", *lines]


def _cell(r: dict | None) -> str:
    if r is None:
        return "—"
    extra = f", FVE {r['fve']:.3f}, L0 {r['l0']:.1f}" if "fve" in r else ""
    iia = f", IIA {r['iia']:.2f}" if "iia" in r else ""
    return f"{r['mean_best_cosine']:.3f} ({100 * r['recovered']:.0f}%{iia}{extra})"


def _seeds_cell(r: dict | None) -> str:
    if r is None:
        return "—"
    parts = [f"{mean_std(r['recovered'], 0, 100)}%"]
    parts += [f"IIA {mean_std(r['iia'], 2)}"] if "iia" in r else []
    parts += [f"FVE {mean_std(r['fve'], 3)}", f"L0 {mean_std(r['l0'], 1)}"] if "fve" in r else []
    return f"{mean_std(r['mean_best_cosine'])} ({', '.join(parts)})"


def cosine_bars(result: dict) -> tuple[list[str], dict[str, list[float]], dict[str, list[float]]]:
    """``(methods, means, stds)`` of the mean best cosine, ``means`` and ``stds`` keyed by site,
    from an ``aggregate`` result: the bars and error bars of ``plot``."""
    sites = result["sites"]
    methods = list(dict.fromkeys(m for s in sites.values() for m in s["methods"]))
    stat = lambda site, m, k: sites[site]["methods"].get(m, {}).get("mean_best_cosine", {}).get(k, float("nan"))
    return (methods, {s: [stat(s, m, "mean") for m in methods] for s in sites},
            {s: [stat(s, m, "std") for m in methods] for s in sites})


def plot(result: dict, path: Path) -> Path:
    """Bar chart of the mean best cosine per method and site, std over seeds as error bars."""
    from rljaxinterp.reporting import bar_chart

    methods, means, stds = cosine_bars(result)
    seeds = result["seeds"]
    return bar_chart(path, methods, means, f"Planted directions, tier {result['tier']}: mean ± std, {len(seeds)} seeds",
                     "mean best |cosine|", errors=stds)
