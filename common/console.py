"""Rich consoles for people and for pipes.

Rich lays a table out for 80 columns when its stream is not a terminal, squeezing headers to
"mem…"/"hos…" in `make demo` output, CI logs and `| grep`. Piped output gets room for the full row
instead; a terminal keeps its own width. COLUMNS, when set, still wins (rich reads it itself).
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPE_WIDTH = 250


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPE_WIDTH if piped else None)
