"""A full disk: the service refuses what it cannot record, clearly, and loses nothing.

``sluicegate serve`` runs in a mount namespace of its own (``unshare -m``) with its data
dir on a small tmpfs, so the test can fill the disk under it for real: a ballast file,
written through ``/proc/<pid>/root``, takes every free byte. While the disk is full each
submission is either accepted or refused with 503 ``STORAGE_UNAVAILABLE`` and a
``Retry-After`` — never another status, never a hang. Once the ballast is gone, every call
that was accepted ends, and the external system received each of them.
"""

from __future__ import annotations

import asyncio
import errno
import shlex
import shutil
import subprocess
from functools import partial
from pathlib import Path

import aiohttp
import pytest
from tests.loopback import Api, eventually, serve_recording, sluicegate_serve

pytestmark = pytest.mark.slow

#: Room for the schema and a few thousand queued calls, so that filling it is quick.
TMPFS = "size=16m"


def on_tmpfs(where: Path) -> list[str]:
    """The command prefix that mounts a tmpfs on ``where`` in a new mount namespace, then
    runs the rest of the command there."""
    mount = f"mount -t tmpfs -o {TMPFS} none {shlex.quote(str(where))}"
    return ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh"]


def namespaces_work() -> bool:
    """Whether this machine lets the test mount a tmpfs in a namespace (root, unshare)."""
    if shutil.which("unshare") is None:
        return False
    return subprocess.run([*on_tmpfs(Path("/mnt")), "true"], capture_output=True).returncode == 0


def fill(data_dir: Path) -> Path:
    """Write a ballast file in ``data_dir`` until the disk under it is full."""
    ballast = data_dir / "ballast"
    with ballast.open("wb", buffering=0) as out:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return ballast


async def submit(api: Api, url: str, n: int) -> tuple[int, dict[str, object]]:
    body = {"journeyId": f"j{n}", "service": "action", "waitSeconds": 0,
            "request": {"method": "POST", "url": url, "body": "x" * 2000}}  # fmt: skip
    async with api.http.post(api.served.base + "/v1/calls", json=body, headers=api.headers) as r:
        answer = await r.json()
        if r.status == 503:
            answer["retryAfter"] = r.headers.get("Retry-After")
        return r.status, answer


@pytest.mark.skipif(not namespaces_work(), reason="needs unshare and mount (root)")
async def test_a_full_disk_refuses_with_503_and_loses_no_accepted_call(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    async with (
        serve_recording() as (base, requests),
        sluicegate_serve(data, within=on_tmpfs(data)) as served,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        api = Api(served, http)
        await api.deploy("throttlingConfigs", {
            "name": "full", "urlPattern": f"{base}/*", "methods": ["POST"], "maxThroughput": 200,
        })  # fmt: skip
        root = Path(f"/proc/{served.process.pid}/root") / data.relative_to("/")
        answers = [await submit(api, f"{base}/q", n) for n in range(200)]
        ballast = fill(root)

        answers += await asyncio.gather(*(submit(api, f"{base}/q", n) for n in range(200, 2200)))

        statuses = {status for status, _ in answers}
        refused = [answer for status, answer in answers if status == 503]
        assert statuses <= {200, 202, 503}, statuses
        assert refused, "the full disk refused nothing: the test did not fill it"
        assert {("STORAGE_UNAVAILABLE", "1")} == {(a["code"], a["retryAfter"]) for a in refused}
        accepted = [str(answer["callId"]) for status, answer in answers if status != 503]

        ballast.unlink()
        async with asyncio.timeout(60):
            for call_id in accepted:
                await eventually(partial(ended, api, call_id), seconds=60)
        assert set(accepted) <= {request.headers.get("Idempotency-Key") for request in requests}
        assert served.process.returncode is None


async def ended(api: Api, call_id: str) -> bool:
    url = f"{api.served.base}/v1/calls/{call_id}"
    async with api.http.get(url, headers=api.headers) as r:
        return r.status == 200 and (await r.json())["state"] == "done"
