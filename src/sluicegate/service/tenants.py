"""Orgs, their sandboxes, and the API keys that act for them.

A key belongs to one org and has one :class:`Role`. Tokens are random and shown once;
only their SHA-256 is stored, so a copy of the database does not leak working keys.
Every org has a ``prod`` sandbox of type ``production``, made with its first key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sluicegate.backends.database import SqlDatabase
from sluicegate.clock import Clock
from sluicegate.configs import PRODUCTION
from sluicegate.errors import InvalidInput

DEVELOPMENT = "development"
SANDBOX_TYPES = frozenset({PRODUCTION, DEVELOPMENT})
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


class Role(StrEnum):
    """What a key may do, within its own org only."""

    ADMIN = "admin"
    """Everything, sandboxes included."""
    EDITOR = "editor"
    """Rules and journeys, and everything a viewer reads."""
    CALLER = "caller"
    """Calls only."""
    VIEWER = "viewer"
    """Read only: rules, journeys, reports."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who a request acts for."""

    org: str
    role: Role


@dataclass(frozen=True, slots=True, kw_only=True)
class Sandbox:
    org: str
    name: str
    type: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tenants:
    """Keys and sandboxes in the service database."""

    def __init__(self, db: SqlDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        # Keys and sandboxes are never edited or removed, so what was found stays true.
        self._principals: dict[str, Principal] = {}  # by token digest
        self._sandboxes: dict[tuple[str, str], Sandbox] = {}

    async def create_key(self, *, org: str, role: Role = Role.ADMIN) -> str:
        """A new token for ``org``; the org's ``prod`` sandbox is created with its first key."""
        if not org or len(org) > 256 or not org.isprintable():
            raise InvalidInput("INVALID_ORG", "org must be 1-256 printable characters")
        token = f"sg_{secrets.token_urlsafe(32)}"
        now = self._clock.now()
        await self._db.execute(
            "creating a key",
            "INSERT INTO api_keys (token_hash, org, role, created_at) VALUES (?, ?, ?, ?)",
            (_digest(token), org, role.value, now),
        )
        await self._db.execute(
            "creating the prod sandbox",
            "INSERT INTO sandboxes (org, name, type, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (org, "prod", PRODUCTION, now),
        )
        return token

    async def has_keys(self) -> bool:
        rows = await self._db.execute("counting keys", "SELECT 1 FROM api_keys LIMIT 1")
        return bool(rows)

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or None for an unknown token."""
        digest = _digest(token)
        principal = self._principals.get(digest)
        if principal is None:
            rows = await self._db.execute(
                "reading a key", "SELECT org, role FROM api_keys WHERE token_hash = ?", (digest,)
            )
            if not rows:
                return None
            principal = self._principals[digest] = Principal(org=rows[0][0], role=Role(rows[0][1]))
        return principal

    async def sandbox(self, org: str, name: str) -> Sandbox | None:
        """The sandbox ``name`` of ``org``; read once, then from memory (every request asks)."""
        found = self._sandboxes.get((org, name))
        if found is None:
            rows = await self._db.execute(
                "reading a sandbox",
                "SELECT type FROM sandboxes WHERE org = ? AND name = ?",
                (org, name),
            )
            if not rows:
                return None
            found = self._sandboxes[(org, name)] = Sandbox(org=org, name=name, type=rows[0][0])
        return found

    async def sandboxes(self, org: str) -> list[Sandbox]:
        rows = await self._db.execute(
            "listing sandboxes",
            "SELECT name, type FROM sandboxes WHERE org = ? ORDER BY created_at, name",
            (org,),
        )
        return [Sandbox(org=org, name=name, type=kind) for name, kind in rows]

    async def create_sandbox(self, *, org: str, name: str, type: str) -> Sandbox:
        """Add a sandbox; names are lower-case, as Adobe's ``x-sandbox-name`` expects."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(
                "INVALID_SANDBOX", "name must be 1-64 lower-case letters, digits or '-'"
            )
        if type not in SANDBOX_TYPES:
            raise InvalidInput("INVALID_SANDBOX", "type must be 'production' or 'development'")
        if await self.sandbox(org, name) is not None:
            raise InvalidInput("SANDBOX_EXISTS", f"sandbox {name!r} already exists")
        await self._db.execute(
            "creating a sandbox",
            "INSERT INTO sandboxes (org, name, type, created_at) VALUES (?, ?, ?, ?)",
            (org, name, type, self._clock.now()),
        )
        return Sandbox(org=org, name=name, type=type)
