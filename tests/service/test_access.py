"""Who may do what, and nothing crosses orgs: every route for every role, on the real service.

``ROUTES`` is the access matrix: each route, the roles it admits and its success status.
Every (role, route) pair is one test: an admitted role gets the success status, any other
role 403 ``FORBIDDEN``. Each request acts on things an admin prepared for it: a fresh
config per mutating request (throttling: the org's one config is removed first), a call
to a loopback system for ``GET /v1/calls/{callId}``. Then tenant isolation: another org's
uids and call ids are 404 and its views show nothing; a key is refused in another org
(403), an unknown sandbox is 404, a missing or unknown key 401.

One service (uvicorn on loopback, dev mode) serves the whole module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import uvicorn
from tests.loopback import serve_ok
from tests.service.conftest import Running

from sluicegate.service.app import create_app
from sluicegate.service.runtime import open_runtime
from sluicegate.service.tenants import Role

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE = "/journey/orchestration"
ORG_A, ORG_B = "acme", "globex"
ROLES = ("admin", "editor", "caller", "viewer")
READ = frozenset({"admin", "editor", "viewer"})
EDIT = frozenset({"admin", "editor"})
CALL = frozenset({"admin", "caller"})
ADMIN = frozenset({"admin"})

URL = "https://api.example.org/data/*"
PAYLOADS: dict[str, dict[str, Any]] = {
    "endpointConfigs": {"url": URL, "methods": ["GET"], "services": {
        "action": {"rating": {"maxCallsCount": 100, "periodInMs": 1000}}}},
    "throttlingConfigs": {"urlPattern": URL, "methods": ["POST"], "maxThroughput": 300},
}  # fmt: skip


@dataclass
class Env:
    """The module's service, a loopback system to call, and one key per org and role."""

    running: Running
    system: str
    keys: dict[tuple[str, str], dict[str, str]]
    names: itertools.count[int] = field(default_factory=itertools.count)

    def key(self, role: str = "admin", org: str = ORG_A) -> dict[str, str]:
        return dict(self.keys[(org, role)])

    async def as_admin(self, method: str, path: str, body: Any = None) -> Any:
        """The body of a request an admin of org A makes to prepare a test (asserting 2xx)."""
        status, answer = await self.running.request(method, path, self.key(), body)
        assert 200 <= status < 300, (method, path, status, answer)
        return answer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with contextlib.AsyncExitStack() as stack:
        runtime = await stack.enter_async_context(
            open_runtime(tmp_path_factory.mktemp("access"), dev=True)
        )
        config = uvicorn.Config(create_app(runtime), host="127.0.0.1", port=0, lifespan="off",
                                log_level="warning", access_log=False)  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())

        async def stop() -> None:
            server.should_exit = True
            await task

        stack.push_async_callback(stop)
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 -- uvicorn exposes no event for this
                await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        http = await stack.enter_async_context(aiohttp.ClientSession())
        system = await stack.enter_async_context(serve_ok())
        running = Running(base=f"http://127.0.0.1:{port}", runtime=runtime, http=http,
                          _stop=stop)  # fmt: skip
        keys = {}
        for org, role in itertools.product((ORG_A, ORG_B), ROLES):
            token = await runtime.tenants.create_key(org=org, role=Role(role))
            keys[(org, role)] = {"Authorization": f"Bearer {token}", "x-gw-ims-org-id": org,
                                 "x-sandbox-name": "prod"}  # fmt: skip
        yield Env(running=running, system=system, keys=keys)


# What a route needs before the request: the values of its path's {fields}, and its body.
Prepared = tuple[dict[str, str], Any]
Prepare = Callable[[Env], Awaitable[Prepared]]


async def nothing(env: Env) -> Prepared:
    return {}, None


async def remove_throttling(env: Env) -> None:
    """Delete org A's throttling config (one per org), deployed or not."""
    listed = await env.as_admin("POST", f"{BASE}/list/throttlingConfigs", {})
    for record in listed["results"]:
        await env.as_admin("DELETE", f"{BASE}/throttlingConfigs/{record['uid']}?forceDelete=true")


async def fresh_config(env: Env, kind: str, *, deployed: bool = False) -> str:
    """The uid of a new config of org A made by its admin (throttling: replacing the old)."""
    if kind == "throttlingConfigs":
        await remove_throttling(env)
    made = await env.as_admin("POST", f"{BASE}/{kind}", PAYLOADS[kind])
    uid: str = made["uid"]
    if deployed:
        await env.as_admin("POST", f"{BASE}/{kind}/{uid}/deploy")
    return uid


