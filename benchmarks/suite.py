"""One portable benchmark suite: the headline figures of benchmarks/ on whatever backend JAX
finds, in one command, written as one JSON file and one Markdown table.

    python benchmarks/suite.py [--out DIR] [--quick] [--only NAME ...] [--rejax-python PATH]

Each figure calls the function of its own benchmark script (so the suite measures exactly what
the scripts measure) at a size chosen to keep the whole suite under 30 minutes on 2 CPU cores:

* ``ttt_cold`` / ``ttt_warm``: AlphaZero tic-tac-toe, training time to a raw network that loses
  no line in either seat (``alphazero_tictactoe.train_and_check``), each in a fresh subprocess
  with JAX's persistent compilation cache on (as the CLI has it, ``use_compile_cache``) in a
  fresh temporary folder: the first run finds it empty (cold), the second finds the first's
  programs (warm).
* ``connect_four``: the connect-four default config trained for a fixed wall-time budget (10
  minutes on the full size), the raw network playing pure MCTS with 200 simulations every minute
  of training (the curve, ``connect_four_curve.png``), then the raw network and the network with
  search against a uniform-random player and pure MCTS (``alphazero_games``).
* ``patching``: a unit-level patching sweep against PyTorch forward hooks (``patching_vs_torch``).
* ``probes``: every site x concept x checkpoint in one ``fit_probes`` call against
  scikit-learn's multi-target ``Ridge`` (one fit per site) and against a per-probe loop
  (``probes_vs_sklearn``).
* ``ig``: integrated gradients against captum (``ig_vs_captum``).
* ``ppo``: PPO env steps/s on CartPole-v1; ours with its default shared trunk and with separate
  actor and critic MLPs (64, 64), and rejax 0.1.3 (separate MLPs) in its own virtualenv, same
  hyperparameters (``ppo_vs_rejax``).
* ``sae``: a grid of sparse autoencoders on a connect-four agent's activations, one
  ``fit_saes`` call per kind (``sae_vs_saelens``, our side).

Optional dependencies are optional here too: a figure whose comparison library is missing says
so in its row instead of a number (torch, captum and scikit-learn: ``pip install torch captum
scikit-learn``; rejax: see benchmarks/README.md). A figure that fails records its error and the
suite goes on. The suite process itself runs without the persistent compilation cache, so the
compile times it reports are cold.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from argparse import Namespace
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # the benchmark scripts import each other by module name

REJAX_ENV = "RLJAXINTERP_REJAX_PYTHON"
PACKAGES = ("jax", "jaxlib", "jax-cuda12-plugin", "flax", "optax", "mctx", "pgx", "gymnax", "orbax-checkpoint",
            "numpy", "torch", "captum", "scikit-learn")

# Sizes per mode. "full" is what benchmarks/README.md reports on 2 CPU cores; "quick" is a smoke run.
SIZES = {
    "full": {
        "ttt_minutes": 3.0, "ttt_check_every": 10,
        "c4_minutes": 10.0, "c4_games": 50, "c4_opponents": ["random", "pure_mcts"], "c4_mcts_simulations": 200,
        "c4_curve_every_s": 60.0, "c4_curve_games": 20,
        "patching": [("conv", 200), ("conv", 1000), ("mlp", 200), ("mlp", 10_000)],
        "probe_checkpoints": 3, "probe_kinds": ["ridge", "logistic"],
        "ig": [("mlp", 10_000), ("conv", 2_000)],
        "ppo_steps": 500_000,
        "sae_agent_iterations": 10, "sae_states": 2500, "sae_held": 500, "sae_steps": 500,
        "sae_kinds": ["topk", "relu"], "sae_width_multiples": [4, 8],
    },
    "quick": {
        "ttt_minutes": 0.5, "ttt_check_every": 10,
        "c4_minutes": 0.5, "c4_games": 2, "c4_opponents": ["random"], "c4_mcts_simulations": 16,
        "c4_curve_every_s": 15.0, "c4_curve_games": 2,
        "patching": [("mlp", 200)],
        "probe_checkpoints": 1, "probe_kinds": ["ridge"],
        "ig": [("mlp", 500)],
        "ppo_steps": 32_768,
        "sae_agent_iterations": 2, "sae_states": 200, "sae_held": 50, "sae_steps": 100,
        "sae_kinds": ["topk"], "sae_width_multiples": [4],
    },
}
FIGURES = ("ttt", "connect_four", "patching", "probes", "ig", "ppo", "sae")


class Missing(Exception):
    """A comparison library is not installed: the row says so instead of a number."""


def need(module: str, install: str):
    try:
        return __import__(module)
    except ImportError:
        raise Missing(f"{module} not installed ({install})") from None


TORCH_PIP = "pip install torch==2.13.0 captum scikit-learn"


# -- environment ---------------------------------------------------------------------------------
def backend_info() -> dict:
    """What the figures ran on: JAX's backend and devices, package versions, machine, date."""
    import jax

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    devices = jax.devices()
    return {"backend": jax.default_backend(), "device_count": len(devices),
            "devices": sorted({f"{d.platform}:{d.device_kind}" for d in devices}),
            "versions": versions, "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _git_commit()}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(BENCH), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# -- figures ---------------------------------------------------------------------------------------
# Each returns {"result": short text for the table, "size": what was run, "data": details}.

TTT_CHILD = "--ttt-child"


def ttt_child(args_json: str) -> None:
    """Runs in the subprocess: the CLI's compile cache, then train to unbeatable; one JSON line."""
    from rljaxinterp.cli import use_compile_cache

    cache = use_compile_cache()  # before JAX is imported, as the CLI does
    import alphazero_tictactoe

    a = json.loads(args_json)
    t0 = time.perf_counter()
    r = alphazero_tictactoe.train_and_check(a["seed"], a["check_every"], a["minutes"], stop_at="unbeatable")
    cfg = r["config"]
    print(json.dumps({"cache": cache, "first": r["first"], "iterations": r["iterations"],
                      "train_s": r["train_time"], "compile_and_first_s": r["compile_and_first"],
                      "seconds_per_iteration": r["per_iteration"], "checks": r["checks"],
                      "preset": cfg.preset, "games": cfg.games, "simulations": cfg.num_simulations,
                      "model": f"{cfg.model} {dict(cfg.model_kwargs)}", "process_s": time.perf_counter() - t0}))


def _ttt_subprocess(cache_dir: Path, size: dict, log) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "PYTHONPATH")}
    env["RLJAXINTERP_COMPILE_CACHE"] = str(cache_dir)
    arg = json.dumps({"seed": 0, "check_every": size["ttt_check_every"], "minutes": size["ttt_minutes"]})
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), TTT_CHILD, arg], env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"tic-tac-toe subprocess failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["subprocess_wall_s"] = wall
    out["cache_files"] = sum(1 for p in cache_dir.rglob("*") if p.is_file())
    return out


