"""``rljaxinterp bench methods --out DIR [--tier quick|default] [--methods ...]``: score the
registered interpretability methods (circuit discovery, attribution, probes, steering)
against known truth (the compiled network, its faithfulness curves, the SIIT networks, the
spurious-cue pair) and exact labels (AlphaZero agents). ``rljaxinterp bench features --out
DIR [--tier quick|default] [--seeds 0 1 2 3 4]``: featurisers (SAEs, DAS, neurons, PCA, NMF)
against the compiled network's planted units, mean ± std over the seeds. ``rljaxinterp bench
siit-features --out DIR [--tier quick|default] [--arch mlp|restower] [--widths ...] [--seeds ...]``:
the same featurisers against the nodes SIIT trained into the tier's MLPs or ResTowers."""

from __future__ import annotations

import argparse

from rljaxinterp.cli import help_of


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help=help_of("bench"))
    kinds = bench.add_subparsers(dest="bench", required=True)
    p = kinds.add_parser("methods", help="the ground-truth leaderboard")
    p.add_argument("--out", required=True, help="output folder (never overwritten: out-N when taken)")
    p.add_argument("--tier", default="quick",
                   help="quick (3 seeds, 2 SIIT networks, 1 short AlphaZero agent) or default (5 seeds, 10 SIIT "
                        "networks, 2 AlphaZero agents) (default: %(default)s)")
    p.add_argument("--methods", nargs="+", help="method names (default: every registered method)")
    p.set_defaults(run=run_methods)
    f = kinds.add_parser("features", help="SAEs, DAS, neurons, PCA and NMF against the compiled network's planted units")
    f.add_argument("--out", required=True, help="output folder (never overwritten: out-N when taken)")
    f.add_argument("--tier", default="quick", choices=("quick", "default"),
                   help="quick (1 width, 3 sparsities per site) or default (2 widths, 6) (default: %(default)s)")
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                   help="rotation, SAE and DAS seeds; the tables report mean ± std over them (default: 0 1 2 3 4)")
    f.set_defaults(run=run_features)
    g = kinds.add_parser("siit-features", help="SAEs, DAS, neurons, PCA and NMF against the nodes of the SIIT networks")
    g.add_argument("--out", required=True, help="output folder (never overwritten: out-N when taken)")
    g.add_argument("--tier", default="quick", choices=("quick", "default"),
                   help="MLPs: quick (2 networks) or default (10: 5 seeds x 2 widths); ResTowers: quick (1) or "
                        "default (5 seeds) (default: %(default)s)")
    g.add_argument("--arch", default="mlp", choices=("mlp", "restower"),
                   help="the SIIT networks' architecture; a ResTower takes minutes to train, once: it is cached in a "
                        "run folder under RLJAXINTERP_CACHE (default: %(default)s)")
    g.add_argument("--widths", type=int, nargs="+", help="widths (ResTower: channels) instead of the tier's")
    g.add_argument("--seeds", type=int, nargs="+", help="seeds instead of the tier's")
    g.set_defaults(run=run_siit_features)


def run_methods(args: argparse.Namespace) -> int:
    from rljaxinterp.bench import leaderboard

    result = leaderboard.leaderboard(args.tier, args.methods)
    folder = leaderboard.write(result, args.out)
    files = ", ".join(sorted(f.name for f in folder.iterdir() if f.name.startswith(("leaderboard.", "faithfulness."))))
    trained = [f"{part} {result[key]['wall_s']:.0f} s" for key, part in
               (("siit", "SIIT networks trained and verified in"), ("cue", "tic-tac-toe spurious-cue pairs trained in"),
                ("cue_maze", "maze spurious-cue pairs trained in"), ("label_only", "AlphaZero agents trained or read in"))
               if key in result]
    print(f"leaderboard written to {folder}/ ({files}) in {result['wall_s']:.0f} s"
          + (f" ({'; '.join(trained)})" if trained else ""))
    return 0


def _write_report(out, stem: str, result: dict, table, plot):
    """``stem.json``, ``stem.md`` (the table, also printed) and ``stem.png`` in a fresh folder."""
    import json

    from rljaxinterp.reporting import fresh_folder

    folder = fresh_folder(out, f"{stem}.json")
    (folder / f"{stem}.json").write_text(json.dumps(result, indent=1))
    lines = table(result)
    (folder / f"{stem}.md").write_text("\n".join(lines) + "\n")
    plot(result, folder / f"{stem}.png")
    print("\n".join(lines))
    return folder


def run_features(args: argparse.Namespace) -> int:
    from rljaxinterp.bench.feature_recovery import feature_recovery_seeds, plot, table

    result = feature_recovery_seeds(args.tier, args.seeds, progress=True, log=lambda s: print(s, flush=True))
    folder = _write_report(args.out, "features", result, table, plot)
    print(f"written to {folder}/ (features.json, features.md, features.png) in {result['wall_s']:.0f} s "
          f"({len(result['seeds'])} seeds, {result['sae_seconds']:.0f} s training SAEs)")
    return 0


def run_siit_features(args: argparse.Namespace) -> int:
    from rljaxinterp.bench.siit_features import plot, siit_features, table

    result = siit_features(args.tier, log=lambda s: print(s, flush=True), arch=args.arch, widths=args.widths,
                           seeds=args.seeds)
    folder = _write_report(args.out, "siit_features", result, table, plot)
    print(f"written to {folder}/ (siit_features.json, siit_features.md, siit_features.png) in {result['wall_s']:.0f} s "
          f"({len(result['networks'])} SIIT networks, {sum(n['cached'] for n in result['networks'])} of them read from "
          "their run folders, the rest trained in this run; all verified in this run)")
    return 0
