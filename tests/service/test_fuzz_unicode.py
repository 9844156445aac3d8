"""Every route, deterministically, with text that is not plain ASCII.

Schemathesis (``test_schemathesis.py``) generates any Unicode text that UTF-8 carries, but
never a lone surrogate: half of a surrogate pair cannot be encoded in UTF-8, yet JSON can
carry one as an escape (``"\\udfff"``). Nor does it send bytes that are not UTF-8 in a
percent-encoded path or query. So this module does, for every route the service's own
``/openapi.json`` lists:

* each operation with a JSON body gets a valid body (made here, per route: the test fails
  when a route with a body appears that has none), answered 2xx; then every string of it,
  keys included, gets in turn a lone surrogate escape (``\\ud800``, ``\\udfff``), a NUL
  escape, a 4-byte emoji and a right-to-left mark (the last two as raw UTF-8 bytes);
* each path and query parameter gets percent-encoded bytes that are not UTF-8 (``%ff``,
  ``%ed%a0%80``: a surrogate's UTF-8 form) and a NUL (``%00``).

What the docs promise (docs/api.md, "Errors" and "Bounds"): no 5xx is caused by input;
every 4xx is in the JSON error model; a lone surrogate anywhere in a body is 400 with the
documented code; valid text is accepted where a field takes any text. Beside every request
another org makes a valid one, which succeeds: one tenant's input never fails another's
(``test_unicode.py`` shows it for throttled calls with a lone surrogate in a header;
here on every route, with every variant). After each route's requests, every reader of
the fuzzing org (reports, endpoints, metrics, lists, each call made) still answers 200.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.loopback import System
from tests.service.conftest import Running
from yarl import URL

ADOBE = "/journey/orchestration"
CAPPING, THROTTLING = f"{ADOBE}/endpointConfigs", f"{ADOBE}/throttlingConfigs"
#: Marks, in a body's JSON text (escaped: ``\ue000``), where a variant's bytes go.
SLOT = "\ue000"
#: What goes into a string, as bytes of the JSON text.
VARIANTS: dict[str, bytes] = {
    "lone-high": b"\\ud800",
    "lone-low": b"\\udfff",
    "nul": b"\\u0000",
    "emoji": "\U0001f600".encode(),
    "rlm": "\u200f".encode(),
}
LONE = ("lone-high", "lone-low")
TEXT = ("emoji", "rlm")  # valid text that is not ASCII
#: Put in path and query parameters: bytes that are not UTF-8, and a NUL.
ENCODED = ("%ff", "%ed%a0%80", "%00")

Path = tuple[str | int, ...]


@dataclass
class Env:
    """The service, the system its calls go to, and the orgs taking part."""

    service: Running
    system: System
    fuzz: dict[str, str]  # headers of the org whose requests are fuzzed
    maker: dict[str, str]  # headers of an org whose config creations are fuzzed
    other: dict[str, str]  # headers of an org whose requests are all valid
    uids: dict[str, str] = field(default_factory=dict)  # config route: uid of the fuzz org
    calls: list[str] = field(default_factory=list)  # ids of the calls the fuzz org made
    failed: str = "none"  # a call of the fuzz org that failed: one to replay
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def unique(self, prefix: str) -> str:
        return f"{prefix}{next(self.numbers)}"


def capping(env: Env) -> dict[str, Any]:
    rating = {"maxCallsCount": 1000, "periodInMs": 1000}
    return {"url": env.system.url("fz/*"), "methods": ["POST"], "orgId": "fz",
            "services": {"action": {"rating": rating, "maxHttpConnections": 10}}}  # fmt: skip


def throttling(env: Env) -> dict[str, Any]:
    return {"name": "fz", "description": "fuzzed", "urlPattern": env.system.url("fz/*"),
            "methods": ["POST"], "maxThroughput": 200, "orgId": "fz"}  # fmt: skip


def call_item(env: Env) -> dict[str, Any]:
    request = {"method": "POST", "url": env.system.url("ok"), "headers": {"X-Note": "note"},
               "body": "text"}  # fmt: skip
    return {"journeyId": "fz", "service": "action", "request": request,
            "callbackUrl": env.system.url("cb"), "idempotencyKey": env.unique("key")}  # fmt: skip


def ignored(env: Env) -> dict[str, Any]:
    """A body the route ignores ("any JSON"; Adobe's clients send ``{}``)."""
    return {"note": "ignored"}


@dataclass(frozen=True)
class Route:
    """How to fuzz one operation's body."""

    body: Callable[[Env], Any]
    lone: str | int | None  # the code of a body with a lone surrogate; None: see IGNORED
    text: frozenset[Path] = frozenset()  # strings that take any text: valid text is 2xx
    maker: bool = False  # a creation: made by the maker org, deleted after


CONFIG_TEXT = frozenset({("orgId",)})  # accepted and ignored
#: The routes that ignore their body ("any JSON"): on the configuration API a body with a
#: lone surrogate "is answered as one that is not JSON" (docs/api.md, "Errors"), and these
#: answer a body that is not JSON as any other, since they do not read it.
IGNORED = frozenset({("note",)})
ROUTES: dict[tuple[str, str], Route] = {
    ("POST", f"{ADOBE}/list/endpointConfigs"): Route(ignored, None, IGNORED),
    ("POST", f"{ADOBE}/list/throttlingConfigs"): Route(ignored, None, IGNORED),
    ("POST", CAPPING): Route(capping, "ERR_ENDPOINTCONFIG_112", CONFIG_TEXT, maker=True),
    ("PUT", f"{CAPPING}/{{uid}}"): Route(capping, "ERR_ENDPOINTCONFIG_112", CONFIG_TEXT),
    ("POST", f"{CAPPING}/{{uid}}/canDeploy"): Route(ignored, None, IGNORED),
    ("POST", THROTTLING): Route(throttling, "ERR_THROTTLING_CONFIG_106",
                                CONFIG_TEXT | {("name",), ("description",)}, maker=True),
    ("PUT", f"{THROTTLING}/{{uid}}"): Route(throttling, "ERR_THROTTLING_CONFIG_106",
                                            CONFIG_TEXT | {("name",), ("description",)}),
    ("POST", f"{THROTTLING}/{{uid}}/canDeploy"): Route(ignored, None, IGNORED),
    ("POST", "/v1/calls"): Route(
        lambda env: call_item(env) | {"waitSeconds": 0}, "INVALID_REQUEST",
        frozenset({("journeyId",), ("idempotencyKey",), ("request", "body"),
                   ("request", "headers", "X-Note")}),
    ),
    ("POST", "/v1/calls:batch"): Route(
        lambda env: {"calls": [call_item(env)], "waitSeconds": 0,
                     "callbackUrl": env.system.url("cb")},
        "INVALID_REQUEST",
        frozenset({("calls", 0, "journeyId"), ("calls", 0, "idempotencyKey"),
                   ("calls", 0, "request", "body"), ("calls", 0, "request", "headers", "X-Note")}),
    ),
    # JourneyIn does not forbid other fields: a string there is ignored.
    ("PUT", "/v1/journeys/{journeyId}"): Route(
        lambda env: {"timeoutSeconds": 5, "note": "ignored"}, "INVALID_REQUEST",
        frozenset({("note",)}),
    ),
    ("POST", "/v1/sandboxes"): Route(
        lambda env: {"name": env.unique("fz-"), "type": "development"}, "INVALID_REQUEST"
    ),
    ("POST", "/v1/calls/{callId}:replay"): Route(lambda env: {"waitSeconds": 0},
                                                 "INVALID_REQUEST"),
    ("POST", "/v1/keys"): Route(lambda env: {"role": "viewer"}, "INVALID_REQUEST"),
}  # fmt: skip


def strings(doc: Any, path: Path = ()) -> Iterator[tuple[Path, bool]]:
    """The path of every string of ``doc``, and whether it is an object's key."""
    if isinstance(doc, str):
        yield path, False
    elif isinstance(doc, dict):
        for key, value in doc.items():
            yield (*path, key), True
            yield from strings(value, (*path, key))
    elif isinstance(doc, list):
        for index, item in enumerate(doc):
            yield from strings(item, (*path, index))


def with_variant(doc: Any, path: Path, key: bool, variant: bytes) -> bytes:
    """The JSON text of ``doc`` with ``variant`` appended to the string at ``path`` (its
    key when ``key``), as raw bytes."""
    doc = copy.deepcopy(doc)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if key:
        assert isinstance(last, str)
        parent[last + SLOT] = parent.pop(last)
    else:
        parent[last] += SLOT
    text = json.dumps(doc).encode()
    assert 1 == text.count(b"\\ue000")
    return text.replace(b"\\ue000", variant)


async def send(
    service: Running, method: str, target: str, headers: dict[str, str], raw: bytes | None
) -> tuple[int, Any, str]:
    """``(status, JSON body or text, content type)`` of one request sent as it is."""
    kind = {"Content-Type": "application/json"} if raw is not None else {}
    url = URL(service.base + target, encoded=True)  # percent-escapes go as they are
    async with service.http.request(method, url, headers=headers | kind, data=raw) as response:
        data = await response.read()
        if response.content_type == "application/json" and data:
            return response.status, json.loads(data), response.content_type
        return response.status, data.decode("utf-8", "replace"), response.content_type


def check_problem(status: int, body: Any, kind: str, target: str) -> None:
    """A 4xx in the error model of docs/api.md."""
    where = f"{status} {target}: {body!r}"
    assert "application/json" == kind, where
    assert isinstance(body, dict), where
    assert status == body["status"], where
    assert isinstance(body["message"], str), where
    assert body["message"], where
    if target.startswith(ADOBE):  # Adobe's envelope too; codes may be Adobe's numbers
        assert isinstance(body["code"], str | int), where
        error = body["error"]
        assert (body["code"], body["message"]) == (error["code"], error["message"]), where
    else:
        assert isinstance(body["code"], str), where
    if body["code"] == "INVALID_REQUEST":
        assert isinstance(body.get("details"), list), where


class Other:
    """The other org's valid requests, in turn, one beside each fuzzed request."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.turn = itertools.count()

    async def request(self) -> None:
        env, n = self.env, next(self.turn)
        keyed = call_item(env) | {"journeyId": "other"}  # waits for its row's commit
        requests: list[tuple[str, str, Any]] = [
            ("POST", "/v1/calls", keyed | {"waitSeconds": 0}),
            ("POST", "/v1/calls:batch", {"calls": [keyed], "waitSeconds": 0}),
            ("PUT", "/v1/journeys/other", {"timeoutSeconds": 7}),
            ("POST", f"{ADOBE}/list/endpointConfigs", {}),
            ("GET", "/v1/reports/summary", None),
            ("POST", CAPPING, capping(env)),
        ]
        method, path, body = requests[n % len(requests)]
        status, answer = await env.service.request(method, path, env.other, body)
        assert 200 <= status < 300, (method, path, status, answer)
        if path.endswith(":batch"):
            assert "refused" != answer["results"][0]["state"], answer


async def beside(other: Other, request: Awaitable[tuple[int, Any, str]]) -> tuple[int, Any, str]:
    """``request``, while the other org makes one of its own."""
    mine = asyncio.ensure_future(request)
    try:
        await other.request()
    finally:
        answer = await mine
    return answer


@pytest.fixture
async def env(service: Running, system: System) -> Env:
    """The three orgs; the fuzz org has a capping and a throttling config to edit."""
    env = Env(service, system, await service.key(org="fz"), await service.key(org="fzmaker"),
              await service.key(org="other"))  # fmt: skip
    for kind, payload in ((CAPPING, capping(env)), (THROTTLING, throttling(env))):
        status, created = await service.request("POST", kind, env.fuzz, payload)
        assert 200 == status, created
        env.uids[kind] = created["uid"]
    failed = call_item(env) | {"request": {"method": "POST", "url": system.url("missing")}}
    status, made = await service.request("POST", "/v1/calls", env.fuzz, failed)
    assert (200, "http_error") == (status, made["outcome"]), made
    env.failed = made["callId"]
    return env


def target_of(env: Env, template: str) -> str:
    """The path of ``template`` with the fuzz org's values in its parameters."""
    uid = next((u for kind, u in env.uids.items() if template.startswith(kind + "/")), "none")
    call_id = env.calls[0] if env.calls else "none"
    return (
        template.replace("{uid}", uid)
        .replace("{journeyId}", "fz")
        .replace("{callId}:replay", f"{env.failed}:replay")
        .replace("{callId}", call_id)
    )


async def readers_answer(env: Env) -> None:
    """Every reader of the fuzz org answers 200, each call it made included."""
    reads: list[tuple[str, str, Any]] = [
        ("GET", "/v1/reports/summary", None), ("GET", "/v1/reports/timeseries?step=1s", None),
        ("GET", "/v1/endpoints", None), ("GET", "/metrics", None),
        ("GET", "/v1/sandboxes", None), ("GET", "/v1/journeys/fz", None),
        ("GET", "/v1/calls", None),
        ("POST", f"{ADOBE}/list/endpointConfigs", {}),
        ("POST", f"{ADOBE}/list/throttlingConfigs", {}),
    ]  # fmt: skip
    for method, path, body in reads:
        status, answer = await env.service.request(method, path, env.fuzz, body)
        assert 200 == status or (404, "/v1/journeys/fz") == (status, path), (path, answer)
    for call_id in env.calls:
        status, answer = await env.service.request("GET", f"/v1/calls/{call_id}", env.fuzz)
        assert status in (200, 202), answer


async def test_every_route_with_a_json_body_is_fuzzed(service: Running) -> None:
    """The routes fuzzed here are exactly those with a JSON body in /openapi.json."""
    status, spec = await service.request("GET", "/openapi.json", {})
    assert 200 == status
    with_body = {(method.upper(), path) for path, operations in spec["paths"].items()
                 for method, operation in operations.items()
                 if "application/json" in operation.get("requestBody", {}).get("content", {})
                 }  # fmt: skip
    assert set(ROUTES) == with_body


@pytest.mark.parametrize(("method", "template"), list(ROUTES), ids=[" ".join(r) for r in ROUTES])
async def test_every_string_of_a_body(env: Env, method: str, template: str) -> None:
    """A valid body is 2xx. The same body with a variant in one of its strings: never a
    5xx, every 4xx in the error model, a lone surrogate 400 with the documented code,
    valid text 2xx where the field takes any text; the other org's requests meanwhile all
    succeed, and the fuzz org's readers answer after."""
    route, other = ROUTES[method, template], Other(env)
    headers = env.maker if route.maker else env.fuzz
    target = target_of(env, template)

    async def attempt(raw: bytes) -> tuple[int, Any, str]:
        status, answer, kind = await beside(other, send(env.service, method, target, headers,
                                                        raw))  # fmt: skip
        if 200 <= status < 300 and route.maker:  # make room for the next creation
            gone = await env.service.request("DELETE", f"{target}/{answer['uid']}", headers)
            assert 200 == gone[0], gone
        if 200 <= status < 300 and template.startswith("/v1/calls"):
            items = answer["results"] if template.endswith(":batch") else [answer]
            env.calls += [item["callId"] for item in items if "callId" in item]
        return status, answer, kind

    base = route.body(env)
    status, answer, _ = await attempt(json.dumps(base).encode())
    assert 200 <= status < 300, answer
    if target.startswith(ADOBE):  # its lone surrogates are answered as this
        status, answer, _ = await attempt(b"{not json")
        not_json = (status, answer["code"] if status >= 400 else None)
        assert route.lone is None or (400, route.lone) == not_json, not_json
    assert set(route.text) <= {path for path, key in strings(base) if not key}

    wrong = []  # every answer that is not as documented, to see them all at once
    for path, key in strings(base):
        for name, variant in VARIANTS.items():
            doc = route.body(env)  # fresh: a new idempotency key, sandbox name...
            status, answer, kind = await attempt(with_variant(doc, path, key, variant))
            where = (name, path, key, status, answer)
            try:
                assert status < 500
                if status >= 400:
                    check_problem(status, answer, kind, target)
                if name in LONE and target.startswith(ADOBE):
                    assert not_json == (status, answer["code"] if status >= 400 else None)
                elif name in LONE:
                    assert (400, route.lone) == (status, answer["code"])
                elif name in TEXT and not key and path in route.text:
                    assert 200 <= status < 300
                    if template.endswith(":batch"):
                        assert "refused" != answer["results"][0]["state"]
            except (AssertionError, KeyError, TypeError) as exc:
                wrong.append((where, repr(exc)[:200]))
    assert [] == wrong
    await readers_answer(env)


async def test_every_path_and_query_parameter(env: Env) -> None:
    """Each path and query parameter of every operation, with percent-encoded bytes that
    are not UTF-8 or a NUL: never a 5xx, every 4xx in the error model, the other org's
    requests meanwhile all succeed; a path parameter with text that is not ASCII, validly
    encoded, is that text."""
    service, other = env.service, Other(env)
    status, made = await service.request("POST", "/v1/calls", env.fuzz,
                                         call_item(env) | {"waitSeconds": 0})  # fmt: skip
    assert status in (200, 202), made
    env.calls.append(made["callId"])
    status, spec = await service.request("GET", "/openapi.json", {})
    assert 200 == status
    tried = 0
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            params = [p for p in operation.get("parameters", []) if p["in"] in ("path", "query")]
            route = ROUTES.get((method.upper(), template))
            base = target_of(env, template)
            for param, value in itertools.product(params, ENCODED):
                if param["in"] == "path":
                    target = target_of(env, template.replace(f"{{{param['name']}}}", value))
                else:
                    target = f"{base}?{param['name']}={value}"
                raw = None if route is None else json.dumps(route.body(env)).encode()
                headers = env.maker if route is not None and route.maker else env.fuzz
                status, answer, kind = await beside(other, send(service, method.upper(), target,
                                                                headers, raw))  # fmt: skip
                tried += 1
                assert status < 500, (method, target, status, answer)
                if status >= 400:
                    check_problem(status, answer, kind, target)
    assert tried >= 20  # every parameter was found
    # Valid text in a path parameter, percent-encoded, is that text.
    for text in ("\U0001f600", "\u200fj"):
        target = "/v1/journeys/" + "".join(f"%{byte:02X}" for byte in text.encode())
        assert (200, {"journeyId": text, "timeoutSeconds": 9}) == (
            await send(service, "PUT", target, env.fuzz, b'{"timeoutSeconds": 9}')
        )[:2]
        assert (200, {"journeyId": text, "timeoutSeconds": 9}) == (
            await send(service, "GET", target, env.fuzz, None)
        )[:2]
    await readers_answer(env)
