"""Adobe's Capping and Throttling APIs, path for path, under ``/journey/orchestration``.

``{kind}`` is ``endpointConfigs`` (capping) or ``throttlingConfigs`` (throttling); both
kinds share one set of routes, registered once per :class:`Kind`:

====================================  ======  ==============================================
route                                 role    answer
====================================  ======  ==============================================
``POST /list/{kind}``                 reader  200 ``{results}`` (a body is ignored)
``POST /{kind}``                      editor  200 ``{createdElement, uid, uri, resStatus,
                                              canDeploy}``; throttling: 400 (1463, 1465)
``GET /{kind}/{uid}``                 reader  200 ``{result}``
``PUT /{kind}/{uid}``                 editor  200 ``{updatedElement, uid, uri, resStatus,
                                              canDeploy}``
``DELETE /{kind}/{uid}?forceDelete``  editor  200 ``{}``; deployed and not forced: 409
``GET|POST /{kind}/{uid}/canDeploy``  reader  200 ``{canDeploy}``
``POST /{kind}/{uid}/deploy``         editor  204
``POST /{kind}/{uid}/undeploy``       editor  204, also when it was not deployed
====================================  ======  ==============================================

Errors are raised, never built here: :mod:`sluicegate.service.problems` answers them. An
invalid payload is a 400 listing every validation error; a body that is not JSON at all
reaches the core as its raw bytes, a non-object, so it gets the same code as any other
non-object (``ERR_ENDPOINTCONFIG_112`` / ``ERR_THROTTLING_CONFIG_106``). A uid of another
org or sandbox is 404. ``orgId`` in a body is optional and ignored: the org is the header's.
The metadata ``createdBy``/``lastModifiedBy``/``lastDeployedBy`` read ``"<role> key
<fingerprint>"``, the fingerprint being the first 12 hex digits of the key's SHA-256 (the
prefix of ``api_keys.token_hash``): who did it, without the key itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request, Response
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel

from sluicegate.configs import ConfigKind, ConfigRecord, RuleBook
from sluicegate.service.bodies import JsonRoute, is_text_throughout
from sluicegate.service.context import Context, Editor, Reader
from sluicegate.service.routes.config_models import (
    CAPPING_BODY,
    IGNORED_BODY,
    THROTTLING_BODY,
    CappingElement,
    Created,
    Deployability,
    Element,
    Empty,
    Got,
    Listed,
    ThrottlingElement,
    Updated,
    errors,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Kind:
    """One of Adobe's two APIs: its path segment, core kind, and how it is documented."""

    path: str
    kind: ConfigKind
    noun: str
    tag: str
    element: type[Element]
    body: dict[str, Any]

    @property
    def op(self) -> str:
        """The operationId stem: ``EndpointConfig``, ``ThrottlingConfig``."""
        return self.path[0].upper() + self.path[1:-1]


KINDS = (
    Kind(path="endpointConfigs", kind=ConfigKind.CAPPING, noun="endpoint capping configuration",
         tag="Capping configuration", element=CappingElement, body=CAPPING_BODY),
    Kind(path="throttlingConfigs", kind=ConfigKind.THROTTLING, noun="throttling configuration",
         tag="Throttling configuration", element=ThrottlingElement, body=THROTTLING_BODY),
)  # fmt: skip

router = APIRouter(route_class=JsonRoute, prefix="/journey/orchestration")


def _of(envelope: type[BaseModel], element: type[Element]) -> Any:
    """``envelope[element]``, built at runtime (mypy cannot apply a type held in a variable)."""
    return cast(Any, envelope)[element]


def _where(ctx: Context) -> dict[str, str]:
    """The org and sandbox a request acts in, as the core's keyword arguments."""
    return {"org": ctx.org, "sandbox": ctx.sandbox.name}


def _actor(ctx: Context, request: Request) -> str:
    """``"<role> key <fingerprint>"``: who made a change, without revealing the key."""
    _, token = get_authorization_scheme_param(request.headers.get("authorization"))
    return f"{ctx.role.value} key {hashlib.sha256(token.encode()).hexdigest()[:12]}"


async def _payload(request: Request) -> Any:
    """The JSON body; ``None`` when empty; the raw bytes when it is not JSON at all."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        doc = json.loads(raw, parse_float=_number)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return raw
    return doc if is_text_throughout(doc) else raw  # a lone surrogate: not JSON either


def _number(text: str) -> int | float:
    """A JSON number: ``500.0`` or ``5e2`` is the integer 500, as JSON Schema has it."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _saved(rules: RuleBook, record: ConfigRecord, key: str, status: str) -> dict[str, Any]:
    """The create/update envelope of ``record``, with its canDeploy."""
    element = record.to_json()
    validation = rules.can_deploy(record.kind, org=record.org, sandbox=record.sandbox,
                                  uid=record.uid)  # fmt: skip
    return {key: element, "uid": record.uid, "uri": element["uri"], "resStatus": status,
            "canDeploy": validation.to_json()}  # fmt: skip


def _links(k: Kind) -> dict[str, Any]:
    """OpenAPI links from a created config to the operations on its uid."""
    uid = {"uid": "$response.body#/uid"}
    return {f"{name}{k.op}": {"operationId": f"{name}{k.op}", "parameters": uid}
            for name in ("get", "update", "delete", "canDeploy", "deploy", "undeploy")}  # fmt: skip


