"""Issue 20 end to end: a restricted workspace on a local cluster. Outbound traffic from inside a
member goes only to allowed names (squid by Host / SNI, nftables for the rest), refusals are resets
and land in the activity log; without upload rights /data/project is read-only on every member.

The "internet" is a network namespace on the cluster bridge with two addresses: allowed.test (and
paths.test, allowed by a path rule) and denied.test, named in the members' hosts files.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.providers.local_config import LocalClusterConfig
from tests.e2e.localcluster import LocalCluster
from tests.harness import wait_until

pytestmark = pytest.mark.e2e

SERVERS_NS = "bench-egress-test"
SERVERS_VETH = "bvegress"
ALLOWED_IP = "10.231.0.200"
DENIED_IP = "10.231.0.201"
PROJECT = Path("/data/project/restricted-e2e")
ROOT = Path(__file__).resolve().parents[2]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def start_servers(workdir: Path) -> subprocess.Popen[bytes]:
    subprocess.run(["ip", "netns", "del", SERVERS_NS], capture_output=True, check=False)
    _ip("netns", "add", SERVERS_NS)
    _ip("link", "add", SERVERS_VETH, "type", "veth", "peer", "name", "eth0", "netns", SERVERS_NS)
    _ip("link", "set", SERVERS_VETH, "master", "benchbr0", "up")
    for address in (ALLOWED_IP, DENIED_IP):
        _ip("-n", SERVERS_NS, "addr", "add", f"{address}/24", "dev", "eth0")
    _ip("-n", SERVERS_NS, "link", "set", "eth0", "up")
    _ip("-n", SERVERS_NS, "link", "set", "lo", "up")
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    log = (workdir / "servers.log").open("wb")
    proc = subprocess.Popen(["ip", "netns", "exec", SERVERS_NS, sys.executable, "-m", "tests.e2e.egress_servers",
                             str(cert), str(key), ALLOWED_IP, DENIED_IP], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    wait_until(lambda: "serving" in (workdir / "servers.log").read_text(), 20, "the test web servers")
    return proc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("restricted")
    shutil.rmtree(PROJECT, ignore_errors=True)
    PROJECT.mkdir(parents=True)
    (PROJECT / "readme.txt").write_text("project data\n")
    lc = LocalCluster(workdir / "state", ["--members", "0", "--cores", "2", "--memory", "2G", "--scratch-size", "64M",
                                          "--allow-small-scratch", "--no-spark"])
    servers: subprocess.Popen[bytes] | None = None
    try:
        lc.up()
        # the members' stand-in DNS: names written into their hosts files when they are launched
        config = LocalClusterConfig.load(lc.state_root)
        raw = json.loads((lc.state_root / "cluster.json").read_text())
        raw["extra_hosts"] = [f"{ALLOWED_IP} allowed.test paths.test", f"{DENIED_IP} denied.test"]
        (lc.state_root / "cluster.json").write_text(json.dumps(raw))
        assert config.cluster_id == raw["cluster_id"]
        servers = start_servers(workdir)
        urls = workdir / "urls.txt"
        urls.write_text("# what this workspace may reach\nallowed.test\nhttp://paths.test/folder/\n")
        lc.ctl("workspace", "set-allowlist", "--file", str(urls))
        lc.ctl("workspace", "set-rights", "--upload", "off")
        settings = lc.ctl_json("workspace", "get-settings")
        assert settings["has_pending"] and settings["in_force"]["allowlist"] == []
        lc.ctl("cluster", "start")  # the next cluster start puts them in force
        lc.ctl("cluster", "scale", "--static", "2")
        wait_until(lambda: len(lc.ready_members()) == 2, 300, "2 restricted members READY", interval_s=2.0)
        yield lc
    finally:
        if servers is not None:
            servers.terminate()
            servers.wait(10)
        subprocess.run(["ip", "netns", "del", SERVERS_NS], capture_output=True, check=False)
        lc.down()
        # `down` gives the workspace node its upload rights back (this raises EROFS if it did not)
        (PROJECT / "writable-again").write_text("ok\n")
        shutil.rmtree(PROJECT, ignore_errors=True)


def hostnames(lc: LocalCluster) -> list[str]:
    return sorted(m["hostname"] for m in lc.members().values() if m["state"] == "READY")


def curl(lc: LocalCluster, member: str, *args: str) -> subprocess.CompletedProcess[str]:
    """curl as an ordinary user inside the member."""
    return lc.exec(member, "runuser", "-u", "nobody", "--", "curl", "-sS", "-f", "-k", "-m", "10", *args)


def test_settings_came_in_force_at_the_cluster_start(cluster: LocalCluster) -> None:
    settings = cluster.ctl_json("workspace", "get-settings")
    assert settings["in_force"]["allowlist"] == ["allowed.test", "http://paths.test/folder/"]
    assert settings["in_force"]["upload"] is False and not settings["has_pending"]


def test_allowed_names_work_over_http_and_https_from_every_member(cluster: LocalCluster) -> None:
    for member in hostnames(cluster):
        for url in ("http://allowed.test/data", "https://allowed.test/data"):
            result = curl(cluster, member, url)
            assert result.returncode == 0, f"{member} {url}: {result.stderr}"
            assert result.stdout.startswith(f"served-by={ALLOWED_IP} host=allowed.test path=/data")


def egress_state(lc: LocalCluster, member: str) -> str:
    """What a failed egress check needs: the member's listening sockets and its egress daemons' output."""
    sockets = lc.exec(member, "ss", "-ltnp").stdout
    logs = [f"{path.name}: {path.read_text()[-1500:]}" for name in ("egress-guard.log", "squid.log")
            if (path := lc.state_root / "members" / member / "agent" / name).exists()]
    return "\n".join([sockets, *logs])


def test_everything_else_is_reset_or_refused(cluster: LocalCluster) -> None:
    member = hostnames(cluster)[0]
    for url in ("http://denied.test/x", "https://denied.test/x", f"http://{DENIED_IP}/x", f"https://{DENIED_IP}/x",
                "http://allowed.test:8080/x"):
        result = curl(cluster, member, url)
        assert result.returncode != 0 and "reset by peer" in result.stderr, \
            f"{url}: {result}\n{egress_state(cluster, member)}"
    # Host / SNI naming an allowed host, sent to the denied server: refused, the server never answers
    mismatches = [("--resolve", f"allowed.test:80:{DENIED_IP}", "http://allowed.test/x"),
                  ("--resolve", f"allowed.test:443:{DENIED_IP}", "https://allowed.test/x"),
                  ("-H", "Host: allowed.test", f"http://{DENIED_IP}/x")]
    for args in mismatches:
        result = curl(cluster, member, *args)
        assert result.returncode != 0 and "served-by" not in result.stdout, f"{args}: {result}"


def test_a_path_rule_admits_the_folder_and_not_the_bare_name(cluster: LocalCluster) -> None:
    member = hostnames(cluster)[-1]
    inside = curl(cluster, member, "http://paths.test/folder/file.txt")
    assert inside.returncode == 0 and "path=/folder/file.txt" in inside.stdout, inside.stderr
    for url in ("http://paths.test/folder", "http://paths.test/other/"):
        result = curl(cluster, member, url)
        assert result.returncode != 0 and "reset by peer" in result.stderr, f"{url}: {result}"


def test_refusals_are_in_the_activity_log_with_node_and_destination(cluster: LocalCluster) -> None:
    member = hostnames(cluster)[0]
    assert curl(cluster, member, f"http://{DENIED_IP}:8080/probe").returncode != 0
    assert curl(cluster, member, "https://denied.test/probe").returncode != 0

    def refusals() -> list[dict[str, object]]:
        entries = cluster.ctl_json("workspace", "activity", "--since", "10m", "--action", "connection refused")
        return [e for e in entries["entries"] if e["node"] == member]
    # (earlier tests' refusals are there too: wait for these two, named by destination and name)
    wanted = {(f"{DENIED_IP}:8080", ""), (f"{DENIED_IP}:443", "denied.test")}
    wait_until(lambda: wanted <= {(e["destination"], e.get("name", "")) for e in refusals()}, 15,
               "both refusals in the activity log")
    by_destination = {e["destination"]: e for e in refusals() if (e["destination"], e.get("name", "")) in wanted}
    # the local user behind a direct connection (the guard reads it while holding the connection)
    assert by_destination[f"{DENIED_IP}:8080"]["user"] == "nobody"
    assert by_destination[f"{DENIED_IP}:443"]["name"] == "denied.test"
    assert "allowlist" in str(by_destination[f"{DENIED_IP}:443"]["reason"])


def test_the_machine_hosting_the_local_cluster_is_not_filtered(cluster: LocalCluster) -> None:
    """The manager node's agent runs in this machine's own network namespace with egress enforcement
    off: the egress table exists in every member and never here."""
    assert subprocess.run(["nft", "list", "table", "inet", "bench_egress"], capture_output=True,
                          timeout=30).returncode != 0
    for member in hostnames(cluster):
        assert cluster.exec(member, "nft", "list", "table", "inet", "bench_egress").returncode == 0


def test_without_upload_rights_project_data_is_read_only_on_every_node(cluster: LocalCluster) -> None:
    for member in hostnames(cluster):
        assert cluster.exec(member, "cat", str(PROJECT / "readme.txt")).stdout == "project data\n"
        write = cluster.exec(member, "touch", str(PROJECT / f"from-{member}"))
        assert write.returncode != 0 and "Read-only file system" in write.stderr, write
    # the manager node, which is the workspace node here
    assert (PROJECT / "readme.txt").read_text() == "project data\n"
    with pytest.raises(OSError) as refused_here:
        (PROJECT / "from-workspace-node").write_text("x")
    assert refused_here.value.errno == errno.EROFS
    refused = cluster.ctl("data", "create-mount", "--mount-path", "/data/mounts/rw", "--source", str(PROJECT),
                          "--mode", "read-write", check=False)
    # PERMISSION_DENIED: workspace-ctl's exit status 5 (ctl/main.py EXIT_PERMISSION_DENIED)
    assert refused.returncode == 5 and "no upload rights" in refused.stderr, refused


def test_activity_query_returns_the_actions_just_taken(cluster: LocalCluster) -> None:
    entries = cluster.ctl_json("workspace", "activity", "--user", "root", "--since", "10m")["entries"]
    actions = [e["action"] for e in entries]
    for wanted in ("workspace set-allowlist", "workspace set-rights", "cluster start", "workspace settings applied",
                   "cluster scale", "data create-mount"):
        assert wanted in actions, f"{wanted} missing from {actions}"
    assert all(e["user"] == "root" for e in entries)  # refusals are not pinned on whoever is asking
