"""``sluicegate serve``: the service on uvicorn, until SIGTERM or SIGINT.

SIGTERM is a graceful shutdown: uvicorn stops accepting and finishes the requests in
flight, then the runtime closes (buffered results and reports are written; calls still
queued by throttling stay journaled and are delivered after the next start), and the
process exits 0. uvicorn's own signal capture is off: it re-raises the signal after its
shutdown, which would kill the process before the runtime has closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, Generator
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sluicegate.clock import SystemClock
from sluicegate.collector import tune
from sluicegate.reporting import Reporter
from sluicegate.service.app import create_app
from sluicegate.service.logs import configure
from sluicegate.service.options import ServiceOptions
from sluicegate.service.problems import render, unparsable
from sluicegate.service.runtime import Runtime, open_runtime
from sluicegate.service.tenants import Role
from sluicegate.service.tracing import enable
from sluicegate.wiring import Shared

DEV_ORG = "demo"


def first_call(token: str, base: str) -> str:
    """A ready-to-paste first call for a new development key."""
    return (
        f"curl -s {base}/v1/calls -H 'Authorization: Bearer {token}' "
        f"-H 'x-gw-ims-org-id: {DEV_ORG}' -H 'x-sandbox-name: prod' "
        '-H \'Content-Type: application/json\' -d \'{"journeyId": "hello", '
        f'"service": "action", "request": {{"method": "POST", '
        f'"url": "{base}/dev/echo", "body": {{"hello": "world"}}}}}}\''
    )


class _Http(HttpToolsProtocol):
    """uvicorn's HTTP protocol, answering bytes it cannot parse in the JSON error model
    rather than in plain text."""

    def send_400_response(self, msg: str) -> None:
        text = render(unparsable(msg))
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
        )
        self.transport.close()


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`serve`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def dev_key(runtime: Runtime) -> str | None:
    """On a data dir with no keys yet, an admin key for the org ``demo``."""
    if await runtime.tenants.has_keys():
        return None
    return await runtime.tenants.create_key(org=DEV_ORG, role=Role.ADMIN)


class CannotListen(Exception):
    """The address to listen on is taken or cannot be used: ``str()`` says which and why."""


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` and listening, before anything says "serving":
    a port in use is an error here, not after a successful-looking start."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        # create_server's own text says which address twice; a resolver error has its own
        reason = exc.strerror if isinstance(exc, socket.gaierror) else None
        reason = reason or (os.strerror(exc.errno) if exc.errno else str(exc))
        raise CannotListen(f"cannot listen on {host}:{port}: {reason}") from None


async def serve(
    *, where: Path | Shared, options: ServiceOptions, say: Callable[[str], None]
) -> None:
    """Serve until SIGTERM or SIGINT; ``say`` prints what the operator should read."""
    configure(format=options.log_format, level=options.log_level)
    dev = options.dev
    sock = listen(options.host, options.port)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(sock.close)
        clock = SystemClock()
        reporters: list[Reporter] = []
        if options.otel:
            spans = enable(clock=clock)  # InvalidInput when the otel extra is missing
            stack.push_async_callback(spans.aclose)  # after the runtime closed: every span
            reporters.append(spans)
        runtime = await stack.enter_async_context(
            open_runtime(where, dev=dev, settings=options.settings, clock=clock,
                         reporters=reporters)
        )  # fmt: skip
        # No proxy-header rewriting: nothing here reads the client's address.
        config = uvicorn.Config(
            create_app(runtime, cors_origins=options.cors_origins), lifespan="off",
            access_log=False, log_config=None, timeout_graceful_shutdown=10,
            proxy_headers=False, server_header=False, http=_Http,
        )  # fmt: skip
        server = _Server(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        host, port = sock.getsockname()[:2]
        base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        if dev and (token := await dev_key(runtime)) is not None:
            say(f"Development mode: created an admin key for the org '{DEV_ORG}':\n\n  {token}\n")
            say(f"Try a first call:\n\n  {first_call(token, base)}\n")
        data = "shared in Redis and PostgreSQL" if isinstance(where, Shared) else f"in {where}"
        say(f"sluicegate serving on {base} (data {data}); API docs at {base}/docs")
        tune()  # started, before the traffic: see sluicegate.collector
        await server.serve(sockets=[sock])


def run(coro_factory: Callable[[], object]) -> None:
    """Run on uvloop when it is installed, else on asyncio's own loop."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.run(coro_factory())  # type: ignore[arg-type]
        return
    asyncio.run(coro_factory())  # type: ignore[arg-type]
