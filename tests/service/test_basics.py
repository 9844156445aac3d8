"""The service answers, with its OpenAPI, and refuses what it must."""

from __future__ import annotations

from tests.service.conftest import StartService


async def test_openapi_is_served(start_service: StartService) -> None:
    """OpenAPI 3 is at /openapi.json and interactive docs at /docs."""
    running = await start_service()
    status, spec = await running.request("GET", "/openapi.json", {})
    assert 200 == status
    assert spec["openapi"].startswith("3.")
    status, _ = await running.request("GET", "/docs", {})
    assert 200 == status


async def test_unknown_key_is_401(start_service: StartService) -> None:
    """A missing or unknown key answers 401 with a code and a message."""
    running = await start_service()
    headers = {"x-gw-ims-org-id": "acme", "x-sandbox-name": "prod"}
    assert (401, "UNAUTHORIZED") == (
        (await running.request("GET", "/v1/sandboxes", headers))[0],
        (await running.request("GET", "/v1/sandboxes", headers))[1]["code"],
    )
    status, body = await running.request(
        "GET", "/v1/sandboxes", headers | {"Authorization": "Bearer sg_nope"}
    )
    assert (401, "unknown API key") == (status, body["message"])


async def test_sandboxes_and_journeys(start_service: StartService) -> None:
    """An org starts with prod; an admin adds sandboxes; journeys default to 30 s."""
    running = await start_service()
    admin = await running.key()
    status, made = await running.request("POST", "/v1/sandboxes", admin,
                                         {"name": "dev", "type": "development"})  # fmt: skip
    assert (201, {"name": "dev", "type": "development"}) == (status, made)
    status, listed = await running.request("GET", "/v1/sandboxes", admin)
    assert ["prod", "dev"] == [s["name"] for s in listed["results"]]
    assert 409 == (await running.request("POST", "/v1/sandboxes", admin,
                                         {"name": "dev", "type": "development"}))[0]  # fmt: skip
    assert (200, 30) == (
        (await running.request("GET", "/v1/journeys/j1", admin))[0],
        (await running.request("GET", "/v1/journeys/j1", admin))[1]["timeoutSeconds"],
    )
    await running.request("PUT", "/v1/journeys/j1", admin, {"timeoutSeconds": 5})
    assert 5 == (await running.request("GET", "/v1/journeys/j1", admin))[1]["timeoutSeconds"]
    status, body = await running.request("PUT", "/v1/journeys/j1", admin, {"timeoutSeconds": 31})
    assert (400, "INVALID_REQUEST") == (status, body["code"])
    # 7.0 is an integer to JSON Schema (and to the OpenAPI document); 7.5 is not.
    status, body = await running.request("PUT", "/v1/journeys/j1", admin, {"timeoutSeconds": 7.0})
    assert (200, 7) == (status, body["timeoutSeconds"])
    status, body = await running.request("PUT", "/v1/journeys/j1", admin, {"timeoutSeconds": 7.5})
    assert (400, "INVALID_REQUEST") == (status, body["code"])