def fig_ttt(size: dict, ctx: dict, log) -> dict:
    with tempfile.TemporaryDirectory(prefix="rljaxinterp-suite-cache-") as tmp:
        cache = Path(tmp) / "jax"
        runs = {}
        for case in ("cold", "warm"):
            log(f"  tic-tac-toe, {case} compile cache ({cache}) ...")
            runs[case] = r = _ttt_subprocess(cache, size, log)
            when = r["first"].get("unbeatable")
            log(f"  {case}: " + (f"unbeatable at iteration {when[0]} after {when[1]:.1f} s of training"
                                 if when else "not unbeatable within the budget")
                + f" (compile + first iteration {r['compile_and_first_s']:.1f} s; process {r['subprocess_wall_s']:.1f} s;"
                  f" cache files after: {r['cache_files']})")

    def fmt(case):
        when = runs[case]["first"].get("unbeatable")
        return (f"{when[1]:.1f} s (iteration {when[0]}, compile + first iteration "
                f"{runs[case]['compile_and_first_s']:.1f} s)") if when else "not reached"
    r = runs["cold"]
    return {"result": f"cold cache {fmt('cold')}; warm cache {fmt('warm')}",
            "size": (f"preset {r['preset']}: {r['games']} games, {r['simulations']} simulations, {r['model']}; "
                     f"exhaustive check every {size['ttt_check_every']} iterations (excluded from the time); "
                     f"cap {size['ttt_minutes']:g} min"),
            "data": runs}


