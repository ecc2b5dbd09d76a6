"""The fast-mount worker as a user sees it: a real FUSE mount of a real directory (root, /dev/fuse)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from agent.fastmount import caps
from agent.mountsys import read_mount_table
from tests.conftest import require_fuse, require_native_engine
from tests.integration.fastmount_helpers import (
    forget_everything,
    fuse_inodes_in_kernel,
    start_worker,
    stop_worker,
    wait_mounted,
)

pytestmark = pytest.mark.fuse

BIG = 48 * 1024 * 1024 + 4321  # not a multiple of any block size


class Mounted:
    def __init__(self, source: Path, mount: Path, stats: Path, proc: subprocess.Popen[bytes], engine: str) -> None:
        self.source, self.mount, self.stats, self.proc, self.engine = source, mount, stats, proc, engine


# Every behaviour below holds for each engine: native with kernel passthrough (the default for a local
# source), native serving reads itself (kernels without passthrough), and pyfuse3 (remote sources).
ENGINES = {"native": [], "native-no-passthrough": ["--no-passthrough"], "pyfuse3": []}
ENGINE_FLAG = {"native": "native", "native-no-passthrough": "native", "pyfuse3": "python"}


@pytest.fixture(scope="module", params=list(ENGINES))
def mounted(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Mounted]:
    require_fuse()
    engine: str = request.param
    if ENGINE_FLAG[engine] == "native":
        require_native_engine()
    base = tmp_path_factory.mktemp("fastmount")
    source, mount = base / "source", base / "mnt"
    (source / "many").mkdir(parents=True)
    (source / "sub" / "deeper").mkdir(parents=True)
    mount.mkdir()
    rng = random.Random(6)
    (source / "big.bin").write_bytes(rng.randbytes(BIG))
    for i in range(300):
        (source / "many" / f"f{i:04d}.dat").write_bytes(rng.randbytes(rng.randrange(0, 200_000)))
    (source / "sub" / "deeper" / "note.txt").write_text("deep\n")
    (source / "fresh").mkdir()  # files no other test reads, so their first read reaches the worker
    for name in ("counted", "passed"):
        (source / "fresh" / name).write_bytes(rng.randbytes(100_000))
    (source / "empty").write_bytes(b"")
    os.symlink("sub/deeper/note.txt", source / "link")
    os.chmod(source / "sub" / "deeper" / "note.txt", 0o640)
    stats = base / "stats.json"
    proc = subprocess.Popen([sys.executable, "-m", "agent.fastmount.worker", "--source", str(source),
                             "--mount-path", str(mount), "--stats-file", str(stats), "--stats-interval", "0.2",
                             "--engine", ENGINE_FLAG[engine], *ENGINES[engine]])
    try:
        wait_mounted(mount, proc)
        yield Mounted(source, mount, stats, proc, engine)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if str(mount) in read_mount_table():
            subprocess.run(["umount", "-l", str(mount)], check=False)


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry below root: type, size (files) and permission bits without the write bits."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            kind = "link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file"
            size = st.st_size if kind == "file" else 0
            out[str(p.relative_to(root))] = (kind, size, stat.S_IMODE(st.st_mode) & 0o555)
    return out


def test_large_file_has_the_same_sha256(mounted: Mounted) -> None:
    assert sha(mounted.mount / "big.bin") == sha(mounted.source / "big.bin")
    assert sha(mounted.mount / "big.bin") == sha(mounted.source / "big.bin")  # again, from the page cache


def test_many_small_files_have_the_same_content(mounted: Mounted) -> None:
    for p in sorted((mounted.source / "many").iterdir()):
        assert (mounted.mount / "many" / p.name).read_bytes() == p.read_bytes(), p.name


def test_listing_matches_the_source(mounted: Mounted) -> None:
    assert tree(mounted.mount) == tree(mounted.source)
    assert sorted(os.listdir(mounted.mount / "many")) == sorted(os.listdir(mounted.source / "many"))
    assert os.readlink(mounted.mount / "link") == "sub/deeper/note.txt"
    assert (mounted.mount / "link").read_text() == "deep\n"
    assert (mounted.mount / "empty").read_bytes() == b""


def test_missing_names_are_missing(mounted: Mounted) -> None:
    for _ in range(2):  # the second time the miss comes from the negative cache
        with pytest.raises(FileNotFoundError):
            (mounted.mount / "nope.txt").read_bytes()
    assert not (mounted.mount / "sub" / "nope").exists()


def test_random_reads_return_the_right_bytes(mounted: Mounted) -> None:
    rng = random.Random(7)
    src_fd = os.open(mounted.source / "big.bin", os.O_RDONLY)
    # O_DIRECT is not needed: a fresh open of a file never read at these offsets still goes to the worker
    mnt_fd = os.open(mounted.mount / "big.bin", os.O_RDONLY)
    try:
        for _ in range(300):
            off = rng.randrange(0, BIG + 100)
            size = rng.choice([1, 4096, 65536, 1 << 20, 3 << 20])
            assert os.pread(mnt_fd, size, off) == os.pread(src_fd, size, off), (off, size)
    finally:
        os.close(src_fd)
        os.close(mnt_fd)


def test_concurrent_readers_of_one_file_all_see_the_right_data(mounted: Mounted) -> None:
    expected = sha(mounted.source / "big.bin")
    results: list[str] = []

    def reader() -> None:
        results.append(sha(mounted.mount / "big.bin"))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [expected] * 4


def _expect_erofs(action: Callable[[], object]) -> None:
    with pytest.raises(OSError) as info:
        action()
    assert info.value.errno == errno.EROFS, info.value


@pytest.mark.parametrize("what", ["write", "create", "unlink", "mkdir", "rmdir", "rename", "chmod", "chown",
                                  "truncate", "symlink", "link", "setxattr", "utime", "append"])
def test_every_write_type_operation_fails_with_erofs(mounted: Mounted, what: str) -> None:
    m = mounted.mount
    actions: dict[str, Callable[[], object]] = {
        "write": lambda: os.open(m / "big.bin", os.O_WRONLY),
        "append": lambda: os.open(m / "empty", os.O_WRONLY | os.O_APPEND),
        "create": lambda: (m / "new.txt").write_text("x"),
        "unlink": lambda: os.unlink(m / "empty"),
        "mkdir": lambda: os.mkdir(m / "newdir"),
        "rmdir": lambda: os.rmdir(m / "sub" / "deeper"),
        "rename": lambda: os.rename(m / "empty", m / "renamed"),
        "chmod": lambda: os.chmod(m / "empty", 0o777),
        "chown": lambda: os.chown(m / "empty", 1, 1),
        "truncate": lambda: os.truncate(m / "big.bin", 0),
        "symlink": lambda: os.symlink("big.bin", m / "newlink"),
        "link": lambda: os.link(m / "big.bin", m / "hardlink"),
        "setxattr": lambda: os.setxattr(m / "empty", "user.k", b"v"),
        "utime": lambda: os.utime(m / "empty", (1, 1)),
    }
    _expect_erofs(actions[what])
    assert tree(mounted.source) == tree(mounted.mount)  # and nothing changed in the source


def test_files_look_read_only(mounted: Mounted) -> None:
    mode = os.stat(mounted.mount / "big.bin").st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert os.statvfs(mounted.mount).f_flag & os.ST_RDONLY


def published_after(mounted: Mounted, before: dict[str, int]) -> dict[str, int]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now: dict[str, int] = json.loads(mounted.stats.read_text())
        if now["opens"] > before["opens"]:
            return now
        time.sleep(0.1)
    raise AssertionError(f"opens did not grow past {before['opens']} within 5 s")


def test_counters_are_published(mounted: Mounted) -> None:
    before = json.loads(mounted.stats.read_text())
    with open(mounted.mount / "fresh" / "counted", "rb") as f:
        f.read(1)  # a first read: zero-message opens are only seen there
    now = published_after(mounted, before)
    assert now["pid"] == mounted.proc.pid
    assert now["engine"] == ENGINE_FLAG[mounted.engine]


def test_reads_pass_through_the_kernel_only_with_passthrough(mounted: Mounted) -> None:
    """With passthrough the kernel reads the source itself: the file opens, but no byte crosses the worker."""
    before = json.loads(mounted.stats.read_text())
    assert sha(mounted.mount / "fresh" / "passed") == sha(mounted.source / "fresh" / "passed")
    now = published_after(mounted, before)
    size = (mounted.source / "fresh" / "passed").stat().st_size
    if mounted.engine == "native":
        assert now["bytes_read"] == before["bytes_read"]
    else:
        assert now["bytes_read"] >= before["bytes_read"] + size


def test_reopened_files_read_right_before_and_after_the_kernel_forgets_them(mounted: Mounted) -> None:
    """The native engine keeps a closed file's backing file for its next open until the kernel forgets the
    inode; every open in that life cycle must see the file's bytes."""
    files = sorted((mounted.source / "many").iterdir())[:20]
    for _ in range(3):  # the second and third opens reuse the kept backing files
        for p in files:
            assert (mounted.mount / "many" / p.name).read_bytes() == p.read_bytes(), p.name
    held = open(mounted.mount / "many" / files[0].name, "rb")  # noqa: SIM115 - held across the forget below
    try:
        Path("/proc/sys/vm/drop_caches").write_text("2\n")  # evict dentries and inodes: the kernel forgets
        for p in files:
            assert (mounted.mount / "many" / p.name).read_bytes() == p.read_bytes(), p.name
        assert held.read() == files[0].read_bytes()  # an open file is never forgotten under its reader
    finally:
        held.close()