def _register(k: Kind) -> None:
    """Add every route of one kind to :data:`router`."""
    item = f"/{k.path}/{{uid}}"
    shared: dict[str, Any] = {"tags": [k.tag], "response_model_exclude_unset": True}

    def add(path: str, endpoint: Any, method: str, name: str, summary: str, **extra: Any) -> None:
        extra.setdefault("responses", errors(400, 401, 403, 404))
        router.add_api_route(path, endpoint, methods=[method], operation_id=f"{name}{k.op}",
                             summary=summary, **shared, **extra)  # fmt: skip

    async def list_configs(ctx: Reader) -> dict[str, Any]:
        """Every config of this kind managed from the org and sandbox, oldest first.
        A body (Adobe sends `{}`) is accepted and ignored."""
        records = ctx.runtime.gate.rules.list(k.kind, **_where(ctx))
        return {"results": [record.to_json() for record in records]}

    async def create(request: Request, ctx: Editor) -> dict[str, Any]:
        """Store a new config in state `created` (not enforced until deployed). Throttling:
        only in a production sandbox (400, code 1463) and one per org (400, code 1465)."""
        rules, payload, by = ctx.runtime.gate.rules, await _payload(request), _actor(ctx, request)
        record = await rules.create(k.kind, **_where(ctx), payload=payload, by=by,
                                    sandbox_type=ctx.sandbox.type)  # fmt: skip
        return _saved(rules, record, "createdElement", "created")

    async def get(uid: str, ctx: Reader) -> dict[str, Any]:
        """The config's current definition; `deployedConfig` is what is enforced."""
        return {"result": ctx.runtime.gate.rules.get(k.kind, **_where(ctx), uid=uid).to_json()}

    async def update(uid: str, request: Request, ctx: Editor) -> dict[str, Any]:
        """Overwrite the payload (a full payload, as for a create); the state becomes `updated`.
        A deployed capping config keeps enforcing `deployedConfig` until the next deploy; a
        deployed throttling config applies the new payload at once."""
        rules, payload = ctx.runtime.gate.rules, await _payload(request)
        record = await rules.update(k.kind, **_where(ctx), uid=uid, payload=payload,
                                    by=_actor(ctx, request))  # fmt: skip
        return _saved(rules, record, "updatedElement", "updated")

    async def delete(
        uid: str,
        ctx: Editor,
        forceDelete: Annotated[
            bool, Query(description="Undeploy a deployed config, then delete it")
        ] = False,
    ) -> dict[str, Any]:
        """Delete the config. A deployed one is refused with 409 unless `forceDelete=true`."""
        await ctx.runtime.gate.rules.delete(k.kind, **_where(ctx), uid=uid, force=forceDelete)
        return {}

    async def can_deploy(uid: str, ctx: Reader) -> dict[str, Any]:
        """Whether the current definition can be deployed: its errors and warnings."""
        return {"canDeploy": ctx.runtime.gate.rules.can_deploy(k.kind, **_where(ctx),
                                                                uid=uid).to_json()}  # fmt: skip

    async def deploy(uid: str, request: Request, ctx: Editor) -> Response:
        """Enforce the current definition from now on; deploying again re-snapshots it."""
        rules = ctx.runtime.gate.rules
        await rules.deploy(k.kind, **_where(ctx), uid=uid, by=_actor(ctx, request))
        return Response(status_code=204)

    async def undeploy(uid: str, ctx: Editor) -> Response:
        """Stop enforcing; the state returns to `created` or `updated`. A config that was
        not deployed answers 204 too."""
        await ctx.runtime.gate.rules.undeploy(k.kind, **_where(ctx), uid=uid)
        return Response(status_code=204)

    noun = k.noun
    # fmt: off
    add(f"/list/{k.path}", list_configs, "POST", "list", f"List the {noun}s",
        response_model=_of(Listed, k.element), openapi_extra=IGNORED_BODY)
    add(f"/{k.path}", create, "POST", "create", f"Create a {noun}",
        response_model=_of(Created, k.element), openapi_extra=k.body,
        responses=errors(400, 401, 403, 404, 409) | {200: {"links": _links(k)}})
    add(item, get, "GET", "get", f"Get a {noun}", response_model=_of(Got, k.element))
    add(item, update, "PUT", "update", f"Update a {noun}",
        response_model=_of(Updated, k.element), openapi_extra=k.body)
    add(item, delete, "DELETE", "delete", f"Delete a {noun}", response_model=Empty,
        responses=errors(400, 401, 403, 404, 409))
    add(f"{item}/canDeploy", can_deploy, "GET", "canDeploy",
        f"Check if a {noun} can be deployed", response_model=Deployability)
    add(f"{item}/canDeploy", can_deploy, "POST", "canDeployPost",
        f"Check if a {noun} can be deployed (POST)", response_model=Deployability,
        openapi_extra=IGNORED_BODY)
    add(f"{item}/deploy", deploy, "POST", "deploy", f"Deploy a {noun}", status_code=204,
        response_model=None)
    add(f"{item}/undeploy", undeploy, "POST", "undeploy", f"Undeploy a {noun}",
        status_code=204, response_model=None)
    # fmt: on


for _kind in KINDS:
    _register(_kind)