def fig_connect_four(size: dict, ctx: dict, log) -> dict:
    import alphazero_games

    from rljaxinterp.reporting import plot_curves

    sims = size["c4_mcts_simulations"]
    curve = {"every_s": size["c4_curve_every_s"], "simulations": sims, "games": size["c4_curve_games"]}
    trained = alphazero_games.train_for("connect_four", size["c4_minutes"], 0, lambda s: log("  " + s), curve)
    rows = alphazero_games.strength(trained, size["c4_opponents"], size["c4_games"], 0, lambda s: log("  " + s),
                                    sims)
    cfg, points = trained["config"], trained["curve"]
    figure = plot_curves([{"training minutes": p["train_s"] / 60, f"raw network's win rate vs pure MCTS-{sims}":
                           p["win_rate"]} for p in points],
                         [("connect four, raw network (greedy) vs pure MCTS", "training minutes",
                           [f"raw network's win rate vs pure MCTS-{sims}"])], ctx["out"] / "connect_four_curve.png")

    def wl(r):
        return (f"{sum(x['win'] for x in r.values())}/{sum(sum(x.values()) for x in r.values())} won, "
                f"{sum(x['loss'] for x in r.values())} lost")
    parts = [f"{k.replace('_vs_', ' vs ').replace('pure_mcts', 'pure MCTS')}: {wl(v)}" for k, v in rows.items()]
    curve_text = ", ".join(f"{p['train_s'] / 60:.1f} min {p['win_rate']:.2f}" for p in points)
    return {"result": (f"{trained['iterations']} iterations; " + "; ".join(parts)
                       + f"; raw vs pure MCTS over training ({size['c4_curve_games']} games per seat): {curve_text}"),
            "size": (f"preset {cfg.preset}, {cfg.model} {dict(cfg.model_kwargs)}, {cfg.games} games x "
                     f"{cfg.num_simulations} simulations; {size['c4_minutes']:g} min of training incl. compile "
                     f"(the clock stops for curve points); {size['c4_games']} games per seat; pure MCTS at "
                     f"{sims} simulations (uniform prior, zero value)"),
            "data": {"iterations": trained["iterations"], "train_s": trained["train_s"],
                     "selfplay_games_finished": trained["finished"], "matches": rows, "curve": points,
                     "figure": str(figure)}}


def fig_patching(size: dict, ctx: dict, log) -> dict:
    need("torch", TORCH_PIP)
    import jax
    import patching_vs_torch as pvt

    from rljaxinterp import envs
    from rljaxinterp.models import make_model

    env = envs.make("connect_four")
    shape, n_act = env.observation_shape, env.num_actions
    obs_all = pvt.connect_four_states(max(n for _, n in size["patching"]), jax.random.key(0))
    build = {"conv": ("conv 2x32", lambda: make_model("conv", n_act, shape, channels=32, blocks=2),
                      lambda: pvt.TorchResTower(shape, n_act, 32, 2)),
             "mlp": ("mlp 128x128", lambda: make_model("mlp", n_act, shape, hidden=(128, 128)),
                     lambda: pvt.TorchMLP(shape, n_act, [128, 128]))}
    rows, parts = [], []
    for kind, n in size["patching"]:
        label, make_jax, make_torch = build[kind]
        # the script's defaults, but one torch loop per thread count past 200 states (minutes at 1,000)
        args = Namespace(seed=1, no_tuned=True, tuned_chunk=2, tile=250, repeats=3, torch_threads=[2, 1],
                         torch_repeats=None if n <= 200 else 1)
        row = pvt.run_case(label, make_jax(), make_torch().eval(), obs_all, n, args)[0]
        rows.append(row)
        part = (f"{label}, {n:,} states, {row['units']} units: {row['jax_sweep_s']:.3f} s vs {row['torch_loop_s']:.3f} s, "
                f"{row['speedup']:.1f}x (CPU time {row['cpu_speedup']:.1f}x)")
        parts.append(part)
        log("  " + part)
    return {"result": "; ".join(parts),
            "size": ("connect-four positions from random play, value metric, every unit of every hidden site; "
                     "torch: one forward hook per unit, best of 2 and 1 threads; best of 3 runs at 200 states, else 1"),
            "data": rows}


