"""Validation of capping and throttling payloads: Adobe's codes, all errors at once."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.call import Service
from sluicegate.errors import InvalidConfig
from sluicegate.rules import (
    CappingRule,
    Rating,
    ServiceLimit,
    ThrottlingRule,
    parse_capping,
    parse_throttling,
    validate_capping,
    validate_throttling,
)
from sluicegate.validation import Issue, Validation

URL = "https://api.example.org/data/2.5/*"


def capping(**changes: Any) -> dict[str, Any]:
    """A valid capping payload, with ``changes`` applied (``None`` removes a field)."""
    payload: dict[str, Any] = {
        "url": URL,
        "methods": ["GET"],
        "services": {
            "dataSource": {
                "maxHttpConnections": 50,
                "rating": {"maxCallsCount": 500, "periodInMs": 1000},
            }
        },
    }
    payload.update(changes)
    return {key: value for key, value in payload.items() if value is not None}


def service(**changes: Any) -> dict[str, Any]:
    """A capping payload whose one action entry is ``changes``."""
    return capping(services={"action": changes})


def throttling(**changes: Any) -> dict[str, Any]:
    """A valid throttling payload, with ``changes`` applied (``None`` removes a field)."""
    payload: dict[str, Any] = {"urlPattern": URL, "methods": ["POST"], "maxThroughput": 4000}
    payload.update(changes)
    return {key: value for key, value in payload.items() if value is not None}


def capping_codes(payload: Any) -> list[str]:
    return [issue.code for issue in validate_capping(payload).errors]


def throttling_codes(payload: Any) -> list[str]:
    return [issue.code for issue in validate_throttling(payload).errors]


RATING = {"maxCallsCount": 10, "periodInMs": 1000}


def test_valid_capping_parses_to_rule() -> None:
    """A valid capping payload becomes a rule with its rating and connection limit."""
    expected = CappingRule(
        url=URL,
        methods=frozenset({"GET"}),
        services={
            Service.DATA_SOURCE: ServiceLimit(
                rating=Rating(max_calls_count=500, period_ms=1000), max_http_connections=50
            )
        },
    )

    assert expected == parse_capping(capping())
    assert Validation() == validate_capping(capping())


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("not an object", "ERR_ENDPOINTCONFIG_112"),
        ([capping()], "ERR_ENDPOINTCONFIG_112"),
        (None, "ERR_ENDPOINTCONFIG_112"),
        (capping(url=None), "ERR_ENDPOINTCONFIG_100"),
        (capping(url=""), "ERR_ENDPOINTCONFIG_100"),
        (capping(url=42), "ERR_ENDPOINTCONFIG_100"),
        (capping(url="ftp://api.example.org/x"), "ERR_ENDPOINTCONFIG_101"),
        (capping(url="api.example.org/x"), "ERR_ENDPOINTCONFIG_101"),
        (capping(url="https:///x"), "ERR_ENDPOINTCONFIG_101"),
        (capping(url="https://api.example.org:99999/x"), "ERR_ENDPOINTCONFIG_101"),
        (capping(url="https://user:secret@api.example.org/x"), "ERR_ENDPOINTCONFIG_101"),
        (capping(url="https://api.example.org/" + "x" * 2048), "ERR_ENDPOINTCONFIG_101"),
        (capping(url="https://api.example*.org/x"), "ERR_ENDPOINTCONFIG_102"),
        (capping(url="https://api.example.org:8*0/x"), "ERR_ENDPOINTCONFIG_102"),
        (capping(url="https://*/x"), "ERR_ENDPOINTCONFIG_102"),
        (capping(methods=None), "ERR_ENDPOINTCONFIG_103"),
        (capping(methods=[]), "ERR_ENDPOINTCONFIG_103"),
        (capping(methods="GET"), "ERR_ENDPOINTCONFIG_103"),
        (capping(methods=["FETCH"]), "ERR_ENDPOINTCONFIG_103"),
        (capping(methods=["HEAD"]), "ERR_ENDPOINTCONFIG_103"),
        (capping(methods=[7]), "ERR_ENDPOINTCONFIG_103"),
        (service(maxHttpConnections=5), "ERR_ENDPOINTCONFIG_104"),
        (service(rating="fast"), "ERR_ENDPOINTCONFIG_104"),
        (service(rating={"periodInMs": 1000}), "ERR_ENDPOINTCONFIG_107"),
        (service(rating={"maxCallsCount": 0, "periodInMs": 1000}), "ERR_ENDPOINTCONFIG_107"),
        (service(rating={"maxCallsCount": "5", "periodInMs": 1000}), "ERR_ENDPOINTCONFIG_107"),
        (service(rating={"maxCallsCount": True, "periodInMs": 1000}), "ERR_ENDPOINTCONFIG_107"),
        (service(rating={"maxCallsCount": 5}), "ERR_ENDPOINTCONFIG_108"),
        (service(rating={"maxCallsCount": 5, "periodInMs": 0}), "ERR_ENDPOINTCONFIG_108"),
        (service(rating={"maxCallsCount": 5, "periodInMs": 1.5}), "ERR_ENDPOINTCONFIG_108"),
        # Too large for a 64-bit integer: it would fail every journal write it is part of.
        (service(rating={"maxCallsCount": 2**63, "periodInMs": 1000}), "ERR_ENDPOINTCONFIG_107"),
        (service(rating={"maxCallsCount": 5, "periodInMs": 2**63}), "ERR_ENDPOINTCONFIG_108"),
        (service(rating={"maxCallsCount": 5, "periodInMs": 86_400_001}), "ERR_ENDPOINTCONFIG_108"),
        (capping(services=None), "ERR_ENDPOINTCONFIG_111"),
        (capping(services={}), "ERR_ENDPOINTCONFIG_111"),
        (capping(services=["action"]), "ERR_ENDPOINTCONFIG_111"),
        (capping(services={"action": 5}), "ERR_ENDPOINTCONFIG_111"),
        (capping(colour="blue"), "ERR_ENDPOINTCONFIG_111"),
        (service(rating=RATING, maxHttpConnections=0), "ERR_ENDPOINTCONFIG_111"),
        (service(rating=RATING, maxHttpConnections=401), "ERR_ENDPOINTCONFIG_111"),
        (service(rating=RATING, maxHttpConnections="9"), "ERR_ENDPOINTCONFIG_111"),
        (service(rating=RATING, burst=3), "ERR_ENDPOINTCONFIG_111"),
        (capping(services={"email": {"rating": RATING}}), "ERR_AUTHORING_ENDPOINTCONFIG_1"),
    ],
)
def test_capping_error_codes(payload: Any, code: str) -> None:
    """Each kind of bad capping payload yields its own Adobe error code, and no rule."""
    assert [code] == capping_codes(payload)
    with pytest.raises(InvalidConfig) as raised:
        parse_capping(payload)

    assert code == raised.value.code


def test_missing_connection_limit_warns_per_service() -> None:
    """Warning 106 is given once per service without maxHttpConnections; it does not block."""
    payload = capping(services={"action": {"rating": RATING}, "dataSource": {"rating": RATING}})
    validation = validate_capping(payload)
    message = "capping config: max HTTP connections not defined: no limitation by default"
    expected = tuple(
        Issue(code="ERR_ENDPOINTCONFIG_106", message=message, service=name, url=URL)
        for name in ("action", "dataSource")
    )

    assert expected == validation.warnings
    assert validation.ok
    assert None is parse_capping(payload).services[Service.ACTION].max_http_connections


@pytest.mark.parametrize("spelling", ["OPTION", "OPTIONS", "option"])
def test_option_and_options_are_accepted(spelling: str) -> None:
    """Adobe's OPTION and the HTTP spelling OPTIONS both mean OPTIONS."""
    assert frozenset({"OPTIONS"}) == parse_capping(capping(methods=[spelling])).methods
    assert frozenset({"OPTIONS"}) == parse_throttling(throttling(methods=[spelling])).methods


