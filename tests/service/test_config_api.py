"""Adobe's Capping and Throttling APIs over HTTP: paths, envelopes, validation codes, access.

Every test runs against the real service (uvicorn on loopback). ``KINDS`` runs a test for
both APIs; the lifecycle and enforcement are in ``test_config_lifecycle.py``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from tests.service.conftest import Running, StartService

BASE = "/journey/orchestration"
URL = "https://api.example.org/data/2.5/*"
# Adobe's examples, ``orgId`` included: scripts send it, it is accepted and ignored.
CAPPING = {"url": URL, "methods": ["GET"], "orgId": "<IMS Org Id>", "services": {"dataSource": {
    "maxHttpConnections": 50, "rating": {"maxCallsCount": 500, "periodInMs": 1000}}}}  # fmt: skip
THROTTLING = {"name": "example", "urlPattern": URL, "methods": ["POST", "PUT"],
              "maxThroughput": 4000, "orgId": "<IMS Org Id>"}  # fmt: skip
KINDS = [
    pytest.param("endpointConfigs", CAPPING, id="capping"),
    pytest.param("throttlingConfigs", THROTTLING, id="throttling"),
]


async def create(running: Running, headers: dict[str, str], path: str, payload: Any) -> str:
    """The uid of a config created through the API (asserting it was)."""
    status, body = await running.request("POST", f"{BASE}/{path}", headers, payload)
    assert 200 == status, body
    uid: str = body["uid"]
    return uid


def capping(**rating: int) -> dict[str, Any]:
    """A valid capping payload for custom actions, with ``rating`` overrides."""
    limits = {"maxHttpConnections": 10,
              "rating": {"maxCallsCount": 5, "periodInMs": 1000, **rating}}  # fmt: skip
    return {"url": URL, "methods": ["GET"], "services": {"action": limits}}


@pytest.mark.parametrize(("path", "payload"), KINDS)
async def test_create_answers_the_created_envelope(
    start_service: StartService, path: str, payload: dict[str, Any]
) -> None:
    """POST /{kind} answers 200 {createdElement, uid, uri, resStatus: created, canDeploy}."""
    running = await start_service()
    status, body = await running.request("POST", f"{BASE}/{path}", await running.key(), payload)
    uid = body["uid"]
    element = body["createdElement"]
    assert 200 == status
    assert ["canDeploy", "createdElement", "resStatus", "uid", "uri"] == sorted(body)
    assert (f"/voyager/apis/{path}/{uid}", "created") == (body["uri"], body["resStatus"])
    assert {"validationStatus": "ok", "errors": [], "warnings": []} == body["canDeploy"]
    assert (uid, uid, "acme", "prod", "1.0") == (element["uid"], element["_id"],
        element["orgId"], element["sandboxName"], element["authoringFormatVersion"])  # fmt: skip
    assert ("created", False, None) == (element["state"], element["hasBeenDeployed"],
                                        element.get("deployedConfig"))  # fmt: skip
    assert {k: v for k, v in payload.items() if k != "orgId"} == {
        k: element[k] for k in payload if k != "orgId"
    }


@pytest.mark.parametrize(("path", "payload"), KINDS)
async def test_list_get_and_can_deploy(
    start_service: StartService, path: str, payload: dict[str, Any]
) -> None:
    """List (with `{}` or no body), GET and canDeploy (GET and POST) show the same config."""
    running = await start_service()
    headers = await running.key()
    uid = await create(running, headers, path, payload)
    _, got = await running.request("GET", f"{BASE}/{path}/{uid}", headers)
    assert (200, {"results": [got["result"]]}) == await running.request(
        "POST", f"{BASE}/list/{path}", headers, {}
    )
    assert (200, {"results": [got["result"]]}) == await running.request(
        "POST", f"{BASE}/list/{path}", headers
    )
    expected = {"canDeploy": {"validationStatus": "ok", "errors": [], "warnings": []}}
    for method in ("GET", "POST"):
        assert (200, expected) == await running.request(
            method, f"{BASE}/{path}/{uid}/canDeploy", headers)  # fmt: skip


@pytest.mark.parametrize(("path", "payload"), KINDS)
async def test_update_answers_the_updated_envelope(
    start_service: StartService, path: str, payload: dict[str, Any]
) -> None:
    """PUT /{kind}/{uid} overwrites and answers {updatedElement, ..., resStatus: updated}."""
    running = await start_service()
    headers = await running.key()
    uid = await create(running, headers, path, payload)
    edited = {**payload, "methods": ["PATCH"]}
    status, body = await running.request("PUT", f"{BASE}/{path}/{uid}", headers, edited)
    assert 200 == status
    assert ["canDeploy", "resStatus", "uid", "updatedElement", "uri"] == sorted(body)
    assert (uid, "updated", "updated", ["PATCH"]) == (body["uid"], body["resStatus"],
        body["updatedElement"]["state"], body["updatedElement"]["methods"])  # fmt: skip


@pytest.mark.parametrize(("path", "payload"), KINDS)
async def test_deploy_undeploy_and_delete(
    start_service: StartService, path: str, payload: dict[str, Any]
) -> None:
    """Deploy/undeploy answer 204 (undeploy even when not deployed); delete 200 {}, then 404."""
    running = await start_service()
    headers = await running.key()
    uid = await create(running, headers, path, payload)
    item = f"{BASE}/{path}/{uid}"
    assert (204, None) == await running.request("POST", f"{item}/deploy", headers)
    _, got = await running.request("GET", item, headers)
    assert ("deployed", True) == (got["result"]["state"], got["result"]["hasBeenDeployed"])
    assert (204, None) == await running.request("POST", f"{item}/undeploy", headers)
    assert (204, None) == await running.request("POST", f"{item}/undeploy", headers)
    _, got = await running.request("GET", item, headers)
    assert ("created", False) == (got["result"]["state"], got["result"]["hasBeenDeployed"])
    assert (200, {}) == await running.request("DELETE", f"{item}?forceDelete=false", headers)
    assert 404 == (await running.request("GET", item, headers))[0]


@pytest.mark.parametrize(("path", "payload"), KINDS)
async def test_unknown_uid_is_404_on_every_route(
    start_service: StartService, path: str, payload: dict[str, Any]
) -> None:
    """Every route on a uid that does not exist answers 404 with Adobe's envelope."""
    running = await start_service()
    headers = await running.key()
    item = f"{BASE}/{path}/no-such-uid"
    for method, route, body in [("GET", item, None), ("PUT", item, payload),
                                ("DELETE", item, None), ("GET", f"{item}/canDeploy", None),
                                ("POST", f"{item}/canDeploy", None),
                                ("POST", f"{item}/deploy", None),
                                ("POST", f"{item}/undeploy", None)]:  # fmt: skip
        status, answer = await running.request(method, route, headers, body)
        assert (404, 404, 14467) == (status, answer["status"], answer["error"]["code"]), route