def config(kind: str, *, deployed: bool = False, body: Any = None) -> Prepare:
    async def prepare(env: Env) -> Prepared:
        return {"uid": await fresh_config(env, kind, deployed=deployed)}, body

    return prepare


def creation(kind: str) -> Prepare:
    async def prepare(env: Env) -> Prepared:
        if kind == "throttlingConfigs":
            await remove_throttling(env)
        return {}, PAYLOADS[kind]

    return prepare


def call_body(env: Env) -> dict[str, Any]:
    """A custom action to the loopback system that ends within ``waitSeconds``."""
    return {"journeyId": "access", "service": "action", "waitSeconds": 10,
            "request": {"method": "GET", "url": f"{env.system}/ok"}}  # fmt: skip


async def new_call(env: Env) -> Prepared:
    return {}, call_body(env)


async def new_batch(env: Env) -> Prepared:
    return {}, {"calls": [call_body(env)]}


async def finished_call(env: Env) -> Prepared:
    made = await env.as_admin("POST", "/v1/calls", call_body(env))
    assert "done" == made["state"], made
    return {"callId": made["callId"]}, None


async def failed_call(env: Env) -> Prepared:
    """A call the egress policy blocks (a private address): one that may be replayed."""
    body = call_body(env) | {"request": {"method": "GET", "url": "http://10.0.0.1/"}}
    made = await env.as_admin("POST", "/v1/calls", body)
    assert "blocked" == made["outcome"], made
    return {"callId": made["callId"]}, {"waitSeconds": 10}


async def journey_timeout(env: Env) -> Prepared:
    return {}, {"timeoutSeconds": 5}


async def new_sandbox(env: Env) -> Prepared:
    return {}, {"name": f"box-{next(env.names)}", "type": "development"}


async def new_key(env: Env) -> Prepared:
    return {}, {"role": "viewer"}


async def key_to_revoke(env: Env) -> Prepared:
    made = await env.as_admin("POST", "/v1/keys", {"role": "viewer"})
    return {"keyId": made["keyId"]}, None


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    roles: frozenset[str]
    ok: int
    prepare: Prepare = nothing

    async def prepared(self, env: Env) -> tuple[str, Any]:
        """The path (its fields filled in) and the body of a request, once prepared."""
        fields, body = await self.prepare(env)
        return self.path.format(**fields), body


def config_routes(kind: str, short: str) -> list[Route]:
    item = f"{BASE}/{kind}/{{uid}}"
    edited = {**PAYLOADS[kind], "methods": ["PATCH"]}
    return [
        Route(f"list-{short}", "POST", f"{BASE}/list/{kind}", READ, 200, config(kind, body={})),
        Route(f"get-{short}", "GET", item, READ, 200, config(kind)),
        Route(f"canDeploy-get-{short}", "GET", f"{item}/canDeploy", READ, 200, config(kind)),
        Route(f"canDeploy-post-{short}", "POST", f"{item}/canDeploy", READ, 200, config(kind)),
        Route(f"create-{short}", "POST", f"{BASE}/{kind}", EDIT, 200, creation(kind)),
        Route(f"update-{short}", "PUT", item, EDIT, 200, config(kind, body=edited)),
        Route(f"delete-{short}", "DELETE", f"{item}?forceDelete=true", EDIT, 200,
              config(kind, deployed=True)),
        Route(f"deploy-{short}", "POST", f"{item}/deploy", EDIT, 204, config(kind)),
        Route(f"undeploy-{short}", "POST", f"{item}/undeploy", EDIT, 204,
              config(kind, deployed=True)),
    ]  # fmt: skip