def test_all_errors_are_reported_at_once() -> None:
    """A payload with several faults gets every error code, in payload order."""
    payload = {
        "url": "https://api.*.org/x",
        "methods": [],
        "services": {
            "email": {"rating": RATING},
            "action": {"rating": {"maxCallsCount": 0, "periodInMs": -1}},
        },
    }
    expected = [
        "ERR_ENDPOINTCONFIG_102",
        "ERR_ENDPOINTCONFIG_103",
        "ERR_AUTHORING_ENDPOINTCONFIG_1",
        "ERR_ENDPOINTCONFIG_107",
        "ERR_ENDPOINTCONFIG_108",
    ]

    assert expected == capping_codes(payload)
    with pytest.raises(InvalidConfig) as raised:
        parse_capping(payload)

    assert expected == [detail["errorCode"] for detail in raised.value.details]


def test_org_id_and_element_fields_are_ignored() -> None:
    """orgId and the fields a GET returns are accepted in a body and dropped from the payload."""
    element = {
        **capping(),
        "orgId": "someone-else",
        "uid": "x",
        "state": "deployed",
        "metadata": {},
    }

    assert capping() == parse_capping(element).to_json()


def test_valid_throttling_parses_to_rule() -> None:
    """A valid throttling payload becomes a rule; name and description are optional text."""
    expected = ThrottlingRule(
        name="n", url_pattern=URL, methods=frozenset({"POST"}), max_throughput=4000
    )

    assert expected == parse_throttling(throttling(name="n"))
    assert Validation() == validate_throttling(throttling())


