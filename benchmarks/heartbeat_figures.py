"""Measuring one load phase (CPU of the server, the load generator and the whole machine) and turning
one or more phases of the same server into the figures `benchmarks/heartbeats.py` prints."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

import psutil

from benchmarks.heartbeat_load import LoadStats


class ProcessCpu:
    """User+system CPU seconds one process spends between start() and stop()."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._start = 0.0

    def _now(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> float:
        return self._now() - self._start


class MachineCpu:
    """Busy CPU seconds of the whole machine (all cores, all processes) between start() and stop()."""

    def __init__(self) -> None:
        self._start = 0.0

    @staticmethod
    def _now() -> float:
        times = psutil.cpu_times()
        # guest time is already inside user time; idle, iowait and steal are no process's work here
        return float(sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq")))

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> float:
        return self._now() - self._start


@dataclass(frozen=True)
class Phase:
    """Raw measurements of one server over one load window."""

    stats: LoadStats
    window_s: float
    server_cpu_s: float
    client_cpu_s: float
    machine_busy_s: float
    members_seen: int | None  # bench-manager only: agents ListMembers shows a fresh heartbeat for
    server_rss_bytes: int = 0  # the server's resident memory right after the load window
    load_processes: int = 1


def percentile_ms(samples: list[float], q: int) -> float | None:
    if not samples:
        return None
    if len(samples) == 1:
        return samples[0] * 1000
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] * 1000


@dataclass
class Figures:
    server: str
    agents: int
    phases: int
    window_s: float
    heartbeats_accepted: int
    heartbeats_unconfirmed: int
    heartbeats_per_s: float
    latency_samples: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    server_cpu_percent: float  # 100 = one core
    client_cpu_percent: float
    client_loop_lag_p99_ms: float | None
    server_cpu_ms_per_1k_heartbeats: float | None
    other_load_cores: float  # CPU the rest of the machine used meanwhile: a busy machine skews everything
    sessions_ok: int
    sessions_failed: int
    agents_gave_up: int
    errors: dict[str, int] = field(default_factory=dict)
    # the round trip of sessions after each agent's first one (reconnects: the steady state, no connect burst)
    later_latency_samples: int = 0
    later_latency_p50_ms: float | None = None
    later_latency_p99_ms: float | None = None
    # failed sessions per 10 s of the load window ("0-10": ...): a connect burst or a steady trickle
    failures_by_10s: dict[str, int] = field(default_factory=dict)
    members_heartbeat_seen: int | None = None  # the fewest over the phases
    server_rss_mib: float = 0.0  # the largest over the phases
    load_processes: int = 1

    @property
    def server_cpu_percent_per_1k_hb_s(self) -> float | None:
        """Server CPU (% of a core) per 1,000 heartbeats/s: comparable across loads and machines' sharing."""
        return 1000 * self.server_cpu_percent / self.heartbeats_per_s if self.heartbeats_per_s else None

    @classmethod
    def from_phases(cls, server: str, agents: int, phases: list[Phase]) -> Figures:
        window = sum(p.window_s for p in phases)
        server_cpu = sum(p.server_cpu_s for p in phases)
        client_cpu = sum(p.client_cpu_s for p in phases)
        latencies = [s for p in phases for s in p.stats.latencies_s]
        later = [s for p in phases for s in p.stats.later_latencies_s]
        accepted = sum(p.stats.heartbeats_accepted for p in phases)
        errors: Counter[str] = Counter()
        for p in phases:
            errors.update(p.stats.errors)
        seen = [p.members_seen for p in phases if p.members_seen is not None]
        buckets = Counter(int(max(0.0, t) // 10) * 10 for p in phases for t in p.stats.failed_at_s)
        return cls(
            server=server, agents=agents, phases=len(phases), window_s=window, heartbeats_accepted=accepted,
            heartbeats_unconfirmed=sum(p.stats.heartbeats_unconfirmed for p in phases),
            heartbeats_per_s=accepted / window if window else 0.0, latency_samples=len(latencies),
            latency_p50_ms=percentile_ms(latencies, 50), latency_p99_ms=percentile_ms(latencies, 99),
            server_cpu_percent=100 * server_cpu / window if window else 0.0,
            client_cpu_percent=100 * client_cpu / window if window else 0.0,
            client_loop_lag_p99_ms=percentile_ms([s for p in phases for s in p.stats.loop_lag_s], 99),
            server_cpu_ms_per_1k_heartbeats=server_cpu * 1e6 / accepted if accepted else None,
            other_load_cores=max(0.0, (sum(p.machine_busy_s for p in phases) - server_cpu - client_cpu) / window)
            if window else 0.0,
            sessions_ok=sum(p.stats.sessions_ok for p in phases),
            sessions_failed=sum(p.stats.sessions_failed for p in phases),
            agents_gave_up=sum(p.stats.agents_gave_up for p in phases), errors=dict(errors),
            later_latency_samples=len(later), later_latency_p50_ms=percentile_ms(later, 50),
            later_latency_p99_ms=percentile_ms(later, 99),
            failures_by_10s={f"{b}-{b + 10}": n for b, n in sorted(buckets.items())},
            members_heartbeat_seen=min(seen) if seen else None,
            server_rss_mib=max((p.server_rss_bytes for p in phases), default=0) / 2**20,
            load_processes=max((p.load_processes for p in phases), default=1))

    def problems(self) -> list[str]:
        found: list[str] = []
        if self.heartbeats_accepted == 0:
            found.append(f"{self.server}: no heartbeat was accepted")
        if self.latency_samples == 0:
            found.append(f"{self.server}: no command round trip completed")
        if self.sessions_failed:
            found.append(f"{self.server}: {self.sessions_failed} session(s) failed: {self.errors}; "
                         f"by time into the load (s): {self.failures_by_10s}")
        if self.agents_gave_up:
            found.append(f"{self.server}: {self.agents_gave_up} agent(s) still failing when the load ended "
                         "(retried as real agents retry, without limit)")
        if self.members_heartbeat_seen is not None and self.members_heartbeat_seen != self.agents:
            found.append(f"{self.server}: ListMembers shows a heartbeat from this run for only "
                         f"{self.members_heartbeat_seen} of {self.agents} agents")
        return found


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def ratios(manager: Figures, echo: Figures) -> dict[str, float | None]:
    """bench-manager / echo for every figure that has a meaning as a ratio."""
    return {name: ratio(getattr(manager, name), getattr(echo, name))
            for name in ("heartbeats_per_s", "latency_p50_ms", "latency_p99_ms", "later_latency_p50_ms",
                         "later_latency_p99_ms", "server_cpu_percent",
                         "server_cpu_ms_per_1k_heartbeats", "server_cpu_percent_per_1k_hb_s", "server_rss_mib")}