ROUTES = [
    *config_routes("endpointConfigs", "capping"),
    *config_routes("throttlingConfigs", "throttling"),
    Route("make-call", "POST", "/v1/calls", CALL, 200, new_call),
    Route("make-calls", "POST", "/v1/calls:batch", CALL, 200, new_batch),
    Route("get-call", "GET", "/v1/calls/{callId}", CALL, 200, finished_call),
    Route("list-calls", "GET", "/v1/calls", READ | CALL, 200),
    Route("replay-call", "POST", "/v1/calls/{callId}:replay", CALL, 200, failed_call),
    Route("put-journey", "PUT", "/v1/journeys/access", EDIT, 200, journey_timeout),
    Route("get-journey", "GET", "/v1/journeys/access", READ, 200),
    Route("list-journeys", "GET", "/v1/journeys", READ, 200),
    Route("create-sandbox", "POST", "/v1/sandboxes", ADMIN, 201, new_sandbox),
    Route("list-sandboxes", "GET", "/v1/sandboxes", READ, 200),
    Route("report-summary", "GET", "/v1/reports/summary", READ, 200),
    Route("report-timeseries", "GET", "/v1/reports/timeseries?step=1s", READ, 200),
    Route("endpoints", "GET", "/v1/endpoints", READ, 200),
    Route("metrics", "GET", "/metrics", READ, 200),
    Route("list-queues", "GET", "/v1/queues", READ, 200),
    Route("pause-queue", "POST", "/v1/queues/{uid}:pause", EDIT, 200, config("throttlingConfigs")),
    Route("resume-queue", "POST", "/v1/queues/{uid}:resume", EDIT, 200,
          config("throttlingConfigs")),
    Route("purge-queue", "POST", "/v1/queues/{uid}:purge", EDIT, 200, config("throttlingConfigs")),
    Route("create-key", "POST", "/v1/keys", ADMIN, 201, new_key),
    Route("list-keys", "GET", "/v1/keys", ADMIN, 200),
    Route("revoke-key", "DELETE", "/v1/keys/{keyId}", ADMIN, 204, key_to_revoke),
]  # fmt: skip
# /metrics reads only the key (its org is the key's): the org and sandbox headers do not apply.
WITH_HEADERS = [route for route in ROUTES if route.name != "metrics"]
MATRIX = [pytest.param(role, route, id=f"{route.name}-{role}")
          for route in ROUTES for role in ROLES]  # fmt: skip


def by_name(routes: list[Route]) -> list[Any]:
    return [pytest.param(route, id=route.name) for route in routes]


def code(status: int, answer: Any) -> str | None:
    """The error code of an error answer; None for a success."""
    return answer.get("code") if status >= 400 and isinstance(answer, dict) else None


@pytest.mark.parametrize(("role", "route"), MATRIX)
async def test_each_role_is_admitted_or_refused_on_each_route(
    env: Env, role: str, route: Route
) -> None:
    """An admitted role gets the route's success status; any other role 403 FORBIDDEN."""
    path, body = await route.prepared(env)
    status, answer = await env.running.request(route.method, path, env.key(role), body)
    expected = (route.ok, None) if role in route.roles else (403, "FORBIDDEN")
    assert expected == (status, code(status, answer)), answer


ITEM_ROUTES = [
    pytest.param(kind, method, suffix, id=f"{method}-{kind}{suffix}")
    for kind in PAYLOADS
    for method, suffix in [("GET", ""), ("PUT", ""), ("DELETE", "?forceDelete=true"),
                           ("GET", "/canDeploy"), ("POST", "/canDeploy"),
                           ("POST", "/deploy"), ("POST", "/undeploy")]
]  # fmt: skip


@pytest.mark.parametrize(("kind", "method", "suffix"), ITEM_ROUTES)
async def test_another_orgs_config_is_not_found(
    env: Env, kind: str, method: str, suffix: str
) -> None:
    """Org B's admin gets 404 on every route of org A's config uid, which stays as it was."""
    uid = await fresh_config(env, kind)
    body = PAYLOADS[kind] if method == "PUT" else None
    status, _ = await env.running.request(method, f"{BASE}/{kind}/{uid}{suffix}",
                                          env.key(org=ORG_B), body)  # fmt: skip
    got = await env.as_admin("GET", f"{BASE}/{kind}/{uid}")
    assert (404, "created", PAYLOADS[kind]["methods"]) == (
        status, got["result"]["state"], got["result"]["methods"])  # fmt: skip


async def test_another_orgs_call_is_not_found(env: Env) -> None:
    """Org B's admin (and caller) get 404 CALL_NOT_FOUND on org A's call id."""
    fields, _ = await finished_call(env)
    path = f"/v1/calls/{fields['callId']}"
    answers = [await env.running.request("GET", path, env.key(role, ORG_B))
               for role in ("admin", "caller")]  # fmt: skip
    assert [(404, "CALL_NOT_FOUND")] * 2 == [(status, code(status, a)) for status, a in answers]
    assert 200 == (await env.running.request("GET", path, env.key()))[0]


