"""Orgs, their sandboxes, and the API keys that act for them.

A key belongs to one org and has one :class:`Role`. Tokens are random and shown once;
only their SHA-256 is stored, so a copy of the database does not leak working keys. A key
is named in lists and logs by its public id, ``key_`` and the first 12 hex digits of that
hash, which says nothing of the token. It may expire; revoked, it stays listed but acts
no more. Every org has a ``prod`` sandbox of type ``production``, made with its first key.

Every request authenticates, so what a key is (org, role, expiry, revocation) is kept in
memory, but for :data:`KEY_CACHE_SECONDS` only: a key revoked by another process (another
instance, or ``sluicegate keys revoke`` on the database) is refused here within that
bound, and one revoked by this process at once. Expiry is judged on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import secrets
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sluicegate.backends.database import SqlDatabase
from sluicegate.clock import Clock
from sluicegate.configs import PRODUCTION
from sluicegate.errors import InvalidInput, StorageError

DEVELOPMENT = "development"
SANDBOX_TYPES = frozenset({PRODUCTION, DEVELOPMENT})
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
#: How long what was read of a key is trusted before it is read again (seconds).
KEY_CACHE_SECONDS = 1.0
#: How long a key read before is still trusted while the database cannot be read: calls
#: go on through a short outage, but a key revoked meanwhile elsewhere (another instance,
#: the CLI) is not honoured for longer than this (seconds).
KEY_TRUST_SECONDS = 30.0
#: Expiry times are before this (seconds since the epoch: past the year 5000).
LATEST = 1e11
_COLUMNS = "key_id, org, role, name, created_at, expires_at, revoked_at"
log = logging.getLogger(__name__)


class Role(StrEnum):
    """What a key may do, within its own org only."""

    ADMIN = "admin"
    """Everything: sandboxes and keys included."""
    EDITOR = "editor"
    """Rules and journeys, and everything a viewer reads."""
    CALLER = "caller"
    """Calls only."""
    VIEWER = "viewer"
    """Read only: rules, journeys, reports."""


class Refusal(StrEnum):
    """Why a token acts for no one; the value is the code of the 401 answer."""

    UNKNOWN = "UNAUTHORIZED"
    REVOKED = "KEY_REVOKED"
    EXPIRED = "KEY_EXPIRED"

    @property
    def message(self) -> str:
        return {"UNAUTHORIZED": "unknown API key", "KEY_REVOKED": "this API key was revoked",
                "KEY_EXPIRED": "this API key has expired"}[self.value]  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who a request acts for."""

    org: str
    role: Role


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """A key as it is listed: everything but its token. Times are epoch seconds."""

    id: str
    org: str
    role: Role
    name: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def refusal(self, now: float) -> Refusal | None:
        """Why the key no longer acts at ``now``, or None while it does."""
        if self.revoked_at is not None:
            return Refusal.REVOKED
        if self.expires_at is not None and now >= self.expires_at:
            return Refusal.EXPIRED
        return None

    def state(self, now: float) -> str:
        """``active``, ``expired`` or ``revoked``."""
        found = self.refusal(now)
        return "active" if found is None else found.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Sandbox:
    org: str
    name: str
    type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Known:
    key: ApiKey
    principal: Principal
    read_at: float  # when it was last asked for (read, or tried to)
    confirmed_at: float  # when the database last said so


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def key_id(token: str) -> str:
    """The public id of the key ``token``."""
    return f"key_{_digest(token)[:12]}"


def _key(row: Any) -> ApiKey:
    found, org, role, name, created_at, expires_at, revoked_at = row
    return ApiKey(id=found, org=org, role=Role(role), name=name, created_at=created_at,
                  expires_at=expires_at, revoked_at=revoked_at)  # fmt: skip


