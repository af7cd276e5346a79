"""Where results go: figures written atomically, output folders that never overwrite.

matplotlib is imported inside the functions that draw, so importing this is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path


def save_figure(fig, out: Path) -> Path:
    """Write a matplotlib figure atomically (temp file + rename) and close it."""
    import matplotlib.pyplot as plt

    out = Path(out)
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def jsonable(a) -> list:
    """An array as nested lists with NaN as null (JSON has no NaN)."""
    import numpy as np

    a = np.asarray(a, np.float64)
    return np.where(np.isfinite(a), a, None).tolist()


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fresh_folder(out: Path, marker: str = "results.json") -> Path:
    """``out`` itself if it holds no ``marker`` file yet, else the first free ``out-N``:
    earlier results are never overwritten."""
    out = Path(out)
    candidate, n = out, 1
    while (candidate / marker).exists():
        candidate, n = out.with_name(f"{out.name}-{n}"), n + 1
    candidate.mkdir(parents=True, exist_ok=True)
    return candidate


def echo_log(path: Path | None = None) -> tuple[Callable[[str], None], list[str]]:
    """``(log, lines)``: ``log`` prints each line at once, keeps it in ``lines`` for the report
    and, with ``path``, appends it there too (continuing the lines already in it), so a long
    run's progress is on disk while it runs."""
    lines: list[str] = Path(path).read_text().splitlines() if path is not None and Path(path).exists() else []

    def log(s: str) -> None:
        print(s, flush=True)
        lines.append(s)
        if path is not None:
            with Path(path).open("a") as f:
                f.write(s + "\n")

    return log, lines


def plot_curves(rows: list[dict], panels: Sequence[tuple[str, str, Sequence[str]]], out: Path) -> Path:
    """One panel per ``(title, x field, y fields)`` of metric rows; missing values are gaps. A
    field holding a list (one value per seed) draws one line per element."""
    import numpy as np

    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (title, x, ys) in zip(axes[0], panels):
        xs = [r.get(x) for r in rows]
        labels = 0
        for y in ys:
            values = [r.get(y) for r in rows]
            width = max((len(v) for v in values if isinstance(v, list)), default=0)
            blank = [None] * width if width else None
            table = np.array([[np.nan if e is None else e for e in (blank if v is None else v)] if width
                              else np.nan if v is None else v for v in values], np.float64)
            for i, column in enumerate(table.T if width else [table]):
                ax.plot(xs, column, label=f"{y}[{i}]" if width else y)
                labels += 1
        ax.set_xlabel(x.replace("_", " ")), ax.set_title(title)
        if labels > 1:
            ax.legend()
    return save_figure(fig, out)


def bar_chart(path: Path, labels: Sequence[str], series: dict[str, Sequence[float]], title: str, ylabel: str,
              errors: dict[str, Sequence[float]] | None = None) -> Path:
    """Grouped bars: one group per label, one bar per series; ``errors`` (keyed like ``series``)
    draws error bars, e.g. the std over seeds."""
    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(labels)), 3.6))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        yerr = None if errors is None else errors[name]
        ax.bar(np.arange(len(labels)) + i * width, values, width, label=name, yerr=yerr, capsize=0 if yerr is None else 2)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=60, ha="right", fontsize=8)
    ax.set_title(title), ax.set_ylabel(ylabel), ax.legend()
    return save_figure(fig, path)
