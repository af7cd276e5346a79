"""``rljaxinterp sweep|probe|attribute|factorise|steer|ablate RUN``: the toolkit on any run
folder (board games, gridworlds, control tasks), over the states a researcher picks, each
command writing JSON, a figure and a short ``summary.md``.

States: ``--source all`` (every tic-tac-toe position), ``random`` (uniformly random play),
``self`` (the run's own network, greedy with probability 1 - ``--epsilon``); gridworlds pick
the level distribution with ``--distribution train|test``. States are deduplicated and the
counts (asked, drawn, distinct) are printed and stored, never silently cut.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from rljaxinterp.cli import ShowDefaults, help_of

SOURCES = ("auto", "all", "random", "self")
DISTRIBUTIONS = ("train", "test")
METRICS = ("value", "action")
SWEEP_METHODS = ("patching", "attribution", "zero", "mean", "resample")
ATTRIBUTIONS = ("gradient", "gradient_x_input", "integrated_gradients", "occlusion")


# -- the states and the run ------------------------------------------------------------------
@dataclasses.dataclass
class Analysis:
    """A run opened for one command: checkpoint, env (of the chosen distribution), states."""

    run: Any
    step: int
    params: Any
    env: Any
    states: Any
    out: Path
    meta: dict

    @functools.cached_property
    def obs(self):
        """float32 observations, converted once (commands read them many times)."""
        import jax.numpy as jnp

        return self.states.observation.astype(jnp.float32)

    @property
    def env_name(self) -> str:
        return self.run.config.env


def analysis_env(run, distribution: str | None):
    """The run's env, or its ``distribution`` levels (gridworlds with train/test levels)."""
    if distribution is None:
        return run.env
    from rljaxinterp import envs

    kwargs = dict(getattr(run.config, "env_kwargs", {}) or {})
    try:
        return envs.make(run.config.env, **{**kwargs, "distribution": distribution})
    except (TypeError, ValueError) as err:
        raise SystemExit(f"--distribution {distribution}: {run.config.env} has no train/test level distributions "
                         f"({err})") from None


def greedy_player(run, params, epsilon: float):
    """The run's raw network: its greedy legal move, a random legal one with prob. ``epsilon``."""
    import jax
    import jax.numpy as jnp

    from rljaxinterp.agents.common import epsilon_greedy
    from rljaxinterp.models.base import mask_logits

    def greedy(states):
        logits = run.policy_value(params, states.observation.astype(jnp.float32)).logits
        return jnp.argmax(mask_logits(logits, states.legal_action_mask), -1)

    return epsilon_greedy(jax.jit(greedy), epsilon)


def choose_states(run, env, params, source: str, n: int, seed: int, epsilon: float):
    """The states of ``source`` and what was drawn to get them."""
    import jax
    import numpy as np

    from rljaxinterp.envs.sampling import sample_states

    name = run.config.env
    if source == "auto":
        source = "all" if name == "tic_tac_toe" else "random" if env.num_players == 2 else "self"
    if source == "all":
        if name != "tic_tac_toe":
            raise SystemExit(f"--source all enumerates positions of tic_tac_toe only, not {name}; use random or self")
        from rljaxinterp.envs.boards import tic_tac_toe_reachable

        states, _ = tic_tac_toe_reachable()
        live = np.flatnonzero(~np.asarray(states.terminated))
        return jax.tree.map(lambda x: x[live], states), {"source": "all", "asked": None, "drawn": int(live.size),
                                                         "distinct": int(live.size), "used": int(live.size)}
    player = None if source == "random" else greedy_player(run, params, epsilon)
    states, meta = sample_states(env, n, jax.random.key(seed), player)
    return states, {"source": source, **({"epsilon": epsilon} if source == "self" else {}), **meta}


