"""A member's /scratch: a sparse ext4 image file, loop-mounted inside the member's mount namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

MIN_SCRATCH_BYTES = 1_000_000_000  # 1 GB, the product's lower bound
MAX_SCRATCH_BYTES = 16_000_000_000_000  # 16 TB


def validate_scratch_size(size_bytes: int, minimum: int = MIN_SCRATCH_BYTES) -> None:
    if not minimum <= size_bytes <= MAX_SCRATCH_BYTES:
        raise ValueError(f"scratch size {size_bytes} bytes is outside the allowed range "
                         f"{minimum}..{MAX_SCRATCH_BYTES} bytes (1 GB to 16 TB)")


def create_image(path: Path, size_bytes: int) -> None:
    """Sparse file + ext4: costs disk only for what jobs write. No reserved blocks (-m 0) because
    /scratch belongs to jobs, and lazy init so a large image formats in a second."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size_bytes)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1",
                    str(path)], check=True, capture_output=True, timeout=120)


def detach_loops(path: Path) -> None:
    """Loop devices still backed by the image (normally auto-cleared when the member's mount
    namespace goes away; a crash can leave one)."""
    out = subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True, timeout=30,
                         check=False).stdout
    for line in out.splitlines():
        device = line.split(":", 1)[0]
        if device.startswith("/dev/loop"):
            subprocess.run(["losetup", "-d", device], capture_output=True, timeout=30, check=False)


def loops_backed_by(directory: Path) -> list[str]:
    """Loop devices whose backing file lives under `directory` (for leak checks and cleanup)."""
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, timeout=30, check=False).stdout
    return [line.split(":", 1)[0] for line in out.splitlines() if str(directory) in line]
