"""What both daemons do the same way: signal handling, systemd readiness and watchdog pings."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from common import sdnotify


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sdnotify.install_debug_hang_hook()


async def watchdog_loop(stop: asyncio.Event) -> None:
    """Ping systemd's watchdog from the event loop itself: if the loop hangs, the pings stop and
    systemd restarts the daemon."""
    interval = sdnotify.watchdog_interval_s()
    if interval is None:
        return
    while not stop.is_set():
        sdnotify.notify("WATCHDOG=1")
        await wait_for_stop(stop, interval)


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`, waking early when `stop` is set; returns whether it was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
