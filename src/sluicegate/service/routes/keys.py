"""``/v1/keys``: an org's API keys, managed by its admins on the running service.

``POST /v1/keys`` makes a key of the admin's own org and answers its token, once.
``GET /v1/keys`` lists the org's keys, revoked and expired ones too, never a token.
``DELETE /v1/keys/{keyId}`` revokes one: this instance refuses it from the next request,
the others within :data:`~sluicegate.service.tenants.KEY_CACHE_SECONDS`. A key of another
org is not found (404), as one that does not exist. A key cannot revoke itself (409): an
admin revoking the key in hand would lock the org out by a slip; another admin key, or the
operator's ``sluicegate keys revoke`` on the database, can.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ConfigDict, Field

from sluicegate.service.bodies import JsonRoute
from sluicegate.service.context import Admin
from sluicegate.service.keys import instant, view
from sluicegate.service.problems import Problem, responses
from sluicegate.service.tenants import Role, key_id


class KeyIn(BaseModel):
    """A new key of the org."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    name: str | None = Field(None, min_length=1, max_length=256,
                             description="What the key is for; printable characters")  # fmt: skip
    expiresAt: str | None = Field(
        None, max_length=64, examples=["2027-01-01T00:00:00Z"],
        description="ISO-8601, UTC when it has no offset; in the future. None: never",
    )  # fmt: skip


class KeyOut(BaseModel):
    """A key, without its token. Times are ISO-8601 UTC, to the second."""

    keyId: str = Field(description="Public id: `key_` and 12 hex digits of the token's SHA-256")
    org: str
    role: Role
    name: str | None
    state: Literal["active", "expired", "revoked"]
    createdAt: str
    expiresAt: str | None
    revokedAt: str | None


class KeyMade(KeyOut):
    token: str = Field(description="The key itself, shown this once: only its hash is kept")


class KeyList(BaseModel):
    results: list[KeyOut]


KeyId = Annotated[str, Path(max_length=64, description="A key id, such as key_0123456789ab")]

router = APIRouter(route_class=JsonRoute, prefix="/v1/keys", tags=["keys"],
                   responses=responses())  # fmt: skip


_REVOKE = {"revokeKey": {"operationId": "revokeKey",
                        "parameters": {"keyId": "$response.body#/keyId"}}}  # fmt: skip


@router.post("", response_model=KeyMade, status_code=201, operation_id="createKey",
             responses={201: {"links": _REVOKE}})  # fmt: skip
async def create_key(body: KeyIn, ctx: Admin) -> KeyMade:
    """Make a key of the org; its `token` is in this answer only."""
    tenants, expires_at = ctx.runtime.tenants, None
    if body.expiresAt is not None:
        expires_at = instant(body.expiresAt)
    token, made = await tenants.make_key(org=ctx.org, role=body.role, name=body.name,
                                         expires_at=expires_at)  # fmt: skip
    return KeyMade(**view(made, ctx.runtime.clock.now()), token=token)


@router.get("", response_model=KeyList, operation_id="listKeys")
async def list_keys(ctx: Admin) -> KeyList:
    """The org's keys, oldest first, revoked and expired ones included."""
    found = await ctx.runtime.tenants.keys(org=ctx.org)
    now = ctx.runtime.clock.now()
    return KeyList(results=[KeyOut(**view(key, now)) for key in found])


@router.delete("/{keyId}", status_code=204, response_model=None, operation_id="revokeKey",
               responses=responses({404: "No key of that id in this org",
                                    409: "The key of the request itself"}))  # fmt: skip
async def revoke_key(keyId: KeyId, ctx: Admin, request: Request) -> Response:
    """Revoke a key: refused from the next request on (on other instances within a
    second). Revoking a revoked key answers 204 again and keeps its first `revokedAt`."""
    _, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if keyId == key_id(token):
        raise Problem(409, "KEY_IN_USE", "a key cannot revoke itself; use another admin key")
    if await ctx.runtime.tenants.revoke(keyId, org=ctx.org) is None:
        raise Problem(404, "KEY_NOT_FOUND", f"no key {keyId!r} in this org")
    return Response(status_code=204)
