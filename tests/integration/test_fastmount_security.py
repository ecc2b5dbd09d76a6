"""What a hostile user on a node can try through a fast mount, on every engine (issue 17, item 6): swap
the object behind a name the kernel has already checked, or swap in a FIFO. Real FUSE workers (root),
readers running as real non-root users (the kernel applies permissions from the mount's attributes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_fuse, require_native_engine
from tests.integration.fastmount_helpers import start_worker, stop_worker
from tests.integration.unix_users import UnixUser, chown, unix_users

pytestmark = pytest.mark.fuse

ENGINES = {"native": ["--engine", "native"],
           "native-no-passthrough": ["--engine", "native", "--no-passthrough"],
           "pyfuse3": ["--engine", "python"]}

SECRET = "the victim's secret"

# Looks the name up through the mount, says so, waits for the go-ahead, then reads it.
LOOK_THEN_READ = r"""
import errno, os, sys
path = sys.argv[1]
os.listdir(os.path.dirname(path))
os.stat(path)
print("looked", flush=True)
sys.stdin.readline()
try:
    with open(path, "rb") as f:
        print("read", f.read().decode(errors="replace"), flush=True)
except OSError as exc:
    print("error", errno.errorcode[exc.errno], flush=True)
"""


@dataclass
class Mounted:
    source: Path
    mount: Path
    alice: UnixUser
    bob: UnixUser


@pytest.fixture(scope="module")
def users() -> Iterator[dict[str, UnixUser]]:
    require_fuse()
    with unix_users("bench-t-mallory", "bench-t-victim") as made:
        yield made


@pytest.fixture(params=list(ENGINES))
def mounted(request: pytest.FixtureRequest, users: dict[str, UnixUser]) -> Iterator[Mounted]:
    if request.param.startswith("native"):
        require_native_engine()
    base = Path(tempfile.mkdtemp(prefix="bench-fmsec-", dir="/var/tmp"))  # reachable by the test users
    base.chmod(0o755)
    source, mount = base / "source", base / "mnt"
    source.mkdir(mode=0o777)
    source.chmod(0o777)  # a shared project directory: everyone may create and rename in it
    mount.mkdir()
    (source / "other.txt").write_text("other\n")
    proc = start_worker(source, mount, *ENGINES[request.param])
    try:
        yield Mounted(source, mount, users["bench-t-mallory"], users["bench-t-victim"])
    finally:
        stop_worker(proc, mount)
        shutil.rmtree(base, ignore_errors=True)


def write_as(path: Path, text: str, owner: UnixUser, mode: int) -> None:
    path.write_text(text)
    chown(path, owner, mode)


def look_then(m: Mounted, name: str, between: Callable[[], object]) -> str:
    """mallory looks `name` up through the mount; `between()` runs; mallory reads it. Her last line."""
    reader = m.alice.popen_python(LOOK_THEN_READ, str(m.mount / name))
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().strip() == "looked", reader.stderr.read() if reader.stderr else ""
        between()
        out, err = reader.communicate("go\n", timeout=20)
    finally:
        reader.kill()
    assert out.strip(), err
    return out.strip().splitlines()[-1]


def test_a_victims_file_renamed_over_a_looked_up_name_cannot_be_read(mounted: Mounted) -> None:
    m = mounted
    write_as(m.source / "mine.txt", "mallory's own\n", m.alice, 0o644)
    write_as(m.source / "victim.txt", SECRET, m.bob, 0o600)
    result = look_then(m, "mine.txt", lambda: (m.source / "victim.txt").rename(m.source / "mine.txt"))
    assert SECRET not in result
    assert result in ("error EACCES", "error ESTALE"), result


def test_a_permission_taken_away_counts_within_the_attribute_bound(mounted: Mounted) -> None:
    """Attributes decide the kernel's permission check: none older than ~1 s may be handed to it."""
    m = mounted
    write_as(m.source / "was-open.txt", SECRET, m.bob, 0o644)

    def take_away() -> None:
        (m.source / "was-open.txt").chmod(0o600)
        time.sleep(1.5)

    result = look_then(m, "was-open.txt", take_away)
    assert result == "error EACCES", result


def test_a_fifo_swapped_in_does_not_hang_the_mount(mounted: Mounted) -> None:
    m = mounted
    (m.source / "data.bin").write_bytes(b"x" * 4096)
    os.stat(m.mount / "data.bin")  # the kernel now knows it as a regular file
    (m.source / "data.bin").unlink()
    os.mkfifo(m.source / "data.bin")
    # Opening it through the mount: the worker must not block on the FIFO (the opener itself may then wait
    # in the kernel on a FIFO of the mount's own, as on any filesystem; it is killed below).
    opener = subprocess.Popen([sys.executable, "-c", f"open({str(m.mount / 'data.bin')!r}, 'rb').read(1)"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        probe = subprocess.run([sys.executable, "-c", f"import os; os.statvfs({str(m.mount)!r}); "
                                f"print(open({str(m.mount / 'other.txt')!r}).read(), end='')"],
                               capture_output=True, text=True, timeout=10)
        assert probe.stdout == "other\n", probe.stderr
        # and a file nobody opened before (a new source open, not one the engine remembers)
        (m.source / "late.txt").write_text("late\n")
        assert subprocess.run(["cat", str(m.mount / "late.txt")], capture_output=True, text=True,
                              timeout=10).stdout == "late\n"
    finally:
        opener.kill()
        opener.wait(10)
