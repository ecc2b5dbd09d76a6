"""Entry point of the three PySpark kernels: an ipykernel whose namespace starts with `spark` and
`sc` made from the kernel's spark-defaults.conf (benchspark.session.start).

Usage (from kernel.json): python -m benchspark.kernel local|remote|dynamic -f {connection_file}
"""

from __future__ import annotations

import sys

from benchspark.paths import KINDS


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in KINDS:
        print(f"usage: python -m benchspark.kernel {{{'|'.join(KINDS)}}} -f CONNECTION_FILE", file=sys.stderr)
        return 2
    kind, rest = args[0], args[1:]
    from ipykernel.kernelapp import IPKernelApp

    startup = [
        "from benchspark.session import start as _bench_spark_start",
        f"spark, sc = _bench_spark_start({kind!r})",
        "del _bench_spark_start",
    ]
    IPKernelApp.launch_instance(argv=[*rest, f"--IPKernelApp.exec_lines={startup!r}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
