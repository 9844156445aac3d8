"""URL patterns and the resolution of a call: which windows, pool and queue apply."""

from __future__ import annotations

import string
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import GUARD_MS
from sluicegate.call import Call
from sluicegate.matching import DeployedRule, Resolution, Resolver, ThrottleTarget, UrlPattern
from sluicegate.rules import parse_capping, parse_throttling
from sluicegate.settings import Settings
from sluicegate.storage import Limit

ORG = "acme"
SANDBOX = "prod"
HOST = "api.example.org"


def capping(
    url: str,
    *,
    uid: str,
    count: int = 10,
    methods: Iterable[str] = ("GET",),
    service: str = "action",
    created_at: float = 0.0,
    sandbox: str = SANDBOX,
    connections: int | None = None,
) -> DeployedRule:
    """A deployed capping rule of ``count`` calls per second for one service."""
    entry: dict[str, object] = {"rating": {"maxCallsCount": count, "periodInMs": 1000}}
    if connections is not None:
        entry["maxHttpConnections"] = connections
    rule = parse_capping({"url": url, "methods": list(methods), "services": {service: entry}})
    return DeployedRule(uid=uid, org=ORG, sandbox=sandbox, created_at=created_at, rule=rule)


def throttling(url: str, *, uid: str = "t1", rate: int = 300) -> DeployedRule:
    """A deployed throttling rule on POST, created in the production sandbox."""
    payload = {"urlPattern": url, "methods": ["POST"], "maxThroughput": rate}
    rule = parse_throttling(payload)
    return DeployedRule(uid=uid, org=ORG, sandbox=SANDBOX, created_at=0.0, rule=rule)


def call(
    url: str,
    *,
    method: str = "GET",
    service: str = "action",
    org: str = ORG,
    sandbox: str = SANDBOX,
    journey: str = "j1",
) -> Call:
    return Call.build(
        org=org, sandbox=sandbox, journey=journey, service=service, method=method, url=url
    )


def resolve(
    rules: Iterable[DeployedRule], target: Call, settings: Settings | None = None
) -> Resolution:
    return Resolver(settings or Settings(), rules).resolve(target)


def action_default(host: str = HOST, sandbox: str = SANDBOX) -> Limit:
    return Limit(
        key=f"default:action:{ORG}:{sandbox}:{host}", count=300_000, period_ms=60_000 + GUARD_MS
    )


def datasource_default(host: str = HOST) -> Limit:
    return Limit(
        key=f"default:dataSource:{ORG}:{SANDBOX}:{host}", count=15, period_ms=1_000 + GUARD_MS
    )


@pytest.mark.parametrize(
    ("pattern", "url", "matches"),
    [
        ("https://a.com/v3/messages/*/send", "https://a.com/v3/messages/42/send", True),
        ("https://a.com/v3/messages/*/send", "https://a.com/v3/messages/4/2/send", True),
        ("https://a.com/v3/messages/*/send", "https://a.com/v3/messages//send", True),
        ("https://a.com/v3/messages/*/send", "https://a.com/v3/messages/42/sendx", False),
        ("https://a.com/v3/messages/*/send", "https://a.com/v3/messages/42", False),
        ("https://a.com/data/*", "https://a.com/data/", True),
        ("https://a.com/data/*", "https://a.com/data/2.5/weather", True),
        ("https://a.com/data/*", "https://a.com/data", False),
        ("https://a.com/*", "https://a.com/", True),
        ("https://a.com/x", "https://a.com/x?city=paris", True),
        ("https://a.com/x?city=paris", "https://a.com/x", True),
        ("https://a.com/x", "https://a.com/x#part", True),
        ("https://a.com/x", "https://a.com:443/x", True),
        ("http://a.com:80/x", "http://a.com/x", True),
        ("https://a.com:8443/x", "https://a.com/x", False),
        ("https://a.com/x", "https://a.com:8443/x", False),
        ("https://a.com/x", "http://a.com/x", False),
        ("https://API.Example.com/x", "https://api.example.COM/x", True),
        ("https://a.com/X", "https://a.com/x", False),
        ("https://a.com/a.b", "https://a.com/aXb", False),
        ("https://a.com", "https://a.com/", True),
        ("https://a.com/x", "https://b.com/x", False),
        ("https://a.com/x", "not a url", False),
    ],
)
def test_pattern_matching(pattern: str, url: str, matches: bool) -> None:
    """Scheme, host and port match exactly; `*` matches any run in the path; query ignored."""
    assert matches == UrlPattern.compile(pattern).matches(url)