def open_analysis(args, out_name: str | None = None) -> Analysis:
    from rljaxinterp.runs import load_run

    run = load_run(args.run_dir)
    step = run._step(args.step)
    params = run.params(step)
    env = analysis_env(run, args.distribution)
    states, meta = choose_states(run, env, params, args.source, args.states, args.seed, args.epsilon)
    meta = {"distribution": args.distribution, **meta}
    if meta["used"] == 0:
        raise SystemExit(f"no live states from {meta['source']} play of {run.config.env}")
    if meta["source"] == "all":
        print(f"states: all {meta['used']:,} live tic-tac-toe positions")
    else:
        print(f"states: {meta['used']:,} of {meta['asked']:,} asked ({meta['source']} play, {meta['drawn']:,} drawn, "
              f"{meta['distinct']:,} distinct{', ' + args.distribution + ' levels' if args.distribution else ''})")
    out = Path(args.out or Path(args.run_dir) / f"{out_name or args.command}-{step}")
    out.mkdir(parents=True, exist_ok=True)
    return Analysis(run, step, params, env, states, out, meta)


def write(a: Analysis, name: str, result: dict, summary: list[str]) -> None:
    """``<name>.json`` (with the run, step and states) and ``summary.md``; with several
    processes (``rljaxinterp launch``) only process 0 writes."""
    from rljaxinterp.distributed import is_primary

    if not is_primary():
        return
    head = {"run": str(a.run.folder), "env": a.env_name, "step": a.step, "states": a.meta}
    (a.out / f"{name}.json").write_text(json.dumps({**head, **result}, indent=1))
    source = a.meta["source"] + (f", {a.meta['distribution']} levels" if a.meta.get("distribution") else "")
    states = ("every live tic-tac-toe position" if a.meta["source"] == "all"
              else f"distinct states from {source} play")
    lines = [f"# {name}: {a.env_name} run `{a.run.folder}`, step {a.step}", "",
             f"{a.meta['used']:,} {states}.", "", *summary, ""]
    (a.out / "summary.md").write_text("\n".join(lines))


def metric_and_data(a: Analysis, metric: str, obs=None, states=None):
    """``(metric(out, data), data)``: the value head, or the log-probability of the move the
    unedited network picks on each base state (a per-state action, chunked with the states)."""
    import jax.numpy as jnp

    from rljaxinterp.interp.metrics import log_policy

    obs = a.obs if obs is None else obs
    states = a.states if states is None else states
    if metric == "value":
        return (lambda out, data: out.value), {"legal": states.legal_action_mask}
    logits = a.run.policy_value(a.params, obs).logits
    data = {"legal": states.legal_action_mask,
            "action": jnp.argmax(jnp.where(states.legal_action_mask, logits, -jnp.inf), -1)}

    def chosen(out, data):
        return jnp.take_along_axis(log_policy(out.logits, data["legal"]), data["action"][:, None], -1)[:, 0]

    return chosen, data


def pairs_for(a: Analysis, spec: str, seed: int):
    """Clean and corrupted states: a random permutation, or ``remove:<concept>`` /
    ``add:<concept>`` counterfactuals (one concept changed by a minimal legal edit)."""
    import jax

    if spec == "random":
        perm = jax.random.permutation(jax.random.key(seed), len(a.obs))
        return a.states, jax.tree.map(lambda x: x[perm], a.states), {"pairs": "random permutation of the states"}
    how, _, concept = spec.partition(":")
    if how not in ("remove", "add") or not concept:
        raise SystemExit(f"--pairs {spec!r}: use random, remove:<concept> or add:<concept>")
    from rljaxinterp.interp.counterfactuals import find_pairs

    try:
        pairs = find_pairs(a.env_name, a.states, concept, to=how == "add", key=jax.random.key(seed), env=a.env)
    except (KeyError, ValueError) as err:
        raise SystemExit(f"--pairs {spec}: {err}") from None
    print(f"pairs: {len(pairs)} of {pairs.tried} states with '{concept}' {'absent' if how == 'add' else 'present'} "
          f"got a minimal edit that {how}s it")
    return pairs.clean, pairs.counterfactual, {"pairs": spec, "pairs_found": len(pairs), "pairs_tried": pairs.tried,
                                               "operators": sorted(set(pairs.operator_names()))}


