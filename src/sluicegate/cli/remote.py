"""Commands that talk to a running service: its URL, a key, and the org and sandbox.

Every such command takes ``--url`` (``SLUICEGATE_URL``), ``--key`` (``SLUICEGATE_KEY``),
``--org`` (``SLUICEGATE_ORG``) and ``--sandbox`` (``SLUICEGATE_SANDBOX``, ``prod``). An
error answer of the service is printed with its code and message and exits 1; a service
that cannot be reached (or answers what is not JSON) exits 3; a key or org not given, or
a URL, key, org or sandbox that cannot be sent, exits 2.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import httpx
import typer

from sluicegate.records import ConfigKind

Url = Annotated[
    str,
    typer.Option("--url", envvar="SLUICEGATE_URL", help="The running service."),
]
Key = Annotated[
    str | None,
    typer.Option("--key", envvar="SLUICEGATE_KEY", show_default=False,
                 help="An API key of the org (prefer the environment variable)."),
]  # fmt: skip
Org = Annotated[
    str | None,
    typer.Option("--org", envvar="SLUICEGATE_ORG", show_default=False,
                 help="The org (x-gw-ims-org-id)."),
]  # fmt: skip
SandboxName = Annotated[
    str,
    typer.Option("--sandbox", envvar="SLUICEGATE_SANDBOX", help="The sandbox (x-sandbox-name)."),
]

DEFAULT_URL = "http://127.0.0.1:8080"
#: The Adobe-compatible configuration API, and its collection of each kind of config.
ADOBE = "/journey/orchestration"
PATHS = {ConfigKind.CAPPING: "endpointConfigs", ConfigKind.THROTTLING: "throttlingConfigs"}


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@dataclass(frozen=True, slots=True, kw_only=True)
class Remote:
    """A running service, seen with one key for one org and sandbox."""

    url: str
    key: str
    org: str
    sandbox: str = "prod"
    timeout: float = 30.0

    @classmethod
    def of(cls, url: str, key: str | None, org: str | None, sandbox: str) -> Remote:
        """From the common options; a missing key or org is a clear error (exit 2)."""
        if not key:
            fail("give an API key with --key or SLUICEGATE_KEY")
        if not org:
            fail("give the org with --org or SLUICEGATE_ORG")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            fail(f"--url {url!r}: {exc}")
        if parsed.scheme not in ("http", "https") or not parsed.host:
            fail(f"--url {url!r}: give the service's http:// or https:// URL")
        for option, value in (("--key", key), ("--org", org), ("--sandbox", sandbox)):
            if not (value.isascii() and value.isprintable()):
                fail(f"{option}: only printable ASCII can be sent in a header")
        return cls(url=url.rstrip("/"), key=key, org=org, sandbox=sandbox)

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}", "x-gw-ims-org-id": self.org,
                   "x-sandbox-name": self.sandbox}  # fmt: skip
        return httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)

    def request(self, method: str, path: str, *, client: httpx.Client | None = None,
                **kwargs: Any) -> Any:  # fmt: skip
        """The JSON of a 2xx answer (None when empty); any other answer, or none, exits."""
        try:
            if client is None:
                with self.client() as own:
                    response = own.request(method, path, **kwargs)
            else:
                response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the service at {self.url}: {exc}", 3)
        if response.is_success:
            try:
                return response.json() if response.content else None
            except ValueError:
                fail(f"{method} {path}: {self.url} answered what is not JSON: is it sluicegate?", 3)
        try:
            problem = response.json()
            detail = f"{problem['code']}: {problem['message']}"
        except (ValueError, KeyError, TypeError):
            detail = response.text[:500]
        fail(f"{method} {path} answered {response.status_code}: {detail}", 1)


def dump(value: Any, output: str) -> str:
    """``value`` as ``json`` or ``yaml`` text."""
    if output == "json":
        return json.dumps(value, indent=2, ensure_ascii=False)
    import yaml

    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip("\n")


def checked(output: str, allowed: Sequence[str]) -> str:
    """``output`` if it is one of ``allowed``; else exit 2, naming them."""
    if output not in allowed:
        fail(f"--output must be {', '.join(allowed[:-1])} or {allowed[-1]}, not {output!r}")
    return output


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` (the headings first) as lines of columns two spaces apart."""
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip
