"""BENCHMARK-ONLY EMULATION of a network store: a FUSE pass-through of one flat directory that delays every
read by a fixed latency plus its size at a per-request bandwidth.

`tc netem` is not available on this machine kind, so this stands in for "the source is behind a
latency- and bandwidth-limited path". It is not part of the product. Every open uses direct_io, so each
read a client makes becomes requests here (no page cache in front hides the delay); up to 99 requests
are served concurrently, as a store answers parallel requests.

    python benchmarks/slowfs.py --source DIR --mount-path MNT --latency-ms 4 --bandwidth-mib 200
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat
import sys

import pyfuse3
import trio


class SlowPassthrough(pyfuse3.Operations):
    def __init__(self, source: str, latency_s: float, bandwidth: float) -> None:
        super().__init__()
        self.source = source
        self.latency_s = latency_s
        self.bandwidth = bandwidth
        self.names: dict[int, str] = {}  # inode -> file name in the flat source directory
        self.fds: dict[int, int] = {}

    def _attrs(self, path: str, inode: int) -> pyfuse3.EntryAttributes:
        st = os.lstat(path)
        entry = pyfuse3.EntryAttributes()
        for name in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns", "st_mtime_ns",
                     "st_ctime_ns"):
            setattr(entry, name, getattr(st, name))
        entry.st_ino = pyfuse3.InodeT(inode)
        entry.st_blksize = 1 << 20
        entry.st_blocks = st.st_blocks
        entry.attr_timeout = entry.entry_timeout = 300
        return entry

    def _path(self, inode: int) -> str:
        if inode == pyfuse3.ROOT_INODE:
            return self.source
        return os.path.join(self.source, self.names[inode])

    async def getattr(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attrs(self._path(inode), inode)

    def _entry(self, text: str) -> pyfuse3.EntryAttributes:
        path = os.path.join(self.source, text)
        if not os.path.isfile(path):
            raise pyfuse3.FUSEError(errno.ENOENT)
        inode = os.lstat(path).st_ino + 1  # +1 keeps clear of the root inode number
        self.names[inode] = text
        return self._attrs(path, inode)

    async def lookup(self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if parent_inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._entry(os.fsdecode(name))

    async def opendir(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.FileHandleT:
        return pyfuse3.FileHandleT(inode)

    async def readdir(self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        names = sorted(n for n in os.listdir(self.source) if stat.S_ISREG(os.lstat(f"{self.source}/{n}").st_mode))
        for index in range(start_id, len(names)):
            entry = self._entry(names[index])
            if not pyfuse3.readdir_reply(token, pyfuse3.FileNameT(os.fsencode(names[index])), entry, index + 1):
                break

    async def open(self, inode: pyfuse3.InodeT, flags: pyfuse3.FlagT,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        fd = os.open(self._path(inode), os.O_RDONLY)
        self.fds[fd] = fd
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fd), direct_io=True)

    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        await trio.sleep(self.latency_s + size / self.bandwidth)
        return os.pread(fh, size, off)

    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        os.close(self.fds.pop(fh))


async def _serve() -> None:
    async with trio.open_nursery() as nursery:
        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    pyfuse3.terminate()
                    return

        nursery.start_soon(stop_on_signal)
        await pyfuse3.main(max_tasks=99)
        nursery.cancel_scope.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True)
    parser.add_argument("--mount-path", required=True)
    parser.add_argument("--latency-ms", type=float, default=4.0, help="fixed delay of every read request")
    parser.add_argument("--bandwidth-mib", type=float, default=200.0, help="per-request transfer rate")
    args = parser.parse_args()
    fs = SlowPassthrough(os.path.realpath(args.source), args.latency_ms / 1000, args.bandwidth_mib * 2**20)
    pyfuse3.init(fs, args.mount_path, {"ro", "fsname=slowfs-emulation", "subtype=slowfs"})
    try:
        trio.run(_serve)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
