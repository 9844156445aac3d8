"""Who is asking, for which org and sandbox, and whether their role allows it.

Every request sends ``Authorization: Bearer <token>`` (``x-api-key`` is accepted and
ignored, as Adobe clients send it), ``x-gw-ims-org-id`` and ``x-sandbox-name``. The order
of checks, and what each failure answers: no or unknown token 401; org header not the
key's org 403; role not allowed 403; sandbox not in the org 404. A uid or call id of
another org is then simply not found: nothing of one org is visible to another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sluicegate.service.problems import Problem
from sluicegate.service.runtime import Runtime
from sluicegate.service.tenants import Principal, Role, Sandbox

READ = frozenset({Role.ADMIN, Role.EDITOR, Role.VIEWER})
EDIT = frozenset({Role.ADMIN, Role.EDITOR})
CALL = frozenset({Role.ADMIN, Role.CALLER})
ADMIN = frozenset({Role.ADMIN})

_bearer = HTTPBearer(auto_error=False, description="A sluicegate API key")


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """A request that passed every check."""

    org: str
    sandbox: Sandbox
    role: Role
    runtime: Runtime


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


async def identify(rt: Runtime, token: str | None) -> Principal:
    """The principal of a bearer ``token``; 401 when it is missing, unknown (``UNAUTHORIZED``),
    revoked (``KEY_REVOKED``) or expired (``KEY_EXPIRED``)."""
    if token is None:
        raise Problem(401, "UNAUTHORIZED", "send 'Authorization: Bearer <api key>'")
    found = await rt.tenants.check(token)
    if not isinstance(found, Principal):
        raise Problem(401, found.value, found.message)
    return found


async def admit(
    rt: Runtime, who: Principal, org: str, sandbox: str, roles: frozenset[Role]
) -> Context:
    """The context of ``who`` acting in ``org``'s ``sandbox``; 403 or 404 otherwise."""
    if org != who.org:
        raise Problem(403, "FORBIDDEN", "this key does not belong to that org")
    if who.role not in roles:
        raise Problem(403, "FORBIDDEN", f"the role {who.role.value!r} may not do this")
    found = await rt.tenants.sandbox(org, sandbox)
    if found is None:
        raise Problem(404, "SANDBOX_NOT_FOUND", f"org has no sandbox named {sandbox!r}")
    return Context(org=org, sandbox=found, role=who.role, runtime=rt)


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    token = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        token = credentials.credentials
    return await identify(runtime(request), token)


def allow(roles: frozenset[Role]) -> Callable[..., Awaitable[Context]]:
    """A dependency admitting the given roles, for the org and sandbox of the headers."""

    async def check(
        request: Request,
        who: Annotated[Principal, Depends(principal)],
        org: Annotated[str, Header(alias="x-gw-ims-org-id", description="The org (tenant)")],
        sandbox: Annotated[str, Header(alias="x-sandbox-name", description="The sandbox")],
        api_key: Annotated[str | None, Header(alias="x-api-key", include_in_schema=False)] = None,
    ) -> Context:
        return await admit(runtime(request), who, org, sandbox, roles)

    return check


Reader = Annotated[Context, Depends(allow(READ))]
Editor = Annotated[Context, Depends(allow(EDIT))]
Caller = Annotated[Context, Depends(allow(CALL))]
Admin = Annotated[Context, Depends(allow(ADMIN))]