# -- commands ----------------------------------------------------------------------------------
def run_sweep(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rljaxinterp import interp
    from rljaxinterp.distributed import is_primary
    from rljaxinterp.interp.ablation import ablation_sweep
    from rljaxinterp.interp.attribution_patching import attribution_patching
    from rljaxinterp.interp.plots import plot_effects_by_unit

    a = open_analysis(args)
    model, params = a.run.model, a.params
    if args.method in ("patching", "attribution"):
        clean, corrupted, pair_meta = pairs_for(a, args.pairs, args.seed)
    else:
        clean, corrupted, pair_meta = a.states, None, {}
    clean_obs = clean.observation.astype(jnp.float32)
    metric, data = metric_and_data(a, args.metric, clean_obs, clean)
    if args.method == "patching":
        effects = interp.patching_sweep(model, params, clean_obs, corrupted.observation.astype(jnp.float32), metric,
                                        granularity=args.granularity, metric_data=data)
    elif args.method == "attribution":
        effects = attribution_patching(model, params, clean_obs, corrupted.observation.astype(jnp.float32),
                                       metric, metric_data=data)
    else:
        if args.metric != "value":
            raise SystemExit("ablation sweeps measure the value (--metric value)")
        effects = ablation_sweep(model, params, clean_obs, lambda out: out.value, args.method,
                                 granularity=args.granularity, key=jax.random.key(args.seed))
    effects = {k: np.asarray(v) for k, v in effects.items()}
    top = sorted(((float(np.abs(v).max()), k, int(np.abs(v).argmax())) for k, v in effects.items()), reverse=True)[:5]
    write(a, "effects", {"method": args.method, "metric": args.metric, "granularity": args.granularity, **pair_meta,
                         "pairs_used": int(clean_obs.shape[0]), "effects": {k: v.tolist() for k, v in effects.items()}},
          [f"{args.method} sweep ({args.granularity}) of the {args.metric} metric over {clean_obs.shape[0]} "
           f"states ({pair_meta.get('pairs', 'no pairs')}). Largest mean effects:", "",
           "| site | index | effect |", "|---|---|---|",
           *[f"| {k} | {i} | {float(effects[k].reshape(-1)[i]):+.4f} |" for _, k, i in top],
           "", "![effects](effects_by_unit.png)"])
    if not is_primary():
        return 0
    plot_effects_by_unit(effects, a.out / "effects_by_unit.png",
                         f"{args.method}: effect on {args.metric}, step {a.step}, {clean_obs.shape[0]} states")
    print(f"{args.method} sweep over {len(effects)} sites written to {a.out}/")
    return 0


def _untrained_params(run, seed: int):
    """Parameters of a freshly initialised network of the run's architecture, or None."""
    import jax

    state = run.agent.init(jax.random.key(10_000 + seed))
    return getattr(state, "params", None)


def run_probe(args) -> int:
    import jax
    import numpy as np

    from rljaxinterp import interp
    from rljaxinterp.distributed import is_primary
    from rljaxinterp.interp import concepts
    from rljaxinterp.interp.dynamics import plot_probe_table
    from rljaxinterp.interp.probes import fit_probes, leaked_rows, probe_split, site_features

    a = open_analysis(args)
    values = {k: np.asarray(v, np.float32).reshape(len(a.obs)) for k, v in concepts.compute(a.env_name, a.states).items()}
    constant = [k for k, v in values.items() if np.ptp(v) == 0]
    values = {k: v for k, v in values.items() if k not in constant}
    if not values:
        raise SystemExit(f"every concept of {a.env_name} is constant on these states ({', '.join(constant)}); "
                         "choose another --source or --distribution")
    sites = [s for s in interp.sites(a.run.model, a.obs[:1]) if s != "tokens"]

    def features_of(params):
        if hasattr(a.run.model, "token_types"):  # a sequence model: each site at the token the move is read from
            from rljaxinterp.interp.sequence import decision_positions, token_features

            return token_features(a.run.model, params, a.obs, decision_positions(a.run.model, a.obs), sites)
        return site_features(a.run.model, params, a.obs, sites)

    options = {"kind": args.probe, "l2": "cv" if args.l2 == "cv" else float(args.l2)}
    features = features_of(a.params)
    scores = fit_probes(features, values, bootstrap=1000, **options)
    shuffled = fit_probes(features, values, shuffle_labels=True, **options)
    untrained_params = _untrained_params(a.run, args.seed)
    untrained = None if untrained_params is None else fit_probes(features_of(untrained_params), values, **options)
    train, test = probe_split(jax.random.key(0), len(a.obs))  # fit_probes' split (its default key)
    leaks = leaked_rows(np.asarray(a.obs), train, test)
    binary = [c for c in scores.concepts if set(np.unique(values[c])) <= {0.0, 1.0}]
    summary = scores.summary()
    per_concept = {}
    # the input is the same for every network: compare hidden sites, and give the input's score apart
    hidden = np.asarray([site != "input" for site in scores.sites])
    input_row = scores.sites.index("input") if "input" in scores.sites else None
    for j, c in enumerate(scores.concepts):
        i = int(np.argmax(np.where(hidden, np.asarray(scores.test)[:, j], -np.inf)))
        per_concept[c] = {"kind": "binary" if c in binary else "real", "best_site": scores.sites[i],
                          **summary[scores.sites[i]][c],
                          "input": None if input_row is None else float(np.asarray(scores.test)[input_row, j]),
                          "shuffled_labels": float(np.asarray(shuffled.test)[i, j]),
                          "untrained_best": None if untrained is None
                          else float(np.asarray(untrained.test)[hidden, j].max())}
    result = {"probe": args.probe, "l2": args.l2, "leaked_rows": int(leaks), "dropped_constant": constant,
              "test": summary, "shuffled_labels": shuffled.table(),
              "untrained": None if untrained is None else untrained.table(), "by_concept": per_concept}
    rows = []
    for c, r in per_concept.items():
        ci = "" if r["ci"][0] is None else f" [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
        balanced = f"{r['balanced']:.3f}" if r["kind"] == "binary" else "-"
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
        rows.append(f"| {c} | {'accuracy' if r['kind'] == 'binary' else 'R^2'} | {r['best_site']} | {r['test']:.3f}{ci} | "
                    f"{balanced} | {r['baseline']:.3f} | {fmt(r['input'])} | {r['shuffled_labels']:.3f} | "
                    f"{fmt(r['untrained_best'])} |")
    figures = []
    for kind, names in (("binary", binary), ("real", [c for c in scores.concepts if c not in binary])):
        if not names or not is_primary():  # with several processes, process 0 draws and writes
            continue
        cols = [scores.concepts.index(c) for c in names]
        if kind == "binary":
            table = np.asarray(scores.balanced)[:, cols]
            plot_probe_table(table, scores.sites, names, a.out / "probes_binary.png",
                             f"{args.probe} probes: balanced accuracy (0.5 = chance), step {a.step}", vmin=0.5,
                             label="balanced accuracy")
            figures.append("probes_binary.png")
        else:
            table = np.asarray(scores.test)[:, cols]
            plot_probe_table(table, scores.sites, names, a.out / "probes_real.png",
                             f"{args.probe} probes: held-out R^2 (below 0 drawn at -0.5), step {a.step}",
                             vmin=-0.5, cmap="RdBu_r", label="R^2")
            figures.append("probes_real.png")
    write(a, "probes", result, [
        f"{args.probe} probes on every site (input included), l2 {args.l2}, held-out quarter of the distinct "
        f"states ({leaks} test states also in the training split). Score at the best site with its 95% bootstrap "
        "interval; binary concepts by accuracy (and balanced accuracy, 0.5 = chance) beside the majority-class "
        "accuracy, real ones by R^2 (baseline 0). The best hidden site is compared with the input (what a probe "
        "reads without the network), the same probe on shuffled labels, and the best hidden site of a freshly "
        "initialised network of the same architecture.", "",
        "| concept | score | best hidden site | test [95% CI] | balanced acc. | majority baseline | input | "
        "shuffled labels | untrained net |", "|---|---|---|---|---|---|---|---|---|", *rows, "",
        *(f"![{f}]({f})" for f in figures),
        *([f"Constant on these states, not probed: {', '.join(constant)}."] if constant else [])])
    if is_primary():
        print(f"probes for {len(scores.concepts)} concepts x {len(scores.sites)} sites written to {a.out}/")
    return 0


def _board_rows(obs, heats) -> list[dict]:
    """``draw_board`` arguments; pieces drawn when the observation is (mover, opponent) planes."""
    two_planes = obs.ndim == 4 and obs.shape[-1] == 2
    return [{"heat": h, "own": o[..., 0] if two_planes else None, "opponent": o[..., 1] if two_planes else None}
            for o, h in zip(obs, heats)]


def run_attribute(args) -> int:
    import numpy as np

    from rljaxinterp.interp import attribution
    from rljaxinterp.interp.plots import plot_board_rows

    a = open_analysis(args)
    model, params, obs = a.run.model, a.params, a.obs
    metric, data = metric_and_data(a, args.metric)
    if args.method == "occlusion":
        attr = attribution.occlusion(model, params, obs, metric, metric_data=data)
    else:
        fn = {"gradient": attribution.gradients, "gradient_x_input": attribution.gradient_x_input,
              "integrated_gradients": attribution.integrated_gradients}[args.method]
        attr = fn(model, params, obs, metric, site=args.site, metric_data=data)
    attr = np.asarray(attr)
    np.savez_compressed(a.out / "attributions.npz", attributions=attr, observations=np.asarray(obs))
    result = {"method": args.method, "site": args.site, "metric": args.metric, "shape": list(attr.shape[1:]),
              "mean_abs": float(np.abs(attr).mean())}
    lines = [f"{args.method} of the {args.metric} metric{' at ' + args.site if args.site else ''} on "
             f"{len(attr)} states; mean |attribution| {result['mean_abs']:.4g}. Arrays: `attributions.npz`."]
    if attr.ndim >= 3:  # laid out on a grid: mean |attribution| per cell, and the strongest states
        per_square = np.abs(attr).reshape(*attr.shape[:3], -1).sum(-1)
        top = np.argsort(-per_square.reshape(len(attr), -1).max(1))[:8]
        rows = [[{"heat": per_square.mean(0), "title": "mean over states"}],
                [dict(b, title=f"state {i}") for b, i in zip(_board_rows(np.asarray(obs)[top], per_square[top]), top)]]
        plot_board_rows(rows, a.out / "attributions.png", f"{args.method} of the {args.metric}"
                        f"{' at ' + args.site if args.site else ''}, step {a.step}")
        result["mean_abs_per_square"] = per_square.mean(0).tolist()
        lines += ["", "![attributions](attributions.png)"]
    write(a, "attributions", result, lines)
    print(f"{args.method} attributions of {obs.shape[0]} states written to {a.out}/")
    return 0


def run_factorise(args) -> int:
    import jax
    import numpy as np

    from rljaxinterp import interp
    from rljaxinterp.interp.factorisation import nmf, nonnegative_parts, pca, per_position, top_rows
    from rljaxinterp.interp.plots import plot_board_rows

    a = open_analysis(args)
    obs = np.asarray(a.obs)
    _, cache = interp.run_with_cache(a.run.model, a.params, a.obs, [args.site])
    acts = np.asarray(cache[args.site])
    spatial = acts.ndim == 4 and acts.shape[1:3] == obs.shape[1:3]
    rows = per_position(acts) if spatial else acts.reshape(len(acts), -1)
    if args.method == "nmf":
        matrix = rows if rows.min() >= 0 else nonnegative_parts(rows)
        fit = nmf(matrix, args.rank, args.iterations, jax.random.key(args.seed))
    else:
        fit = pca(rows, args.rank)
    weights = np.asarray(fit.weights)
    result = {"site": args.site, "method": args.method, "rank": args.rank,
              "relative_error": float(fit.relative_error), "explained": np.asarray(fit.explained).tolist(),
              "components": np.asarray(fit.components).tolist()}
    if spatial:
        maps = weights.reshape(len(acts), *acts.shape[1:3], args.rank)
        strength = maps.reshape(len(acts), -1, args.rank).max(1)
        board_rows = [[dict(b, title=f"state {i}") for b, i in zip(_board_rows(obs[idx], maps[idx, ..., f]), idx)]
                      for f, idx in enumerate(top_rows(strength, 6))]
    elif obs.ndim == 4:  # a non-spatial site: show the boards of the states where each factor peaks
        board_rows = [[dict(b, title=f"{weights[i, f]:.2f}") for b, i in zip(_board_rows(obs[idx], obs[idx].sum(-1)), idx)]
                      for f, idx in enumerate(top_rows(weights, 6))]
    else:
        board_rows = []
    lines = [f"{args.method} of `{args.site}` at rank {args.rank}: relative reconstruction error "
             f"{float(fit.relative_error):.3f}."]
    if board_rows:
        plot_board_rows(board_rows, a.out / "factors.png", f"{args.method} of {args.site}: states where each factor "
                        "is strongest (rows = factors)", [f"factor {f}" for f in range(args.rank)],
                        cmap="viridis" if args.method == "nmf" else "RdBu_r")
        lines += ["", "![factors](factors.png)"]
    write(a, "factors", result, lines)
    print(f"{args.method} rank {args.rank} of {args.site}: relative error {float(fit.relative_error):.3f}; "
          f"written to {a.out}/")
    return 0


def _behaviour(a: Analysis, args, members, labels, xlabel: str, title: str) -> dict:
    """Episodes (or games) under each member with random controls; figure and summary."""
    import jax

    from rljaxinterp.interp.behaviour import rollout
    from rljaxinterp.reporting.behaviour import plot_behaviour

    behaviour = rollout(a.run.model, a.params, a.env, members, episodes=args.episodes, controls=args.controls,
                        key=jax.random.key(args.seed + 1), policy=args.policy, opponent=args.opponent, labels=labels)
    summary = behaviour.summary()
    plot_behaviour(summary, a.out / "behaviour.png", title, xlabel)
    return summary


def _behaviour_text(summary: dict, what: str, args, two_player: bool) -> list[str]:
    from rljaxinterp.reporting.behaviour import behaviour_lines

    against = f" against a {args.opponent} opponent, half the games moving first" if two_player else ""
    return [f"## Behaviour over {args.episodes} {'games' if two_player else 'episodes'}{against}", "",
            f"{what} at every step, the agent playing its {'greedy' if args.policy == 'greedy' else 'sampled'} move. "
            f"Each edit has {args.controls} random controls, the same edit aimed at random (a random direction of "
            "equal norm, or as many random units), played from the same keys; p is the share of them at least as far "
            "from the unedited agent as the edit, counting the edit ((1 + k) / (1 + draws)).", "",
            *behaviour_lines(summary), "", "![behaviour](behaviour.png)"]


def run_steer(args) -> int:
    import jax.numpy as jnp
    import numpy as np

    from rljaxinterp import interp
    from rljaxinterp.interp import concepts
    from rljaxinterp.interp.steering import mean_difference, steering_effect

    a = open_analysis(args)
    try:
        values = concepts.compute(a.env_name, a.states, [args.concept])
    except KeyError as err:
        raise SystemExit(str(err).strip('"')) from None
    has = np.asarray(values[args.concept]).reshape(len(a.obs)) > 0.5
    if has.all() or not has.any():
        hint = " or --distribution test (gridworld test levels vary more)" if a.env.num_players == 1 else ""
        raise SystemExit(f"concept {args.concept!r} is {'always' if has.all() else 'never'} true on these "
                         f"{len(has)} states; a direction needs both kinds: try another --source{hint}")
    _, cache = interp.run_with_cache(a.run.model, a.params, a.obs, [args.site])
    direction = mean_difference(cache[args.site][has], cache[args.site][~has])
    lacking = np.flatnonzero(~has)
    effect = steering_effect(a.run.model, a.params, a.obs[lacking], args.site, direction, args.coefficients,
                             a.states.legal_action_mask[lacking])
    one_step = {k: np.asarray(v).tolist() for k, v in effect.items()}
    for i, c in enumerate(args.coefficients):
        print(f"coefficient {c:+g}: policy KL {one_step['policy_kl'][i]:.4f}, greedy move changed on "
              f"{100 * one_step['greedy_changed'][i]:.1f}% of states, value change {one_step['value_change'][i]:+.3f}")
    result = {"site": args.site, "concept": args.concept, "states_with": int(has.sum()),
              "states_steered": int(lacking.size), "direction_norm": float(jnp.linalg.norm(direction)),
              "one_step": one_step}
    lines = [f"Direction: mean activation at `{args.site}` over the {int(has.sum())} states with `{args.concept}` "
             f"minus the mean over the {lacking.size} without (norm {result['direction_norm']:.3f}).", "",
             "## One step, on the states without the concept", "",
             "| coefficient | policy KL | greedy move changed | value change |", "|---|---|---|---|",
             *[f"| {c:+g} | {one_step['policy_kl'][i]:.4f} | {one_step['greedy_changed'][i]:.3f} | "
               f"{one_step['value_change'][i]:+.3f} |" for i, c in enumerate(args.coefficients)], ""]
    if args.episodes:
        members = [interp.add(args.site, c * direction) for c in args.coefficients]
        summary = _behaviour(a, args, members, args.coefficients, "coefficient",
                             f"steering '{args.concept}' at {args.site}, step {a.step}")
        result["behaviour"] = summary
        lines += _behaviour_text(summary, f"`coefficient x direction` added at `{args.site}`", args,
                                 a.env.num_players == 2)
    write(a, "steering", result, lines)
    print(f"steering along '{args.concept}' at {args.site} written to {a.out}/")
    return 0


def unit_mask(info, units: list[int] | None):
    """A mask over a site: 1 on the chosen units (its unit axis; every position), else 0."""
    import numpy as np

    axes = info.axes_of_kind("unit") if info.axes is not None else ()
    axis = axes[-1] if axes else len(info.shape) - 1
    size = info.shape[axis]
    chosen = list(range(size)) if units is None else units
    bad = [u for u in chosen if not 0 <= u < size]
    if bad:
        raise SystemExit(f"--units {bad}: site {info.name!r} has {size} units (0..{size - 1}) along axis "
                         f"{axis} of its shape {info.shape}")
    mask = np.zeros(size, np.float32)
    mask[chosen] = 1.0
    return mask.reshape([size if i == axis else 1 for i in range(len(info.shape))]), len(chosen), size


def run_ablate(args) -> int:
    import jax.numpy as jnp

    from rljaxinterp import interp

    a = open_analysis(args)
    infos = interp.site_info(a.run.model, a.obs[:1], a.params)
    if args.site not in infos:
        raise SystemExit(f"unknown site {args.site!r}; sites: {', '.join(infos)}")
    info = infos[args.site]
    units = None if args.units is None else [int(u) for u in args.units.split(",") if u.strip()]
    mask, count, size = unit_mask(info, units)
    if args.kind == "zero":
        member = interp.zero_ablate(args.site, mask)
    else:
        _, cache = interp.run_with_cache(a.run.model, a.params, a.obs, [args.site])
        member = interp.mean_ablate(args.site, cache[args.site], jnp.asarray(mask))
    what = f"{args.kind}-ablating {count} of {size} units of `{args.site}`"
    summary = _behaviour(a, args, [member], [f"{count} units"], "ablation",
                         f"{args.kind} ablation of {count}/{size} units at {args.site}, step {a.step}")
    result = {"site": args.site, "kind": args.kind, "units": units, "unit_count": size, "behaviour": summary}
    write(a, "ablation", result, [f"{what[0].upper()}{what[1:]} ({'the mean over the chosen states' if args.kind == 'mean' else 'zero'}).",
                                  "", *_behaviour_text(summary, what.capitalize(), args, a.env.num_players == 2)])
    print(f"{what}: behaviour written to {a.out}/")
    return 0


COMMANDS = {"sweep": run_sweep, "probe": run_probe, "attribute": run_attribute, "factorise": run_factorise,
            "steer": run_steer, "ablate": run_ablate}


def add_parsers(commands) -> None:
    for name, fn in COMMANDS.items():
        p = commands.add_parser(name, help=help_of(name), description=f"{help_of(name)}. {__doc__.split(chr(10) * 2)[1]}",
                                formatter_class=ShowDefaults)
        p.add_argument("run_dir", metavar="RUN", help="run folder")
        p.add_argument("--step", type=int, help="checkpoint (default: the latest)")
        p.add_argument("--source", choices=SOURCES, default="auto",
                       help="states: auto = all for tic-tac-toe, random play for other games, the agent's own play "
                            "for one-player tasks")
        p.add_argument("--states", type=int, default=4096, help="distinct states wanted from play")
        p.add_argument("--epsilon", type=float, default=0.25, help="--source self: share of random moves")
        p.add_argument("--distribution", choices=DISTRIBUTIONS, help="gridworlds: train or test levels (default: the run's)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", help="output folder (default: <run>/<command>-<step>)")
        if name in ("sweep", "attribute"):
            p.add_argument("--metric", choices=METRICS, default="value",
                           help="value head, or log-probability of the unedited network's greedy move")
        if name == "sweep":
            p.add_argument("--method", choices=SWEEP_METHODS, default="patching")
            p.add_argument("--granularity", choices=("element", "unit", "position", "head", "site"), default="unit")
            p.add_argument("--pairs", default="random",
                           help="clean/corrupted pairs for patching: random (a permutation), remove:<concept> or "
                                "add:<concept> (a minimal legal edit that changes only that concept)")
        elif name == "probe":
            p.add_argument("--probe", choices=("ridge", "logistic", "sparse"), default="ridge")
            p.add_argument("--l2", default="cv", help="l2 penalty, or cv: chosen by 5-fold cross-validation on the "
                                                      "training split")
        elif name == "attribute":
            p.add_argument("--method", choices=ATTRIBUTIONS, default="integrated_gradients")
            p.add_argument("--site", help="attribute to this site's activation (default: the observation)")
        elif name == "factorise":
            p.add_argument("--site", required=True)
            p.add_argument("--method", choices=("nmf", "pca"), default="nmf")
            p.add_argument("--rank", type=int, default=6)
            p.add_argument("--iterations", type=int, default=500)
        if name in ("steer", "ablate"):
            p.add_argument("--site", required=True)
            p.add_argument("--episodes", type=int, default=64 if name == "steer" else 128,
                           help="episodes (games) played under each intervention" + (", 0 for none" if name == "steer"
                                                                                     else ""))
            p.add_argument("--policy", choices=("greedy", "sample"), default="greedy",
                           help="the edited agent's move: greedy, or sampled from its policy")
            p.add_argument("--controls", type=int, default=4, help="random controls drawn per intervention")
            p.add_argument("--opponent", choices=("random", "self"), default="random",
                           help="two-player games: a uniformly random player, or the unedited network")
        if name == "steer":
            p.add_argument("--concept", required=True, help="direction = mean(concept true) - mean(concept false)")
            p.add_argument("--coefficients", type=float, nargs="+", default=[0.5, 1.0, 2.0])
        elif name == "ablate":
            p.add_argument("--kind", choices=("zero", "mean"), default="zero")
            p.add_argument("--units", help="comma-separated unit (channel / neuron) indices (default: every unit)")
        p.set_defaults(run=fn)
