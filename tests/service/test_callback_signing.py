"""Signed callbacks, in the Standard Webhooks style: a receiver on loopback checks every
attempt with its own implementation of the scheme (and with the ``standardwebhooks``
package when it is installed)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from tests.loopback import _serving, until
from tests.service.conftest import Running, StartService

from sluicegate.settings import Settings
from sluicegate.testing import FakeClock

SECRET = bytes(range(32))
WHSEC = "whsec_" + base64.b64encode(SECRET).decode()


@dataclass
class Received:
    """One request the receiver got: its headers and its body, byte for byte."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    base: str
    received: list[Received] = field(default_factory=list)
    failures: int = 0  # answer 500 to this many requests first


@asynccontextmanager
async def receiver(failures: int = 0) -> AsyncIterator[Receiver]:
    """A callback receiver on loopback that keeps what it gets."""
    state = Receiver(base="", failures=failures)

    async def receive(request: web.Request) -> web.Response:
        state.received.append(Received(headers=dict(request.headers), body=await request.read()))
        return web.Response(status=500 if len(state.received) <= state.failures else 204)

    async with _serving(receive) as base:
        state.base = base
        yield state


def verified(secret: bytes, got: Received) -> bool:
    """The receiver's check, written from the Standard Webhooks specification."""
    msg_id, timestamp = got.headers["webhook-id"], got.headers["webhook-timestamp"]
    signed = f"{msg_id}.{timestamp}.".encode() + got.body
    expected = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
    offered = [s.partition(",") for s in got.headers["webhook-signature"].split(" ")]
    return any(v == "v1" and hmac.compare_digest(sig, expected) for v, _, sig in offered)


async def make_call(running: Running, callback: str) -> dict[str, Any]:
    body = {"journeyId": "welcome", "service": "action", "callbackUrl": callback,
            "request": {"method": "GET", "url": f"{running.base}/healthz"}}  # fmt: skip
    status, answer = await running.request("POST", "/v1/calls", await running.key(), body)
    assert 200 == status, answer
    return dict(answer)


async def start(start_service: StartService, clock: FakeClock, secret: bytes | None) -> Running:
    settings = Settings(allow_loopback=True, callback_secret=secret)
    return await start_service(clock=clock, settings=settings)


async def test_a_signed_callback_verifies(start_service: StartService) -> None:
    """With a secret, a callback carries webhook-id (the call id), webhook-timestamp (the
    clock's second) and a v1 signature the receiver verifies over the exact body."""
    clock = FakeClock(start=1_800_000_000.75)
    running = await start(start_service, clock, SECRET)
    async with receiver() as got:
        answer = await make_call(running, f"{got.base}/cb")
        await until(lambda: len(got.received) == 1)
    [callback] = got.received
    assert (answer["callId"], "1800000000") == (
        callback.headers["webhook-id"], callback.headers["webhook-timestamp"])  # fmt: skip
    assert verified(SECRET, callback)
    assert not verified(b"another secret of 32 bytes......", callback)
    assert answer == json.loads(callback.body)


async def test_every_attempt_is_signed_anew(start_service: StartService) -> None:
    """A retried callback keeps its webhook-id and is signed again at its own time."""
    clock = FakeClock()
    running = await start(start_service, clock, SECRET)
    async with receiver(failures=1) as got:
        await make_call(running, f"{got.base}/cb")
        await until(lambda: len(got.received) == 1)
        async with asyncio.timeout(5):
            while len(got.received) < 2:  # the retry's timer is set once the 500 is read
                await clock.advance(0.25)
                await asyncio.sleep(0.001)  # let that I/O happen
    first, second = got.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert (True, True) == (verified(SECRET, first), verified(SECRET, second))


async def test_without_a_secret_callbacks_are_not_signed(start_service: StartService) -> None:
    """No secret: no webhook-* header at all."""
    running = await start(start_service, FakeClock(), None)
    async with receiver() as got:
        await make_call(running, f"{got.base}/cb")
        await until(lambda: len(got.received) == 1)
    assert [] == [name for name in got.received[0].headers if name.lower().startswith("webhook")]


async def test_the_standardwebhooks_package_verifies_it(start_service: StartService) -> None:
    """A receiver using the reference Python library, given the whsec_ secret, accepts it
    (the library checks the timestamp against its own clock: this clock starts at now)."""
    standardwebhooks = pytest.importorskip("standardwebhooks")
    running = await start(start_service, FakeClock(start=time.time()), SECRET)
    async with receiver() as got:
        answer = await make_call(running, f"{got.base}/cb")
        await until(lambda: len(got.received) == 1)
    [callback] = got.received
    assert answer == standardwebhooks.Webhook(WHSEC).verify(callback.body, callback.headers)