def fig_probes(size: dict, ctx: dict, log) -> dict:
    need("sklearn", TORCH_PIP)
    import probes_vs_sklearn as pvs

    data = pvs.setup(size["probe_checkpoints"])
    rows, parts = [], []
    for kind in size["probe_kinds"]:
        row = pvs.compare(data, kind)
        rows.append(row)
        part = (f"{kind}: {row['one_call_s']:.2f} s (first call {row['first_call_s']:.2f} s) vs loop "
                f"{row['sklearn_loop_s']:.2f} s, {row['ratio']:.1f}x")
        if "sklearn_multitarget_ridge_s" in row:
            mt = row["sklearn_multitarget_ridge_s"]
            part += f"; vs multi-target Ridge {mt:.2f} s, {mt / row['one_call_s']:.1f}x"
        parts.append(part)
        log("  " + part)
    r = rows[0]
    return {"result": "; ".join(parts),
            "size": (f"{r['states']:,} tic-tac-toe positions, {r['sites']} sites x {r['concepts']} concepts x "
                     f"{r['checkpoints']} checkpoints (ResTower 32x2)"),
            "data": rows}


def fig_ig(size: dict, ctx: dict, log) -> dict:
    need("torch", TORCH_PIP)
    need("captum", TORCH_PIP)
    import ig_vs_captum

    rows, parts = [], []
    for kind, n in size["ig"]:
        r = ig_vs_captum.compare(kind, n, 50, x64_states=0)
        r.pop("torch_seconds_by_threads", None)
        rows.append(r)
        part = (f"{r['model']}, {n:,} states: {r['jax_seconds']:.2f} s vs captum {r['torch_seconds']:.2f} s, "
                f"{r['speedup']:.1f}x (max |diff| {r['max_abs_diff']:.1e})")
        parts.append(part)
        log("  " + part)
    return {"result": "; ".join(parts),
            "size": "value head, zero baseline, 50 Gauss-Legendre points, connect-four positions",
            "data": rows}


def rejax_python(flag: str | None) -> Path | None:
    """The rejax virtualenv's python from ``--rejax-python`` or $RLJAXINTERP_REJAX_PYTHON, if it
    exists and imports rejax; never built here."""
    path = flag or os.environ.get(REJAX_ENV)
    if not path:
        return None
    py = Path(path)
    if py.is_dir():
        py = py / "bin" / "python"
    if not py.exists():
        return None
    ok = subprocess.run([py, "-c", "import rejax"], capture_output=True, check=False).returncode == 0
    return py if ok else None


