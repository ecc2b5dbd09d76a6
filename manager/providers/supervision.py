"""Restart-with-backoff for the daemons of a local cluster, as systemd's Restart=on-failure does on
real nodes: used by a member's init (sge_execd, bench-agent) and by `benchcluster.supervise` (the
manager node's daemons). Only the bookkeeping lives here; starting and reaping are the caller's.

A child that ran HEALTHY_AFTER_S resets its backoff; each quick failure doubles the delay (with
jitter, capped); after `max_quick_failures` in a row the child is given up on, loudly.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HEALTHY_AFTER_S = 30.0
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 10.0
MAX_QUICK_FAILURES = 500  # about an hour and a half at the cap


def log(message: str, who: str = "supervise") -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {who}: {message}", flush=True)


@dataclass
class Supervised:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    max_quick_failures: int = MAX_QUICK_FAILURES
    who: str = "supervise"
    pid: int | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restarts: int = 0
    restart_at: float = 0.0
    gave_up: bool = False
    jitter: Callable[[], float] = field(default=lambda: random.uniform(0.8, 1.2))

    @property
    def due(self) -> bool:
        return self.pid is None and not self.gave_up

    def start(self, now: float) -> None:
        with self.log_path.open("ab") as out:
            proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.pid = proc.pid
        self.started_at = now
        log(f"started {self.name} pid {self.pid}", self.who)

    def exited(self, status: int, now: float) -> None:
        ran_for = now - self.started_at
        self.pid = None
        self.quick_failures = 0 if ran_for >= HEALTHY_AFTER_S else self.quick_failures + 1
        if self.quick_failures >= self.max_quick_failures:
            self.gave_up = True
            log(f"{self.name} failed {self.quick_failures} times in a row; not restarting it", self.who)
            return
        delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(self.quick_failures, 10)) * self.jitter()
        self.restart_at = now + delay
        self.restarts += 1
        log(f"{self.name} exited with status {status} after {ran_for:.1f} s; restarting in {delay:.1f} s", self.who)
