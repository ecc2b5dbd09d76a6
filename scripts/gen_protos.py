"""Regenerate (or, with --check, verify) the Python code generated from protos/bench/v1/*.proto.

One command for both jobs so the checked-in code can never silently drift from the .proto files:
`make protos` writes it, the test run calls `--check` and fails when it is stale.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos" / "bench" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_root: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT)) for p in PROTO_DIR.glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out_root}", f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generated_files(root: Path) -> dict[str, Path]:
    base = root / "protos" / "bench" / "v1"
    return {p.name: p for p in base.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the checked-in code is stale")
    args = parser.parse_args()
    if not args.check:
        generate(ROOT)
        print(f"generated {len(generated_files(ROOT))} files under {PROTO_DIR.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp_root = Path(tmp)
        (tmp_root / "protos" / "bench" / "v1").mkdir(parents=True)
        generate(tmp_root)
        fresh, current = generated_files(tmp_root), generated_files(ROOT)
        stale = sorted(n for n in fresh if n not in current or not filecmp.cmp(fresh[n], current[n], False))
        extra = sorted(set(current) - set(fresh))
        if stale or extra:
            print(f"generated protobuf code is stale: {stale + extra}; run `make protos`", file=sys.stderr)
            return 1
    print("generated protobuf code is fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