class Tenants:
    """Keys and sandboxes in the service database."""

    def __init__(self, db: SqlDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._known: dict[str, _Known] = {}  # by token digest
        self._reading: dict[str, asyncio.Future[_Known | None]] = {}  # by token digest
        self._revocations = 0  # a read that began before a revocation is not kept
        # Sandboxes are never edited or removed, so what was found stays true.
        self._sandboxes: dict[tuple[str, str], Sandbox] = {}

    async def create_key(
        self, *, org: str, role: Role, name: str | None = None, expires_at: float | None = None
    ) -> str:
        """A new token for ``org``, named ``name`` and acting until ``expires_at`` (epoch
        seconds, in the future) if given; the org's ``prod`` sandbox is created with its
        first key."""
        token, _ = await self.make_key(org=org, role=role, name=name, expires_at=expires_at)
        return token

    async def make_key(
        self, *, org: str, role: Role, name: str | None = None, expires_at: float | None = None
    ) -> tuple[str, ApiKey]:
        """:meth:`create_key`, with the key as stored (its token is never stored)."""
        if not org or len(org) > 256 or not org.isprintable():
            raise InvalidInput("INVALID_ORG", "org must be 1-256 printable characters")
        if name is not None and (not name or len(name) > 256 or not name.isprintable()):
            raise InvalidInput("INVALID_KEY_NAME", "name must be 1-256 printable characters")
        now = self._clock.now()
        if expires_at is not None and not (math.isfinite(expires_at) and now < expires_at < LATEST):
            raise InvalidInput("INVALID_EXPIRY", "a key must expire in the future")
        token = f"sg_{secrets.token_urlsafe(32)}"
        await self._db.execute(
            "creating a key",
            "INSERT INTO api_keys (token_hash, key_id, org, role, name, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (_digest(token), key_id(token), org, role.value, name, now, expires_at),
        )
        await self._db.execute(
            "creating the prod sandbox",
            "INSERT INTO sandboxes (org, name, type, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (org, "prod", PRODUCTION, now),
        )
        return token, ApiKey(id=key_id(token), org=org, role=role, name=name, created_at=now,
                             expires_at=expires_at, revoked_at=None)  # fmt: skip

    async def has_keys(self) -> bool:
        rows = await self._db.execute("counting keys", "SELECT 1 FROM api_keys LIMIT 1")
        return bool(rows)

    async def keys(self, *, org: str | None) -> list[ApiKey]:
        """The keys of ``org``, revoked ones too, oldest first; every org's for None (the
        operator's view, on the database)."""
        where, params = ("WHERE org = ? ", (org,)) if org is not None else ("", ())
        rows = await self._db.execute(
            "listing keys",
            f"SELECT {_COLUMNS} FROM api_keys {where}ORDER BY created_at, key_id",
            params,
        )
        return [_key(row) for row in rows]

    async def key(self, found: str, *, org: str | None) -> ApiKey | None:
        """The key of id ``found`` if it belongs to ``org`` (to any org for None)."""
        rows = await self._db.execute(
            "reading a key", f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (found,)
        )
        key = _key(rows[0]) if rows else None
        return key if key is not None and org in (None, key.org) else None

    async def revoke(self, found: str, *, org: str | None) -> ApiKey | None:
        """Revoke the key of id ``found`` of ``org`` (of any org for None): refused by
        this process from now on, by others within :data:`KEY_CACHE_SECONDS`. The key,
        revoked (at its first revocation, if it was already); None if there is none."""
        key = await self.key(found, org=org)
        if key is None:
            return None
        if key.revoked_at is None:
            await self._db.execute(
                "revoking a key",
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (self._clock.now(), found),
            )
            key = await self.key(found, org=org)
            assert key is not None  # keys are never deleted
        self._revocations += 1
        self._known = {d: k for d, k in self._known.items() if k.key.id != found}
        return key

    async def check(self, token: str) -> Principal | Refusal:
        """The principal of ``token``, or why it acts for no one. Read from the database
        at most once per :data:`KEY_CACHE_SECONDS` per key: every request asks."""
        digest = _digest(token)
        now = self._clock.now()
        known = self._known.get(digest)
        if known is None or now - known.read_at >= KEY_CACHE_SECONDS:
            # One read for every request of that key meanwhile, not one each.
            reading = self._reading.get(digest)
            if reading is None:
                reading = self._reading[digest] = asyncio.ensure_future(
                    self._read(digest, known, now)
                )
                reading.add_done_callback(lambda _: self._reading.pop(digest, None))
            known = await asyncio.shield(reading)
            if known is None:
                return Refusal.UNKNOWN
        refusal = known.key.refusal(now)
        return known.principal if refusal is None else refusal

    async def _read(self, digest: str, known: _Known | None, now: float) -> _Known | None:
        """What the database says of the key ``digest`` now. When it cannot be read, a key
        read before stays as it was for up to :data:`KEY_TRUST_SECONDS` since the database
        last confirmed it (calls go on through a short outage), tried again every
        :data:`KEY_CACHE_SECONDS`; after that, and for a key never read, the
        ``StorageError`` (503) is raised."""
        revocations = self._revocations
        try:
            rows = await self._db.execute(
                "reading a key", f"SELECT {_COLUMNS} FROM api_keys WHERE token_hash = ?",
                (digest,),
            )  # fmt: skip
        except StorageError as exc:
            if known is None or now - known.confirmed_at >= KEY_TRUST_SECONDS:
                raise
            log.warning("cannot read key %s again; trusting what was read: %s", known.key.id, exc)
            fresh: _Known | None = replace(known, read_at=now)
        else:
            fresh = None
            if rows:
                key = _key(rows[0])
                fresh = _Known(key=key, principal=Principal(org=key.org, role=key.role),
                               read_at=now, confirmed_at=now)  # fmt: skip
        if fresh is None:
            self._known.pop(digest, None)
        elif revocations == self._revocations:
            self._known[digest] = fresh
        return fresh

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
