"""``/v1/keys`` on the real service: an admin makes, lists and revokes its org's keys;
revocation and expiry take effect on the next request; other instances and processes
learn of a revocation within ``KEY_CACHE_SECONDS`` of the test's clock; old databases are
upgraded in place."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.loopback import SLUICEGATE
from tests.service.conftest import Running, StartService
from tests.services import postgres_schema, shared

from sluicegate.backends.postgres import PostgresDatabase
from sluicegate.service.db import DB_NAME, POSTGRES_MIGRATIONS, REPORT_SCHEMA, SCHEMA, open_db
from sluicegate.service.keys import iso
from sluicegate.service.tenants import (
    KEY_CACHE_SECONDS,
    Principal,
    Refusal,
    Role,
    Tenants,
    key_id,
)
from sluicegate.testing import FakeClock
from sluicegate.wiring import Shared


def acting(token: str, org: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "x-gw-ims-org-id": org, "x-sandbox-name": "prod"}


async def made(running: Running, admin: dict[str, str], **body: Any) -> dict[str, Any]:
    """The answer to ``POST /v1/keys`` (asserting 201)."""
    status, answer = await running.request("POST", "/v1/keys", admin, {"role": "viewer", **body})
    assert 201 == status, answer
    return dict(answer)


async def works(running: Running, token: str, org: str = "acme") -> tuple[int, Any]:
    """The status and error code of a read with ``token`` (200, None when it acts)."""
    status, answer = await running.request("GET", "/v1/sandboxes", acting(token, org))
    return status, answer.get("code") if status != 200 else None


async def test_an_admin_makes_a_key_whose_token_is_shown_once(service: Running) -> None:
    """POST /v1/keys answers 201 with the token, once: the token acts with its role, and
    the list shows the key by its public id, never its token or hash."""
    admin = await service.key()
    key = await made(service, admin, name="dashboards")
    _, listed = await service.request("GET", "/v1/keys", admin)
    assert (key["keyId"], "viewer", "dashboards", "active") == (
        key_id(key["token"]), key["role"], key["name"], key["state"])  # fmt: skip
    assert (200, None) == await works(service, key["token"])
    assert [key["keyId"]] == [k["keyId"] for k in listed["results"] if k["name"] == "dashboards"]
    assert key["token"] not in str(listed)
    assert "token" not in listed["results"][-1]


async def test_the_list_shows_only_the_orgs_own_keys(service: Running) -> None:
    """Org B's admin lists org B's keys only; org A's ids appear nowhere."""
    admin_a, admin_b = await service.key("acme"), await service.key("globex")
    key = await made(service, admin_a)
    _, listed = await service.request("GET", "/v1/keys", admin_b)
    assert {"globex"} == {k["org"] for k in listed["results"]}
    assert key["keyId"] not in str(listed)


@pytest.mark.parametrize("role", ["editor", "caller", "viewer"])
async def test_only_admins_manage_keys(service: Running, role: str) -> None:
    """Every other role gets 403 FORBIDDEN on each of the three routes."""
    admin, other = await service.key(), await service.key(role=role)
    key = await made(service, admin)
    answers = [await service.request("POST", "/v1/keys", other, {"role": "admin"}),
               await service.request("GET", "/v1/keys", other),
               await service.request("DELETE", f"/v1/keys/{key['keyId']}", other)]  # fmt: skip
    assert [(403, "FORBIDDEN")] * 3 == [(status, a["code"]) for status, a in answers]
    assert (200, None) == await works(service, key["token"])