CAPPING_ERRORS = [
    ({k: v for k, v in capping().items() if k != "url"}, "ERR_ENDPOINTCONFIG_100"),
    ({**capping(), "url": "ftp://api.example.org/x"}, "ERR_ENDPOINTCONFIG_101"),
    ({**capping(), "url": "https://api.*.org/x"}, "ERR_ENDPOINTCONFIG_102"),
    ({**capping(), "url": "https://api.example.org:8*/x"}, "ERR_ENDPOINTCONFIG_102"),
    ({**capping(), "methods": []}, "ERR_ENDPOINTCONFIG_103"),
    ({**capping(), "services": {"action": {"maxHttpConnections": 1}}}, "ERR_ENDPOINTCONFIG_104"),
    (capping(maxCallsCount=0), "ERR_ENDPOINTCONFIG_107"),
    (capping(periodInMs=0), "ERR_ENDPOINTCONFIG_108"),
    ({**capping(), "color": "red"}, "ERR_ENDPOINTCONFIG_111"),
    ([capping()], "ERR_ENDPOINTCONFIG_112"),
    ({**capping(), "services": {"email": capping()["services"]["action"]}},
     "ERR_AUTHORING_ENDPOINTCONFIG_1"),
]  # fmt: skip
THROTTLING_ERRORS = [
    ({"methods": ["POST"], "maxThroughput": 300}, "ERR_THROTTLING_CONFIG_100"),
    ({"urlPattern": URL, "methods": ["POST"]}, "ERR_THROTTLING_CONFIG_100"),
    ({"urlPattern": URL, "methods": ["POST"], "maxThroughput": 199}, "ERR_THROTTLING_CONFIG_101"),
    ({"urlPattern": URL, "methods": ["POST"], "maxThroughput": 5001}, "ERR_THROTTLING_CONFIG_101"),
    ({"urlPattern": "not a url", "methods": ["POST"], "maxThroughput": 300},
     "ERR_THROTTLING_CONFIG_104"),
    ({"urlPattern": "https://*.example.org/x", "methods": ["POST"], "maxThroughput": 300},
     "ERR_THROTTLING_CONFIG_105"),
    ({**THROTTLING, "color": "red"}, "ERR_THROTTLING_CONFIG_106"),
    ("urlPattern", "ERR_THROTTLING_CONFIG_106"),
]  # fmt: skip
CASES = [pytest.param("endpointConfigs", payload, code, id=f"{code}-{n}")
         for n, (payload, code) in enumerate(CAPPING_ERRORS)] + [
         pytest.param("throttlingConfigs", payload, code, id=f"{code}-{n}")
         for n, (payload, code) in enumerate(THROTTLING_ERRORS)]  # fmt: skip


