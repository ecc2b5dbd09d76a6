"""Shared test helpers.

Tests that need a real part of the machine (root, /dev/fuse, SGE, namespaces) call `require(...)`:
on a developer's machine a missing part skips the test with the reason; under CI (`CI=true`) it
fails, because there a missing part means an install step is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing on the CI machine: {what} (an install step is missing)")
    pytest.skip(f"needs {what}")


def require_root() -> None:
    require(os.geteuid() == 0, "root")


def require_fuse() -> None:
    require_root()
    require(Path("/dev/fuse").exists() and shutil.which("fusermount3") is not None, "/dev/fuse and fusermount3")


def require_native_engine() -> None:
    from agent.fastmount.engine import native_available

    require(native_available(), "the native fast-mount engine (pip install -e . with libfuse3-dev)")


def require_sge() -> None:
    require_root()
    require(Path("/usr/lib/gridengine/sge_qmaster").exists() and shutil.which("qsub") is not None,
            "Debian gridengine packages (make deps)")


def require_chromium() -> None:
    """Debian's chromium and chromium-driver (scripts/install-system-deps.sh) for the web tests."""
    require(Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists(),
            "Debian chromium and chromium-driver (make deps)")


@pytest.fixture(scope="session", autouse=True)
def stop_the_qmaster_tests_left_running() -> Iterator[None]:
    """End-to-end modules keep sge_qmaster between their clusters (`down --keep-qmaster`): stop it
    when the session ends, unless it ran before the session or a local cluster still uses it."""
    from benchcluster import sge_setup
    from manager.providers import local_processes, netns

    install = sge_setup.SgeInstall()
    have_sge = (install.bin_dir / "sge_qmaster").exists()
    ran_before = have_sge and sge_setup.qmaster_pid(install) is not None
    yield
    if not have_sge or ran_before or sge_setup.qmaster_pid(install) is None:
        return
    if netns.our_netns() or local_processes.marked_processes():
        return
    sge_setup.stop_qmaster(install)
