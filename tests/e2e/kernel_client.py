"""Run code in an installed Jupyter kernel and print what came back, as one JSON object.

Started by the Spark end-to-end tests as an ordinary user (`runuser -u USER -- python -m
tests.e2e.kernel_client ...`), so the kernel and its Spark driver run as that user, the way a data
scientist's JupyterLab starts them. Each cell has a timeout; the kernel is always shut down.

Usage: python -m tests.e2e.kernel_client KERNEL_NAME TIMEOUT_S CELL [CELL ...]
"""

from __future__ import annotations

import json
import sys
import time
from queue import Empty
from typing import Any

from jupyter_client.manager import KernelManager


def run_cell(client: Any, code: str, timeout_s: float) -> dict[str, Any]:
    msg_id = client.execute(code)
    out: dict[str, Any] = {"stdout": "", "stderr": "", "error": None, "status": None}
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            out["status"] = "timeout"
            return out
        try:
            msg = client.get_iopub_msg(timeout=min(left, 5.0))
        except Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out[content["name"]] += content["text"]
        elif kind == "error":
            out["error"] = f"{content['ename']}: {content['evalue']}"
        elif kind == "status" and content["execution_state"] == "idle":
            out["status"] = "error" if out["error"] else "ok"
            return out


def main() -> int:
    name, timeout_s, cells = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    km = KernelManager(kernel_name=name)
    started = time.monotonic()
    km.start_kernel()
    results: list[dict[str, Any]] = []
    try:
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=timeout_s)
        ready_s = time.monotonic() - started
        for cell in cells:
            results.append(run_cell(client, cell, timeout_s))
            if results[-1]["status"] == "timeout":
                break
        client.stop_channels()
    except RuntimeError as exc:
        results.append({"status": "kernel-failed", "error": str(exc), "stdout": "", "stderr": ""})
        ready_s = -1.0
    finally:
        km.shutdown_kernel(now=False)
    print(json.dumps({"ready_s": ready_s, "cells": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
