"""Listing large directories through a fast mount, as `ls -l` and programs that walk a directory do it:
the answer is the source's, whatever the engine reads ahead, across many of the kernel's batches, when
a listing resumes at a saved position, and when the source changes under it (root, /dev/fuse)."""

from __future__ import annotations

import ctypes
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_fuse, require_native_engine
from tests.integration.fastmount_helpers import forget_everything, start_worker, stop_worker

pytestmark = pytest.mark.fuse

# The native engine reads the next batch ahead by default; without it; and the pyfuse3 engine.
ENGINES = {"native": ["--engine", "native"],
           "native-no-dir-read-ahead": ["--engine", "native", "--no-dir-read-ahead"],
           "pyfuse3": ["--engine", "python"]}
ENTRIES = 4000  # ~10 of the kernel's 128 KiB READDIRPLUS batches with these names


def entry_name(i: int) -> str:
    # names of every length up to NAME_MAX (so batches hold different counts), some with spaces and UTF-8
    stem = f"e{i:05d}-" + ("ä" if i % 7 == 0 else "") + (" x" if i % 11 == 0 else "")
    return stem + "n" * (i * 37 % (240 - len(stem.encode())))


def make_source(root: Path) -> Path:
    directory = root / "big"
    directory.mkdir(parents=True)
    for i in range(ENTRIES):
        if i % 500 == 3:
            (directory / entry_name(i)).mkdir()
        elif i % 500 == 7:
            os.symlink(f"target-{i}", directory / entry_name(i))
        else:
            (directory / entry_name(i)).write_bytes(b"z" * (i % 1013))  # sizes tell entries apart
    return directory


def attributes(st: os.stat_result) -> tuple[int, int]:
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    return stat.S_IFMT(st.st_mode), size


def long_listing(directory: Path) -> dict[str, tuple[int, int]]:
    """Like `ls -l`: every name and its attributes, each name once."""
    listed: dict[str, tuple[int, int]] = {}
    with os.scandir(directory) as it:
        for entry in it:
            assert entry.name not in listed, f"{entry.name!r} listed twice"
            listed[entry.name] = attributes(entry.stat(follow_symlinks=False))
    return listed


def drop_caches() -> None:
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


@pytest.fixture(params=list(ENGINES))
def big_directory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, Path]]:
    """(source directory, the same directory through a fresh mount)."""
    require_fuse()
    if request.param.startswith("native"):
        require_native_engine()
    source = make_source(tmp_path / "s")
    mount = tmp_path / "m"
    mount.mkdir()
    proc = start_worker(source.parent, mount, *ENGINES[request.param])
    try:
        yield source, mount / source.name
    finally:
        stop_worker(proc, mount)


def test_a_long_listing_matches_the_source_first_cold_and_again(big_directory: tuple[Path, Path]) -> None:
    source, through_mount = big_directory
    expected = long_listing(source)
    assert len(expected) == ENTRIES
    assert long_listing(through_mount) == expected  # first look: names, then attributes per entry
    drop_caches()
    assert long_listing(through_mount) == expected  # cold: attributes with every batch
    assert long_listing(through_mount) == expected  # again, from the kernel's caches


class _Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]


