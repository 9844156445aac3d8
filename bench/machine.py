"""Facts about the machine and the software a benchmark ran on, for the report."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from measure import uvloop_version

ROOT = Path(__file__).resolve().parent.parent


def _read(path: str, prefix: str) -> str | None:
    """The value of the first ``prefix: value`` line of a /proc file, if there is one."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(prefix):
            return line.split(":", 1)[1].strip()
    return None


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
    total = _read("/proc/meminfo", "MemTotal")  # "24684092 kB"
    if total is None or not total.endswith(" kB"):
        return "unknown"
    return f"{int(total.removesuffix(' kB')) / 2**20:.1f} GiB"


def facts() -> dict[str, str]:
    """Name -> value, in the order they are shown."""
    uvloop = uvloop_version()
    return {
        "date (UTC)": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "cpus (nproc)": str(_cpus()),
        "cpu": _read("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "memory": _memory(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "event loop": f"uvloop {uvloop}" if uvloop else "asyncio (uvloop not installed)",
        "aiohttp": metadata.version("aiohttp"),
        "tenacity": metadata.version("tenacity"),
        "aiolimiter": metadata.version("aiolimiter"),
        "sluicegate": f"{metadata.version('sluicegate')} at commit {_commit()}",
    }
