"""API keys as the API and the command line show and take them, and the key commands that
work on the service's database itself, while the service runs or not.

The service database is not held exclusively by a running service (see
:mod:`sluicegate.service.db`), so these open it beside one. A key they revoke is refused
by every running instance within :data:`~sluicegate.service.tenants.KEY_CACHE_SECONDS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluicegate.clock import Clock, SystemClock
from sluicegate.errors import InvalidInput
from sluicegate.service.db import open_db
from sluicegate.service.tenants import LATEST, ApiKey, Role, Tenants
from sluicegate.wiring import Shared

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def role_of(text: str) -> Role:
    """The role named ``text``; ``INVALID_ROLE`` naming the roles otherwise."""
    try:
        return Role(text)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput("INVALID_ROLE", f"role must be one of {roles}, not {text!r}") from None


def instant(text: str) -> float:
    """Epoch seconds of an ISO-8601 time (UTC when it has no offset): ``INVALID_EXPIRY``
    when it is not one, or is not before the year 5000."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        message = f"expiry must be an ISO-8601 time such as 2027-01-01T00:00:00Z, not {text!r}"
        raise InvalidInput("INVALID_EXPIRY", message) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    value = moment.timestamp()
    if not 0 <= value < LATEST:
        raise InvalidInput("INVALID_EXPIRY", f"expiry is out of range: {text!r}")
    return value


def duration(text: str) -> float:
    """Seconds of ``90d``, ``12h``, ``30m``, ``45s``, ``2w`` or a sum such as ``1d12h``."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + unit for n, unit in parts) != text:
        message = f"a duration is a number and s, m, h, d or w (such as 90d), not {text!r}"
        raise InvalidInput("INVALID_EXPIRY", message)
    seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if not 0 < seconds < LATEST:
        raise InvalidInput("INVALID_EXPIRY", f"a key must expire in the future: {text!r}")
    return float(seconds)


def expiry(*, at: str | None, within: str | None, now: float) -> float | None:
    """When a new key expires: at the time ``at``, or ``within`` a duration of ``now``, or
    never when neither is given (both: ``INVALID_EXPIRY``)."""
    if at is not None and within is not None:
        raise InvalidInput("INVALID_EXPIRY", "give an expiry time or a duration, not both")
    if at is not None:
        return instant(at)
    return None if within is None else now + duration(within)


def iso(seconds: float | None) -> str | None:
    """``seconds`` since the epoch as ISO-8601 UTC to the second, ``...Z``."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def view(key: ApiKey, now: float) -> dict[str, Any]:
    """A key as ``/v1/keys`` and ``sluicegate keys list`` show it (never its token)."""
    return {"keyId": key.id, "org": key.org, "role": key.role.value, "name": key.name,
            "state": key.state(now), "createdAt": iso(key.created_at),
            "expiresAt": iso(key.expires_at), "revokedAt": iso(key.revoked_at)}  # fmt: skip


@asynccontextmanager
async def _tenants(where: Path | Shared, clock: Clock) -> AsyncIterator[Tenants]:
    db = await open_db(where)
    try:
        yield Tenants(db, clock)
    finally:
        await db.aclose()


async def create(
    *,
    where: Path | Shared,
    org: str,
    role: Role,
    name: str | None = None,
    expires_at: float | None = None,
    clock: Clock | None = None,
) -> tuple[str, dict[str, Any]]:
    """A new token for ``org`` with ``role``, stored (hashed) in the data dir ``where`` or
    in the shared PostgreSQL database, where every instance finds it; and its view."""
    clock = clock or SystemClock()
    async with _tenants(where, clock) as tenants:
        token, made = await tenants.make_key(org=org, role=role, name=name,
                                             expires_at=expires_at)  # fmt: skip
    return token, view(made, clock.now())


async def listing(
    *, where: Path | Shared, org: str | None, clock: Clock | None = None
) -> list[dict[str, Any]]:
    """The views of the keys of ``org`` (of every org for None), oldest first."""
    clock = clock or SystemClock()
    async with _tenants(where, clock) as tenants:
        found = await tenants.keys(org=org)
    return [view(key, clock.now()) for key in found]


async def revoke(
    *, where: Path | Shared, key: str, org: str | None, clock: Clock | None = None
) -> dict[str, Any] | None:
    """Revoke the key of id ``key`` (of ``org``, or of any org for None); its view, or
    None when there is no such key."""
    clock = clock or SystemClock()
    async with _tenants(where, clock) as tenants:
        found = await tenants.revoke(key, org=org)
    return None if found is None else view(found, clock.now())
