"""``rljaxinterp sae RUN``: a grid of sparse autoencoders on a run's activations, written as a
dashboard (Markdown, Pareto figure, feature cards drawn on the board, results.json)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from rljaxinterp.cli import help_of


def run_sae(args) -> int:
    from rljaxinterp import interp
    from rljaxinterp.cli.interp import open_analysis
    from rljaxinterp.distributed import is_primary
    from rljaxinterp.interp import concepts as library
    from rljaxinterp.interp import sae
    from rljaxinterp.reporting.sae import sae_report, write_dashboard

    start = time.time()
    a = open_analysis(args)
    run, params, states, obs, out, step = a.run, a.params, a.states, a.obs, a.out, a.step
    available = list(interp.sites(run.model, obs[:1]))
    sites = args.sites or [s for s in available if s.endswith("post")]
    unknown = [s for s in sites if s not in available]
    if unknown:
        raise SystemExit(f"unknown site(s) {unknown}; available sites: {', '.join(available)}")
    try:
        concepts = {k: np.asarray(v) for k, v in library.compute(run.config.env, states).items()}
    except ValueError as err:  # an env without a concept library: features are scored on the board only
        print(f"no concepts: {err}")
        concepts = {}
    config = sae.SAEConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                           seed=args.seed)
    sparsities = None if args.sparsities is None else {k: args.sparsities for k in args.kinds}
    print(f"SAEs on {', '.join(sites)} of {args.run_dir} (step {step}), {obs.shape[0]} states")
    report = sae_report(run.model, params, obs, concepts, sites, args.kinds, args.widths, sparsities, config,
                        legal_mask=getattr(states, "legal_action_mask", None))
    if not is_primary():  # several processes (`rljaxinterp launch`): each trained the same grid; process 0 writes
        return 0
    write_dashboard(report, out, {"run": str(args.run_dir), "step": step, "states": int(obs.shape[0]),
                                  "sites": sites, "kinds": args.kinds, "widths": args.widths,
                                  "config": dataclasses.asdict(config),
                                  "wall_seconds": round(time.time() - start, 1)})
    for m in report["members"]:
        print(f"{m['site']:>20} {m['kind']:>9} m={m['width']:<4} {m['sparsity']:>6g}: L0 {m['l0']:5.1f}  "
              f"FVE {m['fve']:.3f}  KL {m['policy_kl']:.4f}  coverage {m['coverage_mean']:.2f}")
    print(f"dashboard written to {out}/README.md ({time.time() - start:.0f} s)")
    return 0


def add_parsers(commands) -> None:
    from rljaxinterp.interp.sae import DEFAULT_SPARSITIES, KINDS, SPARSITY_MEANING

    p = commands.add_parser("sae", help=help_of("sae"),
                            description=__doc__)
    p.add_argument("run_dir", metavar="RUN", help="run folder")
    p.add_argument("--step", type=int, help="checkpoint (default: latest)")
    p.add_argument("--states", type=int, default=4096,
                   help="states from random play (tic-tac-toe: every reachable position) (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--source", choices=("auto", "all", "random", "self"), default="auto",
                   help="states, as for `rljaxinterp probe` (default: %(default)s)")
    p.add_argument("--epsilon", type=float, default=0.25, help="--source self: share of random moves (default: %(default)s)")
    p.add_argument("--distribution", choices=("train", "test"), help="gridworlds: train or test levels")
    p.add_argument("--out", help="output folder (default: <run>/sae-<step>)")
    p.add_argument("--sites", nargs="+", help="sites to read (default: every site whose name ends in 'post')")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=["topk"], help="(default: %(default)s)")
    p.add_argument("--widths", nargs="+", type=int, default=[128, 256], help="dictionary sizes (default: %(default)s)")
    p.add_argument("--sparsities", nargs="+", type=float,
                   help="per kind: " + "; ".join(f"{k}: {SPARSITY_MEANING[k]}, default {list(DEFAULT_SPARSITIES[k])}"
                                                 for k in KINDS))
    p.add_argument("--steps", type=int, default=2000, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=1024, help="(default: %(default)s)")
    p.add_argument("--learning-rate", type=float, default=4e-4, help="(default: %(default)s)")
    p.set_defaults(run=run_sae, command="sae")