# the default; request threads that always sleep; and one that is still polling when SIGTERM comes
@pytest.mark.parametrize("spin", [[], ["--spin-us", "0"], ["--spin-us", "1000000"]], ids=["default", "0", "1s"])
def test_sigterm_unmounts_cleanly(tmp_path: Path, spin: list[str]) -> None:
    require_fuse()
    source, mount, stats = tmp_path / "s", tmp_path / "m", tmp_path / "stats.json"
    source.mkdir()
    mount.mkdir()
    (source / "a").write_text("a")
    proc = subprocess.Popen([sys.executable, "-m", "agent.fastmount.worker", "--source", str(source),
                             "--mount-path", str(mount), "--stats-file", str(stats), *spin])
    try:
        wait_mounted(mount, proc)
        assert (mount / "a").read_text() == "a"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert str(mount) not in read_mount_table()
        assert json.loads(stats.read_text())["opens"] == 1  # the final counts were written at exit
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


@pytest.mark.parametrize("habit", ["names", "attrs"])
def test_listings_carry_attributes_only_where_they_get_used(tmp_path: Path, habit: str) -> None:
    """Names-only listings (ls) instantiate no kernel inodes; ls -l gets attributes (and inodes) for
    every entry after the first batch, and a directory whose files get opened after a names-only listing
    gets them from the start of its next listing."""
    require_fuse()
    require_native_engine()
    entries = 3000
    source, mount = tmp_path / "s", tmp_path / "m"
    (source / "d").mkdir(parents=True)
    mount.mkdir()
    for i in range(entries):
        (source / "d" / f"entry-{i:05d}").write_bytes(b"x")
    proc = start_worker(source, mount, "--engine", "native")
    try:
        before = forget_everything()
        if habit == "names":
            for _ in range(2):  # the second listing is cold again
                assert len(os.listdir(mount / "d")) == entries
                assert fuse_inodes_in_kernel() - before < entries // 4
                before = forget_everything()
        else:
            names = sorted(os.listdir(mount / "d"))  # names only, then every file opened: learnt
            assert all((mount / "d" / n).read_bytes() == b"x" for n in names)
            before = forget_everything()
            listed = os.listdir(mount / "d")  # this listing brings attributes: the inodes exist now
            assert fuse_inodes_in_kernel() - before >= entries * 3 // 4, len(listed)
    finally:
        stop_worker(proc, mount)


