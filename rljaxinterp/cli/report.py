"""``rljaxinterp report RUN``: the interpretability report of any run.

Tic-tac-toe runs get the full report over training (``reporting.tic_tac_toe``); every other
run gets the toolkit's commands with their defaults (probes with controls, a patching sweep,
occlusion), each in its own folder, joined into one ``report.md``.
"""

from __future__ import annotations

from pathlib import Path

from rljaxinterp.cli import ShowDefaults, help_of

PARTS = (  # (folder, command line after the run folder)
    ("probe", ["probe"]),
    ("sweep", ["sweep", "--method", "patching"]),
    ("attribute", ["attribute", "--method", "occlusion"]),
)


def generic_report(run_dir: str, out: Path, probe: str, states: int, source: str, distribution: str | None) -> Path:
    from rljaxinterp.cli import build_parser

    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for folder, command in PARTS:
        argv = [command[0], run_dir, *command[1:], "--out", str(out / folder), "--states", str(states),
                "--source", source, *(["--probe", probe] if folder == "probe" else []),
                *(["--distribution", distribution] if distribution else [])]
        args = build_parser(command[0]).parse_args(argv)
        args.run(args)
        text = (out / folder / "summary.md").read_text()
        # the section's figures live in its folder
        sections.append(text.replace("](", f"]({folder}/").replace("# ", "## ", 1))
    path = out / "report.md"
    path.write_text(f"# Interpretability report: {run_dir}\n\nEach section is one command "
                    f"(`rljaxinterp {' | '.join(c[0] for _, c in PARTS)}`) with its defaults; its JSON and "
                    "figures are in the folder of the same name.\n\n" + "\n".join(sections))
    return path


def add_parser(commands) -> None:
    p = commands.add_parser("report", help=help_of("report"), description=__doc__, formatter_class=ShowDefaults)
    p.add_argument("run_dir", metavar="RUN", help="run folder")
    p.add_argument("--out", help="report folder (default: <run>/report)")
    p.add_argument("--probe", default="ridge", choices=["ridge", "logistic", "sparse"], help="probe kind")
    p.add_argument("--states", type=int, default=4096, help="other envs: distinct states from play")
    p.add_argument("--source", default="auto", choices=("auto", "random", "self"),
                   help="other envs: the state source (see `rljaxinterp probe --help`)")
    p.add_argument("--distribution", choices=("train", "test"), help="gridworlds: train or test levels")

    def run(args):
        from rljaxinterp.runs import read_config

        out = Path(args.out or Path(args.run_dir) / "report")
        if read_config(Path(args.run_dir))[1].env == "tic_tac_toe":
            from rljaxinterp.reporting.tic_tac_toe import write_report
            from rljaxinterp.runs import load_run

            path = write_report(load_run(args.run_dir), out, args.probe)
        else:
            path = generic_report(args.run_dir, out, args.probe, args.states, args.source, args.distribution)
        print(f"report written to {path}")

    p.set_defaults(run=run)
