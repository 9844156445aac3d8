"""A host name that does not resolve ends its call at once: ``network_error`` after one
attempt, no retry, "cannot resolve host ...". A resolver that fails for now is retried.

The engine's part runs on a scripted transport. The transports' part runs through the C
library's real resolver, offline: this file, run as a program, makes calls through a gate
in network and mount namespaces of their own (``tests/resolver.py``), where a DNS server on
loopback answers NXDOMAIN, "no address", SERVFAIL, or the address of a loopback system,
and prints how each call ended.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.loopback import serve_ok
from tests.resolver import NODATA, SERVFAIL, offline, offline_works, serving_names

from sluicegate.errors import TransportError, UnknownHost
from sluicegate.gate import Gate
from sluicegate.outcomes import CallResult
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock
from sluicegate.transport import Request, Response

ROOT = Path(__file__).resolve().parent.parent
NAMES = {"ok.test": "127.0.0.1", "flaky.test": SERVFAIL, "empty.test": NODATA}
SCOPE = {"org": "demo", "sandbox": "prod", "journey": "dns", "service": "action"}


def summary(result: CallResult) -> dict[str, Any]:
    error = result.error.message if result.error is not None else None
    return {"outcome": result.outcome.value, "attempts": result.attempts,
            "retries": result.retries, "error": error}  # fmt: skip


@pytest.mark.parametrize(("failure", "attempts"), [
    (UnknownHost("cannot resolve host x.invalid: name or service not known"), 1),
    (TransportError("cannot resolve host x.test: temporary failure in name resolution"), 4),
])  # fmt: skip
async def test_an_unknown_host_is_not_retried(
    open_gate: Any, clock: FakeClock, failure: TransportError, attempts: int
) -> None:
    def fail(request: Request) -> Response:
        raise failure

    gate, transport = await open_gate(fail)

    running = asyncio.ensure_future(
        gate.call(**SCOPE, method="GET", url="https://x.invalid/", timeout_seconds=5)
    )
    await clock.run_until(running, step=0.1, limit=5)  # the retries' waits, if any
    result = running.result()

    expected = {"outcome": "network_error", "attempts": attempts, "retries": attempts - 1,
                "error": str(failure)}  # fmt: skip
    assert expected == summary(result)
    assert attempts == len(transport.requests)


async def calls_offline(transport: str, data_dir: str) -> dict[str, dict[str, Any]]:
    """In the namespaces: one call to each name, through ``transport``; no retry waits."""
    settings = Settings(allow_loopback=True, transport=transport,  # type: ignore[arg-type]
                        retry_schedule=(0, 0, 0))  # fmt: skip
    ended = {}
    async with (
        serving_names(NAMES),
        serve_ok() as base,
        Gate.open(data_dir, settings=settings) as gate,
    ):
        port = base.rsplit(":", 1)[1]
        for host in ("ok.test", "something.invalid", "empty.test", "flaky.test"):
            url = f"http://{host}:{port}/"
            result = await gate.call(**SCOPE, method="GET", url=url, timeout_seconds=10)
            ended[host] = summary(result)
    return ended


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["aiohttp", "reqwest"])
def test_the_real_resolver_offline(tmp_path: Path, transport: str) -> None:
    conf = tmp_path / "resolv.conf"
    if not offline_works(conf):
        pytest.skip("needs unshare, ip and mount (root) for a network namespace")
    program = [sys.executable, "-m", "tests.test_unknown_hosts", transport, str(tmp_path / "d")]

    done = subprocess.run([*offline(conf), *program], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip

    assert 0 == done.returncode, done.stderr
    ended = json.loads(done.stdout.splitlines()[-1])
    unknown = "cannot resolve host {}: {}"
    assert {
        "ok.test": {"outcome": "success", "attempts": 1, "retries": 0, "error": None},
        "something.invalid": {"outcome": "network_error", "attempts": 1, "retries": 0,
                              "error": unknown.format("something.invalid",
                                                      "name or service not known")},
        "empty.test": {"outcome": "network_error", "attempts": 1, "retries": 0,
                       "error": unknown.format("empty.test",
                                               "no address associated with hostname")},
        "flaky.test": {"outcome": "network_error", "attempts": 4, "retries": 3,
                       "error": unknown.format("flaky.test",
                                               "temporary failure in name resolution")},
    } == ended  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(asyncio.run(calls_offline(sys.argv[1], sys.argv[2]))))
