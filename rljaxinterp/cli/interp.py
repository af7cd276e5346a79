"""``rljaxinterp sweep|probe|attribute|factorise|steer RUN``: the toolkit on any run folder,
over the states a researcher would pick (every reachable position of tic-tac-toe, positions
from random play elsewhere), written as JSON plus a figure."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rljaxinterp import interp

METHODS = ("patching", "attribution", "zero", "mean", "resample")


def analysis_states(env, env_name: str, n: int, seed: int):
    """Every tic-tac-toe position, or ``n`` states from uniformly random play."""
    if env_name == "tic_tac_toe":
        from rljaxinterp.envs.boards import tic_tac_toe_reachable

        states, _ = tic_tac_toe_reachable()
        return jax.tree.map(lambda x: x[np.flatnonzero(~np.asarray(states.terminated))], states)
    from rljaxinterp.envs.sampling import random_play_states

    games = max(1, n // 32)
    states = random_play_states(env, games, 64, jax.random.key(seed))
    return jax.tree.map(lambda x: x[:n], states)


def _open(args):
    from rljaxinterp.runs import load_run

    run = load_run(args.run_dir)
    step = args.step if args.step is not None else run.steps[-1]
    states = analysis_states(run.env, run.config.env, args.states, args.seed)
    out = Path(args.out or Path(args.run_dir) / f"{args.command}-{step}")
    out.mkdir(parents=True, exist_ok=True)
    return run, run.params(step), states, states.observation.astype(jnp.float32), out, step


def run_sweep(args) -> int:
    from rljaxinterp.interp.ablation import ablation_sweep
    from rljaxinterp.interp.attribution_patching import attribution_patching
    from rljaxinterp.interp.plots import plot_effects_by_unit

    run, params, _, obs, out, step = _open(args)
    metric = interp.metrics.value
    corrupted = obs[jax.random.permutation(jax.random.key(args.seed), obs.shape[0])]
    if args.method == "patching":
        effects = interp.patching_sweep(run.model, params, obs, corrupted, metric, granularity=args.granularity)
    elif args.method == "attribution":
        effects = attribution_patching(run.model, params, obs, corrupted, metric)
    else:
        effects = ablation_sweep(run.model, params, obs, metric, args.method, granularity=args.granularity,
                                 key=jax.random.key(args.seed))
    effects = {k: np.asarray(v) for k, v in effects.items()}
    (out / "effects.json").write_text(json.dumps({
        "run": args.run_dir, "step": step, "method": args.method, "metric": "value", "states": int(obs.shape[0]),
        "effects": {k: v.tolist() for k, v in effects.items()},
    }))
    plot_effects_by_unit(effects, out / "effects_by_unit.png",
                         f"{args.method}: effect on value, step {step}, {obs.shape[0]} states")
    print(f"{args.method} sweep over {len(effects)} sites written to {out}/")
    return 0


def run_probe(args) -> int:
    from rljaxinterp.interp import concepts
    from rljaxinterp.interp.dynamics import plot_probe_table
    from rljaxinterp.interp.probes import fit_probes, site_features

    run, params, states, obs, out, step = _open(args)
    values = concepts.compute(run.config.env, states)
    sites = [s for s in interp.sites(run.model, obs[:1]) if s not in ("input", "tokens")]
    if hasattr(run.model, "token_types"):  # a sequence model: each site at the token the move is read from
        from rljaxinterp.interp.sequence import decision_positions, token_features

        features = token_features(run.model, params, obs, decision_positions(run.model, obs), sites)
    else:
        features = site_features(run.model, params, obs, sites)
    scores = fit_probes(features, values, args.probe)
    control = fit_probes(features, values, args.probe, shuffle_labels=True)
    (out / "probes.json").write_text(json.dumps({
        "run": args.run_dir, "step": step, "probe": args.probe, "states": int(obs.shape[0]),
        "test": scores.table(), "shuffled_labels": control.table(),
    }))
    plot_probe_table(np.asarray(scores.test), scores.sites, scores.concepts, out / "probes.png",
                     f"{args.probe} probes, held-out score, step {step}")
    print(f"probes for {len(scores.concepts)} concepts x {len(scores.sites)} sites written to {out}/")
    return 0


def _board_rows(obs: np.ndarray, heats: np.ndarray) -> list[dict]:
    """``draw_board`` arguments; pieces drawn when the observation is (mover, opponent) planes."""
    two_planes = obs.ndim == 4 and obs.shape[-1] == 2
    return [{"heat": h, "own": o[..., 0] if two_planes else None, "opponent": o[..., 1] if two_planes else None}
            for o, h in zip(obs, heats)]


def run_attribute(args) -> int:
    from rljaxinterp.interp import attribution
    from rljaxinterp.interp.plots import plot_board_rows

    run, params, _, obs, out, step = _open(args)
    metric = interp.metrics.value
    if args.method == "occlusion":
        attr = attribution.occlusion(run.model, params, obs, metric)
    else:
        fn = {"gradient": attribution.gradients, "gradient_x_input": attribution.gradient_x_input,
              "integrated_gradients": attribution.integrated_gradients}[args.method]
        attr = fn(run.model, params, obs, metric, site=args.site)
    attr = np.asarray(attr)
    np.savez_compressed(out / "attributions.npz", attributions=attr, observations=np.asarray(obs))
    summary = {"run": args.run_dir, "step": step, "method": args.method, "site": args.site, "metric": "value",
               "states": int(obs.shape[0]), "shape": list(attr.shape[1:]),
               "mean_abs": float(np.abs(attr).mean())}
    if attr.ndim >= 3:  # laid out on the board: mean |attribution| per square, and the strongest states
        per_square = np.abs(attr).reshape(*attr.shape[:3], -1).sum(-1)
        top = np.argsort(-per_square.reshape(len(attr), -1).max(1))[:8]
        rows = [[{"heat": per_square.mean(0), "title": "mean over states"}],
                [dict(b, title=f"state {i}") for b, i in zip(_board_rows(np.asarray(obs)[top], attr[top].reshape(
                    *attr[top].shape[:3], -1).sum(-1)), top)]]
        plot_board_rows(rows, out / "attributions.png", f"{args.method} of the value"
                        f"{' at ' + args.site if args.site else ''}, step {step}")
        summary["mean_abs_per_square"] = per_square.mean(0).tolist()
    (out / "attributions.json").write_text(json.dumps(summary))
    print(f"{args.method} attributions of {obs.shape[0]} states written to {out}/")
    return 0


def run_factorise(args) -> int:
    from rljaxinterp.interp.factorisation import nmf, nonnegative_parts, pca, per_position, top_rows
    from rljaxinterp.interp.plots import plot_board_rows

    run, params, _, obs, out, step = _open(args)
    _, cache = interp.run_with_cache(run.model, params, obs, [args.site])
    acts = np.asarray(cache[args.site])
    spatial = acts.ndim == 4 and acts.shape[1:3] == obs.shape[1:3]
    rows = per_position(acts) if spatial else acts.reshape(len(acts), -1)
    if args.method == "nmf":
        matrix = rows if rows.min() >= 0 else nonnegative_parts(rows)
        fit = nmf(matrix, args.rank, args.iterations, jax.random.key(args.seed))
    else:
        fit = pca(rows, args.rank)
    weights = np.asarray(fit.weights)
    result = {"run": args.run_dir, "step": step, "site": args.site, "method": args.method, "rank": args.rank,
              "relative_error": float(fit.relative_error), "explained": np.asarray(fit.explained).tolist(),
              "components": np.asarray(fit.components).tolist()}
    if spatial:
        maps = weights.reshape(len(acts), *acts.shape[1:3], args.rank)
        strength = maps.reshape(len(acts), -1, args.rank).max(1)
        board_rows = [[dict(b, title=f"state {i}") for b, i in zip(_board_rows(np.asarray(obs)[idx], maps[idx, ..., f]), idx)]
                      for f, idx in enumerate(top_rows(strength, 6))]
    elif obs.ndim == 4:  # a non-spatial site: show the boards of the states where each factor peaks
        board_rows = [[dict(b, title=f"{weights[i, f]:.2f}")
                       for b, i in zip(_board_rows(np.asarray(obs)[idx], np.asarray(obs)[idx].sum(-1)), idx)]
                      for f, idx in enumerate(top_rows(weights, 6))]
    else:
        board_rows = []
    if board_rows:
        plot_board_rows(board_rows, out / "factors.png", f"{args.method} of {args.site}: states where each factor "
                        "is strongest (rows = factors)", [f"factor {f}" for f in range(args.rank)],
                        cmap="viridis" if args.method == "nmf" else "RdBu_r")
    (out / "factors.json").write_text(json.dumps(result))
    print(f"{args.method} rank {args.rank} of {args.site}: relative error {float(fit.relative_error):.3f}; "
          f"written to {out}/")
    return 0


def run_steer(args) -> int:
    from rljaxinterp.interp import concepts
    from rljaxinterp.interp.steering import mean_difference, steering_effect

    run, params, states, obs, out, step = _open(args)
    values = concepts.compute(run.config.env, states)
    if args.concept not in values:
        raise SystemExit(f"unknown concept {args.concept!r} for {run.config.env}; available: {', '.join(values)}")
    has = np.asarray(values[args.concept]).reshape(len(obs)) > 0.5
    if has.all() or not has.any():
        raise SystemExit(f"concept {args.concept!r} is {'always' if has.all() else 'never'} true on these states; "
                         "a direction needs both kinds")
    _, cache = interp.run_with_cache(run.model, params, obs, [args.site])
    direction = mean_difference(cache[args.site][has], cache[args.site][~has])
    lacking = np.flatnonzero(~has)
    effect = steering_effect(run.model, params, obs[lacking], args.site, direction, args.coefficients,
                             states.legal_action_mask[lacking])
    result = {"run": args.run_dir, "step": step, "site": args.site, "concept": args.concept,
              "states_with": int(has.sum()), "states_steered": int(lacking.size),
              **{k: np.asarray(v).tolist() for k, v in effect.items()}}
    (out / "steering.json").write_text(json.dumps(result))
    for i, c in enumerate(args.coefficients):
        print(f"coefficient {c:+g}: policy KL {float(effect['policy_kl'][i]):.4f}, greedy move changed on "
              f"{100 * float(effect['greedy_changed'][i]):.1f}% of states, value change "
              f"{float(effect['value_change'][i]):+.3f}")
    print(f"steering along '{args.concept}' at {args.site} written to {out}/")
    return 0


COMMANDS = {
    "sweep": ("patching / attribution / ablation sweep of a run", run_sweep),
    "probe": ("probe every site of a run for its env's concepts", run_probe),
    "attribute": ("gradients / integrated gradients / occlusion of the value", run_attribute),
    "factorise": ("NMF or PCA of a site's activations, factors drawn on the board", run_factorise),
    "steer": ("add a concept's mean-difference direction at a site; report how the policy moves", run_steer),
}


def add_parsers(commands) -> None:
    for name, (help_text, fn) in COMMANDS.items():
        p = commands.add_parser(name, help=help_text)
        p.add_argument("run_dir", metavar="RUN", help="run folder")
        p.add_argument("--step", type=int, help="checkpoint (default: latest)")
        p.add_argument("--states", type=int, default=4096, help="states from random play (non-tic-tac-toe)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", help="output folder (default: <run>/<command>-<step>)")
        if name == "sweep":
            p.add_argument("--method", choices=METHODS, default="patching")
            p.add_argument("--granularity", choices=("element", "unit", "position", "head"), default="unit")
        elif name == "probe":
            p.add_argument("--probe", choices=("ridge", "logistic", "sparse"), default="ridge")
        elif name == "attribute":
            p.add_argument("--method", choices=("gradient", "gradient_x_input", "integrated_gradients", "occlusion"),
                           default="integrated_gradients")
            p.add_argument("--site", help="attribute to this site's activation (default: the observation)")
        elif name == "factorise":
            p.add_argument("--site", required=True)
            p.add_argument("--method", choices=("nmf", "pca"), default="nmf")
            p.add_argument("--rank", type=int, default=6)
            p.add_argument("--iterations", type=int, default=500)
        else:
            p.add_argument("--site", required=True)
            p.add_argument("--concept", required=True, help="direction = mean(concept true) - mean(concept false)")
            p.add_argument("--coefficients", type=float, nargs="+", default=[0.5, 1.0, 2.0])
        p.set_defaults(run=fn)