def test_specificity_counts_literal_characters() -> None:
    """Specificity is the count of non-`*` characters of the normalized pattern."""
    expected = len("https://a.com:443/v1//send")

    assert expected == UrlPattern.compile("https://A.com/v1/*/*send").specificity


def test_no_rule_gives_the_action_default() -> None:
    """An action call without a rule takes the per org+sandbox+host default window."""
    expected = Resolution(
        endpoint=HOST,
        capping=(action_default(),),
        max_connections=None,
        connection_key=action_default().key,
        throttle=None,
    )

    assert expected == resolve([], call(f"https://{HOST}/anything"))


def test_rule_replaces_the_action_default() -> None:
    """A matching capping rule replaces the action default and brings its connection limit."""
    rule = capping(f"https://{HOST}/v1/*", uid="r1", count=50, connections=20)
    key = f"cap:{ORG}:{SANDBOX}:r1:action"
    expected = Resolution(
        endpoint="r1",
        capping=(Limit(key=key, count=50, period_ms=1000 + GUARD_MS),),
        max_connections=20,
        connection_key=key,
        throttle=None,
    )

    assert expected == resolve([rule], call(f"https://{HOST}/v1/users"))


def test_method_is_part_of_the_match() -> None:
    """A rule on GET leaves POST calls to the default."""
    rule = capping(f"https://{HOST}/*", uid="r1", methods=["GET"])

    assert HOST == resolve([rule], call(f"https://{HOST}/x", method="POST")).endpoint
    assert "r1" == resolve([rule], call(f"https://{HOST}/x", method="get")).endpoint


def test_service_is_part_of_the_match() -> None:
    """A rule with an action entry only does not apply to data source calls."""
    rule = capping(f"https://{HOST}/*", uid="r1", service="action")
    resolution = resolve([rule], call(f"https://{HOST}/x", service="dataSource"))

    assert (HOST, (datasource_default(),)) == (resolution.endpoint, resolution.capping)


def test_most_specific_rule_wins() -> None:
    """Of two matching rules the one with more literal characters wins, whatever its age."""
    rules = [
        capping(f"https://{HOST}/v1/*", uid="broad", created_at=1.0),
        capping(f"https://{HOST}/v1/users/*", uid="narrow", created_at=2.0),
    ]

    assert "narrow" == resolve(rules, call(f"https://{HOST}/v1/users/7")).endpoint
    assert "broad" == resolve(rules, call(f"https://{HOST}/v1/orders/7")).endpoint


def test_ties_go_to_the_oldest_rule() -> None:
    """Equally specific rules rank by creation time, then by uid."""
    url = f"https://{HOST}/a/b/c"
    younger = capping(f"https://{HOST}/a/*/c", uid="a-young", created_at=2.0)
    older = capping(f"https://{HOST}/a/b/*", uid="z-old", created_at=1.0)
    twin = capping(f"https://{HOST}/a/b/*", uid="a-twin", created_at=1.0)

    assert "z-old" == resolve([younger, older], call(url)).endpoint
    assert "a-twin" == resolve([younger, older, twin], call(url)).endpoint


def test_datasource_rule_stacks_on_default_when_not_allowlisted() -> None:
    """A data source rule on a host not allowlisted keeps the 15/s default as well."""
    rule = capping(f"https://{HOST}/*", uid="r1", count=100, service="dataSource")
    resolution = resolve([rule], call(f"https://{HOST}/x", service="dataSource"))
    expected = (
        Limit(key=f"cap:{ORG}:{SANDBOX}:r1:dataSource", count=100, period_ms=1000 + GUARD_MS),
        datasource_default(),
    )

    assert expected == resolution.capping


def test_datasource_rule_replaces_default_when_allowlisted() -> None:
    """On an allowlisted host (any case) a data source rule alone applies: it may exceed 15/s."""
    rule = capping(f"https://{HOST}/*", uid="r1", count=100, service="dataSource")
    settings = Settings(datasource_allowlist=frozenset({HOST.upper()}))
    resolution = resolve([rule], call(f"https://{HOST}/x", service="dataSource"), settings)
    expected = (
        Limit(key=f"cap:{ORG}:{SANDBOX}:r1:dataSource", count=100, period_ms=1000 + GUARD_MS),
    )

    assert expected == resolution.capping


def test_slots_are_shared_by_journeys_and_paths() -> None:
    """Calls of different journeys and paths on one rule, or one host, share one window."""
    rule = capping(f"https://{HOST}/v1/*", uid="r1")
    resolver = Resolver(Settings(), [rule])
    first = resolver.resolve(call(f"https://{HOST}/v1/a", journey="j1"))
    second = resolver.resolve(call(f"https://{HOST}/v1/b/c?x=1", journey="j2"))
    third = resolver.resolve(call(f"https://{HOST}/v2/a", journey="j1"))
    fourth = resolver.resolve(call(f"https://{HOST.upper()}/v3", journey="j2"))

    assert first.capping == second.capping
    assert third.capping == fourth.capping == (action_default(),)