async def test_a_revoked_key_is_refused_on_the_next_request(service: Running) -> None:
    """DELETE answers 204; the very next request with the key is 401, and the list shows
    it revoked, with the time."""
    admin = await service.key()
    key = await made(service, admin)
    assert (200, None) == await works(service, key["token"])  # its state is now cached
    assert (204, None) == await service.request("DELETE", f"/v1/keys/{key['keyId']}", admin)
    _, listed = await service.request("GET", "/v1/keys", admin)
    assert (401, "KEY_REVOKED") == await works(service, key["token"])
    assert Refusal.REVOKED == await service.runtime.tenants.check(key["token"])
    [shown] = [k for k in listed["results"] if k["keyId"] == key["keyId"]]
    assert ("revoked", iso(service.runtime.clock.now())) == (shown["state"], shown["revokedAt"])


async def test_revoking_twice_keeps_the_first_time(service: Running, clock: FakeClock) -> None:
    """A second DELETE answers 204 again; revokedAt stays the first revocation's."""
    admin = await service.key()
    key = await made(service, admin)
    first = iso(clock.now())
    assert (204, None) == await service.request("DELETE", f"/v1/keys/{key['keyId']}", admin)
    await clock.advance(60)
    assert (204, None) == await service.request("DELETE", f"/v1/keys/{key['keyId']}", admin)
    _, listed = await service.request("GET", "/v1/keys", admin)
    assert [first] == [k["revokedAt"] for k in listed["results"] if k["keyId"] == key["keyId"]]


async def test_another_orgs_key_is_not_found(service: Running) -> None:
    """Org B's admin revoking org A's key gets 404 KEY_NOT_FOUND, like an unknown id, and
    the key still acts."""
    key = await made(service, await service.key("acme"))
    admin_b = await service.key("globex")
    answers = [await service.request("DELETE", f"/v1/keys/{found}", admin_b)
               for found in (key["keyId"], "key_000000000000")]  # fmt: skip
    assert [(404, "KEY_NOT_FOUND")] * 2 == [(status, a["code"]) for status, a in answers]
    assert (200, None) == await works(service, key["token"])


async def test_a_key_cannot_revoke_itself(service: Running) -> None:
    """An admin revoking the key it uses gets 409 KEY_IN_USE; the key still acts."""
    token = await service.runtime.tenants.create_key(org="acme", role=Role.ADMIN)
    status, answer = await service.request("DELETE", f"/v1/keys/{key_id(token)}", acting(token))
    assert (409, "KEY_IN_USE") == (status, answer["code"])
    assert (200, None) == await works(service, token)


async def test_a_key_expires_at_its_time(service: Running, clock: FakeClock) -> None:
    """A key with expiresAt acts until then and is 401 from that instant; listed expired."""
    admin = await service.key()
    key = await made(service, admin, expiresAt=iso(clock.now() + 60))
    await clock.advance(59)
    assert (200, None) == await works(service, key["token"])
    await clock.advance(1)
    assert (401, "KEY_EXPIRED") == await works(service, key["token"])
    assert Refusal.EXPIRED == await service.runtime.tenants.check(key["token"])
    _, listed = await service.request("GET", "/v1/keys", admin)
    assert ["expired"] == [k["state"] for k in listed["results"] if k["keyId"] == key["keyId"]]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"role": "viewer", "expiresAt": "2001-01-01T00:00:00Z"}, "INVALID_EXPIRY"),
        ({"role": "viewer", "expiresAt": "next tuesday"}, "INVALID_EXPIRY"),
        ({"role": "viewer", "expiresAt": "99999-01-01"}, "INVALID_EXPIRY"),
        ({"role": "viewer", "name": "tab\there"}, "INVALID_KEY_NAME"),
        ({"role": "root"}, "INVALID_REQUEST"),
        ({}, "INVALID_REQUEST"),
        ({"role": "viewer", "org": "globex"}, "INVALID_REQUEST"),
    ],
    ids=["past", "unreadable", "too-late", "control-character", "role", "no-role", "org"],
)
async def test_invalid_keys_are_refused(service: Running, body: Any, code: str) -> None:
    """Invalid input answers 400 with its code, and makes no key."""
    admin = await service.key()
    status, answer = await service.request("POST", "/v1/keys", admin, body)
    _, listed = await service.request("GET", "/v1/keys", admin)
    assert (400, code, 1) == (status, answer["code"], len(listed["results"]))


