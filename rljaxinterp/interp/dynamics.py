"""Training dynamics: any method of the toolkit, run over every checkpoint of a run.

A *method* is a function ``(model, params) -> {name: number or array}``; ``over_checkpoints``
calls it on the parameters of each checkpoint and stacks the answers into a table with a
leading step axis. ``probe_dynamics`` is the what-when-where measurement of McGrath et al.:
probe score per site and concept at every checkpoint, with a random-network control.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np
from tqdm.auto import tqdm

from rljaxinterp.interp.probes import ProbeScores, fit_probes, site_features


class Checkpoints(Protocol):
    """What a run must offer; ``rljaxinterp.load_run`` returns one."""

    model: Any
    steps: list[int]

    def params(self, step: int | None = None) -> Any: ...


Method = Callable[[Any, Any], Mapping[str, Any]]


def over_checkpoints(
    run: Checkpoints, method: Method, steps: Sequence[int] | None = None, progress: bool = True
) -> dict[str, np.ndarray]:
    """``{name: array with a leading step axis}`` plus ``"step"``."""
    steps = list(run.steps if steps is None else steps)
    if not steps:
        raise ValueError("the run has no checkpoints to analyse")
    rows = []
    for step in tqdm(steps, desc="checkpoints", disable=not progress):
        rows.append(jax.device_get(dict(method(run.model, run.params(step)))))
    table = {name: np.stack([np.asarray(r[name]) for r in rows]) for name in rows[0]}
    table["step"] = np.asarray(steps)
    return table


def probe_dynamics(
    run: Checkpoints,
    obs: jax.Array,
    concepts: Mapping[str, jax.Array],
    sites: Sequence[str] | None = None,
    kind: str = "ridge",
    random_params: Any = None,
    steps: Sequence[int] | None = None,
    **probe_kwargs,
) -> dict[str, Any]:
    """Probe scores (steps, sites, concepts), with the same probes on a randomly initialised
    network (``random_params``) and on shuffled labels as controls."""

    def scores(model, params) -> ProbeScores:
        return fit_probes(site_features(model, params, obs, sites), concepts, kind, **probe_kwargs)

    first = scores(run.model, run.params((run.steps if steps is None else steps)[0]))
    table = over_checkpoints(run, lambda m, p: {"test": scores(m, p).test}, steps)
    out = {
        "step": table["step"], "test": table["test"], "sites": first.sites, "concepts": first.concepts,
        "baseline": np.asarray(first.baseline),
    }
    last = run.params(int(table["step"][-1]))
    out["shuffled_labels"] = np.asarray(
        fit_probes(site_features(run.model, last, obs, sites), concepts, kind, shuffle_labels=True, **probe_kwargs).test
    )
    if random_params is not None:
        out["random_network"] = np.asarray(scores(run.model, random_params).test)
    return out


def representation_dynamics(run: Checkpoints, obs: jax.Array, sites: Sequence[str] | None = None,
                            steps: Sequence[int] | None = None) -> dict[str, Any]:
    """Linear CKA of every site with the same site at the final checkpoint, per step:
    when each layer's representation settles (Raghu et al.'s SVCCA question, with CKA)."""
    from rljaxinterp.interp.similarity import linear_cka

    steps = list(run.steps if steps is None else steps)
    final = site_features(run.model, run.params(steps[-1]), obs, sites)
    table = over_checkpoints(run, lambda m, p: {s: linear_cka(f, final[s])
                                               for s, f in site_features(m, p, obs, sites).items()}, steps)
    names = list(final)
    return {"step": table["step"], "sites": tuple(names), "cka": np.stack([table[s] for s in names], 1)}


def plot_representation_dynamics(dyn: Mapping[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colours = plt.cm.viridis(np.linspace(0, 1, len(dyn["sites"])))
    for i, site in enumerate(dyn["sites"]):
        ax.plot(dyn["step"], dyn["cka"][:, i], color=colours[i], label=site)
    ax.set_xlabel("training step")
    ax.set_ylabel("linear CKA with the final checkpoint")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_what_when_where(dynamics: Mapping[str, Any], path: Path, concepts: Sequence[str] | None = None) -> Path:
    """One panel per concept: probe score per site (colour) against training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dynamics["concepts"] if concepts is None else concepts)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    sites = dynamics["sites"]
    colours = plt.cm.viridis(np.linspace(0, 1, len(sites)))
    for ax, concept in zip(axes.flat, names):
        j = list(dynamics["concepts"]).index(concept)
        for i, site in enumerate(sites):
            ax.plot(dynamics["step"], dynamics["test"][:, i, j], color=colours[i], label=site)
        if "random_network" in dynamics:
            ax.axhline(np.max(dynamics["random_network"][:, j]), color="grey", ls="--", lw=1, label="random net (best site)")
        ax.set_title(concept, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("probe score (held out)")
    axes.flat[0].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_probe_table(scores: np.ndarray, sites: Sequence[str], concepts: Sequence[str], path: Path, title: str,
                     vmin: float = 0.0, vmax: float = 1.0, cmap: str = "viridis", label: str | None = None) -> Path:
    """Heatmap of probe scores, sites x concepts (R^2 below ``vmin`` is drawn at ``vmin``;
    give accuracy and R^2 their own tables and scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 + 0.45 * len(concepts)), 1.5 + 0.32 * len(sites)))
    im = ax.imshow(scores, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(concepts)), concepts, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(sites)), sites, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03, label=label)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # fits long site and concept names, however few
    plt.close(fig)
    return path
