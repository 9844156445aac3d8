"""The ASGI application: routers of the service layer, one error mapping, OpenAPI."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from sluicegate import __version__
from sluicegate.service import problems
from sluicegate.service.fastpath import FastPath
from sluicegate.service.limits import Limits
from sluicegate.service.logs import AccessLog
from sluicegate.service.routes import (
    calls,
    configs,
    docs,
    echo,
    endpoints,
    health,
    journeys,
    keys,
    metrics,
    queues,
    reports,
    sandboxes,
)
from sluicegate.service.runtime import Runtime

#: Response headers a browser client may read.
EXPOSED = ["Location", "Retry-After", "X-Request-Id", "X-Sluicegate-Call-Id"]

DESCRIPTION = """\
sluicegate stands between a journey orchestrator and the external systems its journeys
call. The configuration API under `/journey/orchestration` follows Adobe Journey
Optimizer's Capping and Throttling APIs path for path; `/v1` runs guarded calls and
reports on them. Every request sends `Authorization: Bearer <key>`, `x-gw-ims-org-id`
and `x-sandbox-name`.
"""


def create_app(runtime: Runtime, *, cors_origins: Sequence[str] = ()) -> AccessLog:
    """The service on ``runtime``. OpenAPI at ``/openapi.json``, docs at ``/docs``; every
    request bounded first (:class:`~sluicegate.service.limits.Limits`), the call routes
    through their :class:`~sluicegate.service.fastpath.FastPath`."""
    app = FastAPI(
        title="sluicegate",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    problems.install(app)
    for module in (configs, calls, journeys, sandboxes, reports, endpoints, queues, keys, metrics,
                   health, docs):  # fmt: skip
        app.include_router(module.router)
    if runtime.dev:  # the built-in external system of a first run
        app.include_router(echo.router)
    served: ASGIApp = Limits(FastPath(app, runtime), runtime.settings)
    if cors_origins:  # outside the limits, so that a refusal still carries CORS headers
        served = CORSMiddleware(served, allow_origins=list(cors_origins), allow_methods=["*"],
                                allow_headers=["*"], expose_headers=EXPOSED)  # fmt: skip
    return AccessLog(served)
