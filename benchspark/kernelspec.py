"""Install the three PySpark kernel specs (display names exactly as the seed: "PySpark – Local",
"PySpark – Remote", "PySpark – Remote - Dynamic") for every user of the workspace node.

Usage: bench-spark-kernels [--prefix /usr/local/share/jupyter/kernels] [--python PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchspark.paths import DISPLAY_NAMES, KINDS

DEFAULT_PREFIX = Path("/usr/local/share/jupyter/kernels")


def spec_name(kind: str) -> str:
    return f"pyspark-{kind}"


def kernel_json(kind: str, python: str) -> dict[str, object]:
    return {
        "argv": [python, "-m", "benchspark.kernel", kind, "-f", "{connection_file}"],
        "display_name": DISPLAY_NAMES[kind],
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": False, "bench_spark_kind": kind},
    }


def install(prefix: Path = DEFAULT_PREFIX, python: str | None = None) -> list[Path]:
    python = python or sys.executable
    written = []
    for kind in KINDS:
        directory = prefix / spec_name(kind)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        path = directory / "kernel.json"
        path.write_text(json.dumps(kernel_json(kind, python), indent=1, ensure_ascii=False) + "\n")
        path.chmod(0o644)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-spark-kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=DEFAULT_PREFIX)
    parser.add_argument("--python", help="interpreter the kernels run (default: this one)")
    args = parser.parse_args(argv)
    try:
        for path in install(args.prefix, args.python):
            print(f"installed {path}")
    except OSError as exc:
        print(f"bench-spark-kernels: {exc} (run as root to install system-wide, or pass --prefix)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
