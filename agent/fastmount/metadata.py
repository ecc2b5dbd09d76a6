"""Metadata of the fast mount: the inode table, attribute conversion, negative-lookup and listing caches.

The source is read-only from the mount's point of view, so metadata may be cached for a while; the
timeouts handed to the kernel (entry/attr) and the caches here share one setting.
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict
from dataclasses import dataclass

import pyfuse3

from agent.fastmount.beneath import ROOT


@dataclass(frozen=True)
class CacheConfig:
    entry_timeout: float = 60.0
    # Attributes decide the kernel's permission checks (default_permissions), so none older than this is
    # ever handed over: a chmod in the source counts within a second.
    attr_timeout: float = 1.0
    negative_timeout: float = 10.0
    negative_entries: int = 65536
    listing_timeout: float = 60.0
    listings_kept: int = 32  # directories whose listing stays cached (a 100k-entry one is ~40 MB)


def to_entry(st: os.stat_result, inode: int, config: CacheConfig, age: float = 0.0) -> pyfuse3.EntryAttributes:
    """The kernel's view of `st`, read `age` seconds ago: it keeps the attributes only for what is left of
    attr_timeout."""
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = pyfuse3.InodeT(inode)
    entry.generation = 0
    entry.entry_timeout = config.entry_timeout
    entry.attr_timeout = max(0.0, config.attr_timeout - age)
    # Write bits are dropped so permission checks and tools agree with the read-only mount.
    entry.st_mode = pyfuse3.ModeT(st.st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    entry.st_nlink = st.st_nlink
    entry.st_uid = st.st_uid
    entry.st_gid = st.st_gid
    entry.st_rdev = st.st_rdev
    entry.st_size = st.st_size
    entry.st_blksize = 1024 * 1024  # tells readers (cp, cat, dd) to use large reads
    entry.st_blocks = st.st_blocks
    entry.st_atime_ns = st.st_atime_ns
    entry.st_mtime_ns = st.st_mtime_ns
    entry.st_ctime_ns = st.st_ctime_ns
    return entry


class InodeTable:
    """Maps the kernel's inode numbers to paths relative to the source (`.` is the source), counting the
    kernel's lookups so `forget` can free them.

    Inodes are keyed by the source's (st_dev, st_ino) so hard links and repeated lookups share one number.
    """

    def __init__(self, root: os.stat_result) -> None:
        self._paths: dict[int, bytes] = {pyfuse3.ROOT_INODE: ROOT}
        self._lookups: dict[int, int] = {pyfuse3.ROOT_INODE: 1}
        self._by_key: dict[tuple[int, int], int] = {(root.st_dev, root.st_ino): pyfuse3.ROOT_INODE}
        self._keys: dict[int, tuple[int, int]] = {pyfuse3.ROOT_INODE: (root.st_dev, root.st_ino)}
        self._next = pyfuse3.ROOT_INODE + 1

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, inode: int) -> bytes:
        try:
            return self._paths[inode]
        except KeyError:
            raise pyfuse3.FUSEError(2) from None  # ENOENT: the kernel forgot it already

    def key(self, inode: int) -> tuple[int, int]:
        """The source object (st_dev, st_ino) the kernel knows as `inode`."""
        try:
            return self._keys[inode]
        except KeyError:
            raise pyfuse3.FUSEError(2) from None

    def remember(self, path: bytes, st: os.stat_result) -> int:
        """Record one kernel lookup of `path` and return its inode number."""
        key = (st.st_dev, st.st_ino)
        inode = self._by_key.get(key)
        if inode is None:
            inode = self._next
            self._next += 1
            self._by_key[key] = inode
            self._keys[inode] = key
            self._lookups[inode] = 0
        self._paths[inode] = path
        self._lookups[inode] += 1
        return inode

    def forget(self, inode: int, nlookup: int) -> None:
        if inode == pyfuse3.ROOT_INODE or inode not in self._lookups:
            return
        left = self._lookups[inode] - nlookup
        if left > 0:
            self._lookups[inode] = left
            return
        del self._lookups[inode]
        del self._paths[inode]
        del self._by_key[self._keys.pop(inode)]


class NegativeCache:
    """Names recently found missing, so repeated probes (PATH searches, `ls` of config files) skip the source."""

    def __init__(self, config: CacheConfig) -> None:
        self._config = config
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __contains__(self, path_and_now: tuple[bytes, float]) -> bool:
        path, now = path_and_now
        expiry = self._expiry.get(path)
        if expiry is None:
            return False
        if expiry <= now:
            del self._expiry[path]
            return False
        return True

    def add(self, path: bytes, now: float) -> None:
        self._expiry[path] = now + self._config.negative_timeout
        self._expiry.move_to_end(path)
        while len(self._expiry) > self._config.negative_entries:
            self._expiry.popitem(last=False)


@dataclass
class Listing:
    """A directory read once with scandir, each entry with its lstat result and ready-made attributes
    (only the inode number is filled in when an entry is handed to the kernel), reused until it expires."""

    entries: list[tuple[bytes, os.stat_result, pyfuse3.EntryAttributes]]
    dir_mtime_ns: int
    expires: float
    read_at: float = 0.0  # when the entries were stat'ed (their attributes age from then)
    dir_key: tuple[int, int] = (0, 0)  # the listed directory's (st_dev, st_ino)


def read_listing(dir_fd: int, dir_mtime_ns: int, now: float, config: CacheConfig) -> Listing:
    """List the open directory `dir_fd`, statting each entry exactly once. Runs in a worker thread."""
    entries: list[tuple[bytes, os.stat_result, pyfuse3.EntryAttributes]] = []
    with os.scandir(dir_fd) as it:  # scandir reads its own duplicate of the descriptor
        for item in it:
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed from the source while we listed it
            entries.append((os.fsencode(item.name), st, to_entry(st, 0, config)))
    dir_st = os.fstat(dir_fd)
    return Listing(entries, dir_mtime_ns, now + config.listing_timeout, now, (dir_st.st_dev, dir_st.st_ino))


class ListingCache:
    """Recent directory listings by path (the kernel's inode numbers change after it forgets them)."""

    def __init__(self, config: CacheConfig) -> None:
        self._config = config
        self._listings: OrderedDict[bytes, Listing] = OrderedDict()

    def get(self, path: bytes, now: float, dir_mtime_ns: int, dir_key: tuple[int, int]) -> Listing | None:
        """A listing to reuse, or None. Reused only while its attributes may still be handed to the kernel:
        one older than attr_timeout would come with none, and the kernel would then ask getattr for every
        entry (a round trip each, far slower than listing again in a thread)."""
        listing = self._listings.get(path)
        if listing is None or listing.expires <= now or listing.dir_mtime_ns != dir_mtime_ns \
                or listing.dir_key != dir_key or listing.read_at + self._config.attr_timeout <= now:
            return None
        self._listings.move_to_end(path)
        return listing

    def put(self, path: bytes, listing: Listing) -> None:
        self._listings[path] = listing
        self._listings.move_to_end(path)
        while len(self._listings) > self._config.listings_kept:
            self._listings.popitem(last=False)
