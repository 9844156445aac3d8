"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), from assets the service serves itself.

The pages load nothing from another host: no CDN, no web font, no favicon, no online
validator, so they work where the service has no internet, and no reader's browser
reaches out on its behalf. Their Content-Security-Policy holds the browser to that (it
blocks the logo ReDoc's footer would fetch from its maker's site). The scripts and
stylesheet are those the ``fastapi-offline`` package ships (Swagger UI's
``swagger-ui-dist`` bundle and ReDoc's standalone bundle, under their own licences),
served under ``/docs/assets/``.

Caching: an asset's URL carries the start of its content's SHA-256, so a browser may keep
it for a year without asking again (``immutable``); a page is ``no-cache``, so after an
upgrade it names the new assets at once. An asset of an unknown name or digest is a 404
in the JSON error model. No key is needed: the pages and ``/openapi.json`` describe the
API, not a tenant's data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from sluicegate.service.problems import Problem

router = APIRouter(include_in_schema=False)

PREFIX = "/docs/assets"
#: What an asset's answer says about caching: its URL changes with its content.
FOREVER = "public, max-age=31536000, immutable"
#: A page may be kept, but is checked again each time: it names the assets of this version.
REVALIDATE = "no-cache"
#: Nothing but the service itself: scripts, styles, the OpenAPI document and "Try it out"
#: requests. Swagger UI's page starts it with an inline script; both UIs set inline styles
#: and draw icons from ``data:`` URIs; ReDoc searches in a worker it makes from a ``blob:``.
POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: An empty icon: browsers then ask for no ``/favicon.ico`` either.
NO_ICON = "data:,"


@dataclass(frozen=True, slots=True, kw_only=True)
class Asset:
    """A file served under :data:`PREFIX` at a URL naming its content."""

    name: str
    path: Path
    media_type: str
    digest: str

    @property
    def url(self) -> str:
        return f"{PREFIX}/{self.digest}/{self.name}"


_MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
}


@cache
def assets() -> dict[str, Asset]:
    """The assets by name, their digests read once, on the first page asked for."""
    static = Path(str(files("fastapi_offline") / "static"))
    found = {}
    for name, media_type in _MEDIA_TYPES.items():
        path = static / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        found[name] = Asset(name=name, path=path, media_type=media_type, digest=digest)
    return found


def _page(response: HTMLResponse) -> HTMLResponse:
    response.headers["Cache-Control"] = REVALIDATE
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    """Swagger UI on this service's OpenAPI document; "Try it out" calls this service."""
    root = request.scope.get("root_path", "")
    found = assets()
    return _page(get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json", title="sluicegate API",
        swagger_js_url=root + found["swagger-ui-bundle.js"].url,
        swagger_css_url=root + found["swagger-ui.css"].url,
        swagger_favicon_url=NO_ICON,
        swagger_ui_parameters={"validatorUrl": None},  # its badge would load an image from afar
    ))  # fmt: skip


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc on this service's OpenAPI document, with the fonts of the reader's machine."""
    root = request.scope.get("root_path", "")
    return _page(get_redoc_html(
        openapi_url=f"{root}/openapi.json", title="sluicegate API",
        redoc_js_url=root + assets()["redoc.standalone.js"].url,
        redoc_favicon_url=NO_ICON, with_google_fonts=False,
    ))  # fmt: skip


@router.get(PREFIX + "/{digest}/{name}")
async def asset(digest: str, name: str) -> FileResponse:
    """One asset, if ``digest`` is its content's: another version's URL is not found."""
    found = assets().get(name)
    if found is None or found.digest != digest:
        raise Problem(404, "NOT_FOUND", f"no documentation asset {digest}/{name}")
    headers = {"Cache-Control": FOREVER, "X-Content-Type-Options": "nosniff"}
    return FileResponse(found.path, media_type=found.media_type, headers=headers)