def test_bad_arguments_are_refused_before_mounting(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "agent.fastmount.worker", "--source", str(tmp_path / "none"),
                          "--mount-path", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "--source" in out.stderr and "not a directory" in out.stderr
    out = subprocess.run([sys.executable, "-m", "agent.fastmount.worker", "--source", str(tmp_path),
                          "--mount-path", str(tmp_path), "--spin-us", "-1"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "--spin-us must be between 0 and 1000000" in out.stderr


def test_an_idle_mount_uses_no_cpu_after_a_burst_of_requests(tmp_path: Path) -> None:
    """The native engine polls for requests for a moment after each one (receive.h); once they stop
    coming it must sleep, not keep a CPU busy."""
    require_fuse()
    require_native_engine()
    source, mount = tmp_path / "s", tmp_path / "m"
    source.mkdir()
    mount.mkdir()
    for i in range(200):
        (source / f"f{i:03d}").write_bytes(b"y" * 1000)
    proc = start_worker(source, mount, "--engine", "native", "--spin-us", "20000")
    try:
        worker = psutil.Process(proc.pid)
        for _ in range(5):  # a burst: lookups, opens and releases
            assert all((mount / f"f{i:03d}").read_bytes() == b"y" * 1000 for i in range(200))
        time.sleep(0.2)  # 10x the polling window
        before = sum(worker.cpu_times()[:2])
        time.sleep(2.0)
        busy = sum(worker.cpu_times()[:2]) - before
        assert busy < 0.2, f"the idle worker used {busy:.2f} s of CPU in 2 s"
    finally:
        stop_worker(proc, mount)


@pytest.mark.parametrize("engine", ["native", "python"])
def test_a_directory_swapped_for_a_symlink_does_not_lead_outside(tmp_path: Path, engine: str) -> None:
    """Both engines resolve every path beneath the source without following symlinks: a directory the
    kernel still remembers, replaced in the source by a symlink to elsewhere, serves nothing from there."""
    require_fuse()
    if engine == "native":
        require_native_engine()
    source, mount, outside = tmp_path / "s", tmp_path / "m", tmp_path / "outside"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a").write_text("inside")
    outside.mkdir()
    (outside / "secret").write_text("outside")
    mount.mkdir()
    proc = start_worker(source, mount, "--engine", engine)
    try:
        assert (mount / "sub" / "a").read_text() == "inside"  # the kernel now remembers "sub" for a while
        (source / "sub").rename(source / "sub.old")
        os.symlink(outside, source / "sub")
        with pytest.raises(OSError) as info:
            (mount / "sub" / "secret").read_text()
        # ELOOP (the path resolved beneath the source met the link) or ENOTDIR (the parent, reopened to check
        # it is still the directory the kernel knows, is a link now): either way nothing from outside.
        assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
        with pytest.raises(OSError) as info:
            os.listdir(mount / "sub")
        assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)  # ENOTDIR once the kernel saw it is a link now
    finally:
        stop_worker(proc, mount)


def test_every_worker_thread_keeps_only_what_serving_needs(mounted: Mounted) -> None:
    """Started by root with every capability; once mounted, each thread (request threads, fetchers, the
    stats thread) holds CAP_DAC_READ_SEARCH only, plus CAP_SYS_ADMIN where passthrough registers backing
    files; nothing is left in the bounding set beyond that, and no_new_privs is set."""
    assert (mounted.mount / "sub" / "deeper" / "note.txt").read_text() == "deep\n"  # threads are up and busy
    allowed = {"cap_dac_read_search"} | ({"cap_sys_admin"} if mounted.engine == "native" else set())
    threads = list(Path(f"/proc/{mounted.proc.pid}/task").iterdir())
    assert len(threads) > 1
    for task in threads:
        sets = caps.of_task(str(task / "status"))
        for name, mask in (("effective", sets.effective), ("permitted", sets.permitted),
                           ("bounding", sets.bounding)):
            assert set(caps.names(mask)) <= allowed, f"thread {task.name} {name}: {caps.names(mask)}"
        assert "NoNewPrivs:\t1" in (task / "status").read_text()
