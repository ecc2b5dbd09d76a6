"""systemd's sd_notify protocol (READY=1, WATCHDOG=1, STATUS=…), without a dependency on libsystemd.

A no-op when NOTIFY_SOCKET is unset, so the daemons run the same with and without systemd.
"""

from __future__ import annotations

import os
import signal
import socket
import time


def notify(*assignments: str) -> bool:
    """Send `READY=1`-style assignments to systemd; returns whether anything was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(assignments).encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd gave us (the recommended ping period), or None when off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 1_000_000 / 2, 0.05)
    except ValueError:
        return None


def install_debug_hang_hook() -> None:
    """Test hook: with BENCH_DEBUG_ALLOW_HANG=1, SIGUSR2 freezes the calling thread's loop for good.

    Lets tests prove the systemd watchdog kills and restarts a daemon whose main loop hangs.
    """
    if os.environ.get("BENCH_DEBUG_ALLOW_HANG") != "1":
        return

    def hang(_signum: int, _frame: object) -> None:
        while True:
            time.sleep(3600)

    signal.signal(signal.SIGUSR2, hang)
