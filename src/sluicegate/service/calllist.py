"""``GET /v1/calls``: the ended calls of an org and sandbox, page by page, or as they end.

Calls are listed by ``seq``, the order their results were written (see
:mod:`~sluicegate.service.callrows`): newest first by default, or oldest first. Either
order pages with an opaque cursor, which holds the order and the ``seq`` it continues
from, so a page never repeats or skips a call, whatever ends meanwhile:

* newest first, ``next`` continues with older calls; ``null`` after the oldest;
* oldest first, ``next`` is never ``null``: after the last page it points past the newest
  call written, and asking with it later lists the calls that ended since. ``tail``, in
  every answer, is that cursor for the calls written so far: following it is how
  ``sluicegate calls tail`` prints every call once, as it ends, from many instances alike.

Each answer reads the newest ``seq`` of the org and sandbox first and lists only up to it:
a result committed after that read has a greater number (the counters are taken in the
order they commit), so it belongs to the next answer and is never passed over.
Filters (journey, outcome, endpoint, host, end time) narrow a listing; a cursor does not
hold them, so ask each page with the same ones. The indexes by org, sandbox and ``seq``
(and by journey, and by outcome, before ``seq``) serve a page without reading the rest of
the table.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from sluicegate.backends.database import Connection, SqlDatabase
from sluicegate.errors import InvalidInput
from sluicegate.records import iso_time

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
NEWEST, OLDEST = "n", "o"
_COLUMNS = ("seq, call_id, journey, service, method, url, host, endpoint, outcome, status, "
            "created_at, ended_at, replay_of")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Cursor:
    """Where a listing goes on: in which order, and past which ``seq``."""

    order: str
    seq: int

    def text(self) -> str:
        return base64.urlsafe_b64encode(f"{self.order}{self.seq}".encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """The cursor of ``text``; ``INVALID_CURSOR`` for anything an answer did not give."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        except (binascii.Error, ValueError):
            raw = ""
        order, digits = raw[:1], raw[1:]
        if order not in (NEWEST, OLDEST) or not digits.isdigit() or len(digits) > 18:
            raise InvalidInput("INVALID_CURSOR", "cursor is not one a listing gave")
        return cls(order=order, seq=int(digits))


@dataclass(frozen=True, slots=True, kw_only=True)
class CallQuery:
    """One page of a listing: the org and sandbox, the filters, the order and the place.

    ``since`` (inclusive) and ``until`` (exclusive) bound the time a call ended, in epoch
    seconds. ``cursor`` decides the order when given; ``oldest_first`` otherwise.
    """

    org: str
    sandbox: str
    journey: str | None = None
    outcome: str | None = None
    endpoint: str | None = None
    host: str | None = None
    since: float | None = None
    until: float | None = None
    oldest_first: bool = False
    cursor: Cursor | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """Calls as listed, the cursor of the next page, and the tail's cursor."""

    calls: list[dict[str, Any]]
    next: str | None
    tail: str


async def list_calls(db: SqlDatabase, query: CallQuery) -> Page:
    """A page of ended calls (see the module docstring)."""
    top, rows = await db.run("listing calls", lambda conn: _read(conn, query))
    order = query.cursor.order if query.cursor is not None else (
        OLDEST if query.oldest_first else NEWEST)  # fmt: skip
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if order == OLDEST:  # past the last one listed, or past all there are
        start = query.cursor.seq if query.cursor is not None else 0
        after = rows[-1][0] if more else max(top, start)
        following: str | None = Cursor(order=OLDEST, seq=after).text()
    else:
        following = Cursor(order=NEWEST, seq=rows[-1][0]).text() if more else None
    return Page(calls=[_item(row) for row in rows], next=following,
                tail=Cursor(order=OLDEST, seq=top).text())  # fmt: skip


def _read(conn: Connection, query: CallQuery) -> tuple[int, list[Any]]:
    """The newest ``seq`` of the org and sandbox, then the page's rows (one more than
    the limit, to tell whether another page follows), read in this order (module
    docstring)."""
    found = conn.execute("SELECT max(seq) FROM calls WHERE org = ? AND sandbox = ?",
                         (query.org, query.sandbox)).fetchone()  # fmt: skip
    top = int(found[0]) if found and found[0] is not None else 0
    where = ["org = ?", "sandbox = ?", "seq <= ?"]
    params: list[Any] = [query.org, query.sandbox, top]
    oldest = query.oldest_first
    if query.cursor is not None:
        oldest = query.cursor.order == OLDEST
        where.append("seq > ?" if oldest else "seq < ?")
        params.append(query.cursor.seq)
    for column, value in (("journey", query.journey), ("outcome", query.outcome),
                          ("endpoint", query.endpoint), ("host", query.host)):  # fmt: skip
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.since is not None:
        where.append("ended_at >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("ended_at < ?")
        params.append(query.until)
    sql = (f"SELECT {_COLUMNS} FROM calls WHERE {' AND '.join(where)} "
           f"ORDER BY seq {'ASC' if oldest else 'DESC'} LIMIT ?")  # fmt: skip
    return top, conn.execute(sql, (*params, query.limit + 1)).fetchall()


def _item(row: Any) -> dict[str, Any]:
    _, call_id, journey, service, method, url, host, endpoint, outcome, status = row[:10]
    created_at, ended_at, replay_of = row[10:]
    return {
        "callId": call_id, "journeyId": journey, "service": service, "method": method,
        "url": url, "host": host, "endpoint": endpoint, "outcome": outcome,
        "status": status, "createdAt": iso_time(created_at),
        "endedAt": iso_time(ended_at if ended_at is not None else created_at),
        "replayOf": replay_of,
    }  # fmt: skip
