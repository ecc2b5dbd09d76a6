"""Issue 6 end to end: fast mounts created from workspace-ctl on every node of a local cluster; and
(issue 17) the metadata guard inside a member of the same cluster."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.localcluster import LocalCluster
from tests.harness import wait_until
from tests.integration.unix_users import unix_users

pytestmark = pytest.mark.e2e

SOURCE = Path("/data/project/e2e-mounts")
MOUNT = "/data/mounts/e2e-ro"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    shutil.rmtree(SOURCE, ignore_errors=True)
    (SOURCE / "small").mkdir(parents=True)
    with (SOURCE / "big.bin").open("wb") as fh:
        for _ in range(48):
            fh.write(os.urandom(1 << 20))
    for i in range(200):
        (SOURCE / "small" / f"f{i:04d}").write_bytes(os.urandom(4096))
    lc = LocalCluster(tmp_path_factory.mktemp("mounts-cluster"),
                      ["--members", "2", "--cores", "2", "--memory", "2G", "--scratch-size", "64M",
                       "--allow-small-scratch", "--no-spark"])
    try:
        lc.up()
        yield lc
    finally:
        lc.down()
        shutil.rmtree(SOURCE, ignore_errors=True)


def members(lc: LocalCluster) -> list[str]:
    return [m["hostname"] for m in lc.members().values() if m["state"] == "READY"]


def sha256_on(lc: LocalCluster, member: str | None, path: str) -> str:
    if member is None:  # the workspace/manager node itself
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    result = lc.exec(member, "sha256sum", path)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[0]


def mounted_on(lc: LocalCluster, member: str, path: str) -> bool:
    return any(line.split()[1] == path for line in lc.exec(member, "cat", "/proc/mounts").stdout.splitlines())


def test_create_mount_reaches_every_node_with_identical_content(cluster: LocalCluster) -> None:
    result = cluster.ctl("data", "create-mount", "--mount-path", MOUNT, "--source", str(SOURCE), "--output", "json")
    outcome = json.loads(result.stdout)
    assert all(r["ok"] for r in outcome["results"]) and len(outcome["results"]) >= 3  # 2 members + manager node
    expected = hashlib.sha256((SOURCE / "big.bin").read_bytes()).hexdigest()
    nodes = members(cluster)
    assert len(nodes) == 2
    for member in [None, *nodes]:
        assert sha256_on(cluster, member, f"{MOUNT}/big.bin") == expected
    listing = cluster.exec(nodes[0], "ls", f"{MOUNT}/small").stdout.split()
    assert sorted(listing) == sorted(os.listdir(SOURCE / "small"))
    view = cluster.ctl_json("data", "get-mounts")["mounts"]
    assert [m["mount_path"] for m in view] == [MOUNT] and view[0]["mode"] == "read-only"
    wait_until(lambda: {n["state"] for n in cluster.ctl_json("data", "get-mounts")["mounts"][0]["nodes"]}
               == {"mounted"}, 20, "every node to report the mount")


@pytest.mark.parametrize("command", [
    "echo x > {m}/new-file", "echo x >> {m}/big.bin", "rm {m}/small/f0001", "chmod 600 {m}/big.bin",
    "mkdir {m}/dir", "mv {m}/small/f0002 {m}/small/moved", "truncate -s 0 {m}/big.bin", "ln -s x {m}/link",
])
def test_every_write_is_refused_with_erofs(cluster: LocalCluster, command: str) -> None:
    member = members(cluster)[0]
    result = cluster.exec(member, "sh", "-c", command.format(m=MOUNT))
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
    assert (SOURCE / "small" / "f0001").exists() and (SOURCE / "big.bin").stat().st_size == 48 << 20


@pytest.mark.parametrize(("mount_path", "source", "why"), [
    ("/data/elsewhere/x", str(SOURCE), "under /data/mounts"),
    ("/data/mounts/etc", "/etc", "under /data"),
    ("/data/mounts/../x", str(SOURCE), ".."),
    ("/data/mounts/missing", "/data/project/does-not-exist", "does not exist"),
    (MOUNT, str(SOURCE), "already"),
    (f"{MOUNT}/nested", str(SOURCE), "inside"),
    ("/data/mounts/escape", "/data/project/e2e-link-out", "symlink"),
])
def test_bad_mount_requests_are_rejected_and_mount_nothing(cluster: LocalCluster, mount_path: str, source: str,
                                                           why: str) -> None:
    link = Path("/data/project/e2e-link-out")
    if not link.is_symlink():
        link.symlink_to("/etc")
    result = cluster.ctl("data", "create-mount", "--mount-path", mount_path, "--source", source, check=False)
    assert result.returncode != 0
    assert why.lower() in result.stderr.lower(), result.stderr
    assert [m["mount_path"] for m in cluster.ctl_json("data", "get-mounts")["mounts"]] == [MOUNT]
    for member in members(cluster):
        if mount_path != MOUNT and not mount_path.startswith(MOUNT):
            assert not mounted_on(cluster, member, os.path.normpath(mount_path))


def test_killed_worker_is_replaced_without_user_action(cluster: LocalCluster) -> None:
    member = members(cluster)[0]
    found = cluster.exec(member, "pgrep", "-f", f"agent.fastmount.worker.*{MOUNT}")
    pids = found.stdout.split()
    assert pids, "no fast-mount worker found in the member"
    cluster.exec(member, "kill", "-9", *pids)
    started = time.monotonic()
    expected = hashlib.sha256((SOURCE / "big.bin").read_bytes()).hexdigest()
    wait_until(lambda: cluster.exec(member, "sh", "-c", f"head -c 1 {MOUNT}/big.bin >/dev/null").returncode == 0, 10,
               "reads to work again after kill -9 of the worker")
    assert time.monotonic() - started <= 10
    assert sha256_on(cluster, member, f"{MOUNT}/big.bin") == expected


def test_delete_mount_removes_it_everywhere(cluster: LocalCluster) -> None:
    cluster.ctl("data", "delete-mount", "--mount-path", MOUNT)
    assert cluster.ctl_json("data", "get-mounts")["mounts"] == []
    nodes = members(cluster)
    wait_until(lambda: not any(mounted_on(cluster, m, MOUNT) for m in nodes), 15, "every member to unmount")
    assert not os.path.ismount(MOUNT)
    missing = cluster.ctl("data", "delete-mount", "--mount-path", MOUNT, check=False)
    assert missing.returncode == 1 and "no mount" in missing.stderr


# Issue 17, item 3: the instance metadata service is reachable by root only, inside every member too.
FETCH = r"""
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print("status", r.status)
except OSError as exc:
    print("refused", getattr(exc, "reason", exc))
