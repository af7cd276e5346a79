"""A grid of sparse autoencoders on real agent activations: ``fit_saes`` (one vmapped, jitted
program per kind) against SAELens's own trainer in a loop (``saelens_baseline.py``), same
grid, same steps, batch size, learning rate and held-out rows.

Data: a connect-four AlphaZero agent (ResTower, 32 channels, 2 blocks; ``--run RUN_DIR``, or
a short run of ``--agent-iterations`` iterations of ``presets.CONNECT_FOUR_CONV`` trained into
``OUT/agent`` when absent), states from uniformly random play, shuffled and split by state
into ``--states`` training and ``--held-states`` held-out states. Sites: three post-ReLU
sites of increasing depth (``stem.post``, ``block0.resid_post``, ``block1.resid_post``),
every board square a row (``site_rows``): 42 rows of d = 32 per state, so 2,500 states give
105,000 training rows per site. The rows are cached as ``.npy`` files in ``OUT/activations``
(reruns skip the agent).

Grid per kind: 3 sites x widths (4d, 8d) x 4 sparsities (topk: k in 4, 8, 16, 32; relu: L1
coefficients chosen to land in the same L0 range), each kind compared separately.

Like for like:

* Same rows (training and held-out), same steps, batch size and learning rate (Adam, betas
  0.9/0.999, constant rate), one seed each; each side draws its own batches uniformly with
  replacement.
* Same input units: ours trains on ``x / scale`` with ``scale`` the root mean squared norm per
  dimension (estimated on 8,192 rows); SAELens gets exactly that factor (``1 / scale`` from
  our fitted SAE) through its ``"expected_average_only_in"`` scaler, folded into its weights
  after training as SAELens does. So the learning rate and the L1 coefficients mean the same
  on both sides (both L1 penalties are sum_i f_i |d_i|, mean over the batch).
* Dead-latent window 250 steps on both sides (SAELens's ``dead_feature_window`` set to ours;
  its default is 1000).
* Metrics on the held-out rows with each side's own inference SAE: L0 (mean active
  features per row), FVE (1 - SSE / total sum of squares about the mean), dead (never fire
  on the held rows).

Left as each library has them (the known differences): ours keeps decoder rows at unit norm
(gradient along them projected out, rows renormalised), starts ``W_enc = W_decᵀ`` with unit
rows and ``b_dec`` at the data mean, and weights AuxK 1/32 normalised by the residual's
variance (Gao et al., as EleutherAI's ``sae``); SAELens starts decoder rows at norm 0.1 and
``b_dec`` at 0, has no decoder constraint (topk selects on ``pre * |d_i|``, relu's L1 is
weighted by ``|d_i|``), weights AuxK 1 without normalisation (scaled by min(dead/k_aux, 1))
and clips the gradient to global norm 1.

Timing: ours is one ``fit_saes`` call per kind, compilation included (the chunk program is
one module-level jit, so a second call with another seed reuses it; compilation is measured from JAX's
own compile-phase events, tracing + lowering + XLA compile, and subtracted to give the run
time; ``--second-call`` times a second call with another seed the same way). SAELens's time
is the sum of its ``SAETrainer.fit`` calls (building SAEs and trainers and measuring
excluded). Both in this one process, one after the other; torch with the faster of
``--torch-threads`` (1 and 2) on a 100-step trial (on a shared, loaded machine two threads can
be several times slower than one). CPU seconds (process-wide) are reported too. The default
500 steps keep the whole run near 15 minutes on 2 shared cores.

Memory: in subprocesses, the peak memory growth of one topk ``fit_saes`` call (all sites,
``--probe-steps`` steps) over what the process holds before it: with the training rows in
memory, memory-mapped (``np.load(..., mmap_mode="r")``), and a file of 4x the rows (the
training rows tiled), memory-mapped. Reported are VmHWM growth (counts file pages mapped
from the page cache) and the growth of the peak anonymous (private) memory, sampled every
2 ms.

Needs the bench virtualenv of ``saelens_baseline.py`` (torch 2.13.0, sae-lens 6.54.12)::

    /work/bench-venv/bin/python benchmarks/sae_vs_saelens.py [--kinds topk relu] [--steps 500]
        [--batch-size 1024] [--run RUN_DIR] [--out runs/sae_vs_saelens] [--quick]

Writes ``OUT/sae_vs_saelens.json`` and ``OUT/sae_vs_saelens.png`` (L0 vs FVE, a panel per
kind), prints Markdown tables and ends with the JSON on one line. Target (issue): >= 5x faster
on 2 CPU cores with equal-or-better FVE at equal L0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from timing import CompileClock

from rljaxinterp.interp import sae as saes

SITES = ("stem.post", "block0.resid_post", "block1.resid_post")
SPARSITIES = {"topk": (4, 8, 16, 32), "batchtopk": (4, 8, 16, 32), "relu": (0.3, 0.6, 1.2, 2.4),
              "jumprelu": (0.03, 0.1, 0.3, 1.0)}


# -- data ---------------------------------------------------------------------------------------
def _train_agent(folder: Path, iterations: int) -> Path:
    from rljaxinterp.runs import default_config, train
    from rljaxinterp.runs.presets import CONNECT_FOUR_CONV

    print(f"training a connect-four AlphaZero agent ({iterations} iterations) into {folder}", flush=True)
    t0 = time.perf_counter()
    train(default_config("alphazero", "connect_four", **{**CONNECT_FOUR_CONV, "iterations": iterations}), folder,
          progress=False)
    print(f"  trained in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


def activations(args, out: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """Training and held-out rows per site, from the cache in ``out/activations`` or computed."""
    folder = out / "activations"
    run_dir = Path(args.run) if args.run else out / "agent"
    key = {"run": str(run_dir.resolve()), "sites": list(args.sites), "states": args.states,
           "held_states": args.held_states, "seed": args.seed}
    meta_path = folder / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text())["key"] == key:
        meta = json.loads(meta_path.read_text())
    else:
        from rljaxinterp.envs.sampling import random_play_states
        from rljaxinterp.runs import load_run

        if not args.run and not (run_dir / "checkpoints").exists():
            _train_agent(run_dir, args.agent_iterations)
        run = load_run(run_dir)
        step = run.steps[-1]
        n = args.states + args.held_states
        # random connect-four games last about 21 moves: 4 states per game and more are needed
        states = random_play_states(run.env, max(1, -(-n // 4)), 64, jax.random.key(args.seed))
        count = int(states.observation.shape[0])
        if count < n:
            raise SystemExit(f"random play gave {count} states, fewer than the {n} asked for")
        order = np.random.default_rng(args.seed).permutation(count)[:n]
        obs = jnp.asarray(np.asarray(states.observation)[order], jnp.float32)
        rows = saes.site_rows(run.model, run.params(step), obs, args.sites)
        folder.mkdir(parents=True, exist_ok=True)
        per_state = {}
        for site, x in rows.items():
            per_state[site] = x.shape[0] // n
            cut = args.states * per_state[site]
            np.save(folder / f"{site}.train.npy", x[:cut])
            np.save(folder / f"{site}.held.npy", x[cut:])
        meta = {"key": key, "env": run.config.env, "step": step, "rows_per_state": per_state,
                "model": run.config.model, "model_kwargs": dict(run.config.model_kwargs)}
        meta_path.write_text(json.dumps(meta, indent=1))
    train = {s: np.load(folder / f"{s}.train.npy") for s in args.sites}
    held = {s: np.load(folder / f"{s}.held.npy") for s in args.sites}
    return train, held, meta


# -- timing ---------------------------------------------------------------------------------------
def timed(clock: CompileClock, fn, *args, **kwargs):
    clock.seconds = 0.0
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return out, {"wall": wall, "cpu": cpu, "compile": clock.seconds, "run": wall - clock.seconds}


# -- comparisons ---------------------------------------------------------------------------------
def _front(points):
    """The L0-FVE Pareto front (no point with both lower L0 and higher FVE), sorted by L0."""
    front = []
    for l0, fve in sorted(points):
        if not front or fve > front[-1][1]:
            front.append((l0, fve))
    return front


def _interp(front, l0):
    """FVE of ``front`` at ``l0``, linear in log L0; None outside its L0 range."""
    xs = np.log([p[0] for p in front])
    if not front or not (xs[0] - 1e-9 <= np.log(l0) <= xs[-1] + 1e-9):
        return None
    return float(np.interp(np.log(l0), xs, [p[1] for p in front]))


def compare(ours: list[dict], theirs: list[dict]) -> dict:
    """FVE differences (ours - SAELens) member by member and on the Pareto front per (site, width)."""
    def ok(m):
        return bool(np.isfinite(m["fve"]) and m["l0"] > 0)

    by_member = [o["fve"] - t["fve"] for o, t in zip(ours, theirs) if ok(o) and ok(t)]
    at_l0 = []
    for group in sorted({(m["site"], m["width"]) for m in ours}):
        o = [(m["l0"], m["fve"]) for m in ours if (m["site"], m["width"]) == group and ok(m)]
        t = [(m["l0"], m["fve"]) for m in theirs if (m["site"], m["width"]) == group and ok(m)]
        fo, ft = _front(o), _front(t)
        for l0, fve in o:  # our point against SAELens's front at our L0
            other = _interp(ft, l0)
            if other is not None:
                at_l0.append(fve - other)
        for l0, fve in t:  # SAELens's point against our front at its L0
            other = _interp(fo, l0)
            if other is not None:
                at_l0.append(other - fve)
    nan = float("nan")
    return {"failed_members": {"ours": sum(not ok(m) for m in ours), "saelens": sum(not ok(m) for m in theirs)},
            "fve_diff_by_member": {"mean": float(np.mean(by_member)) if by_member else nan,
                                   "min": float(np.min(by_member)) if by_member else nan,
                                   "max": float(np.max(by_member)) if by_member else nan,
                                   "ours_better_or_equal": int(np.sum(np.asarray(by_member) >= 0)),
                                   "members": len(by_member)},
            "fve_diff_at_equal_l0": {"mean": float(np.mean(at_l0)) if at_l0 else None,
                                     "min": float(np.min(at_l0)) if at_l0 else None,
                                     "max": float(np.max(at_l0)) if at_l0 else None,
                                     "points": len(at_l0),
                                     "ours_better_or_equal": int(np.sum(np.asarray(at_l0) >= 0))}}


# -- memory probe (subprocess) -----------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_probe(args) -> None:
    """Run one topk fit_saes on ``args.probe_files`` (site=path pairs) and print the memory it added."""
    files = dict(item.split("=", 1) for item in args.probe_files)
    mmap = "r" if args.probe_mode == "mmap" else None
    data = {s: np.load(p, mmap_mode=mmap) for s, p in files.items()}
    if mmap is None:
        data = {s: np.ascontiguousarray(x) for s, x in data.items()}
    d = next(iter(data.values())).shape[1]
    jnp.zeros(1).block_until_ready()
    before = {"hwm": _status_kb("VmHWM"), "anon": _status_kb("RssAnon"), "file": _status_kb("RssFile")}
    peak = {"anon": before["anon"], "file": before["file"]}
    done = threading.Event()

    def poll():
        while not done.is_set():
            peak["anon"] = max(peak["anon"], _status_kb("RssAnon"))
            peak["file"] = max(peak["file"], _status_kb("RssFile"))
            time.sleep(0.002)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    t0 = time.perf_counter()
    config = saes.SAEConfig(steps=args.probe_steps, batch_size=args.batch_size, learning_rate=args.lr)
    saes.fit_saes(data, "topk", [4 * d, 8 * d], list(SPARSITIES["topk"]), config, progress=False)
    wall = time.perf_counter() - t0
    done.set()
    poller.join()
    print(json.dumps({"rows": int(next(iter(data.values())).shape[0]), "mode": args.probe_mode,
                      "hwm_growth_mb": (_status_kb("VmHWM") - before["hwm"]) / 1024,
                      "peak_anon_growth_mb": (peak["anon"] - before["anon"]) / 1024,
                      "peak_file_growth_mb": (peak["file"] - before["file"]) / 1024,
                      "hwm_before_mb": before["hwm"] / 1024, "seconds": wall}))


def memory_runs(args, out: Path, train: dict[str, np.ndarray]) -> list[dict]:
    folder = out / "activations"
    big = {}
    for site, x in train.items():  # 4x the rows: the training rows tiled, written without holding them twice
        path = folder / f"{site}.train_x4.npy"
        if not path.exists() or np.load(path, mmap_mode="r").shape[0] != 4 * x.shape[0]:
            m = np.lib.format.open_memmap(path, "w+", np.float32, (4 * x.shape[0], x.shape[1]))
            for i in range(4):
                m[i * x.shape[0]:(i + 1) * x.shape[0]] = x
            m.flush()
            del m
        big[site] = path
    small = {site: folder / f"{site}.train.npy" for site in train}
    results = []
    for mode, files in (("memory", small), ("mmap", small), ("mmap", big)):
        cmd = [sys.executable, __file__, "--memory-probe", "--probe-mode", mode, "--probe-steps", str(args.probe_steps),
               "--batch-size", str(args.batch_size), "--lr", str(args.lr),
               "--probe-files", *[f"{s}={p}" for s, p in files.items()]]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"memory probe failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"  memory probe {mode:6s} {r['rows']:>7,} rows/site: VmHWM +{r['hwm_growth_mb']:.0f} MB, "
              f"peak anonymous +{r['peak_anon_growth_mb']:.0f} MB, file pages +{r['peak_file_growth_mb']:.0f} MB "
              f"({r['seconds']:.0f} s)", flush=True)
    return results


# -- figure and tables ---------------------------------------------------------------------------
def figure(results: dict, path: Path) -> Path:
    from rljaxinterp.reporting import pyplot, save_figure

    plt = pyplot()
    kinds = list(results["kinds"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.5), squeeze=False)
    colours = dict(zip(results["sites"], plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, kind in zip(axes[0], kinds):
        r = results["kinds"][kind]
        for side, members, filled in (("ours", r["ours"]["members"], True), ("SAELens", r["saelens"]["members"], False)):
            for site in results["sites"]:
                for width, marker in zip(results["widths"], "os^D"):
                    pts = sorted((m["l0"], m["fve"]) for m in members if m["site"] == site and m["width"] == width)
                    if not pts:
                        continue
                    ax.plot(*zip(*pts), marker=marker, color=colours[site], linestyle="-" if filled else "--",
                            markerfacecolor=colours[site] if filled else "none",
                            label=f"{side} {site} m={width}")
        ax.set_xscale("log")
        ax.set_xlabel("L0 (held-out rows)")
        ax.set_ylabel("fraction of variance explained")
        ax.set_title(f"{kind}: ours {r['ours']['first_call']['wall']:.0f} s vs SAELens {r['saelens']['wall']:.0f} s")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, ncol=2)
    return save_figure(fig, path)


def tables(results: dict) -> str:
    lines = [("| kind | members x steps | ours: one call (compile) | ours: run only | SAELens loop | "
              "ratio incl. compile | ratio run only | CPU s ours / SAELens | ms per member-step ours / SAELens | "
              "FVE diff by member (mean, min) | FVE diff at equal L0 (mean, min, n) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, r in results["kinds"].items():
        o, s, c = r["ours"], r["saelens"], r["comparison"]
        first = o["first_call"]
        member_steps = len(o["members"]) * results["steps"]
        bm, eq = c["fve_diff_by_member"], c["fve_diff_at_equal_l0"]
        eq_text = f"{eq['mean']:+.4f}, {eq['min']:+.4f}, {eq['points']}" if eq["points"] else "no overlap"
        failed = c["failed_members"]
        if failed["ours"] or failed["saelens"]:  # non-finite or never firing: left out of both FVE columns
            eq_text += f" ({failed['ours']} ours / {failed['saelens']} SAELens members failed, left out)"
        lines.append(
            f"| {kind} | {len(o['members'])} x {results['steps']} | {first['wall']:.1f} s ({first['compile']:.1f} s) "
            f"| {first['run']:.1f} s | {s['wall']:.1f} s | {s['wall'] / first['wall']:.2f}x "
            f"| {s['wall'] / first['run']:.2f}x | {first['cpu']:.0f} / {s['cpu']:.0f} "
            f"| {1e3 * first['run'] / member_steps:.2f} / {1e3 * s['wall'] / member_steps:.2f} "
            f"| {bm['mean']:+.4f}, {bm['min']:+.4f} | {eq_text} |")
        if o["second_call"]:
            second = o["second_call"]
            lines.append(f"| {kind}, 2nd call | | {second['wall']:.1f} s ({second['compile']:.1f} s) "
                         f"| {second['run']:.1f} s | | {s['wall'] / second['wall']:.2f}x "
                         f"| {s['wall'] / second['run']:.2f}x | {second['cpu']:.0f} / | | | |")
    lines += ["", "| kind | site | m | sparsity | L0 ours / SAELens | FVE ours / SAELens | dead ours / SAELens |",
              "|---|---|---|---|---|---|---|"]
    for kind, r in results["kinds"].items():
        for o, s in zip(r["ours"]["members"], r["saelens"]["members"]):
            lines.append(f"| {kind} | {o['site']} | {o['width']} | {o['sparsity']:g} | {o['l0']:.2f} / {s['l0']:.2f} "
                         f"| {o['fve']:.4f} / {s['fve']:.4f} | {o['dead']} / {s['dead']} |")
    return "\n".join(lines)


def pick_torch_threads(baseline, torch, train, widths, args) -> dict:
    """The faster torch thread count for SAELens on a 100-step trial of the widest member
    (on a loaded machine one thread can be several times faster than two)."""
    site = next(iter(train))
    trial = {}
    for n in args.torch_threads:
        torch.set_num_threads(n)
        r = baseline.train_saelens_grid({site: train[site]}, "topk", [max(widths)], [max(SPARSITIES["topk"])], 100,
                                        args.batch_size, args.lr, args.seed)
        trial[n] = r["wall_seconds"] / 100
    best = min(trial, key=trial.get)
    torch.set_num_threads(best)
    print("torch threads trial (ms per step): " + ", ".join(f"{n}: {1e3 * t:.1f}" for n, t in trial.items())
          + f"; SAELens runs with {best}", flush=True)
    return {"chosen": best, "trial_seconds_per_step": trial}


# -- main ----------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="an AlphaZero connect-four run folder (default: train one into OUT/agent)")
    p.add_argument("--out", default="runs/sae_vs_saelens")
    p.add_argument("--agent-iterations", type=int, default=40)
    p.add_argument("--sites", nargs="+", default=list(SITES))
    p.add_argument("--states", type=int, default=2500, help="training states (42 rows each)")
    p.add_argument("--held-states", type=int, default=500)
    p.add_argument("--kinds", nargs="+", default=["topk", "relu"], choices=saes.KINDS)
    p.add_argument("--width-multiples", type=int, nargs="+", default=[4, 8])
    p.add_argument("--topk", type=int, nargs="+", help="k values (default 4 8 16 32)")
    p.add_argument("--l1", type=float, nargs="+", help="relu L1 coefficients")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, nargs="+", default=[1, 2],
                   help="torch thread counts to try; SAELens runs with the fastest on a 100-step trial")
    p.add_argument("--second-call", action="store_true",
                   help="time a second fit_saes call (seed + 1) too; it reuses the compiled program")
    p.add_argument("--probe-steps", type=int, default=100, help="steps of each memory probe fit (one chunk)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    p.add_argument("--quick", action="store_true", help="tiny smoke configuration (OUT/quick)")
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--probe-mode", choices=("memory", "mmap"), help=argparse.SUPPRESS)
    p.add_argument("--probe-files", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_probe:
        memory_probe(args)
        return

    out = Path(args.out)
    if args.topk:
        SPARSITIES["topk"] = SPARSITIES["batchtopk"] = tuple(args.topk)
    if args.l1:
        SPARSITIES["relu"] = tuple(args.l1)
    if args.quick:
        out = out / "quick"
        args.states, args.held_states, args.steps, args.batch_size = 300, 60, 200, 256
        args.width_multiples = args.width_multiples[:1]
        args.probe_steps = 100
        for kind in SPARSITIES:
            SPARSITIES[kind] = SPARSITIES[kind][1:3]
        if not args.run and (Path(args.out) / "agent" / "checkpoints").exists():
            args.run = str(Path(args.out) / "agent")
    out.mkdir(parents=True, exist_ok=True)

    import saelens_baseline  # torch and sae-lens live only in the bench venv
    import torch

    train, held, meta = activations(args, out)
    d = {s: x.shape[1] for s, x in train.items()}
    if len(set(d.values())) != 1:
        raise SystemExit(f"sites of different sizes {d}: widths are multiples of one d")
    d = next(iter(d.values()))
    widths = [m * d for m in args.width_multiples]
    n_train, n_held = next(iter(train.values())).shape[0], next(iter(held.values())).shape[0]
    print(f"{meta['env']} agent step {meta['step']} ({meta['model']} {meta['model_kwargs']}); rows per site: "
          f"{n_train:,} training, {n_held:,} held out, d = {d}; widths {widths}; "
          f"{args.steps} steps x batch {args.batch_size}, lr {args.lr}", flush=True)
    threads = pick_torch_threads(saelens_baseline, torch, train, widths, args)

    clock = CompileClock()
    results = {"env": meta["env"], "agent_step": meta["step"], "sites": list(args.sites), "d": d,
               "train_rows": n_train, "held_rows": n_held, "widths": widths, "steps": args.steps,
               "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
               "torch_threads": threads, "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg(),
               "kinds": {}}
    for kind in args.kinds:
        sparsities = list(SPARSITIES[kind])
        config = saes.SAEConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed)
        grid, first = timed(clock, saes.fit_saes, train, kind, widths, sparsities, config, progress=False)
        print(f"{kind}: ours, one call {first['wall']:.1f} s (compile {first['compile']:.1f} s), "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
        second = None
        if args.second_call:
            config2 = saes.SAEConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                                     seed=args.seed + 1)
            _, second = timed(clock, saes.fit_saes, train, kind, widths, sparsities, config2, progress=False)
            print(f"{kind}: ours, second call (seed {args.seed + 1}) {second['wall']:.1f} s "
                  f"(compile {second['compile']:.1f} s)", flush=True)
        ours = [{"site": m.site, "width": m.width, "sparsity": m.sparsity,
                 **{k: v for k, v in e.items() if k in ("l0", "fve", "dead", "dense", "mse")}}
                for m, e in zip(grid.members, saes.evaluate_saes(grid, held))]
        factors = {s: 1.0 / float(grid[grid.select(site=s)[0]].scale) for s in args.sites}
        theirs = saelens_baseline.train_saelens_grid(
            train, kind, widths, sparsities, args.steps, args.batch_size, args.lr, args.seed,
            scaling_factors=factors, dead_feature_window=config.dead_window, eval_data=held)
        print(f"{kind}: SAELens loop {theirs['wall_seconds']:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
        for o, t in zip(ours, theirs["members"]):
            assert (o["site"], o["width"], o["sparsity"]) == (t["site"], t["width"], float(t["sparsity"]))
        results["kinds"][kind] = {
            "sparsities": sparsities,
            "ours": {"first_call": first, "second_call": second, "members": ours},
            "saelens": {"wall": theirs["wall_seconds"], "cpu": theirs["cpu_seconds"], "members": theirs["members"],
                        "scaling_factors": factors},
            "comparison": compare(ours, theirs["members"]),
        }
    if not args.no_memory:
        results["memory"] = memory_runs(args, out, train)
    results["load_average_end"] = os.getloadavg()
    json_path = out / "sae_vs_saelens.json"
    json_path.write_text(json.dumps(results, indent=1))
    fig_path = figure(results, out / "sae_vs_saelens.png")
    print()
    print(tables(results))
    print(f"\nwritten: {json_path}, {fig_path}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
