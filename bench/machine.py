"""The machine a benchmark ran on, and what its processes used, read from ``/proc``.

Facts about the machine and the software, for the report; the CPU that other processes
took during a run (:class:`CpuMeter`), which says how far its figures can be trusted; and
the readings of one process (resident memory, its peak, CPU seconds) by which the queue
benchmark measures a gate in a process of its own, from outside it or from within.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from measure import uvloop_version

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SECONDS = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def _line(path: str, prefix: str) -> str | None:
    """The first line of a /proc file that starts with ``prefix``, if there is one."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((line for line in lines if line.startswith(prefix)), None)


def _value(path: str, name: str) -> str | None:
    """The value of the first ``name: value`` line of a /proc file."""
    line = _line(path, name)
    return None if line is None else line.split(":", 1)[1].strip()


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    return f"{head} (with uncommitted changes)" if git("status", "--porcelain") else head


def _cpus() -> int:
    """The CPUs this process may run on (what ``nproc`` prints)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _memory() -> str:
    total = _value("/proc/meminfo", "MemTotal")  # "24684092 kB"
    if total is None or not total.endswith(" kB"):
        return "unknown"
    return f"{int(total.removesuffix(' kB')) / 2**20:.1f} GiB"


def facts() -> dict[str, str]:
    """Name -> value, in the order they are shown."""
    uvloop = uvloop_version()
    return {
        "date (UTC)": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "cpus (nproc)": str(_cpus()),
        "cpu": _value("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "memory": _memory(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "event loop": f"uvloop {uvloop}" if uvloop else "asyncio (uvloop not installed)",
        "aiohttp": metadata.version("aiohttp"),
        "tenacity": metadata.version("tenacity"),
        "aiolimiter": metadata.version("aiolimiter"),
        "sluicegate": f"{metadata.version('sluicegate')} at commit {_commit()}",
    }


@dataclass(frozen=True, slots=True)
class _CpuTimes:
    busy: float  # seconds of CPU the whole machine spent busy (steal excluded)
    steal: float  # seconds the hypervisor gave to other guests
    own: float  # seconds of CPU of this process and its waited-for children


def _cpu_times() -> _CpuTimes | None:
    """Machine-wide CPU seconds from /proc/stat, and ours from os.times()."""
    line = _line("/proc/stat", "cpu ")
    if line is None:
        return None
    ticks = [int(field) for field in line.split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    mine = os.times()
    return _CpuTimes(
        busy=(user + nice + system + irq + softirq) / TICK,
        steal=steal / TICK,
        own=mine.user + mine.system + mine.children_user + mine.children_system,
    )


@dataclass(frozen=True, slots=True)
class Interference:
    """What else the machine did while the benchmarks ran."""

    other_cpu: float  # CPU seconds used by processes other than the benchmark's
    steal: float  # CPU seconds taken by the hypervisor
    capacity: float  # CPU seconds the machine had: elapsed seconds x cpus


class CpuMeter:
    """Measures the CPU that other processes used between construction and :meth:`stop`.

    Only children that were waited for count as ours, so stop it after the server
    process has ended.
    """

    def __init__(self) -> None:
        self._start = _cpu_times()
        self._started = time.perf_counter()

    def stop(self) -> Interference | None:
        end = _cpu_times()
        if self._start is None or end is None:
            return None
        elapsed = time.perf_counter() - self._started
        return Interference(
            other_cpu=max(0.0, (end.busy - self._start.busy) - (end.own - self._start.own)),
            steal=end.steal - self._start.steal,
            capacity=elapsed * _cpus(),
        )


# ---- readings of one process -------------------------------------------------------------


def rss(pid: int | str = "self") -> int:
    """Resident bytes of a process, from /proc/<pid>/statm."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def peak_rss(pid: int | str = "self") -> int:
    """The highest resident bytes of a process so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


class Peak:
    """The highest RSS of a process during a block: sampled every SAMPLE_SECONDS, and its
    VmHWM at the end (which the kernel keeps lazily: alone, it can read below a sample)."""

    def __init__(self, pid: int | str = "self") -> None:
        self.pid = pid
        self.highest = rss(pid)
        self._sampler: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Peak:
        self._sampler = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        self.highest = max(self.highest, rss(self.pid), peak_rss(self.pid))

    async def _sample(self) -> None:
        while True:
            self.highest = max(self.highest, rss(self.pid))
            await asyncio.sleep(SAMPLE_SECONDS)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK
