"""The service's logs: JSON or text lines, an access line per request, an audit line per
config change, and uvicorn's and the service's own lines in the same format."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from tests.loopback import System, sluicegate_serve, until
from tests.service.conftest import Running, StartService

from sluicegate.errors import InvalidInput
from sluicegate.service.app import create_app
from sluicegate.service.logs import UVICORN, configure
from sluicegate.service.tenants import key_id

ADOBE = "/journey/orchestration"
CAPPING = {"url": "https://api.example.org/*", "methods": ["POST"], "services": {"action": {
    "maxHttpConnections": 10, "rating": {"maxCallsCount": 5, "periodInMs": 1000}}}}  # fmt: skip
HEX_ID = re.compile(r"[0-9a-f]{16}")


class Lines:
    """What the service logged since :func:`configure` was called on this buffer."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def all(self) -> list[dict[str, Any]]:
        """Every line, each parsed (a line that is not one JSON object fails the test)."""
        return [json.loads(line) for line in self.text.splitlines() if line]

    def of(self, logger: str) -> list[dict[str, Any]]:
        return [line for line in self.all() if line["logger"] == logger]


Configure = Callable[..., Lines]


@pytest.fixture
def logs() -> Iterator[Configure]:
    """``logs(format=..., level=...)`` configures the logs into a buffer; the logging
    setup of the test process is put back afterwards."""
    root = logging.getLogger()
    named = [
        logging.getLogger(name) for name in (*UVICORN, "sluicegate.access", "sluicegate.audit")
    ]
    saved = (root.level, list(root.handlers))
    saved_named = [(lg.level, list(lg.handlers), lg.propagate) for lg in named]

    def setup(format: str = "json", level: str = "info") -> Lines:
        lines = Lines()
        configure(format=format, level=level, stream=lines.buffer)
        return lines

    yield setup
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for logger, (level, handlers, propagate) in zip(named, saved_named, strict=True):
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


async def fetch(running: Running, method: str, path: str, headers: dict[str, str],
                json_body: Any = None) -> tuple[int, Mapping[str, str], bytes]:  # fmt: skip
    async with running.http.request(method, running.base + path, headers=headers,
                                    json=json_body) as response:  # fmt: skip
        return response.status, response.headers.copy(), await response.read()


def call(system: System, **extra: Any) -> dict[str, Any]:
    return {"journeyId": "welcome", "service": "action",
            "request": {"method": "POST", "url": system.url("ok")}} | extra  # fmt: skip


async def test_one_access_line_per_request_with_the_route_template(
    logs: Configure, service: Running, system: System
) -> None:
    """Each request logs its id (the one answered in X-Request-Id), method, route template,
    org, status, duration and answer size; calls served by the fast path too."""
    lines = logs()
    headers = await service.key()
    status, created = await service.request("POST", f"{ADOBE}/endpointConfigs", headers, CAPPING)
    assert 200 == status, created
    read = await fetch(service, "GET", f"{ADOBE}/endpointConfigs/{created['uid']}", headers)
    made = await fetch(service, "POST", "/v1/calls", headers, call(system))
    call_id = json.loads(made[2])["callId"]
    got = await fetch(service, "GET", f"/v1/calls/{call_id}", headers)
    await until(lambda: len(lines.of("sluicegate.access")) == 4)
    found = lines.of("sluicegate.access")[1:]
    assert [
        ("GET", f"{ADOBE}/endpointConfigs/{{uid}}", 200),
        ("POST", "/v1/calls", 200),
        ("GET", "/v1/calls/{callId}", 200),
    ] == [(line["method"], line["route"], line["status"]) for line in found]
    for line, (_, answered, body) in zip(found, (read, made, got), strict=True):
        assert (answered["X-Request-Id"], "acme", len(body), "info") == (
            line["request_id"], line["org"], line["bytes"], line["level"])  # fmt: skip
        assert HEX_ID.fullmatch(line["request_id"])
        assert isinstance(line["duration_ms"], float)
        assert line["duration_ms"] >= 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
        assert f"{line['method']} {line['route']} 200" == line["message"]


async def test_a_sane_request_id_is_kept_and_any_other_replaced(
    logs: Configure, service: Running
) -> None:
    """A client's X-Request-Id of 1-128 printable characters without spaces is kept; a
    longer one or one with a space gets a new id instead, in the answer and the log."""
    lines = logs()
    sent = ["req-42/a.b", "x" * 128, "x" * 129, "has space"]
    answered = []
    for request_id in sent:
        status, headers, _ = await fetch(service, "GET", "/healthz", {"X-Request-Id": request_id})
        assert 200 == status
        answered.append(headers["X-Request-Id"])
    assert sent[:2] == answered[:2]
    assert all(HEX_ID.fullmatch(found) for found in answered[2:])
    await until(lambda: len(lines.of("sluicegate.access")) == 4)
    assert answered == [line["request_id"] for line in lines.of("sluicegate.access")]


async def test_no_token_body_or_query_string_is_logged(logs: Configure, service: Running) -> None:
    """The key, the body and the query string never reach the log; a path no route
    matched is logged as its path, and a refusal with its status."""
    lines = logs()
    headers = await service.key()
    token = headers["Authorization"].removeprefix("Bearer ")
    bearer = {"Authorization": headers["Authorization"]}
    assert 200 == (await fetch(service, "GET", "/metrics?sandbox=prod", bearer))[0]
    body = {**CAPPING, "url": "https://body-marker-5f3a.example.org/*"}
    assert 200 == (await fetch(service, "POST", f"{ADOBE}/endpointConfigs", headers, body))[0]
    assert 404 == (await fetch(service, "GET", "/nowhere?token=query-marker-9c1d", headers))[0]
    assert 401 == (await fetch(service, "GET", "/metrics", {}))[0]
    await until(lambda: len(lines.of("sluicegate.access")) == 4)
    assert [("/metrics", 200), (f"{ADOBE}/endpointConfigs", 200), ("/nowhere", 404),
            ("/metrics", 401)] == [
        (line["route"], line["status"]) for line in lines.of("sluicegate.access")
    ]  # fmt: skip
    for secret in (token, "body-marker-5f3a", "query-marker-9c1d", "sandbox=prod"):
        assert secret not in lines.text


async def test_an_audit_line_per_config_change(
    logs: Configure, service: Running, system: System
) -> None:
    """Every successful change says who (org, key id), what (method, route, resource) and
    the status; reads, calls and refused changes write none."""
    lines = logs()
    editor, admin = await service.key(role="editor"), await service.key(role="admin")
    viewer = await service.key(role="viewer")
    base = f"{ADOBE}/endpointConfigs"
    status, created = await service.request("POST", base, editor, CAPPING)
    assert 200 == status, created
    uid = created["uid"]
    not_changes = [
        ("POST", f"{ADOBE}/list/endpointConfigs", editor, None, 200),
        ("POST", f"{base}/{uid}/canDeploy", editor, None, 200),
        ("POST", base, viewer, CAPPING, 403),
        ("POST", "/v1/calls", admin, call(system), 200),
        ("GET", "/v1/sandboxes", admin, None, 200),
    ]
    for method, path, headers, body, expected in not_changes:
        assert expected == (await service.request(method, path, headers, body))[0], path
    changes = [
        ("PUT", f"{base}/{uid}", editor, {**CAPPING, "methods": ["PUT"]}),
        ("POST", f"{base}/{uid}/deploy", editor, None),
        ("POST", f"{base}/{uid}/undeploy", editor, None),
        ("PUT", "/v1/journeys/welcome", editor, {"timeoutSeconds": 5}),
        ("POST", "/v1/sandboxes", admin, {"name": "dev", "type": "development"}),
        ("DELETE", f"{base}/{uid}", editor, None),
    ]
    for method, path, headers, body in changes:
        status, answer = await service.request(method, path, headers, body)
        assert status < 300, (path, answer)
    await until(lambda: len(lines.of("sluicegate.access")) == 1 + len(not_changes) + len(changes))
    editor_id, admin_id = (key_id(h["Authorization"].removeprefix("Bearer ")) for h in
                           (editor, admin))  # fmt: skip
    assert [
        ("POST", base, uid, editor_id, 200),
        ("PUT", f"{base}/{{uid}}", uid, editor_id, 200),
        ("POST", f"{base}/{{uid}}/deploy", uid, editor_id, 204),
        ("POST", f"{base}/{{uid}}/undeploy", uid, editor_id, 204),
        ("PUT", "/v1/journeys/{journeyId}", "welcome", editor_id, 200),
        ("POST", "/v1/sandboxes", "dev", admin_id, 201),
        ("DELETE", f"{base}/{{uid}}", uid, editor_id, 200),
    ] == [
        (line["method"], line["route"], line["resource"], line["key"], line["status"])
        for line in lines.of("sluicegate.audit")
    ]
    assert {"acme"} == {line["org"] for line in lines.of("sluicegate.audit")}
    assert all(HEX_ID.fullmatch(line["request_id"]) for line in lines.of("sluicegate.audit"))


async def test_audit_lines_are_written_at_every_level(logs: Configure, service: Running) -> None:
    """At level warning the access log is off, the audit log is not."""
    lines = logs(level="warning")
    headers = await service.key()
    assert 200 == (await fetch(service, "POST", f"{ADOBE}/endpointConfigs", headers, CAPPING))[0]
    await until(lambda: bool(lines.of("sluicegate.audit")))
    assert ([], ["info"]) == (
        lines.of("sluicegate.access"),
        [line["level"] for line in lines.of("sluicegate.audit")],
    )


async def test_text_lines_are_readable(logs: Configure, service: Running) -> None:
    """The text format: time, level, logger, message, then the fields as key=value."""
    lines = logs(format="text")
    await fetch(service, "GET", "/healthz", {"X-Request-Id": "abc", "x-gw-ims-org-id": "a b"})
    await until(lambda: "sluicegate.access" in lines.text)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO sluicegate\.access: GET /healthz 200 "
        r'request_id=abc method=GET route=/healthz org="a b" status=200 duration_ms=[\d.]+ '
        r"bytes=15\n",
        lines.text,
    ), lines.text


async def test_no_request_writes_a_line_of_its_own_into_a_text_log(
    logs: Configure, service: Running
) -> None:
    """A path with an encoded line break (kept as it came when no route matched) stays
    on its request's one line, escaped."""
    lines = logs(format="text")
    forged = "2026-01-01T00:00:00.000Z INFO sluicegate.audit: forged"
    await fetch(service, "GET", "/nowhere%0A" + forged.replace(" ", "%20"), {})
    await until(lambda: "sluicegate.access" in lines.text)
    assert 1 == len(lines.text.splitlines()), lines.text
    assert "/nowhere\\n2026" in lines.text


async def test_uvicorn_and_the_service_s_own_lines_follow_the_format(
    logs: Configure, start_service: StartService, system: System
) -> None:
    """Once configured, uvicorn's lines (even after it set up its own handlers) and the
    service's warnings are JSON lines too, with their fields and no colour codes."""
    running = await start_service()
    # Made with uvicorn's default logging setup, which gives its loggers their own handlers.
    config = uvicorn.Config(create_app(running.runtime), host="127.0.0.1", port=0, lifespan="off")
    lines = logs()
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started)
    finally:
        server.should_exit = True
        await task
    started = next(line for line in lines.of("uvicorn.error")
                   if line["message"].startswith("Started server process"))  # fmt: skip
    assert ("info", None) == (started["level"], started.get("color_message"))
    # A callback to a private address is refused by the egress policy, and logged.
    headers = await running.key()
    status, _ = await running.request(
        "POST", "/v1/calls", headers, call(system, callbackUrl="http://10.255.255.1/cb")
    )
    assert 200 == status
    await until(lambda: bool(lines.of("sluicegate.service.callbacks")))
    [refused] = lines.of("sluicegate.service.callbacks")
    assert ("warning", True) == (refused["level"], "refused" in refused["message"])
    lines.all()  # every line, whoever wrote it, is one JSON object


