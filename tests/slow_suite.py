"""Run the slow tests one file per fresh interpreter.

One pytest process for every slow case accumulated compiled XLA programs for almost an hour
and then aborted inside the compiler; a process per file keeps each one small, and a crash
names its file instead of taking the rest of the suite with it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def slow_files() -> list[str]:
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-m", "slow", "--collect-only", "-q"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    files = sorted({line.split("::")[0] for line in listed.stdout.splitlines() if "::" in line})
    if not files:
        sys.exit(f"no slow tests collected:\n{listed.stdout}\n{listed.stderr}")
    return files


def main() -> int:
    files = slow_files()
    failed, start = [], time.perf_counter()
    for i, path in enumerate(files, 1):
        print(f"[{i}/{len(files)}] {path}", flush=True)
        began = time.perf_counter()
        code = subprocess.run(
            [sys.executable, "-m", "pytest", path, "-m", "slow", *sys.argv[1:]], cwd=ROOT
        ).returncode
        print(f"[{i}/{len(files)}] {path}: exit {code} in {time.perf_counter() - began:.0f} s",
              flush=True)
        if code != 0:
            failed.append(f"{path} (exit {code})")
    print(f"slow suite: {len(files)} files in {time.perf_counter() - start:.0f} s")
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
