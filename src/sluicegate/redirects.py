"""Redirects: which request a 3xx response leads to.

The engine follows redirects itself, one request at a time, because every request that
leaves must hold slots of the rules that apply to its own URL and pass the egress policy
(:mod:`sluicegate.executor`). Following them is a matter of HTTP alone, and lives here:

* 301, 302, 303, 307 and 308 with a ``Location`` are followed, resolved against the URL
  that answered; any other 3xx, or one without a usable ``Location``, is a final answer;
* 303 (except for HEAD), and 301 or 302 after a POST, become a GET without body, as
  browsers do; 307 and 308 keep the method and body;
* credentials (``Authorization``, ``Cookie``, ``Proxy-Authorization``) are not sent to
  another origin.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

from sluicegate.call import DEFAULT_PORTS
from sluicegate.transport import Request, Response

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_BODY_HEADERS = frozenset({"content-length", "content-type", "content-encoding"})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def next_hop(request: Request, response: Response) -> Request | None:
    """The request ``response`` redirects ``request`` to, or ``None`` when it does not."""
    if response.status not in REDIRECTS:
        return None
    location = next((v for k, v in response.headers.items() if k.lower() == "location"), "")
    if not location.strip():
        return None
    try:
        target = urljoin(request.url, location.strip())
        origin = _origin(target)
    except ValueError:
        return None
    method, headers, body = request.method, dict(request.headers), request.body
    if (response.status == 303 and method != "HEAD") or (
        response.status in (301, 302) and method == "POST"
    ):
        method, body = "GET", b""
        headers = _without(headers, _BODY_HEADERS)
    if origin != _origin(request.url):
        headers = _without(headers, _CREDENTIAL_HEADERS)
    return Request(method=method, url=target, headers=headers, body=body)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """Scheme, host and port; ``ValueError`` for a URL whose port does not parse."""
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme)


def _without(headers: Mapping[str, str], names: frozenset[str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in names}