@pytest.mark.parametrize("throughput", [200, 5000])
def test_throughput_bounds_are_inclusive(throughput: int) -> None:
    """maxThroughput 200 and 5000 are both allowed."""
    assert throughput == parse_throttling(throttling(maxThroughput=throughput)).max_throughput


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (throttling(urlPattern=None), "ERR_THROTTLING_CONFIG_100", "urlPattern required"),
        (throttling(methods=None), "ERR_THROTTLING_CONFIG_100", "methods required"),
        (throttling(methods=[]), "ERR_THROTTLING_CONFIG_100", "methods required"),
        (throttling(maxThroughput=None), "ERR_THROTTLING_CONFIG_100", "maxThroughput required"),
        (throttling(maxThroughput=199), "ERR_THROTTLING_CONFIG_101", None),
        (throttling(maxThroughput=5001), "ERR_THROTTLING_CONFIG_101", None),
        (throttling(maxThroughput="300"), "ERR_THROTTLING_CONFIG_101", None),
        (throttling(maxThroughput=300.0), "ERR_THROTTLING_CONFIG_101", None),
        (throttling(urlPattern="not a url"), "ERR_THROTTLING_CONFIG_104", None),
        (throttling(urlPattern="ftp://api.example.org/*"), "ERR_THROTTLING_CONFIG_104", None),
        (throttling(urlPattern="https://*.example.org/x"), "ERR_THROTTLING_CONFIG_105", None),
        ("not an object", "ERR_THROTTLING_CONFIG_106", None),
        ([], "ERR_THROTTLING_CONFIG_106", None),
        (throttling(methods=["FETCH"]), "ERR_THROTTLING_CONFIG_106", None),
        (throttling(urlPattern=5), "ERR_THROTTLING_CONFIG_106", None),
        (throttling(name=5), "ERR_THROTTLING_CONFIG_106", None),
        (throttling(name="n" * 257), "ERR_THROTTLING_CONFIG_106", None),
        (throttling(description="d" * 4097), "ERR_THROTTLING_CONFIG_106", None),
        (
            throttling(urlPattern="https://api.example.org/" + "x" * 2048),
            "ERR_THROTTLING_CONFIG_104",
            None,
        ),
        (throttling(rate=5), "ERR_THROTTLING_CONFIG_106", None),
    ],
)
def test_throttling_error_codes(payload: Any, code: str, message: str | None) -> None:
    """Each kind of bad throttling payload yields its own Adobe error code."""
    errors = validate_throttling(payload).errors

    assert [code] == [error.code for error in errors]
    if message is not None:
        assert f"throttling config: {message}" == errors[0].message
    with pytest.raises(InvalidConfig):
        parse_throttling(payload)


def test_throttling_reports_every_missing_attribute() -> None:
    """An empty throttling payload names each of its three mandatory attributes."""
    expected = ["ERR_THROTTLING_CONFIG_100"] * 3

    assert expected == throttling_codes({})


def test_validation_json_with_errors_is_adobe_can_deploy() -> None:
    """An error validation reads like Adobe's canDeploy, with reason and warning scope."""
    payload = capping(
        url="https://api.example*.org:8*0/data/2.5/weather",
        services={"dataSource": {"rating": RATING}},
    )
    expected = {
        "validationStatus": "error",
        "reason": "1 error is currently blocking the publication",
        "errors": [
            {
                "errorCode": "ERR_ENDPOINTCONFIG_102",
                "error": "capping config: wildchar in url not allowed in host:port",
            }
        ],
        "warnings": [
            {
                "warningCode": "ERR_ENDPOINTCONFIG_106",
                "warning": (
                    "capping config: max HTTP connections not defined: no limitation by default"
                ),
                "scope": {
                    "endpointConfigService": "dataSource",
                    "endpointConfigUrl": "https://api.example*.org:8*0/data/2.5/weather",
                },
            }
        ],
    }

    assert expected == validate_capping(payload).to_json()


def test_validation_json_counts_errors_in_reason() -> None:
    """Several errors are counted in the plural; an ok validation has no reason."""
    reason = validate_capping(capping(url=None, methods=None)).to_json()["reason"]

    assert "2 errors are currently blocking the publication" == reason
    assert {"validationStatus": "ok", "errors": [], "warnings": []} == Validation().to_json()
