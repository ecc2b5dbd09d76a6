"""The metadata guard (common/imdsguard.py) in a network namespace this test creates: HTTP servers on
link-local addresses inside it stand in for the metadata service and a spot-metadata URL elsewhere; a
real non-root user is refused, root is not (root, nftables, iproute2). No traffic leaves the namespace."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import imdsguard
from tests.conftest import require, require_root
from tests.harness import VENV_BIN
from tests.integration.unix_users import UnixUser, unix_users

GUARD = str(VENV_BIN / "bench-imds-guard")
NETNS = "bench-t-imds"
METADATA = "169.254.169.254"
ELSEWHERE = "169.254.10.10"  # a spot-metadata URL that is not the metadata service
FETCH = r"""
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print("status", r.status)
except OSError as exc:
    print("refused", getattr(exc, "reason", exc))
"""


def in_ns(*cmd: str) -> list[str]:
    return ["ip", "netns", "exec", NETNS, *cmd]


@pytest.fixture(scope="module")
def namespace() -> Iterator[UnixUser]:
    require_root()
    require(shutil.which("nft") is not None, "nft (Debian package nftables; make deps)")
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    servers: list[subprocess.Popen[bytes]] = []
    root = Path(tempfile.mkdtemp(prefix="bench-imds-"))
    root.chmod(0o755)
    (root / "latest").write_text("meta-data\n")
    try:
        subprocess.run(in_ns("ip", "link", "set", "lo", "up"), check=True)
        for address in (METADATA, ELSEWHERE):
            subprocess.run(in_ns("ip", "addr", "add", f"{address}/32", "dev", "lo"), check=True)
        for address, port in ((METADATA, 80), (ELSEWHERE, 8080), (ELSEWHERE, 8081)):
            servers.append(subprocess.Popen(in_ns("/usr/bin/python3", "-m", "http.server", "--bind", address,
                                                  "--directory", str(root), str(port)),
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with unix_users("bench-t-jobuser") as users:
            user = users["bench-t-jobuser"]
            deadline = time.monotonic() + 10
            while fetch(None, f"http://{ELSEWHERE}:8081/latest") != "status 200":
                assert time.monotonic() < deadline, "the test servers did not start"
                time.sleep(0.1)
            yield user
    finally:
        for server in servers:
            server.kill()
            server.wait(10)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def fetch(user: UnixUser | None, url: str) -> str:
    as_user = [] if user is None else ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups"]
    result = subprocess.run(in_ns(*as_user, "/usr/bin/python3", "-I", "-S", "-c", FETCH, url),
                            capture_output=True, text=True, timeout=30)
    return result.stdout.strip() or result.stderr.strip()


def test_only_root_reaches_the_metadata_service_and_the_spot_url(namespace: UnixUser) -> None:
    user = namespace
    imdsguard.apply(imdsguard.endpoints([f"http://{ELSEWHERE}:8080"]), netns=NETNS)
    try:
        assert fetch(user, f"http://{METADATA}/latest").startswith("refused"), "a user reached the metadata service"
        assert fetch(user, f"http://{ELSEWHERE}:8080/latest").startswith("refused")
        assert fetch(None, f"http://{METADATA}/latest") == "status 200"
        assert fetch(None, f"http://{ELSEWHERE}:8080/latest") == "status 200"
        # only what is guarded: another port of the same host stays open to everyone
        assert fetch(user, f"http://{ELSEWHERE}:8081/latest") == "status 200"
        imdsguard.apply(imdsguard.endpoints([]), netns=NETNS)  # replaced, not added to
        tables = subprocess.run(in_ns("nft", "list", "tables"), capture_output=True, text=True).stdout
        assert tables.count(imdsguard.TABLE) == 1
        assert fetch(user, f"http://{ELSEWHERE}:8080/latest") == "status 200"
        assert fetch(user, f"http://{METADATA}/latest").startswith("refused")
    finally:
        assert imdsguard.remove(netns=NETNS)
    assert fetch(user, f"http://{METADATA}/latest") == "status 200"
    assert not imdsguard.remove(netns=NETNS)


def test_the_command_line_names_what_it_guards(tmp_path: Path, namespace: UnixUser) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'spot_metadata_url = "http://{ELSEWHERE}:8080"\n')
    result = subprocess.run([GUARD, "apply", "--agent-config", str(config), "--netns", NETNS],
                            capture_output=True, text=True, timeout=30)
    try:
        assert result.returncode == 0, result.stderr
        assert f"{METADATA}, fd00:ec2::254, {ELSEWHERE}:8080 reachable by root only" in result.stdout
        assert fetch(namespace, f"http://{ELSEWHERE}:8080/latest").startswith("refused")
    finally:
        imdsguard.remove(netns=NETNS)
    bad = subprocess.run([GUARD, "apply", "--url", "nohost", "--netns", NETNS],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "has no host" in bad.stderr
