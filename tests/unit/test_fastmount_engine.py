"""Which engine serves a read-only mount: picked from the filesystem the source lives on."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.fastmount.engine import choose_engine, is_remote, source_fstype
from agent.mountsys import MountEntry, read_mount_table

MOUNTINFO = """\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw
30 22 0:26 / /data rw,relatime shared:5 - xfs /dev/nvme1n1 rw
31 30 0:40 / /data/project rw,relatime shared:6 - nfs4 fs-1.efs:/ rw,vers=4.1
32 30 0:41 / /data/with\\040space rw,relatime shared:7 - tmpfs tmpfs rw
33 30 0:42 / /data/s3 rw,relatime shared:8 - fuse.mountpoint-s3 mountpoint-s3 ro
34 30 0:43 / /data/project rw,relatime shared:9 - ext4 /dev/loop0 rw
"""


def table(tmp_path: Path) -> dict[str, MountEntry]:
    (tmp_path / "mountinfo").write_text(MOUNTINFO)
    return read_mount_table(str(tmp_path / "mountinfo"))


@pytest.mark.parametrize(("source", "fstype"), [
    ("/data/local/x", "xfs"),
    ("/data", "xfs"),
    ("/data/with space/a", "tmpfs"),
    ("/data/s3/bucket", "fuse.mountpoint-s3"),
    ("/data/projectX", "xfs"),  # a name prefix is not a path prefix
    ("/home/user", "ext4"),
])
def test_the_deepest_mount_containing_the_source_decides(source: str, fstype: str, tmp_path: Path) -> None:
    assert source_fstype(source, table(tmp_path)) == fstype


def test_a_later_mount_on_the_same_point_hides_the_earlier_one(tmp_path: Path) -> None:
    assert source_fstype("/data/project/p1", table(tmp_path)) == "ext4"


def test_no_mount_table_means_unknown() -> None:
    assert source_fstype("/data", {}) is None


@pytest.mark.parametrize(("fstype", "remote"), [
    ("nfs4", True), ("cifs", True), ("lustre", True), ("fuse.mountpoint-s3", True), ("fuse", True),
    ("ext4", False), ("xfs", False), ("tmpfs", False), ("overlay", False), ("fuseblk", False), (None, False),
])
def test_remote_filesystems_are_recognised(fstype: str | None, remote: bool) -> None:
    assert is_remote(fstype) is remote


def test_auto_picks_native_for_local_sources() -> None:
    engine, why = choose_engine("auto", "xfs", native_ok=True)
    assert engine == "native"
    assert "xfs" in why


def test_auto_picks_pyfuse3_read_ahead_for_remote_sources() -> None:
    engine, why = choose_engine("auto", "nfs4", native_ok=True)
    assert engine == "python"
    assert "nfs4" in why and "read-ahead" in why


def test_auto_falls_back_to_pyfuse3_when_native_is_not_built() -> None:
    assert choose_engine("auto", "ext4", native_ok=False) == ("python", "native engine not built")


def test_an_explicit_choice_is_kept() -> None:
    assert choose_engine("python", "ext4", native_ok=True)[0] == "python"
    assert choose_engine("native", "nfs4", native_ok=True)[0] == "native"


def test_asking_for_an_unbuilt_native_engine_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="libfuse3-dev"):
        choose_engine("native", "ext4", native_ok=False)


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, native, python"):
        choose_engine("turbo", "ext4", native_ok=True)