def rejax_versions(py: Path) -> str:
    """The rejax venv's versions of what the comparison depends on, as one line."""
    code = ("import importlib.metadata as m\n"
            "print(', '.join(f'{n} {m.version(n)}' for n in ('rejax', 'gymnax', 'jax', 'jaxlib', 'flax', 'optax')))")
    out = subprocess.run([py, "-c", code], capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else "versions unknown"


def fig_ppo(size: dict, ctx: dict, log) -> dict:
    import ppo_vs_rejax

    steps, env = size["ppo_steps"], "CartPole-v1"
    rows, parts = {}, []
    for name, kwargs in (("ours, shared trunk", {"hidden": [64, 64]}),
                         ("ours, separate actor and critic", {"hidden": [64, 64], "separate_critic": True})):
        r = ppo_vs_rejax.run_ours(env, steps, "mlp", kwargs)
        r["steps_per_s"] = r["steps"] / r["run_s"]
        rows[name] = r
        part = f"{name}: {r['steps_per_s']:,.0f} steps/s (compile {r['compile_s']:.1f} s, return {r['final_return']:.1f})"
        parts.append(part)
        log("  " + part)
    py = ctx["rejax_python"]
    if py is None:
        rows["rejax"] = None
        parts.append(f"rejax: rejax not installed (set {REJAX_ENV} or --rejax-python; see benchmarks/README.md)")
    else:
        r = ppo_vs_rejax.run_rejax(py, env, steps)
        if r is None:
            raise RuntimeError("the rejax subprocess failed (its error is printed above)")
        r["steps_per_s"] = steps / r["run_s"]
        rows["rejax"] = r
        ratio = rows["ours, separate actor and critic"]["steps_per_s"] / r["steps_per_s"]
        parts.append(f"rejax 0.1.3: {r['steps_per_s']:,.0f} steps/s (compile {r['compile_s']:.1f} s, return "
                     f"{r['final_return']:.1f}); ours separate / rejax {ratio:.2f}x")
        rows["ratio_separate_over_rejax"] = ratio
    log("  " + parts[-1])
    return {"result": "; ".join(parts),
            "size": (f"{env}, {steps:,} steps, 16 envs x 128 steps, MLP (64, 64), relu, one seed, run after "
                     f"compilation (ppo_vs_rejax.HYPER)"),
            "data": rows}


def fig_sae(size: dict, ctx: dict, log) -> dict:
    import sae_vs_saelens as svs
    from timing import CompileClock

    from rljaxinterp.interp import sae as saes

    out = ctx["out"] / "sae"
    args = Namespace(run=None, sites=list(svs.SITES), states=size["sae_states"], held_states=size["sae_held"],
                     seed=0, agent_iterations=size["sae_agent_iterations"])
    t0 = time.perf_counter()
    train, held, _ = svs.activations(args, out)
    log(f"  agent ({size['sae_agent_iterations']} iterations) and activations: {time.perf_counter() - t0:.1f} s")
    d = next(iter(train.values())).shape[1]
    widths = [m * d for m in size["sae_width_multiples"]]
    clock = CompileClock()
    rows, parts = {}, []
    for kind in size["sae_kinds"]:
        sparsities = list(svs.SPARSITIES[kind])
        config = saes.SAEConfig(steps=size["sae_steps"], batch_size=1024, learning_rate=4e-4, seed=0)
        grid, timing = svs.timed(clock, saes.fit_saes, train, kind, widths, sparsities, config, progress=False)
        quality = saes.evaluate_saes(grid, held)
        members = len(grid.members)
        fve = sum(q["fve"] for q in quality) / members
        rows[kind] = {"timing": timing, "members": members, "mean_fve": fve, "sparsities": sparsities}
        part = (f"{kind}: {members} SAEs in {timing['wall']:.1f} s (compile {timing['compile']:.1f} s), "
                f"mean held-out FVE {fve:.3f}")
        parts.append(part)
        log("  " + part)
    rows_per_site = next(iter(train.values())).shape[0]
    n_sparsities = len(svs.SPARSITIES[size["sae_kinds"][0]])
    return {"result": "; ".join(parts),
            "size": (f"{len(train)} sites x widths {widths} x {n_sparsities} sparsities of a connect-four agent "
                     f"({size['sae_agent_iterations']} iterations); {rows_per_site:,} rows of d = {d} per site, "
                     f"{size['sae_steps']} steps x batch 1024"),
            "data": rows}


RUNNERS = {"ttt": fig_ttt, "connect_four": fig_connect_four, "patching": fig_patching, "probes": fig_probes,
           "ig": fig_ig, "ppo": fig_ppo, "sae": fig_sae}
TITLES = {"ttt": "AlphaZero tic-tac-toe: training time to an unbeatable raw network",
          "connect_four": "AlphaZero connect four: raw network vs pure MCTS over a fixed training budget",
          "patching": "patching sweep vs PyTorch hook loop",
          "probes": "probes vs scikit-learn (multi-target Ridge; per-probe loop)",
          "ig": "integrated gradients vs captum",
          "ppo": "PPO env steps/s vs rejax",
          "sae": "SAE grid (ours, one call per kind)"}


# -- writing ---------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    """The Markdown table: environment lines, then one row per figure with its wall time."""
    env = report["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    lines = [f"# rljaxinterp benchmark suite ({report['mode']})", "",
             f"- backend: **{env['backend']}**, {env['device_count']} device(s): {', '.join(env['devices'])}",
             (f"- date: {env['date']}; commit {env.get('commit') or 'unknown'}; python {env['python']} on "
              f"{env['platform']}, {env['cpu_count']} CPU cores (load average at start "
              f"{', '.join(f'{x:.1f}' for x in env['load_average'])})"),
             f"- versions: {versions}",
             f"- rejax: {report.get('rejax') or 'not installed'}",
             (f"- total wall time: {report['total_s']:.0f} s (load average at the end "
              f"{', '.join(f'{x:.1f}' for x in report.get('load_average_end', []))})"), "",
             "| figure | result | size | wall s |", "|---|---|---|---|"]
    for name, fig in report["figures"].items():
        result = fig.get("result") or fig["status"]
        lines.append(f"| {TITLES.get(name, name)} | {_cell(result)} | {_cell(fig.get('size', ''))} | "
                     f"{fig['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write(report: dict, out: Path) -> tuple[Path, Path]:
    """``suite.json`` and ``suite.md`` into ``out`` (strict JSON: NaN becomes null)."""
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "suite.json", out / "suite.md"
    js.write_text(json.dumps(_strict(report), indent=1, default=str) + "\n")
    md.write_text(markdown(report))
    return js, md


def _strict(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {str(k): _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    if hasattr(x, "tolist"):
        return _strict(x.tolist())
    return x


def run_suite(out: Path, mode: str = "full", only=FIGURES, rejax: str | None = None, log=print) -> dict:
    """Run the figures in ``only`` at ``mode``'s sizes, rewriting the JSON and Markdown after each."""
    size = SIZES[mode]
    py = rejax_python(rejax)
    report = {"mode": mode, "sizes": size, "environment": backend_info(), "figures": {},
              "rejax": f"{py} ({rejax_versions(py)})" if py else None, "total_s": 0.0}
    env = report["environment"]
    log(f"suite ({mode}) on {env['backend']}: {', '.join(env['devices'])}; jax {env['versions'].get('jax')}; "
        f"writing to {out}")
    ctx = {"out": out, "rejax_python": py}
    t_all = time.perf_counter()
    for name in only:
        log(f"[{name}] {TITLES[name]} ...")
        t0 = time.perf_counter()
        try:
            fig = RUNNERS[name](size, ctx, log) | {"status": "ok"}
        except Missing as e:
            fig = {"status": f"skipped: {e}", "result": f"skipped: {e}"}
        except Exception as e:  # noqa: BLE001 - one failing figure must not lose the others
            fig = {"status": "error", "result": f"error: {type(e).__name__}: {e}".splitlines()[0],
                   "traceback": traceback.format_exc()}
        fig["wall_s"] = time.perf_counter() - t0
        fig["load_average_after"] = list(os.getloadavg())  # other jobs on the machine inflate the times
        report["figures"][name] = fig
        report["total_s"] = time.perf_counter() - t_all
        report["load_average_end"] = fig["load_average_after"]
        write(report, out)
        log(f"[{name}] {fig['wall_s']:.0f} s: {fig.get('result', fig['status'])}")
    return report


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == TTT_CHILD:
        ttt_child(sys.argv[2])
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output folder (default runs/suite-<backend>[-quick]; never overwritten)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every figure")
    p.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES), help="run these figures only")
    p.add_argument("--rejax-python", help=f"python (or venv folder) with rejax installed (default ${REJAX_ENV})")
    args = p.parse_args(argv)
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # the suite's own compile times are cold
    import jax

    from rljaxinterp.reporting import fresh_folder

    mode = "quick" if args.quick else "full"
    out = fresh_folder(Path(args.out or f"runs/suite-{jax.default_backend()}{'-quick' if args.quick else ''}"),
                       marker="suite.json")
    report = run_suite(out, mode, args.only, args.rejax_python, lambda s: print(s, flush=True))
    js, md = write(report, out)
    print()
    print(md.read_text())
    print(f"written: {js}, {md}")
    return 0 if all(f["status"] != "error" for f in report["figures"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
