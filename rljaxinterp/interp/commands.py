"""``rljaxinterp sweep RUN`` and ``rljaxinterp probe RUN``: the toolkit on any run folder,
over the states a researcher would pick (every reachable position of tic-tac-toe, positions
from random play elsewhere), written as JSON plus a figure."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

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
    from rljaxinterp.agents.runs import load_run

    run = load_run(args.run_dir)
    step = args.step if args.step is not None else run.steps[-1]
    states = analysis_states(run.env, run.config.env, args.states, args.seed)
    out = Path(args.out or Path(args.run_dir) / f"{args.command}-{step}")
    out.mkdir(parents=True, exist_ok=True)
    return run, run.params(step), states, states.observation.astype(jnp.float32), out, step


def run_sweep(args) -> int:
    from rljaxinterp import interp
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
    from rljaxinterp import interp
    from rljaxinterp.interp import concepts
    from rljaxinterp.interp.dynamics import plot_probe_table
    from rljaxinterp.interp.probes import fit_probes, site_features

    run, params, states, obs, out, step = _open(args)
    values = concepts.compute(run.config.env, states)
    sites = [s for s in interp.sites(run.model, obs[:1]) if s not in ("input", "tokens")]
    scores = fit_probes(site_features(run.model, params, obs, sites), values, args.probe)
    control = fit_probes(site_features(run.model, params, obs, sites), values, args.probe, shuffle_labels=True)
    (out / "probes.json").write_text(json.dumps({
        "run": args.run_dir, "step": step, "probe": args.probe, "states": int(obs.shape[0]),
        "test": scores.table(), "shuffled_labels": control.table(),
    }))
    plot_probe_table(np.asarray(scores.test), scores.sites, scores.concepts, out / "probes.png",
                     f"{args.probe} probes, held-out score, step {step}")
    print(f"probes for {len(scores.concepts)} concepts x {len(scores.sites)} sites written to {out}/")
    return 0


def add_parsers(commands) -> None:
    for name, help_text, fn in (("sweep", "patching / attribution / ablation sweep of a run", run_sweep),
                                ("probe", "probe every site of a run for its env's concepts", run_probe)):
        p = commands.add_parser(name, help=help_text)
        p.add_argument("run_dir", metavar="RUN", help="run folder")
        p.add_argument("--step", type=int, help="checkpoint (default: latest)")
        p.add_argument("--states", type=int, default=4096, help="states from random play (non-tic-tac-toe)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", help="output folder (default: <run>/<command>-<step>)")
        if name == "sweep":
            p.add_argument("--method", choices=METHODS, default="patching")
            p.add_argument("--granularity", choices=("element", "unit", "position", "head"), default="unit")
        else:
            p.add_argument("--probe", choices=("ridge", "logistic", "sparse"), default="ridge")
        p.set_defaults(run=fn)
