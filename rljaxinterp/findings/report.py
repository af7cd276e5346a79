"""Reports of findings: Markdown stamped with the commit, seeds, wall time and machine, and
the README blocks that quote them, rewritten by the command that measured them."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rljaxinterp.findings.rules import Conclusion, Evidence, Rule
from rljaxinterp.findings.stats import fmt_interval


def git_commit(folder: str | Path = ".") -> str:
    """``HEAD``'s hash, ``+dirty`` when tracked files differ from it, or ``unknown``."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """Platform, CPU count and the jax backend and devices this process computes on."""
    import jax

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "jax": jax.__version__, "backend": jax.default_backend(), "devices": len(jax.devices())}


class Report:
    """A Markdown report that knows when it started; ``write`` stamps it.

    ``report = Report(title, seeds=(0, 1, 2), tier="quick")``, then ``report.add(...)``
    lines, ``report.finding(rule, evidence)`` per pre-stated rule, ``report.write(folder)``.
    """

    def __init__(self, title: str, seeds: Sequence[int], tier: str = "full", source: str | Path = "."):
        self.title, self.seeds, self.tier, self.source = title, tuple(seeds), tier, Path(source)
        self.t0 = time.perf_counter()
        self.lines: list[str] = []
        self.conclusions: list[str] = []
        self.found: dict[str, Any] = {}  # per finding: rule, conclusion, the evidence's arrays
        self.data: dict[str, Any] = {}  # anything else the experiment wants in results.json

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def finding(self, rule: Rule, ev: Evidence, name: str) -> Conclusion:
        """Judge ``ev`` by ``rule``; adds the conclusion and a per-test table, returns it."""
        conclusion = rule.judge(ev)
        self.conclusions.append(f"**{name}**: {conclusion.text}")
        self.add(f"### {name}", "", f"Pre-stated rule: {rule.describe()}.", "", f"Conclusion: {conclusion.text}", "",
                 *evidence_table(ev, rule), "")
        self.found[name] = {"rule": rule.describe(), "holds": conclusion.holds, "conclusion": conclusion.text,
                           "tests": list(ev.tests), "observed": ev.observed.tolist(), "effect": ev.effect.tolist(),
                           "null_mean": ev.null_mean.tolist(), "p": ev.p.tolist(),
                           "p_adjusted": ev.p_adjusted.tolist(), "percentile": ev.percentile.tolist(),
                           "draws": ev.draws, "correction": ev.correction}
        return conclusion

    def stamp(self) -> dict[str, Any]:
        return {"commit": git_commit(self.source), "seeds": list(self.seeds), "tier": self.tier,
                "wall_time_s": round(time.perf_counter() - self.t0, 1), **machine()}

    def header(self, stamp: dict[str, Any]) -> str:
        return (f"Commit `{stamp['commit']}`, {self.tier} tier, seeds {stamp['seeds']}, wall time "
                f"{stamp['wall_time_s']:.0f} s on {stamp['platform']} ({stamp['cpus']} CPUs, jax {stamp['jax']} "
                f"{stamp['backend']} backend, {stamp['devices']} device(s)).")

    def write(self, out: str | Path, readme: str | Path | None = None, key: str | None = None) -> Path:
        """Write ``report.md`` and ``results.json`` into ``out``; with ``readme`` also replace
        its block ``key`` (see :func:`update_block`) with the stamped conclusions."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        stamp = self.stamp()
        md = [f"# {self.title}", "", self.header(stamp), "", "## Conclusions", "",
              *[f"- {c}" for c in self.conclusions], "", "## Details", "", *self.lines]
        (out / "report.md").write_text("\n".join(md) + "\n")
        (out / "results.json").write_text(json.dumps({"stamp": stamp, "findings": self.found, "data": self.data},
                                                     indent=1, default=_plain))
        if readme is not None:
            update_block(readme, key or self.title, "\n".join([self.header(stamp), "",
                                                               *[f"- {c}" for c in self.conclusions]]))
        return out / "report.md"


def _plain(x: Any) -> Any:
    """numpy and jax values as JSON (arrays as lists); anything else as its text."""
    return x.tolist() if hasattr(x, "tolist") else str(x)


def evidence_table(ev: Evidence, rule: Rule | None = None, digits: int = 3) -> list[str]:
    """One Markdown row per test: mean effect with its interval and per-agent values, null
    percentile and corrected p per agent, agents passing."""
    passing = rule.passing(ev) if rule is not None else None
    rows = ["| test | effect: mean [95% t-interval] (per agent) | null percentile per agent | corrected p per agent"
            + (" | agents passing |" if rule else " |"), "|---|---|---|---" + ("|---|" if rule else "|")]
    for i, t in enumerate(ev.tests):
        row = (f"| `{t}` | {fmt_interval(ev.interval(i), digits)} | "
               f"{', '.join(f'{x:.1f}' for x in ev.percentile[:, i])} | "
               f"{', '.join(f'{x:.3g}' for x in ev.p_adjusted[:, i])} |")
        if passing is not None:
            row += f" {int(passing[:, i].sum())}/{ev.agents} |"
        rows.append(row)
    return rows


def update_block(path: str | Path, key: str, text: str) -> Path:
    """Replace the text between ``<!-- findings:KEY -->`` and ``<!-- /findings:KEY -->`` in
    ``path`` (appending the block at the end when absent), so a README quotes only figures the
    last run of the command produced."""
    path = Path(path)
    if not re.fullmatch(r"[\w.:-]+", key):
        raise ValueError(f"block key {key!r} may hold only letters, digits, '_', '.', ':' and '-'")
    start, end = f"<!-- findings:{key} -->", f"<!-- /findings:{key} -->"
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text.strip()}\n{end}"
    if start in old:
        if end not in old:
            raise ValueError(f"{path} has {start!r} but no {end!r}; fix the block by hand")
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    return path