async def text_of(env: Env, path: str, headers: dict[str, str]) -> str:
    async with env.running.http.get(env.running.base + path, headers=headers) as response:
        assert 200 == response.status, await response.text()
        return await response.text()


#: Series of the process, not of an org: every org's scrape shows them alike.
PROCESS_SERIES = ("sluicegate_background_failures", "process_", "python_")


def samples(text: str) -> list[str]:
    """The sample lines of an org's series in a Prometheus text exposition."""
    return [line for line in text.splitlines()
            if line and not line.startswith(("#", *PROCESS_SERIES))]  # fmt: skip


# Each view of an org, and what it shows of the org's activity (empty: nothing).
VIEWS: list[tuple[str, str, Callable[[str], Any]]] = [
    ("list-capping", f"{BASE}/list/endpointConfigs",
     lambda text: [r["uid"] for r in json.loads(text)["results"]]),
    ("list-throttling", f"{BASE}/list/throttlingConfigs",
     lambda text: [r["uid"] for r in json.loads(text)["results"]]),
    ("report-summary", "/v1/reports/summary",
     lambda text: {k: v for k, v in json.loads(text)["outcomes"].items() if v}),
    ("report-timeseries", "/v1/reports/timeseries?step=1s",
     lambda text: json.loads(text)["buckets"]),
    ("endpoints", "/v1/endpoints",
     lambda text: [e["endpoint"] for e in json.loads(text)["results"]]),
    ("metrics", "/metrics", samples),
    ("list-calls", "/v1/calls", lambda text: json.loads(text)["calls"]),
]  # fmt: skip


@pytest.mark.parametrize(("path", "shown"), [pytest.param(p, s, id=n) for n, p, s in VIEWS])
async def test_another_orgs_views_show_nothing_of_it(
    env: Env, path: str, shown: Callable[[str], Any]
) -> None:
    """Org B's lists, reports, endpoints and metrics are empty while org A's are not."""
    await fresh_config(env, "endpointConfigs")
    await fresh_config(env, "throttlingConfigs")
    await finished_call(env)
    await env.running.runtime.calls.written()
    method = "POST" if path.startswith(f"{BASE}/list/") else "GET"
    texts = {}
    for org in (ORG_A, ORG_B):
        async with env.running.http.request(
            method, env.running.base + path, headers=env.key(org=org),
            json={} if method == "POST" else None,
        ) as response:  # fmt: skip
            texts[org] = await response.text()
            assert 200 == response.status, texts[org]
    assert ({ORG_A: True, ORG_B: False}, False) == (
        {org: bool(shown(text)) for org, text in texts.items()},
        ORG_A in texts[ORG_B],
    )


@pytest.mark.parametrize("route", by_name(WITH_HEADERS))
async def test_a_key_is_refused_in_another_org(env: Env, route: Route) -> None:
    """Org A's admin key sent with org B's header is 403 FORBIDDEN."""
    path, body = await route.prepared(env)
    headers = env.key() | {"x-gw-ims-org-id": ORG_B}
    status, answer = await env.running.request(route.method, path, headers, body)
    assert (403, "FORBIDDEN") == (status, code(status, answer))


SANDBOX_ROUTES = [*WITH_HEADERS, Route("metrics", "GET", "/metrics?sandbox=nowhere", READ, 200)]


@pytest.mark.parametrize("route", by_name(SANDBOX_ROUTES))
async def test_an_unknown_sandbox_is_404(env: Env, route: Route) -> None:
    """A sandbox the org does not have is 404 SANDBOX_NOT_FOUND (/metrics: its query)."""
    path, body = await route.prepared(env)
    headers = env.key() | {"x-sandbox-name": "nowhere"}
    status, answer = await env.running.request(route.method, path, headers, body)
    assert (404, "SANDBOX_NOT_FOUND") == (status, code(status, answer))


@pytest.mark.parametrize("route", by_name(ROUTES))
@pytest.mark.parametrize("token", [None, "sg_unknown"], ids=["no-token", "bad-token"])
async def test_no_or_unknown_key_is_401(env: Env, route: Route, token: str | None) -> None:
    """A request without a key, or with an unknown one, is 401 UNAUTHORIZED."""
    path, body = await route.prepared(env)
    headers = {k: v for k, v in env.key().items() if k != "Authorization"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, answer = await env.running.request(route.method, path, headers, body)
    assert (401, "UNAUTHORIZED") == (status, code(status, answer))
