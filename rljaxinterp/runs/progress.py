"""Training output fit for a terminal and for a log file.

On a terminal: one progress bar (stderr) and nothing else. Otherwise (a pipe, a log, CI):
a summary line every N chunks of work, N chosen so that a whole run prints at most about
``MAX_LINES`` lines, plus the last chunk's line.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

MAX_LINES = 30


def every_n(chunks: int, max_lines: int = MAX_LINES) -> int:
    """Print one line per this many chunks so ``chunks`` chunks print at most ``max_lines``."""
    return max(1, math.ceil(chunks / max_lines))


class Progress:
    """``update(steps, postfix, line)`` after each chunk; ``close()`` at the end.

    ``enabled=False`` prints nothing; ``log`` (a callable) receives the summary lines
    instead of stdout, whatever stdout is.
    """

    def __init__(self, desc: str, total: int, initial: int, chunk: int, enabled: bool = True,
                 log: Callable[[str], None] | None = None):
        self.bar = None
        self.say = log
        if enabled and log is None:
            if sys.stdout.isatty():
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, initial=initial, desc=desc, file=sys.stderr)
            else:
                self.say = lambda s: print(s, flush=True)
        self.every = every_n(math.ceil(max(0, total - initial) / max(1, chunk)))
        self.total = total
        self.chunks = 0

    def update(self, steps: int, done: int, postfix: str, line: Callable[[], str]) -> None:
        self.chunks += 1
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix_str(postfix)
        elif self.say is not None and (self.chunks % self.every == 0 or done >= self.total):
            self.say(line())

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.say is not None:
            self.say(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
