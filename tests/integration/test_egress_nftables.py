"""The egress table loads into a network namespace, can be reloaded, and never touches another
table there (the metadata-service guard of the trust work lives in the same namespaces)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from common.egress_config import nft_ruleset
from tests.conftest import require, require_root

OTHER_TABLE = """table inet other_guard {
    chain out {
        type filter hook output priority 0; policy accept;
        meta skuid != 0 ip daddr 169.254.169.254 reject
    }
}
"""


@pytest.fixture
def netns() -> Iterator[str]:
    require_root()
    require(shutil.which("nft") is not None, "nftables (make deps)")
    name = f"bench-egress-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def nft(netns: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(["ip", "netns", "exec", netns, "nft", *args], input=stdin, capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_egress_table_reloads_without_touching_other_tables(netns: str) -> None:
    nft(netns, "-f", "-", stdin=OTHER_TABLE)
    rules = nft_ruleset(["10.231.0.1/32", "10.231.0.11-10.231.0.60"], ["10.0.0.2"])
    nft(netns, "-f", "-", stdin=rules)
    nft(netns, "-f", "-", stdin=rules)  # a reload replaces our table atomically
    tables = nft(netns, "list", "tables").split()
    assert tables.count("bench_egress") == 1 and "other_guard" in tables
    assert "169.254.169.254" in nft(netns, "list", "table", "inet", "other_guard")
    listed = nft(netns, "list", "table", "inet", "bench_egress")
    assert listed.count("redirect to :3129") == 1 and "10.231.0.11-10.231.0.60" in listed