"""


def test_inside_a_member_only_root_reaches_the_metadata_service(cluster: LocalCluster) -> None:
    """A stand-in metadata service on 169.254.169.254 inside the member's own network namespace (traffic
    never leaves it): a job user's process is refused, root's is served."""
    member = members(cluster)[0]
    assert "bench_imds_guard" in cluster.exec(member, "nft", "list", "tables").stdout
    assert subprocess.run(["nft", "list", "table", "inet", "bench_imds_guard"], capture_output=True).returncode == 0
    assert cluster.exec(member, "ip", "addr", "add", "169.254.169.254/32", "dev", "lo").returncode == 0
    server = cluster.exec(member, "sh", "-c", "setsid /usr/bin/python3 -m http.server --bind 169.254.169.254 80 "
                                              "--directory /etc >/dev/null 2>&1 & echo $!").stdout.strip()
    try:
        with unix_users("bench-t-e2ejob") as users:
            user = users["bench-t-e2ejob"]
            as_root = ["/usr/bin/python3", "-I", "-S", "-c", FETCH, "http://169.254.169.254/hostname"]
            wait_until(lambda: cluster.exec(member, *as_root).stdout.strip() == "status 200", 10,
                       "root to reach the stand-in metadata service")
            as_user = cluster.exec(member, "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups",
                                   *as_root)
            assert as_user.stdout.strip().startswith("refused"), as_user.stdout + as_user.stderr
    finally:
        cluster.exec(member, "kill", server)
        cluster.exec(member, "ip", "addr", "del", "169.254.169.254/32", "dev", "lo")
