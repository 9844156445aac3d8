"""Which request a 3xx leads to: the engine follows redirects itself, hop by hop."""

from __future__ import annotations

import pytest

from sluicegate.redirects import next_hop
from sluicegate.transport import Request, Response

URL = "https://api.example.org/v1/send"


def redirect(status: int, location: str | None) -> Response:
    return Response(status=status, headers={} if location is None else {"location": location})


@pytest.mark.parametrize(
    ("status", "method", "expected"),
    [(302, "GET", ("GET", b"data")), (303, "POST", ("GET", b"")), (302, "POST", ("GET", b"")),
     (301, "POST", ("GET", b"")), (307, "POST", ("POST", b"data")),
     (308, "PUT", ("PUT", b"data")), (302, "PUT", ("PUT", b"data")),
     (303, "HEAD", ("HEAD", b"data"))],
)  # fmt: skip
def test_the_method_after_a_redirect(status: int, method: str, expected: tuple[str, bytes]) -> None:
    """303, and 301/302 after a POST, become a GET without body; the others keep both."""
    request = Request(method=method, url=URL, headers={"Content-Type": "a/b"}, body=b"data")
    hop = next_hop(request, redirect(status, "/v2/send"))
    assert hop is not None
    assert expected == (hop.method, hop.body)
    assert ("Content-Type" in hop.headers) == (hop.method == method)


@pytest.mark.parametrize(
    ("location", "expected_url", "keeps_credentials"),
    [("/v2/send?x=1", "https://api.example.org/v2/send?x=1", True),
     ("https://API.example.org:443/v2", "https://API.example.org:443/v2", True),
     ("other", "https://api.example.org/v1/other", True),
     ("http://api.example.org/v2", "http://api.example.org/v2", False),
     ("https://evil.example.net/", "https://evil.example.net/", False)],
)  # fmt: skip
def test_the_target_and_credentials(
    location: str, expected_url: str, keeps_credentials: bool
) -> None:
    """The Location is resolved against the URL that answered; credentials and cookies go
    to the same origin only, other headers everywhere."""
    headers = {"Authorization": "secret", "Cookie": "c", "Idempotency-Key": "k"}
    hop = next_hop(Request(method="GET", url=URL, headers=headers), redirect(302, location))
    assert hop is not None
    kept = {"Authorization", "Cookie"} <= hop.headers.keys()
    assert (expected_url, keeps_credentials, "k") == (hop.url, kept, hop.headers["Idempotency-Key"])


@pytest.mark.parametrize(
    ("status", "location"), [(200, "/x"), (304, "/x"), (300, "/x"), (302, None), (302, "  ")]
)
def test_no_hop(status: int, location: str | None) -> None:
    """Only 301, 302, 303, 307 and 308 with a Location lead anywhere."""
    assert next_hop(Request(method="GET", url=URL), redirect(status, location)) is None