async def test_a_revocation_by_the_cli_is_seen_within_the_cache_bound(
    start_service: StartService, clock: FakeClock, tmp_path: Path
) -> None:
    """``sluicegate keys revoke --data-dir`` beside the running service: the service,
    having read the key, trusts it until KEY_CACHE_SECONDS of its clock pass, then
    refuses it."""
    service = await start_service(tmp_path / "data", clock=clock)
    token = await service.runtime.tenants.create_key(org="acme", role=Role.VIEWER)
    assert (200, None) == await works(service, token)
    done = await asyncio.create_subprocess_exec(
        *SLUICEGATE, "keys", "revoke", key_id(token), "--data-dir", str(tmp_path / "data"),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, errors = await done.communicate()
    assert 0 == done.returncode, errors
    assert (200, None) == await works(service, token)
    await clock.advance(KEY_CACHE_SECONDS)
    assert (401, "KEY_REVOKED") == await works(service, token)


async def test_two_instances_on_postgresql(start_service: StartService, clock: FakeClock) -> None:
    """Two instances sharing PostgreSQL: a key made on one acts on the other; revoked on
    one, it is refused there at once and by the other once KEY_CACHE_SECONDS passed."""
    async with shared(server_time=False) as where:
        one = await start_service(where, clock=clock)
        two = await start_service(where, clock=clock)
        admin = await one.key()
        key = await made(one, admin)
        assert [(200, None)] * 2 == [await works(s, key["token"]) for s in (one, two)]
        assert (204, None) == await one.request("DELETE", f"/v1/keys/{key['keyId']}", admin)
        assert (401, "KEY_REVOKED") == await works(one, key["token"])
        assert (200, None) == await works(two, key["token"])
        await clock.advance(KEY_CACHE_SECONDS)
        assert (401, "KEY_REVOKED") == await works(two, key["token"])
        await one.stop()
        await two.stop()


OLD_TOKEN = "sg_made-by-an-older-sluicegate"


def old_key(conn: Any) -> None:
    """A key as sluicegate wrote it before schema 3 (sqlite3's API: either database)."""
    digest = hashlib.sha256(OLD_TOKEN.encode()).hexdigest()
    conn.execute("INSERT INTO api_keys (token_hash, org, role, created_at) "
                 "VALUES (?, 'acme', 'admin', 1800000000)", (digest,))  # fmt: skip


async def test_a_data_dir_of_schema_2_is_upgraded_in_place(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A service.db written before keys had ids: its keys get their ids, keep acting, and
    can be revoked."""
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA + REPORT_SCHEMA + "PRAGMA user_version = 2;")
    with conn:
        old_key(conn)
    conn.close()
    db = await open_db(tmp_path)
    try:
        tenants = Tenants(db, clock)
        before = await tenants.check(OLD_TOKEN)
        await tenants.revoke(key_id(OLD_TOKEN), org="acme")
        after = await tenants.check(OLD_TOKEN)
    finally:
        await db.aclose()
    assert (Principal(org="acme", role=Role.ADMIN), Refusal.REVOKED) == (before, after)


async def test_a_postgresql_database_of_the_first_migration_is_upgraded(clock: FakeClock) -> None:
    """The service tables as the first migration made them: the second gives old keys ids."""
    async with postgres_schema() as url:
        old = PostgresDatabase(url, component="service", migrations=POSTGRES_MIGRATIONS[:1])
        await old.start()
        await old.run("an old key", old_key)
        await old.aclose()
        db = await open_db(Shared(redis_url="", postgres_url=url))
        try:
            listed = await Tenants(db, clock).keys(org=None)
        finally:
            await db.aclose()
    assert [(key_id(OLD_TOKEN), "active")] == [(k.id, k.state(clock.now())) for k in listed]