@pytest.mark.parametrize(("path", "payload", "code"), CASES)
async def test_invalid_payload_is_400_with_adobes_code(
    start_service: StartService, path: str, payload: Any, code: str
) -> None:
    """An invalid payload answers 400 with its Adobe code, on create and on update."""
    running = await start_service()
    headers = await running.key()
    uid = await create(running, headers, path, CAPPING if path == "endpointConfigs" else THROTTLING)
    for method, route in (("POST", f"{BASE}/{path}"), ("PUT", f"{BASE}/{path}/{uid}")):
        status, body = await running.request(method, route, headers, payload)
        assert (400, code, code, "INPUT_OUTPUT_ERROR", [code]) == (
            status, body["code"], body["error"]["code"], body["error"]["family"],
            [error["errorCode"] for error in body["errors"]])  # fmt: skip


@pytest.mark.parametrize(
    ("path", "code"),
    [("endpointConfigs", "ERR_ENDPOINTCONFIG_112"),
     ("throttlingConfigs", "ERR_THROTTLING_CONFIG_106")],
)  # fmt: skip
async def test_a_body_that_is_not_json_is_400(
    start_service: StartService, path: str, code: str
) -> None:
    """A body that is not JSON, or no body, answers 400 with the kind's 'JSON expected' code."""
    running = await start_service()
    headers = await running.key() | {"Content-Type": "application/json"}
    for data in (b"{not json", b"\xff\xfe\x00", b"[" * 100_000, b""):
        status, body = await running.request("POST", f"{BASE}/{path}", headers, data=data)
        assert (400, code) == (status, body["code"])


async def test_missing_connection_limit_is_warning_106(start_service: StartService) -> None:
    """A capping payload without maxHttpConnections is valid, with warning 106 in canDeploy."""
    running = await start_service()
    headers = await running.key()
    payload = capping()
    del payload["services"]["action"]["maxHttpConnections"]
    status, body = await running.request("POST", f"{BASE}/endpointConfigs", headers, payload)
    expected = {"validationStatus": "ok", "errors": [], "warnings": [{
        "warningCode": "ERR_ENDPOINTCONFIG_106",
        "warning": "capping config: max HTTP connections not defined: no limitation by default",
        "scope": {"endpointConfigService": "action", "endpointConfigUrl": URL}}]}  # fmt: skip
    assert (200, expected) == (status, body["canDeploy"])
    _, checked = await running.request("GET", f"{BASE}/endpointConfigs/{body['uid']}/canDeploy",
                                       headers)  # fmt: skip
    assert {"canDeploy": expected} == checked


@pytest.mark.parametrize(("path", "payload"), KINDS)
async def test_option_and_options_are_accepted(
    start_service: StartService, path: str, payload: dict[str, Any]
) -> None:
    """Adobe's `OPTION` and the HTTP name `OPTIONS` are both accepted, stored as OPTIONS."""
    running = await start_service()
    body = {**payload, "methods": ["OPTION", "options", "GET"]}
    status, made = await running.request("POST", f"{BASE}/{path}", await running.key(), body)
    assert (200, ["GET", "OPTIONS"]) == (status, made["createdElement"]["methods"])


async def test_integral_numbers_are_integers(start_service: StartService) -> None:
    """Integral JSON numbers (`5.0`, `5e0`) are integers; `5.5` is refused."""
    running = await start_service()
    headers = await running.key()
    found = []
    for count in ("5.0", "5e0", "5.5"):
        data = json.dumps(capping()).replace('"maxCallsCount": 5', f'"maxCallsCount": {count}')
        status, body = await running.request("POST", f"{BASE}/endpointConfigs", headers,
                                             data=data.encode())  # fmt: skip
        element = body.get("createdElement", {"services": {"action": {"rating": {}}}})
        found.append((status, element["services"]["action"]["rating"].get("maxCallsCount")))
    assert [(200, 5), (200, 5), (400, None)] == found


async def test_unsupported_method_is_405_with_allow(start_service: StartService) -> None:
    """A method a route does not serve answers 405 with its Allow header, in Adobe's envelope."""
    running = await start_service()
    headers = await running.key()
    async with running.http.patch(f"{running.base}{BASE}/endpointConfigs/x", headers=headers) as r:
        body = await r.json()
        assert (405, "METHOD_NOT_ALLOWED") == (r.status, body["error"]["code"])
        assert {"DELETE", "GET", "PUT"} == {m.strip() for m in r.headers["Allow"].split(",")}


