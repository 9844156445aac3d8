"""The loopback external system that records kernel arrival times, and its window count."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from contextlib import suppress

import aiohttp
import pytest
from tests.arrivals import Arrival, arrivals_system, busy_core

from sluicegate.testing import most_in_window


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    """Send one keep-alive GET and read its whole answer (the system always sends a length)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: loopback\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def test_most_in_window_counts_half_open_windows() -> None:
    """A window [s, s + period) holds its start but not its end; nothing gives zero."""
    assert 3 == most_in_window([0, 0.5, 0.999, 1.0], 1)
    assert 0 == most_in_window([], 1)
    assert 1 == most_in_window([0, 1, 2, 3], 1)
    assert 4 == most_in_window([5, 1, 5, 1.5, 9, 5.9, 5], 1)


async def test_ok_is_answered_and_recorded_once_with_a_kernel_time() -> None:
    """One GET /ok answers ok and is recorded once, at a time close to now."""
    async with arrivals_system() as system:
        async with system.session.get(system.url("/ok/1?x=2")) as response:
            assert (200, "ok") == (response.status, await response.text())
        arrivals = await system.arrivals()
        assert [("GET", "/ok/1?x=2")] == [(a.method, a.path) for a in arrivals]
        assert abs(time.time() - arrivals[0].at) < 1
        await system.clear()
        assert [] == await system.arrivals()


async def test_redirects_count_down_and_loops_do_not_end() -> None:
    """/redirect/<n>/ takes n hops to an ok; /loop redirects to itself until the client stops."""
    async with arrivals_system() as system:
        async with system.session.get(system.url("/redirect/2/end")) as response:
            assert (200, 2) == (response.status, len(response.history))
        with pytest.raises(aiohttp.TooManyRedirects):
            await system.session.get(system.url("/loop"), max_redirects=3)
        paths = [a.path for a in await system.arrivals()]
        assert ["/redirect/2/end", "/redirect/1/end", "/redirect/0/end"] == paths[:3]
        assert ["/loop"] * 3 == paths[3:]


async def test_reset_closes_the_connection_without_an_answer() -> None:
    """/reset is read in full, recorded, and answered by a TCP reset."""
    async with arrivals_system() as system:
        reader, writer = await asyncio.open_connection("127.0.0.1", system.port)
        writer.write(b"POST /reset HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        with pytest.raises(ConnectionResetError):
            await reader.read()
        writer.close()
        with suppress(ConnectionResetError):
            await writer.wait_closed()
        assert [("POST", "/reset")] == [(a.method, a.path) for a in await system.arrivals()]


async def test_pipelined_and_chunked_requests_are_each_recorded() -> None:
    """Two requests in one write, the first with a chunked body, both answered in order."""
    async with arrivals_system() as system:
        reader, writer = await asyncio.open_connection("127.0.0.1", system.port)
        writer.write(
            b"POST /status/201 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n0\r\nTrailer: t\r\n\r\n"
            b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answers = await reader.read()
        writer.close()
        await writer.wait_closed()
        assert [b"201", b"404"] == re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)
        assert ["/status/201", "/nowhere"] == [a.path for a in await system.arrivals()]


async def test_arrival_times_keep_the_spacing_of_the_sends() -> None:
    """Two requests sent 200 ms apart on one connection arrive about 0.2 s apart."""
    async with arrivals_system() as system, busy_core():
        reader, writer = await asyncio.open_connection("127.0.0.1", system.port)
        assert (await exchange(reader, writer, "/ok/first")).endswith(b"\r\n\r\nok")
        await asyncio.sleep(0.2)
        assert (await exchange(reader, writer, "/ok/second")).endswith(b"\r\n\r\nok")
        writer.close()
        await writer.wait_closed()
        first, second = await system.arrivals()
        assert ["/ok/first", "/ok/second"] == [first.path, second.path]
        assert 0.15 < second.at - first.at < 0.5


async def test_a_stalled_server_still_records_when_the_request_came() -> None:
    """A request sent while the server process is stopped keeps its send time, not its read."""
    async with arrivals_system() as system:
        reader, writer = await asyncio.open_connection("127.0.0.1", system.port)
        os.kill(system.pid, signal.SIGSTOP)
        try:
            sent = time.time()
            writer.write(b"GET /ok/stalled HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.3)
        finally:
            os.kill(system.pid, signal.SIGCONT)
        assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        writer.close()
        await writer.wait_closed()
        (arrival,) = await system.arrivals()
        assert abs(arrival.at - sent) < 0.1


async def test_many_keep_alive_connections_are_served_together() -> None:
    """300 concurrent connections each get their answer; every request is recorded."""
    async with arrivals_system() as system:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def get(n: int) -> str:
                async with session.get(system.url(f"/ok/{n}")) as response:
                    return await response.text()

            assert ["ok"] * 300 == await asyncio.gather(*(get(n) for n in range(300)))
        arrivals = await system.arrivals()
        assert {f"/ok/{n}" for n in range(300)} == {a.path for a in arrivals}
        assert sorted(a.at for a in arrivals) == [a.at for a in arrivals]
        assert isinstance(arrivals[0], Arrival)
