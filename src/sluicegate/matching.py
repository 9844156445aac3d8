"""Which rules apply to a call: URL patterns, specificity, and the resolution of a call.

Pure code: no I/O and no clock. A :class:`Resolver` is built from one snapshot of the
deployed rules and answers, for each call, which sliding windows it takes a slot from,
which connection pool it counts against and which throttling queue (if any) it waits in.
The keys of those windows, pools and queues are made here and read here, nowhere else.

Matching, as the contract states it: scheme, host (case-insensitive) and port match
exactly, default ports 80/443 included; ``*`` matches any run of characters in the path,
``/`` included, possibly none; query and fragment are ignored on both sides. Among the
patterns that match, the most specific wins (most literal characters), then the oldest.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from sluicegate.call import Call, Service, check_url
from sluicegate.errors import InvalidCall
from sluicegate.rules import CappingRule, ServiceLimit, ThrottlingRule
from sluicegate.settings import Settings
from sluicegate.storage import Limit
from sluicegate.validation import split_pattern

#: Resolutions kept per :class:`Resolver`. Paths often carry ids, so the set of distinct
#: call URLs is unbounded; past this size the oldest entry makes room.
CACHE_SIZE = 16_384
#: The window of a throttling config's ``maxThroughput``.
THROTTLE_PERIOD_MS = 1_000

_Where = tuple[str, str, int]  # scheme, host, port


@dataclass(frozen=True, slots=True, kw_only=True)
class UrlPattern:
    """A compiled URL pattern. ``specificity`` counts the literal (non-``*``) characters
    of the normalized pattern ``scheme://host:port/path``."""

    scheme: str
    host: str
    port: int
    path: str
    specificity: int
    path_regex: re.Pattern[str]

    @classmethod
    def compile(cls, pattern: str) -> UrlPattern:
        """Compile an absolute http(s) pattern; ``ValueError`` if it is not one (see
        :func:`sluicegate.validation.split_pattern`)."""
        parts = split_pattern(pattern)
        pieces = parts.path.split("*")
        regex = re.compile(".*".join(re.escape(piece) for piece in pieces), re.DOTALL)
        literal = len(f"{parts.scheme}://{parts.host}:{parts.port}") + sum(map(len, pieces))
        return cls(
            scheme=parts.scheme,
            host=parts.host,
            port=parts.port,
            path=parts.path,
            specificity=literal,
            path_regex=regex,
        )

    @property
    def where(self) -> _Where:
        return self.scheme, self.host, self.port

    def matches_path(self, path: str) -> bool:
        return self.path_regex.fullmatch(path) is not None

    def matches(self, url: str) -> bool:
        """Whether ``url`` matches; a URL that does not parse matches nothing."""
        try:
            where, path = locate(url)
        except InvalidCall:
            return False
        return where == self.where and self.matches_path(path)


_CappingBucket = list[tuple[UrlPattern, str, CappingRule]]  # (pattern, uid, rule), best first
_ThrottlingBucket = list[tuple[UrlPattern, str, ThrottlingRule]]


def throttle_key(org: str, uid: str) -> str:
    """The slot and queue key of an org's throttling config: one per org, all sandboxes."""
    return f"thr:{org}:{uid}"


def throttle_owner(key: str) -> tuple[str, str]:
    """The ``(org, uid)`` a :func:`throttle_key` was made of. An org may hold ``:``; a uid
    never does."""
    org, _, uid = key.removeprefix("thr:").rpartition(":")
    return org, uid


def capping_key(org: str, sandbox: str, uid: str, service: str) -> str:
    """The slot and connection key of one service of a capping config."""
    return f"cap:{org}:{sandbox}:{uid}:{service}"


def default_key(service: str, org: str, sandbox: str, host: str) -> str:
    """The slot key of the default cap of a host without a matching capping config."""
    return f"default:{service}:{org}:{sandbox}:{host}"


def throttle_limit(key: str, rate: int, guard_ms: int) -> Limit:
    """The window a throttling queue drains through: ``rate`` per second, each slot held
    ``guard_ms`` longer (the guard band)."""
    return Limit(key=key, count=rate, period_ms=THROTTLE_PERIOD_MS + guard_ms)


def locate(url: str) -> tuple[_Where, str]:
    """``((scheme, host, port), path)`` of a call URL, normalized like a pattern;
    :class:`~sluicegate.errors.InvalidCall` if it is not one."""
    target = check_url(url)
    return (target.scheme, target.host, target.port), target.path


@dataclass(frozen=True, slots=True, kw_only=True)
class DeployedRule:
    """A rule as enforced: the deployed version of a config, with what ranks it."""

    uid: str
    org: str
    sandbox: str
    created_at: float
    rule: CappingRule | ThrottlingRule


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleTarget:
    """The throttling queue a call waits in, and its ``maxThroughput``."""

    key: str
    uid: str
    rate: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    """What applies to a call.

    ``endpoint`` labels reports: the uid of the capping rule that matched, else the host.
    Every request takes a slot from each window of ``capping``; ``max_connections``
    (``None``: no limit) bounds the attempts in flight under ``connection_key``.
    """

    endpoint: str
    capping: tuple[Limit, ...]
    max_connections: int | None
    connection_key: str
    throttle: ThrottleTarget | None


