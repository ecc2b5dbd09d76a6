"""The source directory of a pyfuse3 fast mount, with every path resolved strictly beneath it.

A path the kernel hands us was valid when it was looked up; the source may have changed since. Resolving
`sub/file` with plain `open`/`lstat` follows `sub` if someone replaced it with a symlink to `/`, and the
mount would serve files from outside its source. `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from a
descriptor of the source refuses that with ELOOP, as the native engine's `open_beneath` does.

Python has no openat2 wrapper, so it is called through libc's `syscall`. Where it is missing (a kernel
before 5.6, or a seccomp filter that predates it) every component but the last may follow a symlink, the
same fallback the native engine takes; it is logged once.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading

SYS_OPENAT2 = 437  # the same number on every architecture (the unified syscall table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
ROOT = b"."


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def child(parent: bytes, name: bytes) -> bytes:
    """The path of `name` in the directory `parent`, both relative to the source."""
    return name if parent == ROOT else parent + b"/" + name


def parent_of(path: bytes) -> bytes:
    return os.path.dirname(path) or ROOT


AT_FDCWD = -100


def _openat2(dir_fd: int, path: bytes, flags: int, resolve: int) -> int:
    """openat2, or -errno (ENOSYS/EPERM: not available here)."""
    how = OpenHow(flags, 0, resolve)
    fd = _syscall(SYS_OPENAT2, dir_fd, path, ctypes.byref(how), ctypes.sizeof(how))
    return int(fd) if fd >= 0 else -ctypes.get_errno()


def open_no_symlinks(path: bytes, flags: int) -> int:
    """Open an absolute path refusing any symlink anywhere on it (ELOOP): a source is opened exactly where
    the agent validated it, not wherever a link swapped in since points."""
    flags |= os.O_CLOEXEC | os.O_NOFOLLOW
    fd = _openat2(AT_FDCWD, path, flags, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    if fd >= 0:
        return fd
    if -fd not in (errno.ENOSYS, errno.EPERM):
        raise OSError(-fd, os.strerror(-fd), os.fsdecode(path))
    # No openat2: open, then check the path still resolves to itself and to what was opened.
    fd = os.open(path, flags)
    try:
        real = os.path.realpath(path)
        st, here = os.fstat(fd), os.stat(real)
        if real != os.path.normpath(path) or (st.st_dev, st.st_ino) != (here.st_dev, here.st_ino):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), os.fsdecode(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


class SourceRoot:
    """An open descriptor of the source; paths are relative to it (`.` is the source itself)."""

    def __init__(self, source: bytes) -> None:
        self.fd = open_no_symlinks(source, os.O_RDONLY | os.O_DIRECTORY)
        self._openat2_missing = False
        self._warned = threading.Lock()

    def close(self) -> None:
        os.close(self.fd)

    def open(self, path: bytes, flags: int) -> int:
        """Open `path` beneath the source without following any symlink on the way (ELOOP if one is)."""
        flags |= os.O_CLOEXEC | os.O_NOFOLLOW
        if not self._openat2_missing:
            how = OpenHow(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
            fd = _syscall(SYS_OPENAT2, self.fd, path, ctypes.byref(how), ctypes.sizeof(how))
            if fd >= 0:
                return int(fd)
            err = ctypes.get_errno()
            if err not in (errno.ENOSYS, errno.EPERM):
                raise OSError(err, os.strerror(err), os.fsdecode(path))
            self._note_openat2_missing(err)
        return os.open(path, flags, dir_fd=self.fd)

    def lstat(self, path: bytes) -> os.stat_result:
        """The attributes of `path` itself (a symlink is not followed, as with lstat)."""
        if path == ROOT:
            return os.fstat(self.fd)
        fd = self.open(path, os.O_PATH)
        try:
            return os.stat(fd)
        finally:
            os.close(fd)

    def readlink(self, path: bytes) -> bytes:
        fd = self.open(path, os.O_PATH)
        try:
            return os.readlink(b"", dir_fd=fd)  # an O_PATH descriptor of the link itself
        finally:
            os.close(fd)

    def _note_openat2_missing(self, err: int) -> None:
        with self._warned:
            if not self._openat2_missing:
                self._openat2_missing = True
                print(f'{{"event": "openat2-unavailable", "reason": "{os.strerror(err)}"}}', file=sys.stderr)
