"""What both daemons do the same way: signal handling, systemd readiness and watchdog pings."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from common import sdnotify
from common.logging import configure_logging

ConfigT = TypeVar("ConfigT")


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


async def cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel background tasks and wait until each has finished unwinding."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_daemon(prog: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
               load_config: Callable[[argparse.Namespace], ConfigT],
               serve: Callable[[ConfigT], Coroutine[Any, Any, int]], argv: list[str] | None = None) -> int:
    """The command-line entry shared by both daemons: parse, validate the configuration once (a bad
    value is one clear message and exit 2), set up logging, run the event loop."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = load_config(args)
    except ValueError as exc:  # both daemons' ConfigError
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    configure_logging(getattr(config, "log_format", "auto"))
    return asyncio.run(serve(config))
