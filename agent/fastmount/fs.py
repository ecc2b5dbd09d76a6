"""The read-only FUSE filesystem of a fast mount: a pass-through of a source directory.

Kept small on purpose: metadata caching lives in `metadata.py`, read-ahead in `prefetch.py` and
`blockreader.py`. Every write-type request is refused with EROFS (the mount is also made `ro` in the
kernel, so these handlers are the second line, not the only one).
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import pyfuse3
import trio

from agent.fastmount.beneath import ROOT, SourceRoot, child, parent_of
from agent.fastmount.blockreader import BlockFetcher, PrefetchingReader
from agent.fastmount.metadata import (
    CacheConfig,
    InodeTable,
    Listing,
    ListingCache,
    NegativeCache,
    read_listing,
    to_entry,
)
from agent.fastmount.prefetch import MemoryBudget, PrefetchConfig, SourceSpeed
from agent.fastmount.stats import Counters

P = ParamSpec("P")
R = TypeVar("R")

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _stale() -> pyfuse3.FUSEError:
    # The path of a node names another object now (renamed over, swapped): not what the kernel checked
    # permissions on. ESTALE makes the kernel look the name up afresh, and check again, before it retries.
    return pyfuse3.FUSEError(errno.ESTALE)


def _key(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _os_errors(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn OSError from the source into the matching FUSE error (an uncaught one would stop the loop)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except OSError as exc:
            fs = args[0]
            assert isinstance(fs, FastMountFS)
            fs.counters.errors += 1
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None

    return wrapper


def _read_only() -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(errno.EROFS)


class FastMountFS(pyfuse3.Operations):
    def __init__(
        self,
        source: str,
        cache: CacheConfig | None = None,
        prefetch: PrefetchConfig | None = None,
        memory_budget: int = 256 * 1024 * 1024,
        fetch_threads: int = 16,
    ) -> None:
        super().__init__()
        self._root = SourceRoot(os.fsencode(source))  # opened without following any symlink
        self._cache = cache or CacheConfig()
        self._prefetch = prefetch or PrefetchConfig()
        self._budget = MemoryBudget(memory_budget)
        self._fetcher = BlockFetcher(fetch_threads)
        self._speed = SourceSpeed()
        self._inodes = InodeTable(self._root.lstat(ROOT))
        self._missing = NegativeCache(self._cache)
        self._listings = ListingCache(self._cache)
        self._open_dirs: dict[int, tuple[int, Listing]] = {}
        self._open_files: dict[int, tuple[int, PrefetchingReader]] = {}
        self._next_fh = 1
        self.counters = Counters()
        self.initialised = trio.Event()

    # lifecycle

    def init(self) -> None:
        self.initialised.set()

    def shutdown(self) -> None:
        for fd, reader in self._open_files.values():
            reader.close()
            os.close(fd)
        self._open_files.clear()
        self._fetcher.shutdown()
        self._root.close()

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    # metadata

    @_os_errors
    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._inodes.path(parent_inode)
        if name == b".":
            path = parent
        elif name == b"..":
            path = parent if parent == ROOT else parent_of(parent)
        else:
            path = child(parent, name)
        now = time.monotonic()
        if (path, now) in self._missing:
            return self._negative_entry()
        try:
            st = self._root.lstat(path) if name in (b".", b"..") else self._stat_in(parent_inode, parent, name)
        except FileNotFoundError:
            self._missing.add(path, now)
            return self._negative_entry()
        return to_entry(st, self._inodes.remember(path, st), self._cache)

    def _stat_in(self, parent_inode: int, parent: bytes, name: bytes) -> os.stat_result:
        """`name` looked up in the very directory the kernel knows as `parent_inode` (whose permissions it
        checked): the parent's path is opened and its identity compared before the name is looked up."""
        if parent == ROOT:
            return os.stat(name, dir_fd=self._root.fd, follow_symlinks=False)
        fd = self._root.open(parent, os.O_PATH | os.O_DIRECTORY)
        try:
            if _key(os.fstat(fd)) != self._inodes.key(parent_inode):
                raise _stale()
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def _negative_entry(self) -> pyfuse3.EntryAttributes:
        # st_ino 0 lets the kernel cache the miss for entry_timeout, so it does not even ask again.
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = pyfuse3.InodeT(0)
        entry.entry_timeout = self._cache.negative_timeout
        return entry

    async def forget(self, inode_list: Sequence[tuple[pyfuse3.InodeT, int]]) -> None:
        for inode, nlookup in inode_list:
            self._inodes.forget(inode, nlookup)

    @_os_errors
    async def getattr(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        st = self._root.lstat(self._inodes.path(inode))
        if _key(st) != self._inodes.key(inode):
            raise _stale()
        return to_entry(st, inode, self._cache)

    @_os_errors
    async def readlink(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.FileNameT:
        return pyfuse3.FileNameT(self._root.readlink(self._inodes.path(inode)))

    @_os_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        sv = os.statvfs(self._root.fd)
        data = pyfuse3.StatvfsData()
        for field in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                      "f_favail", "f_namemax"):
            setattr(data, field, getattr(sv, field))
        return data

    # directories

    @_os_errors
    async def opendir(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.FileHandleT:
        path = self._inodes.path(inode)
        now = time.monotonic()
        # One descriptor for the identity check, the cache check and the listing.
        fd = self._root.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if _key(st) != self._inodes.key(inode):
                raise _stale()
            mtime_ns = st.st_mtime_ns
            listing = self._listings.get(path, now, mtime_ns, _key(st))
            if listing is None:
                # A big directory takes a while to scan: keep the loop serving other requests meanwhile.
                listing = await trio.to_thread.run_sync(read_listing, fd, mtime_ns, now, self._cache)
                self._listings.put(path, listing)
        finally:
            os.close(fd)
        fh = self._new_fh()
        self._open_dirs[fh] = (inode, listing)
        return pyfuse3.FileHandleT(fh)

    async def readdir(self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        inode, listing = self._open_dirs[fh]
        path = self._inodes.path(inode)
        entries = listing.entries
        # A listing is reused for a while, but its attributes are handed over only for what is left of
        # attr_timeout since they were read (0: the kernel asks getattr before it relies on them).
        attr_timeout = max(0.0, self._cache.attr_timeout - (time.monotonic() - listing.read_at))
        for index in range(start_id, len(entries)):
            name, st, entry = entries[index]
            entry.attr_timeout = attr_timeout
            # readdirplus hands the kernel an inode for each entry, which counts as a lookup, but only if
            # the entry fits in this reply: undo the count for the one that did not fit.
            entry.st_ino = pyfuse3.InodeT(self._inodes.remember(child(path, name), st))
            if not pyfuse3.readdir_reply(token, pyfuse3.FileNameT(name), entry, index + 1):
                self._inodes.forget(entry.st_ino, 1)
                break

    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        self._open_dirs.pop(fh, None)

    # files

    @_os_errors
    async def open(
        self, inode: pyfuse3.InodeT, flags: pyfuse3.FlagT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        if flags & WRITE_FLAGS:
            raise _read_only()
        # In a thread: a slow source's open must not stop the loop that serves every other request.
        fd, size = await trio.to_thread.run_sync(self._open_checked, self._inodes.path(inode), self._inodes.key(inode))
        fh = self._new_fh()
        reader = PrefetchingReader(fd, size, self._fetcher, self._budget, self._prefetch, self._speed)
        self._open_files[fh] = (fd, reader)
        self.counters.opens += 1
        # keep_cache: the source does not change under a read-only mount, so pages read once stay valid
        # and repeat reads never reach this process.
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), keep_cache=True)

    def _open_checked(self, path: bytes, key: tuple[int, int]) -> tuple[int, int]:
        """Open the file the kernel checked permissions on, or fail: O_NONBLOCK so a FIFO swapped in cannot
        block, the identity compared (ESTALE), anything but a regular file refused (EACCES)."""
        fd = self._root.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if _key(st) != key:
                raise _stale()
            if not stat.S_ISREG(st.st_mode):
                raise pyfuse3.FUSEError(errno.EACCES)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd, st.st_size

    @_os_errors
    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        _fd, reader = self._open_files[fh]
        try:
            data = await reader.read(off, size)
        except pyfuse3.FUSEError:
            self.counters.errors += 1
            raise
        self.counters.bytes_read += len(data)
        # pyfuse3 takes any buffer (it replies through the buffer protocol); a memoryview slice of a
        # prefetched block avoids a copy, which the stub's `bytes` does not express.
        return data  # type: ignore[return-value]

    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        opened = self._open_files.pop(fh, None)
        if opened is not None:
            fd, reader = opened
            reader.close()
            os.close(fd)

    async def fsync(self, fh: pyfuse3.FileHandleT, datasync: bool) -> None:
        return None

    # every write-type request

    async def setattr(self, inode: pyfuse3.InodeT, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: pyfuse3.FileHandleT | None, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise _read_only()

    async def mknod(self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, mode: pyfuse3.ModeT,
                    rdev: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise _read_only()

    async def mkdir(self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, mode: pyfuse3.ModeT,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise _read_only()

    async def unlink(self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT,
                     ctx: pyfuse3.RequestContext) -> None:
        raise _read_only()

    async def rmdir(self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT,
                    ctx: pyfuse3.RequestContext) -> None:
        raise _read_only()

    async def symlink(self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, target: pyfuse3.FileNameT,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise _read_only()

    async def rename(self, parent_inode_old: pyfuse3.InodeT, name_old: pyfuse3.FileNameT,
                     parent_inode_new: pyfuse3.InodeT, name_new: pyfuse3.FileNameT, flags: pyfuse3.FlagT,
                     ctx: pyfuse3.RequestContext) -> None:
        raise _read_only()

    async def link(self, inode: pyfuse3.InodeT, new_parent_inode: pyfuse3.InodeT, new_name: pyfuse3.FileNameT,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise _read_only()

    async def write(self, fh: pyfuse3.FileHandleT, off: int, buf: bytes) -> int:
        raise _read_only()

    async def create(self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, mode: pyfuse3.ModeT,
                     flags: pyfuse3.FlagT, ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise _read_only()

    async def setxattr(self, inode: pyfuse3.InodeT, name: pyfuse3.XAttrNameT, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        raise _read_only()

    async def removexattr(self, inode: pyfuse3.InodeT, name: pyfuse3.XAttrNameT,
                          ctx: pyfuse3.RequestContext) -> None:
        raise _read_only()