@pytest.mark.parametrize(("path", "payload"), KINDS)
async def test_nothing_crosses_orgs_or_sandboxes(
    start_service: StartService, path: str, payload: dict[str, Any]
) -> None:
    """A config of one org and sandbox is invisible (404, not listed) to any other."""
    running = await start_service()
    acme = await running.key("acme")
    uid = await create(running, acme, path, {**payload, "orgId": "globex"})
    await running.request("POST", "/v1/sandboxes", acme, {"name": "other", "type": "production"})
    for other in (await running.key("globex"), await running.key("acme", sandbox="other")):
        assert (200, {"results": []}) == await running.request(
            "POST", f"{BASE}/list/{path}", other, {})  # fmt: skip
        for method, route in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/deploy")):
            status, _ = await running.request(method, f"{BASE}/{path}/{uid}{route}", other, payload)
            assert 404 == status, (method, route)
    _, got = await running.request("GET", f"{BASE}/{path}/{uid}", acme)
    assert ("acme", "created") == (got["result"]["orgId"], got["result"]["state"])


async def test_roles_and_headers(start_service: StartService) -> None:
    """Viewers read only, callers nothing; bad sandbox 404, missing header 400."""
    running = await start_service()
    uid = await create(running, await running.key(), "endpointConfigs", CAPPING)
    viewer = await running.key(role="viewer")
    assert 200 == (await running.request("GET", f"{BASE}/endpointConfigs/{uid}", viewer))[0]
    status, body = await running.request("POST", f"{BASE}/endpointConfigs", viewer, CAPPING)
    assert (403, "FORBIDDEN") == (status, body["error"]["code"])
    assert 403 == (await running.request("POST", f"{BASE}/endpointConfigs/{uid}/deploy",
                                         viewer))[0]  # fmt: skip
    caller = await running.key(role="caller")
    assert 403 == (await running.request("POST", f"{BASE}/list/endpointConfigs", caller))[0]
    nowhere = await running.key(sandbox="nowhere")
    status, body = await running.request("POST", f"{BASE}/list/endpointConfigs", nowhere)
    assert (404, "SANDBOX_NOT_FOUND") == (status, body["error"]["code"])
    headless = {k: v for k, v in viewer.items() if k != "x-sandbox-name"}
    status, body = await running.request("POST", f"{BASE}/list/endpointConfigs", headless)
    assert (400, "INVALID_REQUEST") == (status, body["error"]["code"])


async def test_metadata_names_the_role_and_key(start_service: StartService) -> None:
    """createdBy / lastModifiedBy / lastDeployedBy read '<role> key <sha256 prefix>'."""
    running = await start_service()
    editor = await running.key(role="editor")
    admin = await running.key(role="admin")
    uid = await create(running, editor, "endpointConfigs", CAPPING)
    await running.request("POST", f"{BASE}/endpointConfigs/{uid}/deploy", admin)
    _, got = await running.request("GET", f"{BASE}/endpointConfigs/{uid}", editor)

    def by(role: str, headers: dict[str, str]) -> str:
        token = headers["Authorization"].removeprefix("Bearer ")
        return f"{role} key {hashlib.sha256(token.encode()).hexdigest()[:12]}"

    metadata = got["result"]["metadata"]
    assert (by("editor", editor), by("editor", editor), by("admin", admin)) == (
        metadata["createdBy"], metadata["lastModifiedBy"], metadata["lastDeployedBy"])  # fmt: skip


async def test_openapi_documents_every_route(start_service: StartService) -> None:
    """The OpenAPI lists every route of both kinds, with the 409 of a delete documented."""
    running = await start_service()
    _, spec = await running.request("GET", "/openapi.json", {})
    found = {(method.upper(), path.removeprefix(BASE)) for path, item in spec["paths"].items()
             if path.startswith(BASE) for method in item}  # fmt: skip
    expected = set()
    for kind in ("endpointConfigs", "throttlingConfigs"):
        item = f"/{kind}/{{uid}}"
        expected |= {("POST", f"/list/{kind}"), ("POST", f"/{kind}"), ("GET", item),
                     ("PUT", item), ("DELETE", item), ("GET", f"{item}/canDeploy"),
                     ("POST", f"{item}/canDeploy"), ("POST", f"{item}/deploy"),
                     ("POST", f"{item}/undeploy")}  # fmt: skip
        assert "409" in spec["paths"][f"{BASE}{item}"]["delete"]["responses"]
    assert expected == found
