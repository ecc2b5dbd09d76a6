"""Web access under load: /api/ response times with 1,000 members, and the manager's CPU while 20
browsers watch the live stream, against the same manager with nobody watching (measured in one run).

    .venv/bin/python benchmarks/web.py                       # 1,000 members, 20 watchers, 30 s windows
    .venv/bin/python benchmarks/web.py --members 200 --watchers 5 --seconds 10 --json out.json

What runs: a real `bench-manager` subprocess (TLS with a throwaway cluster CA, --no-sge, provider none,
LOST detection pushed to 10 h) whose SQLite store is filled beforehand with N READY members (each with
a capacity, two mounts and a short story), the way a 1,000-member cluster's registry looks after a
restart. Web access is enabled through the gRPC API as root; the HTTP client authenticates with
`Authorization: Bearer <root credential>`, as a script would.

Figures:
- response time p50/p99 per endpoint (/api/overview, /api/members, /api/jobs, /api/history,
  /api/members/<id>/story): sequential requests from one client, time to the full body. Overview,
  members and jobs bodies are built at most once a second and shared by every browser (the page
  re-fetches them after each event), so their p50 is a cached answer and their p99 includes rebuilds;
  "cold" repeats /api/members spaced 1.1 s apart, each answer built afresh.
- manager CPU% (user+system over the window, psutil; 100% = one core) in three windows of the same
  length, in this order: idle (no client), 20 watchers (each holds /api/events open and, like the page,
  re-fetches /api/overview and /api/members on every event or tick), idle again. The ratio is
  watchers / mean(idle windows); the absolute figures are printed too, because the idle manager's CPU
  is small and a ratio of small numbers says little alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/web.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import grpc
import psutil
from grpc import aio

from benchmarks.bench_servers import LOOPBACK, VENV_BIN, _free_port, _stop, _wait_serving
from common.auth import bearer, write_new_token
from common.tls import channel_credentials, create_ca, issue_server_cert
from manager.lifecycle import MemberState
from manager.model import Capacity, MemberRecord, MountStateView, TransitionRecord
from manager.store import Store
from protos.bench.v1 import cluster_pb2, cluster_pb2_grpc

COLD_REQUESTS = 15
ENDPOINTS = ("/api/overview", "/api/members", "/api/jobs", "/api/history?hours=24", "/api/members/m0007/story")


def populate(db: Path, members: int) -> None:
    store = Store(db)
    now = time.time()
    mounts = (MountStateView("/data/mounts/ref", "/data/project/ref", "read-only", "MOUNTED", 123456789, 0),
              MountStateView("/data/mounts/out", "/data/project/out", "read-write", "MOUNTED", 42, 1, "slow"))
    for i in range(members):
        member_id = f"m{i:04d}"
        record = MemberRecord(member_id=member_id, state=MemberState.READY, state_since=now - 600,
                              hostname=f"bench-m{i:04d}", ip=f"10.{i // 250}.{i % 250}.10", joined_at=now - 900,
                              capacity=Capacity(16, 64 * 1024**3, 100 * 1024**3, 90 * 1024**3, 1.5),
                              agent_version="0.1.0", last_heartbeat=now, running_jobs=i % 4, sge_configured=True,
                              spot=i % 3 == 0, mounts=mounts)
        for frm, to, why in (("REQUESTED", "JOINING", "agent registered"), ("JOINING", "READY", "in SGE")):
            store.save_transition(record, TransitionRecord(member_id, frm, to, now - 800, "bench", why))
    store.close()


async def enable_web(address: str, ca: Path, credential: str) -> str:
    async with aio.secure_channel(address, channel_credentials(ca)) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        status = await stub.SetWebAccess(cluster_pb2.SetWebAccessRequest(enabled=True),
                                         metadata=bearer(credential), timeout=30)
        return str(status.base_url)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def response_times(session: aiohttp.ClientSession, base: str, requests: int) -> dict[str, dict[str, float]]:
    out = {}
    for path in ENDPOINTS:
        samples = []
        for _ in range(requests):
            start = time.perf_counter()
            async with session.get(base.rstrip("/") + path) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path} answered {response.status}")
            samples.append((time.perf_counter() - start) * 1000)
        out[path] = {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
                     "mean_ms": statistics.fmean(samples)}
        print(f"  {path}: p50 {out[path]['p50_ms']:.1f} ms, p99 {out[path]['p99_ms']:.1f} ms", file=sys.stderr)
    cold = []
    for _ in range(COLD_REQUESTS):
        await asyncio.sleep(1.1)  # past the shared body's lifetime: built afresh
        start = time.perf_counter()
        async with session.get(base.rstrip("/") + "/api/members") as response:
            await response.read()
        cold.append((time.perf_counter() - start) * 1000)
    out["/api/members (cold)"] = {"p50_ms": percentile(cold, 50), "p99_ms": percentile(cold, 99),
                                  "mean_ms": statistics.fmean(cold)}
    print(f"  /api/members cold: p50 {percentile(cold, 50):.1f} ms, max {max(cold):.1f} ms", file=sys.stderr)
    return out


async def watcher(session: aiohttp.ClientSession, base: str, stop: asyncio.Event, counts: list[int]) -> None:
    async with session.get(base.rstrip("/") + "/api/events", timeout=aiohttp.ClientTimeout(total=None)) as stream:
        async for line in stream.content:
            if stop.is_set():
                return
            if line.startswith(b"event:"):
                for path in ("/api/overview", "/api/members"):  # what the page re-fetches
                    async with session.get(base.rstrip("/") + path) as response:
                        await response.read()
                counts[0] += 1


async def cpu_window(proc: psutil.Process, seconds: float) -> float:
    before = proc.cpu_times()
    start = time.monotonic()
    await asyncio.sleep(seconds)
    after = proc.cpu_times()
    return 100.0 * ((after.user - before.user) + (after.system - before.system)) / (time.monotonic() - start)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        work = Path(tmp)
        tls_dir = work / "tls"
        ca = create_ca(tls_dir, "web-bench")
        issue_server_cert(ca, tls_dir, [LOOPBACK])
        credential = write_new_token(work / "root.credential", "bcu_")
        (work / "data" / "mounts").mkdir(parents=True)
        print(f"filling the store with {args.members} members", file=sys.stderr)
        populate(work / "state.db", args.members)
        address = f"{LOOPBACK}:{_free_port()}"
        argv = [str(VENV_BIN / "bench-manager"), "--listen", address, "--db", str(work / "state.db"),
                "--tls-cert-file", str(tls_dir / "manager.crt"), "--tls-key-file", str(tls_dir / "manager.key"),
                "--tls-ca-file", str(ca.cert), "--admin-credential-file", str(work / "root.credential"),
                "--host-agent-credential-file", str(work / "none"), "--hard-limit", "1000", "--no-sge",
                "--provider", "none", "--data-root", str(work / "data"), "--lost-after", "36000",
                "--heartbeat-interval", "5", "--web-port", str(_free_port()), "--log-format", "json"]
        log_path = work / "manager.log"
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                        stderr=asyncio.subprocess.STDOUT)
        try:
            await _wait_serving(address, proc, log_path, ca.cert)
            base = await enable_web(address, ca.cert, credential)
            print(f"web access at {base}", file=sys.stderr)
            manager = psutil.Process(proc.pid)
            context = ssl.create_default_context(cafile=str(ca.cert))
            headers = {"Authorization": f"Bearer {credential}"}
            connector = aiohttp.TCPConnector(ssl=context, limit=0)
            async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
                print("response times:", file=sys.stderr)
                times = await response_times(session, base, args.requests)
                print(f"CPU windows of {args.seconds:.0f} s: idle, {args.watchers} watchers, idle", file=sys.stderr)
                idle1 = await cpu_window(manager, args.seconds)
                stop = asyncio.Event()
                counts = [0]
                tasks = [asyncio.create_task(watcher(session, base, stop, counts)) for _ in range(args.watchers)]
                await asyncio.sleep(1.0)  # connected
                watched = await cpu_window(manager, args.seconds)
                stop.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                idle2 = await cpu_window(manager, args.seconds)
        finally:
            await _stop(proc)
    idle = (idle1 + idle2) / 2
    return {"members": args.members, "requests_per_endpoint": args.requests, "response_times": times,
            "watchers": args.watchers, "window_s": args.seconds, "refetch_rounds": counts[0],
            "cpu_idle_percent": [round(idle1, 2), round(idle2, 2)], "cpu_watched_percent": round(watched, 2),
            "cpu_ratio_watched_vs_idle": round(watched / idle, 2) if idle > 0 else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each CPU window")
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    try:
        figures = asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130
    except (grpc.RpcError, RuntimeError, aiohttp.ClientError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
