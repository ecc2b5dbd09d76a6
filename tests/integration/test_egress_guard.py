"""The egress guard's refusals as a client sees them: a real curl against the guard on loopback.

nftables' redirect (which the e2e restricted-workspace test exercises) is replaced here by a guard that
treats every connection as redirected, so the race between the guard's reset and the client's connect
can be tried hundreds of times in seconds."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.egress_guard import HOLD_S, Guard
from tests.conftest import require


class EveryConnectionRedirected(Guard):
    @staticmethod
    def original_destination(conn: socket.socket) -> str | None:
        return "192.0.2.10:8080"


@pytest.fixture()
def guard(tmp_path: Path) -> Iterator[tuple[Guard, int]]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    running = EveryConnectionRedirected("node-a", tmp_path / "refusals.jsonl", tmp_path / "absent.log", port)
    thread = threading.Thread(target=running.serve, args=(listener,), daemon=True)
    thread.start()
    yield running, port
    running.stopping.set()
    thread.join(10)
    listener.close()
    assert not thread.is_alive()


def test_every_refused_connection_is_reset_by_peer_and_recorded(guard: tuple[Guard, int]) -> None:
    require(shutil.which("curl") is not None, "curl")
    running, port = guard
    attempts = 150  # an immediate reset made curl say "could not connect" about 1 time in 5
    outcomes: Counter[tuple[int, bool]] = Counter()
    for _ in range(attempts):
        result = subprocess.run(["curl", "-sS", "-m", "5", f"http://127.0.0.1:{port}/x"], capture_output=True,
                                text=True, timeout=30, check=False)
        outcomes[(result.returncode, "reset by peer" in result.stderr)] += 1
    assert outcomes == {(56, True): attempts}, outcomes
    lines = running.activity_log.read_text().splitlines()
    assert len(lines) == attempts
    entry = json.loads(lines[0])
    assert entry["destination"] == "192.0.2.10:8080" and entry["node"] == "node-a" and entry["result"] == "reset", entry


def test_a_client_that_waits_for_the_server_is_reset_after_the_hold(guard: tuple[Guard, int]) -> None:
    _, port = guard
    started = time.monotonic()
    # e.g. ssh: the server speaks first
    with socket.create_connection(("127.0.0.1", port), timeout=10) as silent, pytest.raises(ConnectionResetError):
        silent.recv(1)
    assert HOLD_S * 0.8 <= time.monotonic() - started < HOLD_S + 5


def test_many_silent_clients_do_not_hold_up_the_others(guard: tuple[Guard, int]) -> None:
    _, port = guard
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]
    try:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as speaker:
            speaker.sendall(b"GET / HTTP/1.0\r\n\r\n")
            with pytest.raises(ConnectionResetError):
                speaker.recv(1)
        assert time.monotonic() - started < HOLD_S  # not queued behind the silent ones' hold
    finally:
        for conn in silent:
            conn.close()
