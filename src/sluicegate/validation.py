"""What checking a config payload finds, and the syntax both kinds of config share.

A :class:`Validation` is a value: every error and warning found in one payload, all at
once, so a user fixes a payload in one round trip. Its :meth:`Validation.to_json` is
Adobe's ``canDeploy`` object. The rule-specific checks live in :mod:`sluicegate.rules`;
here are the pieces they share: URL patterns (absolute http(s), ``*`` only in the path)
and HTTP methods (Adobe's enum, ``OPTION`` read as ``OPTIONS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sluicegate.call import DEFAULT_PORTS, normalize_method
from sluicegate.errors import InvalidCall

#: The longest URL pattern a config may have (a call's own URL may be longer).
MAX_PATTERN_LENGTH = 2048
#: The longest name and description of a throttling config.
MAX_NAME_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 4096

#: The methods a config may name: Adobe's enum, where ``OPTION`` means OPTIONS.
#: ``HEAD`` is a method a call may use, but no config can name it.
CONFIG_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: Fields Adobe's API returns around a config. A client may send an element back as it
#: got it (GET, edit, PUT), so these are accepted and dropped rather than refused.
ELEMENT_FIELDS = frozenset(
    {
        "uid",
        "_id",
        "id",
        "orgId",
        "tenantId",
        "sandboxName",
        "sandboxId",
        "uri",
        "state",
        "authoringFormatVersion",
        "hasBeenDeployed",
        "deployedConfig",
        "metadata",
        "version",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    """One finding. ``service`` and ``url`` locate a warning (Adobe's ``scope``)."""

    code: str
    message: str
    service: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Validation:
    """Every error and warning of one payload. Errors block a deploy; warnings do not."""

    errors: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        """Adobe's ``canDeploy`` shape; ``reason`` appears only when there are errors."""
        doc: dict[str, Any] = {"validationStatus": "ok" if self.ok else "error"}
        if self.errors:
            count = len(self.errors)
            verb = "error is" if count == 1 else "errors are"
            doc["reason"] = f"{count} {verb} currently blocking the publication"
        doc["errors"] = [{"errorCode": e.code, "error": e.message} for e in self.errors]
        doc["warnings"] = [
            {
                "warningCode": w.code,
                "warning": w.message,
                "scope": {"endpointConfigService": w.service, "endpointConfigUrl": w.url},
            }
            for w in self.warnings
        ]
        return doc


class Findings:
    """Collects the issues of one payload; messages get Adobe's ``"<kind> config: "`` prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

    def error(self, code: str, message: str) -> None:
        self.errors.append(Issue(code=code, message=f"{self.prefix}: {message}"))

    def warn(self, code: str, message: str, *, service: str, url: str) -> None:
        issue = Issue(code=code, message=f"{self.prefix}: {message}", service=service, url=url)
        self.warnings.append(issue)

    def validation(self) -> Validation:
        return Validation(errors=tuple(self.errors), warnings=tuple(self.warnings))


@dataclass(frozen=True, slots=True, kw_only=True)
class UrlParts:
    """A URL pattern split for matching: scheme and host lower-case, the port always
    explicit (80/443 by default), the path never empty. Query and fragment are dropped:
    they are not part of a match."""

    scheme: str
    host: str
    port: int
    path: str


class WildcardInHost(ValueError):
    """A ``*`` in the host or port of a pattern: wildcards belong to the path only."""


def split_pattern(pattern: str) -> UrlParts:
    """Split an absolute http(s) URL pattern; ``*`` may appear in the path only.

    Raises :class:`WildcardInHost` for a ``*`` in host or port, and ``ValueError`` for
    anything else malformed: another scheme, no host, user info, a bad port.
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(
            f"url pattern of {len(pattern):,} characters: at most {MAX_PATTERN_LENGTH:,}"
        )
    try:
        parts = urlsplit(pattern)
    except ValueError as exc:  # an unbalanced "[" in the host, for one
        raise ValueError(f"malformed url {pattern!r}: {exc}") from None
    if "*" in parts.netloc:
        raise WildcardInHost(f"wildcard in host:port of {pattern!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"malformed url {pattern!r}: invalid port") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"malformed url {pattern!r}: the scheme must be http or https")
    if not parts.hostname or "@" in parts.netloc:
        raise ValueError(f"malformed url {pattern!r}: it needs a host, and no user info")
    return UrlParts(
        scheme=parts.scheme,
        host=parts.hostname,
        port=DEFAULT_PORTS[parts.scheme] if port is None else port,
        path=parts.path or "/",
    )


def check_methods(value: Any) -> tuple[str, ...] | str:
    """The normalized methods of a non-empty list, or why it is not one.

    Returns the methods, upper-case and deduplicated in their given order, or a message
    for the caller to wrap in its own error code. ``OPTION`` becomes ``OPTIONS``.
    """
    if value is None or value == []:
        return "missing HTTP methods"
    if not isinstance(value, list):
        return "methods must be a list of HTTP methods"
    methods: list[str] = []
    for item in value:
        try:
            method = normalize_method(item) if isinstance(item, str) else ""
        except InvalidCall:
            method = ""
        if method not in CONFIG_METHODS:
            allowed = ", ".join(sorted(CONFIG_METHODS | {"OPTION"}))
            return f"invalid HTTP method {item!r}: expecting one of {allowed}"
        if method not in methods:
            methods.append(method)
    return tuple(methods)


def is_int(value: Any) -> bool:
    """True for a JSON integer; ``True``/``False`` are not numbers here."""
    return isinstance(value, int) and not isinstance(value, bool)
