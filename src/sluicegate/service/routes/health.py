"""``GET /healthz`` and ``GET /readyz``: for load balancers and orchestrators, no key.

``/healthz`` answers 200 while the process serves. ``/readyz`` answers 200 when the
service can do its work: its database and the engine's store answer, and its background
writers (the call log's, the report book's) run; otherwise 503 ``NOT_READY`` in the JSON
error model, with every check. Neither names a tenant or anything of one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sluicegate.service.bodies import JsonRoute
from sluicegate.service.context import runtime
from sluicegate.service.problems import advice, body

router = APIRouter(route_class=JsonRoute, tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process serves."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency or a writer is down"}})
async def readyz(request: Request) -> Any:
    """Every dependency and background writer works: 200, else 503 with the checks."""
    checks = await runtime(request).readiness()
    if all(state == "ok" for state in checks.values()):
        return {"status": "ok", "checks": checks}
    failing = ", ".join(name for name, state in checks.items() if state != "ok")
    content = body(request.url.path, 503, "NOT_READY", f"not ready: {failing}",
                   family="INTERNAL_ERROR", extra={"checks": checks})  # fmt: skip
    return JSONResponse(content, status_code=503, headers=advice(503))
