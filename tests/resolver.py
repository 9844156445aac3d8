"""A DNS server on loopback that answers from a table, and a network namespace to use it in.

Tests of how a call ends when its host does not resolve must not ask the machine's own
resolver (it is on the network, and its answers are not the test's to choose). So the test
runs its process in network and mount namespaces of its own (:func:`offline`): only the
loopback interface, and an ``/etc/resolv.conf`` that names ``127.0.0.1``, where
:func:`serving_names` answers. Every lookup then goes through the C library's real resolver
(``getaddrinfo``), with answers the test chose: a name not in the table is NXDOMAIN.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

#: Table answers other than an IPv4 address.
SERVFAIL = "servfail"  # the server failed: the C library reports a temporary failure
NODATA = "nodata"  # the name exists and has no address
_A, _IN = 1, 1
_RCODE = {SERVFAIL: 2, "nxdomain": 3}


def answer(query: bytes, names: Mapping[str, str]) -> bytes | None:
    """The reply to one DNS query (RFC 1035), or None for bytes that are not a query."""
    if len(query) < 12:
        return None
    ident, flags, questions = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or questions != 1:
        return None
    labels, at = [], 12
    while at < len(query) and (size := query[at]):
        labels.append(query[at + 1 : at + 1 + size].decode("ascii", "replace").lower())
        at += 1 + size
    if at + 5 > len(query):
        return None
    question = query[12 : at + 5]
    qtype, qclass = struct.unpack("!HH", query[at + 1 : at + 5])
    found = names.get(".".join(labels), "nxdomain")
    records = b""
    if found not in (SERVFAIL, NODATA, "nxdomain") and (qtype, qclass) == (_A, _IN):
        address = bytes(int(part) for part in found.split("."))
        records = struct.pack("!HHHIH", 0xC00C, _A, _IN, 60, 4) + address
    # QR, the query's opcode and RD, AA, RA; then the answer code.
    reply = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | _RCODE.get(found, 0)
    head = struct.pack("!HHHHHH", ident, reply, 1, 1 if records else 0, 0, 0)
    return head + question + records


class _Server(asyncio.DatagramProtocol):
    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = names
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer(data, self.names)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@asynccontextmanager
async def serving_names(names: Mapping[str, str], port: int = 53) -> AsyncIterator[None]:
    """Answer DNS queries over UDP on 127.0.0.1 from ``names`` (a name to an IPv4 address,
    :data:`SERVFAIL` or :data:`NODATA`; any other name is NXDOMAIN) for the block."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Server(names), local_addr=("127.0.0.1", port)
    )
    try:
        yield
    finally:
        transport.close()


def offline(resolv_conf: Path) -> list[str]:
    """A command prefix: run the command in network and mount namespaces of its own, with
    the loopback interface up and nothing else, and ``resolv_conf`` as /etc/resolv.conf."""
    script = 'ip link set lo up && mount --bind "$0" /etc/resolv.conf && exec "$@"'
    return ["unshare", "-n", "-m", "sh", "-c", script, str(resolv_conf)]


def offline_works(conf: Path) -> bool:
    """Whether this machine lets a test make those namespaces (root, unshare, ip), with
    ``conf`` as their /etc/resolv.conf (written here: a name server on 127.0.0.1)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    conf.write_text("nameserver 127.0.0.1\n")
    try:
        done = subprocess.run([*offline(conf), "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
