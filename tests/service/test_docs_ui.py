"""``/docs`` and ``/redoc``: pages that load everything from the service itself.

No browser here: the pages are read as HTML, every URL they name is fetched from the
service, and the policy header that keeps a browser from loading anything else is read.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from tests.service.conftest import Running, StartService

PAGES = ("/docs", "/redoc")
#: What each page's script defines, and how the page starts it.
STARTS = {"/docs": ("SwaggerUIBundle", "SwaggerUIBundle({"), "/redoc": ("Redoc", "<redoc spec-url")}


class References(HTMLParser):
    """The URLs a page loads: ``src``, ``href`` and ReDoc's ``spec-url`` attributes, and
    the ``url:`` Swagger UI is started with."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs
                      if name in ("src", "href", "spec-url") and value]  # fmt: skip

    def handle_data(self, data: str) -> None:
        self.scripts.append(data)
        self.urls += re.findall(r"\burl:\s*'([^']*)'", data)


async def page(service: Running, path: str) -> tuple[dict[str, str], str, References]:
    async with service.http.get(service.base + path) as response:
        assert (200, "text/html") == (response.status, response.content_type)
        text = await response.text()
        found = References()
        found.feed(text)
        return dict(response.headers), text, found


@pytest.mark.parametrize("path", PAGES)
async def test_the_page_names_no_other_host(start_service: StartService, path: str) -> None:
    """Without a key, the page answers, and every URL it names is a path of this service
    (or the empty ``data:`` icon): no CDN, no web font, no validator."""
    service = await start_service()
    _, text, found = await page(service, path)
    assert [] == re.findall(r"https?:|//[a-z0-9]", text, flags=re.IGNORECASE)
    assert found.urls
    local = [url for url in found.urls if url == "data:," or re.fullmatch(r"/[^/].*", url)]
    assert found.urls == local


@pytest.mark.parametrize("path", PAGES)
async def test_every_url_of_the_page_answers(start_service: StartService, path: str) -> None:
    """Every asset the page loads answers 200 with a script or stylesheet type, a size a real
    bundle has, what the page starts and a cache lifetime of a year; the OpenAPI
    document it loads answers too."""
    service = await start_service()
    _, text, found = await page(service, path)
    assets = [url for url in found.urls if url.startswith("/docs/assets/")]
    assert {"/docs": 2, "/redoc": 1}[path] == len(assets)
    for url in assets:
        async with service.http.get(service.base + url) as response:
            body = await response.read()
            kind = {".js": "text/javascript", ".css": "text/css"}[url[url.rindex(".") :]]
            assert (200, kind) == (response.status, response.content_type), url
            assert len(body) > 100_000, url
            assert "max-age=31536000" in response.headers["Cache-Control"]
            assert "immutable" in response.headers["Cache-Control"]
            if url.endswith(".js"):  # the bundle defines what the page starts
                defines, started = STARTS[path]
                assert defines.encode() in body, url
                assert started in text
    specs = [url for url in found.urls if url.endswith("/openapi.json")]
    assert ["/openapi.json"] == specs
    async with service.http.get(service.base + specs[0]) as response:
        assert 200 == response.status
        assert "sluicegate" == (await response.json())["info"]["title"]


@pytest.mark.parametrize("path", PAGES)
async def test_the_browser_may_load_nothing_from_elsewhere(
    start_service: StartService, path: str
) -> None:
    """The page's Content-Security-Policy names no host: every source is the service itself
    ('self'), inline code of the page, or ``data:``/``blob:`` URLs the UIs make; a page
    is checked again each time it is shown (it names this version's assets)."""
    service = await start_service()
    headers, _, _ = await page(service, path)
    policy = [part.split() for part in headers["Content-Security-Policy"].split(";")]
    directives = {part[0]: part[1:] for part in policy}
    assert ["'self'"] == directives["default-src"]
    allowed = {"'self'", "'unsafe-inline'", "'none'", "data:", "blob:"}
    assert set() == {source for sources in directives.values() for source in sources} - allowed
    assert "no-cache" == headers["Cache-Control"]


async def test_an_asset_of_another_version_is_not_found(start_service: StartService) -> None:
    """An asset URL whose digest is not its content's, or an unknown name, is a 404 in the
    JSON error model: no file outside the UIs' bundles is ever served."""
    service = await start_service()
    _, _, found = await page(service, "/redoc")
    (url,) = [url for url in found.urls if url.startswith("/docs/assets/")]
    digest = url.split("/")[3]
    for wrong in (url.replace(digest, "0" * len(digest)),
                  url.replace("redoc.standalone.js", "..%2F__init__.py"),
                  url.replace("redoc.standalone.js", "favicon.png")):  # fmt: skip
        status, problem = await service.request("GET", wrong, {})
        assert (404, "NOT_FOUND") == (status, problem["code"]), wrong
