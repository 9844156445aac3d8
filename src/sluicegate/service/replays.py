"""What a replay needs: the request of a call that did not succeed, kept with its result.

``POST /v1/calls/{callId}:replay`` makes a new call with the same request as an ended
one. A call's request is held in memory only while it runs (and in the engine's journal
while it waits in a throttling queue), so the call log keeps it with the result of every
call that ended in another outcome than ``success`` (kept as long as the result: 7
days). A success keeps nothing: replaying it would call the system again for nothing,
and its headers and body would lie on disk for a week for no use.

What is kept holds what a partner needs to accept the call (an ``Authorization``
header, a customer's data in the body, a key in the URL), so with a data key it is
sealed like a queued call (:mod:`sluicegate.sealing`), bound to the call's id. Without
one it is stored plain, as queued calls are, in a database only the service reads.

The form: one byte (``p`` plain, ``s`` sealed), then, plain or sealed, the JSON of
``[service, method, url, headers]``, a newline, and the body's bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from sluicegate.call import Call
from sluicegate.errors import StorageError
from sluicegate.sealing import Sealer

PLAIN, SEALED = b"p", b"s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Kept:
    """The request of an ended call, as a replay makes it again."""

    service: str
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


def keep(call: Call, call_id: str, sealer: Sealer | None) -> bytes:
    """``call``'s request in the stored form (sealed with ``sealer``, bound to ``call_id``)."""
    meta = [call.service.value, call.method, call.url, dict(call.headers)]
    plain = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode()
    plain += b"\n" + call.body
    if sealer is None:
        return PLAIN + plain
    return SEALED + sealer.seal(plain, call_id)


def reopen(stored: bytes, call_id: str, sealer: Sealer | None) -> Kept:
    """The request :func:`keep` stored for ``call_id``. :class:`StorageError` when it is
    sealed and ``sealer`` holds no key that opens it, or it does not read back."""
    kind, rest = stored[:1], stored[1:]
    if kind == SEALED:
        if sealer is None:
            raise StorageError(f"the request of call {call_id!r} is sealed; no data key given")
        rest = sealer.open(rest, call_id)
    elif kind != PLAIN:
        raise StorageError(f"the request of call {call_id!r} does not read back")
    meta, _, body = rest.partition(b"\n")
    try:
        service, method, url, headers = json.loads(meta)
    except ValueError as exc:
        raise StorageError(f"the request of call {call_id!r} does not read back") from exc
    return Kept(service=service, method=method, url=url, headers=headers, body=body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Original:
    """An ended call as a replay sees it: its journey and callback, and its request, or
    why that was not kept (``missing``)."""

    journey: str
    callback_url: str | None
    request: Kept | None
    missing: str = ""


def of_call(call: Call) -> Kept:
    """The request of ``call``, still in memory."""
    return Kept(service=call.service.value, method=call.method, url=call.url,
                headers=dict(call.headers), body=call.body)  # fmt: skip
