"""``GET /v1/journeys``: every journey declared in the org and sandbox, and nothing else."""

from __future__ import annotations

from tests.service.conftest import StartService


async def test_lists_the_declared_journeys_of_the_sandbox_by_id(
    start_service: StartService,
) -> None:
    """Declared journeys, sorted by id (code point order), with their timeouts; none of
    another sandbox or another org; a journey only read (default 30 s) is not listed."""
    running = await start_service()
    admin = await running.key("acme")
    await running.request("POST", "/v1/sandboxes", admin, {"name": "dev", "type": "development"})
    for journey, seconds in (("b", 5), ("A", 7), ("a", 30)):
        status, _ = await running.request("PUT", f"/v1/journeys/{journey}", admin,
                                          {"timeoutSeconds": seconds})  # fmt: skip
        assert 200 == status
    await running.request("PUT", "/v1/journeys/elsewhere", admin | {"x-sandbox-name": "dev"},
                          {"timeoutSeconds": 3})  # fmt: skip
    other = await running.key("globex")
    await running.request("PUT", "/v1/journeys/theirs", other, {"timeoutSeconds": 4})
    await running.request("GET", "/v1/journeys/only-read", admin)

    viewer = await running.key("acme", "viewer")
    status, body = await running.request("GET", "/v1/journeys", viewer)
    assert (200, [("A", 7), ("a", 30), ("b", 5)]) == (
        status, [(j["journeyId"], j["timeoutSeconds"]) for j in body["results"]])  # fmt: skip
    status, body = await running.request("GET", "/v1/journeys", admin | {"x-sandbox-name": "dev"})
    assert (200, [{"journeyId": "elsewhere", "timeoutSeconds": 3}]) == (status, body["results"])
    status, body = await running.request("GET", "/v1/journeys", await running.key("initech"))
    assert (200, {"results": []}) == (status, body)


async def test_a_caller_may_not_list_journeys(start_service: StartService) -> None:
    """Listing is a read of rules: a caller key gets 403 FORBIDDEN in the error model."""
    running = await start_service()
    status, body = await running.request("GET", "/v1/journeys", await running.key(role="caller"))
    assert (403, 403, "FORBIDDEN") == (status, body["status"], body["code"])


async def test_the_listing_is_in_the_openapi(start_service: StartService) -> None:
    """/openapi.json documents GET /v1/journeys with its list of journeys."""
    running = await start_service()
    _, spec = await running.request("GET", "/openapi.json", {})
    operation = spec["paths"]["/v1/journeys"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ("#/components/schemas/JourneyList", ["results"]) == (
        schema["$ref"], spec["components"]["schemas"]["JourneyList"]["required"])  # fmt: skip
    assert {"401", "403"} <= set(operation["responses"])