def test_an_exception_is_part_of_its_line(logs: Configure) -> None:
    """A logged exception is the line's ``exception`` field: the line stays one line."""
    lines = logs()
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("sluicegate.example").exception("it failed", extra={"task": "t1"})
    [line] = lines.all()
    assert ("error", "it failed", "t1") == (line["level"], line["message"], line["task"])
    assert line["exception"].endswith("ValueError: broken")


@pytest.mark.parametrize(("format", "level"), [("xml", "info"), ("json", "verbose")])
def test_an_unknown_format_or_level_is_refused(format: str, level: str) -> None:
    """configure() refuses what it does not know, naming it."""
    with pytest.raises(InvalidInput) as refused:
        configure(format=format, level=level)
    assert "INVALID_SETTINGS" == refused.value.code
    assert repr(format if format == "xml" else level) in refused.value.message


@pytest.mark.slow
async def test_serve_writes_json_lines(tmp_path: Path) -> None:
    """`sluicegate serve --log-format json`: uvicorn's lines, the access line of a request
    and its request id, each one JSON object; the operator's notes (the dev key) aside."""
    async with sluicegate_serve(tmp_path / "data", "--log-format", "json") as served:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{served.base}/healthz", headers={"X-Request-Id": "serve-1"}) as response,
        ):
            assert 200 == response.status
        await until(lambda: any('"sluicegate.access"' in line for line in served.lines))
    logged = [json.loads(line) for line in served.lines if line.startswith("{")]
    assert {"uvicorn.error", "sluicegate.access"} <= {line["logger"] for line in logged}
    [access] = [line for line in logged if line["logger"] == "sluicegate.access"]
    assert ("serve-1", "/healthz", 200) == (access["request_id"], access["route"],
                                            access["status"])  # fmt: skip


class Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


async def test_lines_of_one_turn_of_the_loop_are_written_together(logs: Configure) -> None:
    """Info lines logged on the event loop are written in one write once its turn is
    over; a warning is written at once, with the lines waiting before it."""
    logs()  # puts the logging setup back afterwards
    stream = Writes()
    configure(format="text", level="info", stream=stream)
    log = logging.getLogger("sluicegate.test")
    log.info("one")
    log.info("two")
    assert [] == stream.writes
    await asyncio.sleep(0)
    assert [["one", "two"]] == [re.findall(r": (\w+)$", w, re.M) for w in stream.writes]
    log.info("three")
    log.warning("four")
    assert ["three", "four"] == re.findall(r": (\w+)$", stream.writes[-1], re.M)


def test_lines_logged_off_the_loop_are_written_at_once(logs: Configure) -> None:
    logs()
    stream = Writes()
    configure(format="text", level="info", stream=stream)
    logging.getLogger("sluicegate.test").info("alone")
    assert [["alone"]] == [re.findall(r": (\w+)$", w, re.M) for w in stream.writes]


def test_lines_of_a_loop_that_closed_before_its_turn_ended_are_written_by_the_next(
    logs: Configure,
) -> None:
    """A loop that stops before the turn that would write its lines: the next loop's
    first turn writes them, in order."""
    logs()
    stream = Writes()
    configure(format="text", level="info", stream=stream)
    log = logging.getLogger("sluicegate.test")

    async def say(word: str) -> None:
        log.info(word)
        asyncio.get_running_loop().stop()  # before the turn that would write the line

    for word in ("first", "second"):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(say(word))
        loop.close()
    assert [] == stream.writes

    async def turn() -> None:
        log.info("third")
        await asyncio.sleep(0)

    asyncio.run(turn())
    assert [["first", "second", "third"]] == [
        re.findall(r": (\w+)$", w, re.M) for w in stream.writes
    ]
