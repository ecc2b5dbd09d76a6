"""An agent applies the restrictions the manager sends it by itself (agent/restrictions.py), in a
network and mount namespace of the test's own: upload rights off make the project read-only, an
allowlist loads the egress table and starts squid and the egress guard; new
settings without an allowlist lift all of it and make the project writable again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require, require_root

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, errno, json, socket, subprocess, sys, time
from pathlib import Path
from agent.restrictions import RestrictionEnforcer, Restrictions

data, state = Path(sys.argv[1]), Path(sys.argv[2])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
enforcer = RestrictionEnforcer(data, state, data / "logs" / "activity.log")
out = {}

def writable():
    try:
        (data / "project" / "probe").write_text("x")
        return True
    except OSError as exc:
        assert exc.errno == errno.EROFS, exc
        return False

def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False

def table():
    return subprocess.run(["nft", "list", "table", "inet", "bench_egress"], capture_output=True).returncode == 0

async def main():
    restricted = Restrictions(allowlist=("allowed.test",), upload=False, cluster_addresses=("10.9.9.1/32",))
    out["applied"] = await enforcer.apply(restricted)
    out["again"] = await enforcer.apply(restricted)  # idempotent: nothing restarted
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (listening(3129) and listening(3131)):
        await asyncio.sleep(0.2)
    out["restricted"] = {"writable": writable(), "table": table(), "squid": listening(3129),
                         "guard": listening(3131), "readable": (data / "project" / "readme").read_text()}
    out["lifted"] = await enforcer.apply(Restrictions())
    await asyncio.sleep(0.5)
    out["open"] = {"writable": writable(), "table": table(), "squid": listening(3129), "guard": listening(3131)}

asyncio.run(main())
print(json.dumps(out))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    require_root()
    for tool in ("nft", "squid", "openssl"):
        require(shutil.which(tool) is not None or Path(f"/usr/sbin/{tool}").exists(), f"{tool} (make deps)")
    name = f"bench-restrict-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def test_the_agent_applies_and_lifts_the_restrictions_it_is_sent(netns: str, tmp_path: Path) -> None:
    data, state = tmp_path / "data", tmp_path / "agent"
    (data / "project").mkdir(parents=True)
    (data / "project" / "readme").write_text("project data\n")
    state.mkdir()
    # a private mount namespace: the read-only project and squid's tmpfs never reach this machine
    proc = subprocess.run(["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
                           sys.executable, "-c", SCRIPT, str(data), str(state)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["restricted"] == {"writable": False, "table": True, "squid": True, "guard": True,
                                 "readable": "project data\n"}, (out, (state / "squid.log").read_text()[-2000:])
    assert "read-only" in out["applied"] and "1 allowed destination" in out["applied"]
    assert out["open"] == {"writable": True, "table": False, "squid": False, "guard": False}, out
    assert "writable" in out["lifted"] and "not filtered" in out["lifted"]
    # outside the namespace nothing changed: the project stayed writable here all along
    (data / "project" / "outside").write_text("ok\n")
