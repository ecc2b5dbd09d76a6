"""Builds the native fast-mount engine (a C extension over libfuse 3); everything else is in pyproject.toml."""

import shutil
import subprocess

from setuptools import Extension, setup


def fuse3_flags(kind: str) -> list[str]:
    if shutil.which("pkg-config") is None:
        raise SystemExit("building agent.fastmount._native needs pkg-config and libfuse3-dev: "
                         "run scripts/install-system-deps.sh (or `make deps`)")
    try:
        out = subprocess.run(["pkg-config", kind, "fuse3"], check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"pkg-config cannot find fuse3 ({exc.stderr.strip()}): install libfuse3-dev") from None
    return out.split()


NATIVE = "agent/fastmount/native/"

setup(
    ext_modules=[
        Extension(
            "agent.fastmount._native",
            sources=[NATIVE + name
                     for name in ("module.c", "serve.c", "ops.c", "passthrough.c", "receive.c", "inodes.c",
                                  "dirstream.c", "listing.c", "habits.c")],
            depends=[NATIVE + name for name in ("fastmount.h", "inodes.h", "passthrough.h", "receive.h", "habits.h",
                                                "dirstream.h", "listing.h", "handlers.h")],
            extra_compile_args=[*fuse3_flags("--cflags"), "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror"],
            extra_link_args=fuse3_flags("--libs"),
        )
    ]
)
