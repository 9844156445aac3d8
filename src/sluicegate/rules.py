"""Capping and throttling rules: the values the engine enforces, and how a payload becomes one.

A payload (the JSON body of Adobe's ``endpointConfigs`` or ``throttlingConfigs`` API) is
checked as a whole: :func:`validate_capping` and :func:`validate_throttling` report every
error and warning at once, with Adobe's codes. :func:`parse_capping` and
:func:`parse_throttling` turn a valid payload into a rule and raise
:class:`~sluicegate.errors.InvalidConfig` otherwise. A rule's ``to_json()`` is the
normalized payload that is stored and shown: methods upper-case (``OPTION`` read as
``OPTIONS``), ``orgId`` dropped (the org comes from the caller, never from the body).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluicegate.call import Service
from sluicegate.errors import InvalidConfig
from sluicegate.validation import (
    ELEMENT_FIELDS,
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    Findings,
    Issue,
    Validation,
    WildcardInHost,
    check_methods,
    is_int,
    split_pattern,
)

__all__ = [
    "MAX_CALLS_COUNT",
    "MAX_HTTP_CONNECTIONS",
    "MAX_PERIOD_MS",
    "MAX_THROUGHPUT",
    "MIN_THROUGHPUT",
    "CappingRule",
    "Issue",
    "Rating",
    "ServiceLimit",
    "ThrottlingRule",
    "Validation",
    "parse_capping",
    "parse_throttling",
    "validate_capping",
    "validate_throttling",
]

MAX_HTTP_CONNECTIONS = 400
MIN_THROUGHPUT = 200
MAX_THROUGHPUT = 5000
#: Bounds Adobe does not state (it asks >= 1 of both): a window of at most a day, and a
#: count any store holds as a 32-bit integer. Beyond them a value is a mistake, and one
#: too large for a 64-bit integer would fail every write it is part of.
MAX_CALLS_COUNT = 2**31 - 1
MAX_PERIOD_MS = 24 * 60 * 60 * 1000

CAPPING_FIELDS = frozenset({"url", "methods", "services"})
THROTTLING_FIELDS = frozenset({"name", "description", "urlPattern", "methods", "maxThroughput"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Rating:
    """At most ``max_calls_count`` attempts start in any window of ``period_ms``."""

    max_calls_count: int
    period_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceLimit:
    """The limits of one service on a capped endpoint; ``None`` connections: no limit."""

    rating: Rating
    max_http_connections: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CappingRule:
    """A capping config: calls over the rate are discarded. ``url`` may hold ``*`` in its path."""

    url: str
    methods: frozenset[str]
    services: Mapping[Service, ServiceLimit]

    def to_json(self) -> dict[str, Any]:
        services: dict[str, Any] = {}
        for service, limit in self.services.items():
            entry: dict[str, Any] = {}
            if limit.max_http_connections is not None:
                entry["maxHttpConnections"] = limit.max_http_connections
            rating = limit.rating
            entry["rating"] = {
                "maxCallsCount": rating.max_calls_count,
                "periodInMs": rating.period_ms,
            }
            services[service.value] = entry
        return {"url": self.url, "methods": sorted(self.methods), "services": services}


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottlingRule:
    """A throttling config: calls over ``max_throughput`` per second wait in a queue."""

    name: str = ""
    description: str = ""
    url_pattern: str
    methods: frozenset[str]
    max_throughput: int

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name} if self.name else {}
        if self.description:
            doc["description"] = self.description
        doc["urlPattern"] = self.url_pattern
        doc["methods"] = sorted(self.methods)
        doc["maxThroughput"] = self.max_throughput
        return doc


def validate_capping(payload: Any) -> Validation:
    """Every error and warning of a capping payload (Adobe's ``canDeploy``)."""
    return _check_capping(payload)[0]


def validate_throttling(payload: Any) -> Validation:
    """Every error of a throttling payload (Adobe's ``canDeploy``)."""
    return _check_throttling(payload)[0]


def parse_capping(payload: Any) -> CappingRule:
    """The rule of a valid capping payload; :class:`InvalidConfig` listing every error."""
    validation, rule = _check_capping(payload)
    if rule is None:
        raise _invalid(validation)
    return rule


def parse_throttling(payload: Any) -> ThrottlingRule:
    """The rule of a valid throttling payload; :class:`InvalidConfig` listing every error."""
    validation, rule = _check_throttling(payload)
    if rule is None:
        raise _invalid(validation)
    return rule


def _invalid(validation: Validation) -> InvalidConfig:
    first = validation.errors[0]
    message = "; ".join(error.message for error in validation.errors)
    return InvalidConfig(first.code, message, details=validation.to_json()["errors"])


def _check_capping(payload: Any) -> tuple[Validation, CappingRule | None]:
    found = Findings("capping config")
    if not isinstance(payload, dict):
        found.error("ERR_ENDPOINTCONFIG_112", "expecting a JSON payload (an object)")
        return found.validation(), None
    unknown = set(payload) - CAPPING_FIELDS - ELEMENT_FIELDS
    if unknown:
        found.error("ERR_ENDPOINTCONFIG_111", f"invalid payload: unknown fields {sorted(unknown)}")
    url = payload.get("url")
    if not isinstance(url, str) or not url:
        found.error("ERR_ENDPOINTCONFIG_100", "missing or invalid url")
        url = ""
    else:
        try:
            split_pattern(url)
        except WildcardInHost:
            found.error("ERR_ENDPOINTCONFIG_102", "wildchar in url not allowed in host:port")
        except ValueError as exc:
            found.error("ERR_ENDPOINTCONFIG_101", str(exc))
    methods = check_methods(payload.get("methods"))
    if isinstance(methods, str):
        found.error("ERR_ENDPOINTCONFIG_103", methods)
    services = payload.get("services")
    limits: dict[Service, ServiceLimit] = {}
    if not isinstance(services, dict) or not services:
        found.error(
            "ERR_ENDPOINTCONFIG_111",
            "invalid payload: services must be an object with 'action' and/or 'dataSource'",
        )
    else:
        for name, entry in services.items():
            checked = _check_service(name, entry, url, found)
            if checked is not None:
                limits[checked[0]] = checked[1]
    if found.errors or isinstance(methods, str):
        return found.validation(), None
    rule = CappingRule(url=url, methods=frozenset(methods), services=limits)
    return found.validation(), rule


def _check_service(
    name: str, entry: Any, url: str, found: Findings
) -> tuple[Service, ServiceLimit] | None:
    """One entry of ``services``: its issues go to ``found``; ``None`` when it has errors."""
    try:
        service = Service(name)
    except ValueError:
        found.error(
            "ERR_AUTHORING_ENDPOINTCONFIG_1",
            f"invalid service name {name!r}: it must be 'dataSource' or 'action'",
        )
        return None
    if not isinstance(entry, dict):
        found.error("ERR_ENDPOINTCONFIG_111", f"invalid payload: services.{name} is not an object")
        return None
    before = len(found.errors)
    unknown = set(entry) - {"rating", "maxHttpConnections"}
    if unknown:
        found.error(
            "ERR_ENDPOINTCONFIG_111",
            f"invalid payload: unknown fields {sorted(unknown)} in services.{name}",
        )
    connections = entry.get("maxHttpConnections")
    if connections is None:
        message = "max HTTP connections not defined: no limitation by default"
        found.warn("ERR_ENDPOINTCONFIG_106", message, service=service.value, url=url)
    elif not is_int(connections) or not 1 <= connections <= MAX_HTTP_CONNECTIONS:
        found.error(
            "ERR_ENDPOINTCONFIG_111",
            f"invalid payload: services.{name}.maxHttpConnections must be an integer "
            f"from 1 to {MAX_HTTP_CONNECTIONS}, not {connections!r}",
        )
    rating = entry.get("rating")
    if not isinstance(rating, dict):
        found.error("ERR_ENDPOINTCONFIG_104", f"no call rating defined for {name}")
        return None
    count: Any = rating.get("maxCallsCount")
    period: Any = rating.get("periodInMs")
    if not is_int(count) or not 1 <= count <= MAX_CALLS_COUNT:
        found.error(
            "ERR_ENDPOINTCONFIG_107",
            f"invalid max calls count (maxCallsCount) for {name}: "
            f"expecting an integer from 1 to {MAX_CALLS_COUNT:,}, not {count!r}",
        )
    if not is_int(period) or not 1 <= period <= MAX_PERIOD_MS:
        found.error(
            "ERR_ENDPOINTCONFIG_108",
            f"invalid period (periodInMs) for {name}: expecting an integer from 1 to "
            f"{MAX_PERIOD_MS:,} (a day), not {period!r}",
        )
    if len(found.errors) > before:
        return None
    return service, ServiceLimit(
        rating=Rating(max_calls_count=count, period_ms=period), max_http_connections=connections
    )


def _check_throttling(payload: Any) -> tuple[Validation, ThrottlingRule | None]:
    found = Findings("throttling config")
    if not isinstance(payload, dict):
        found.error("ERR_THROTTLING_CONFIG_106", "invalid payload: expecting a JSON object")
        return found.validation(), None
    unknown = set(payload) - THROTTLING_FIELDS - ELEMENT_FIELDS
    if unknown:
        found.error(
            "ERR_THROTTLING_CONFIG_106", f"invalid payload: unknown fields {sorted(unknown)}"
        )
    for attr, longest in (("name", MAX_NAME_LENGTH), ("description", MAX_DESCRIPTION_LENGTH)):
        text = payload.get(attr)
        if text is not None and not isinstance(text, str):
            found.error("ERR_THROTTLING_CONFIG_106", f"invalid payload: {attr} must be a string")
        elif text is not None and len(text) > longest:
            message = f"invalid payload: {attr} may have at most {longest:,} characters"
            found.error("ERR_THROTTLING_CONFIG_106", message)
    pattern: Any = payload.get("urlPattern")
    if pattern is None or pattern == "":
        found.error("ERR_THROTTLING_CONFIG_100", "urlPattern required")
    elif not isinstance(pattern, str):
        found.error("ERR_THROTTLING_CONFIG_106", "invalid payload: urlPattern must be a string")
    else:
        try:
            split_pattern(pattern)
        except WildcardInHost:
            found.error("ERR_THROTTLING_CONFIG_105", "wildcards are not allowed in the host part")
        except ValueError as exc:
            found.error("ERR_THROTTLING_CONFIG_104", str(exc))
    methods = check_methods(payload.get("methods"))
    if payload.get("methods") in (None, []):
        found.error("ERR_THROTTLING_CONFIG_100", "methods required")
    elif isinstance(methods, str):
        found.error("ERR_THROTTLING_CONFIG_106", f"invalid payload: {methods}")
    throughput: Any = payload.get("maxThroughput")
    if throughput is None:
        found.error("ERR_THROTTLING_CONFIG_100", "maxThroughput required")
    elif not is_int(throughput) or not MIN_THROUGHPUT <= throughput <= MAX_THROUGHPUT:
        found.error(
            "ERR_THROTTLING_CONFIG_101",
            f"maxThroughput must be greater than or equal to {MIN_THROUGHPUT} and less than "
            f"or equal to {MAX_THROUGHPUT:,}, not {throughput!r}",
        )
    if found.errors or isinstance(methods, str):
        return found.validation(), None
    rule = ThrottlingRule(
        name=payload.get("name") or "",
        description=payload.get("description") or "",
        url_pattern=pattern,
        methods=frozenset(methods),
        max_throughput=throughput,
    )
    return found.validation(), rule