class DirStream:
    """libc's opendir/readdir/telldir/seekdir: Python has no way to save and resume a listing position."""

    libc = ctypes.CDLL(None, use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.readdir.restype = ctypes.POINTER(_Dirent)
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.telldir.restype = ctypes.c_long
    libc.telldir.argtypes = [ctypes.c_void_p]
    libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
    libc.closedir.argtypes = [ctypes.c_void_p]

    def __init__(self, path: Path) -> None:
        self.handle = self.libc.opendir(os.fsencode(path))
        assert self.handle, os.strerror(ctypes.get_errno())

    def names(self, count: int | None = None) -> list[str]:
        out: list[str] = []
        while count is None or len(out) < count:
            ctypes.set_errno(0)
            entry = self.libc.readdir(self.handle)
            if not entry:
                assert ctypes.get_errno() == 0, os.strerror(ctypes.get_errno())
                break
            name = os.fsdecode(entry.contents.d_name)
            if name not in (".", ".."):
                out.append(name)
        return out

    def tell(self) -> int:
        return int(self.libc.telldir(self.handle))

    def seek(self, position: int) -> None:
        self.libc.seekdir(self.handle, position)

    def close(self) -> None:
        self.libc.closedir(self.handle)


def test_a_listing_resumed_at_a_saved_position_continues_there(big_directory: tuple[Path, Path]) -> None:
    source, through_mount = big_directory
    long_listing(through_mount)  # the directory's listings carry attributes from now on
    drop_caches()
    everything = DirStream(through_mount)
    try:
        head = everything.names(500)
        saved = everything.tell()
        middle = everything.names(1500)  # past the first batch: the next one has been read ahead
        resumed_elsewhere = DirStream(through_mount)  # another handle, at another position
        try:
            resumed_elsewhere.seek(saved)
            assert resumed_elsewhere.names(1500) == middle
        finally:
            resumed_elsewhere.close()
        everything.seek(saved)  # back on the same handle, behind what was read ahead
        tail = everything.names()
    finally:
        everything.close()
    assert tail[:len(middle)] == middle
    assert sorted(head + tail) == sorted(os.listdir(source))


def test_entries_removed_from_the_source_during_a_listing(big_directory: tuple[Path, Path]) -> None:
    """Each entry that stays is listed exactly once and the listing ends without an error; the removed
    ones may or may not appear (POSIX leaves it open), but only with their own attributes."""
    source, through_mount = big_directory
    before = long_listing(source)
    long_listing(through_mount)
    drop_caches()
    removed = {entry_name(i) for i in range(ENTRIES) if i % 3 == 0}
    listed: dict[str, tuple[int, int]] = {}
    with os.scandir(through_mount) as it:
        for count, entry in enumerate(it):
            assert entry.name not in listed, f"{entry.name!r} listed twice"
            if count == 100:  # the first batch is in the lister's hands, the next read ahead
                for name in removed:
                    path = source / name
                    path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
            try:
                listed[entry.name] = attributes(entry.stat(follow_symlinks=False))
            except FileNotFoundError:
                assert entry.name in removed
                listed[entry.name] = before[entry.name]
    assert set(before) - removed <= set(listed) <= set(before)
    assert all(listed[name] == before[name] for name in listed)


def test_listings_closed_right_after_their_first_batch(big_directory: tuple[Path, Path]) -> None:
    """Closing a directory while the engine still reads its next batch ahead (the user stopped after the
    first entries: `ls | head`, a search that found its file) leaves the mount working."""
    source, through_mount = big_directory
    expected = long_listing(source)
    long_listing(through_mount)
    for _ in range(20):
        drop_caches()  # the kernel's cached listing goes, and the source's inodes: stats are slow
        with os.scandir(through_mount) as it:
            next(it)
    assert long_listing(through_mount) == expected


def remembered_inodes(stats_file: Path) -> int:
    return int(json.loads(stats_file.read_text())["inodes"])


def inodes_once(stats_file: Path, settled: Callable[[int], bool], within_s: float = 10.0) -> int:
    """The worker's remembered-inode count once `settled` holds for it (or what it is after `within_s`):
    the stats file is rewritten every 0.1 s, and the kernel's FORGETs after a cache drop take a while."""
    deadline = time.monotonic() + within_s
    while not settled(count := remembered_inodes(stats_file)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


@pytest.mark.parametrize("read_ahead", [True, False], ids=["read-ahead", "no-read-ahead"])
def test_listings_stopped_early_leave_no_inode_remembered(tmp_path: Path, read_ahead: bool) -> None:
    """A batch built ahead with attributes counts a lookup per entry; when the listing stops before the
    kernel asks for it, those lookups must be undone, or the worker remembers those inodes for ever."""
    require_fuse()
    require_native_engine()
    source = make_source(tmp_path / "s")
    mount, stats_file = tmp_path / "m", tmp_path / "stats.json"
    mount.mkdir()
    proc = start_worker(source.parent, mount, "--engine", "native", "--readdirplus", "always",
                        "--stats-file", str(stats_file), "--stats-interval", "0.1",
                        *([] if read_ahead else ["--no-dir-read-ahead"]))
    try:
        forget_everything()
        baseline = inodes_once(stats_file, lambda n: n <= 1)
        through_mount = mount / source.name
        long_listing(through_mount)
        assert inodes_once(stats_file, lambda n: n >= ENTRIES) >= ENTRIES  # every entry came with attributes
        for _ in range(10):
            forget_everything()
            with os.scandir(through_mount) as it:
                for _ in range(50):  # the first batch only; the next one is being built
                    next(it)
        forget_everything()
        assert inodes_once(stats_file, lambda n: n <= baseline) == baseline
        assert long_listing(through_mount) == long_listing(source)
    finally:
        stop_worker(proc, mount)