class Resolver:
    """Resolves calls against one snapshot of the deployed rules.

    Rules are indexed by org (+ sandbox for capping) and by ``(scheme, host, port)``, each
    bucket sorted best first, so a call looks only at the patterns of its own endpoint.
    Results are cached by URL; and since every URL one rule matches on one host resolves
    alike, results are shared by what they were made of (paths often carry ids: a
    resolution per distinct URL would cost memory and time for the same answer). A
    change of rules means a new resolver, hence fresh caches.
    """

    __slots__ = (
        "_allowlist", "_cache", "_capping", "_guard", "_settings", "_shared", "_throttling",
    )  # fmt: skip

    def __init__(self, settings: Settings, rules: Iterable[DeployedRule]) -> None:
        self._settings = settings
        self._guard = settings.send_guard_ms
        self._allowlist = frozenset(host.lower() for host in settings.datasource_allowlist)
        self._capping: dict[tuple[str, str, _Where], _CappingBucket] = {}
        self._throttling: dict[tuple[str, _Where], _ThrottlingBucket] = {}
        ranked = []
        for deployed in rules:
            rule = deployed.rule
            url = rule.url if isinstance(rule, CappingRule) else rule.url_pattern
            ranked.append((UrlPattern.compile(url), deployed))
        # Best first: the most specific, then the oldest; each bucket keeps this order.
        ranked.sort(key=lambda item: (-item[0].specificity, item[1].created_at, item[1].uid))
        for pattern, deployed in ranked:
            org, uid, rule = deployed.org, deployed.uid, deployed.rule
            if isinstance(rule, CappingRule):
                key = (org, deployed.sandbox, pattern.where)
                self._capping.setdefault(key, []).append((pattern, uid, rule))
            else:
                self._throttling.setdefault((org, pattern.where), []).append((pattern, uid, rule))
        self._cache: OrderedDict[tuple[object, ...], Resolution] = OrderedDict()
        self._shared: OrderedDict[tuple[object, ...], Resolution] = OrderedDict()

    def resolve(self, call: Call) -> Resolution:
        """What applies to ``call``; the same answer for the same rules, org and URL."""
        key = (call.org, call.sandbox, call.service, call.method, call.url)
        resolution = self._cache.get(key)
        if resolution is None:
            where, path = locate(call.url)
            throttling = self._throttling_rule(call, where, path)
            capping = self._capping_rule(call, where, path)
            # What the answer is made of; within one snapshot of the rules, a uid says it all.
            made_of = (call.org, call.sandbox, call.service, where[1],
                       throttling and throttling[0], capping and capping[0])  # fmt: skip
            resolution = self._shared.get(made_of)
            if resolution is None:
                resolution = _remember(
                    self._shared, made_of, self._resolve(call, where[1], throttling, capping)
                )
            _remember(self._cache, key, resolution)
        return resolution

    def _resolve(
        self,
        call: Call,
        host: str,
        throttling: tuple[str, ThrottlingRule] | None,
        matched: tuple[str, ServiceLimit] | None,
    ) -> Resolution:
        org, sandbox, service = call.org, call.sandbox, call.service
        throttle = None
        if throttling is not None:
            uid, rule = throttling
            throttle = ThrottleTarget(key=throttle_key(org, uid), uid=uid,
                                      rate=rule.max_throughput)  # fmt: skip
        default = self._default(call, host)
        if matched is None:
            return Resolution(
                endpoint=host,
                capping=(default,),
                max_connections=None,
                connection_key=default.key,
                throttle=throttle,
            )
        uid, limit = matched
        rating = limit.rating
        key = capping_key(org, sandbox, uid, service)
        period = rating.period_ms + self._guard
        capping = [Limit(key=key, count=rating.max_calls_count, period_ms=period)]
        # A rule replaces the default, but a data source may go above 15/s only on an
        # allowlisted host: elsewhere the default window still applies as well.
        if service is Service.DATA_SOURCE and host not in self._allowlist:
            capping.append(default)
        return Resolution(
            endpoint=uid,
            capping=tuple(capping),
            max_connections=limit.max_http_connections,
            connection_key=key,
            throttle=throttle,
        )

    def _throttling_rule(
        self, call: Call, where: _Where, path: str
    ) -> tuple[str, ThrottlingRule] | None:
        """The uid and rule of the org's throttling config for ``call``, if any."""
        if call.service is Service.ACTION:
            for pattern, uid, rule in self._throttling.get((call.org, where), ()):
                if call.method in rule.methods and pattern.matches_path(path):
                    return uid, rule
        return None

    def _capping_rule(
        self, call: Call, where: _Where, path: str
    ) -> tuple[str, ServiceLimit] | None:
        """The uid and service limits of the best capping rule for ``call``, if any."""
        for pattern, uid, rule in self._capping.get((call.org, call.sandbox, where), ()):
            limit = rule.services.get(call.service)
            if limit is not None and call.method in rule.methods and pattern.matches_path(path):
                return uid, limit
        return None

    def _default(self, call: Call, host: str) -> Limit:
        """The window a call's endpoint falls under when no rule replaces it."""
        settings = self._settings
        action = call.service is Service.ACTION
        cap = settings.action_default if action else settings.datasource_default
        key = default_key(call.service, call.org, call.sandbox, host)
        return Limit(key=key, count=cap.count, period_ms=cap.period_ms + self._guard)


def _remember(cache: OrderedDict[tuple[object, ...], Resolution], key: tuple[object, ...],
              resolution: Resolution) -> Resolution:  # fmt: skip
    """Keep ``resolution`` under ``key`` in a cache bounded to :data:`CACHE_SIZE` entries,
    the oldest leaving first (O(1), where a dict's oldest key is not)."""
    if len(cache) >= CACHE_SIZE:
        cache.popitem(last=False)
    cache[key] = resolution
    return resolution