def test_capping_rules_stay_in_their_org_and_sandbox() -> None:
    """A capping rule of one sandbox does not apply to calls from another sandbox or org."""
    rule = capping(f"https://{HOST}/*", uid="r1")
    url = f"https://{HOST}/x"

    assert (action_default(sandbox="dev"),) == resolve([rule], call(url, sandbox="dev")).capping
    assert HOST == resolve([rule], call(url, org="other")).endpoint


def test_throttling_applies_to_actions_only() -> None:
    """A throttling rule queues custom actions; data sources are never throttled."""
    rule = throttling(f"https://{HOST}/*", uid="t1", rate=300)
    expected = ThrottleTarget(key=f"thr:{ORG}:t1", uid="t1", rate=300)
    url = f"https://{HOST}/x"

    assert expected == resolve([rule], call(url, method="POST")).throttle
    assert None is resolve([rule], call(url, method="POST", service="dataSource")).throttle
    assert None is resolve([rule], call(url, method="GET")).throttle


def test_throttling_applies_across_sandboxes_of_its_org() -> None:
    """The org's throttling rule applies to calls from every sandbox, never to other orgs."""
    rule = throttling(f"https://{HOST}/*", uid="t1")
    url = f"https://{HOST}/x"
    expected = ThrottleTarget(key=f"thr:{ORG}:t1", uid="t1", rate=300)

    assert expected == resolve([rule], call(url, method="POST", sandbox="dev")).throttle
    assert None is resolve([rule], call(url, method="POST", org="other")).throttle


def test_throttling_and_capping_combine() -> None:
    """A throttled call also takes its capping slot and connection limit from a capping rule."""
    rules = [
        throttling(f"https://{HOST}/*", uid="t1"),
        capping(f"https://{HOST}/*", uid="r1", methods=["POST"], count=1000, connections=50),
    ]
    resolution = resolve(rules, call(f"https://{HOST}/x", method="POST"))
    throttle = ThrottleTarget(key=f"thr:{ORG}:t1", uid="t1", rate=300)

    assert ("r1", 50, throttle) == (
        resolution.endpoint,
        resolution.max_connections,
        resolution.throttle,
    )


def test_resolutions_are_cached() -> None:
    """Resolving the same call again gives the very same answer."""
    resolver = Resolver(Settings(), [capping(f"https://{HOST}/*", uid="r1")])
    target = call(f"https://{HOST}/x")

    assert resolver.resolve(target) is resolver.resolve(target)


# Small domains, so that two drawn URLs are often equal after normalization.
SCHEMES = st.sampled_from(["http", "https"])
HOSTS = st.sampled_from(["api.example.org", "API.Example.org", "other.example.org"])
PORTS = st.sampled_from([None, 80, 443, 8443])
PATHS = st.lists(st.sampled_from(["a", "b", "", "a.b", "%2F", "~x"]), max_size=3)
QUERIES = st.sampled_from(["", "?q=1", "?a=*"])
DEFAULT_PORTS = {"http": 80, "https": 443}

Parts = tuple[str, str, int | None, list[str], str]
URLS: st.SearchStrategy[Parts] = st.tuples(SCHEMES, HOSTS, PORTS, PATHS, QUERIES)


def build(parts: Parts) -> str:
    scheme, host, port, segments, query = parts
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}{''.join('/' + s for s in segments)}{query}"


def normalized(parts: Parts) -> tuple[str, str, int, str]:
    scheme, host, port, segments, _ = parts
    path = "".join("/" + s for s in segments) or "/"
    return scheme, host.lower(), DEFAULT_PORTS[scheme] if port is None else port, path


@given(URLS, URLS)
def test_literal_pattern_matches_exactly_its_url(pattern: Parts, url: Parts) -> None:
    """A pattern without `*` matches a URL exactly when both normalize alike, query aside."""
    expected = normalized(pattern) == normalized(url)

    assert expected == UrlPattern.compile(build(pattern)).matches(build(url))


@given(st.text(alphabet=string.ascii_letters + string.digits + "-._~/%:@!$&'()+,;=", max_size=30))
def test_literal_pattern_matches_its_own_url(path: str) -> None:
    """A pattern without `*` matches its own URL, whatever its path characters."""
    url = f"https://{HOST}/{path}"

    assert UrlPattern.compile(url).matches(f"{url}?k=v")
