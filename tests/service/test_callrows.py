"""The call log's one write: a made-up ending never replaces a result already written."""

from __future__ import annotations

import sqlite3

from sluicegate.service.callrows import Batch, Finished, interrupted, write_batch
from sluicegate.service.db import SCHEMA, upgrade_calls


def finished(call_id: str, *, guarded: bool) -> Finished:
    return Finished(call_id=call_id, org="acme", sandbox="prod", journey="j", at=1.0,
                    result=interrupted(call_id), callback=None, known=False,
                    guarded=guarded)  # fmt: skip


def test_an_interrupted_ending_does_not_overwrite_a_result() -> None:
    """A guarded ending leaves a call that already ended as it was and sends no callback;
    over a call that has not ended, it is written and its callback is owed."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    upgrade_calls(conn)
    conn.executemany(
        "INSERT INTO calls (call_id, org, sandbox, journey, state, callback_url, created_at, "
        "result) VALUES (?, 'acme', 'prod', 'j', ?, 'http://cb.example/', 0, ?)",
        [("ended", "done", '{"outcome": "success"}'), ("lost", "queued", None)],
    )
    batch = Batch(finished=[finished("ended", guarded=True), finished("lost", guarded=True)])
    callbacks = write_batch(batch, None, conn)
    rows = dict(conn.execute("SELECT call_id, result FROM calls").fetchall())
    assert ({"lost": "http://cb.example/"}, '{"outcome": "success"}') == (
        callbacks, rows["ended"]
    )  # fmt: skip
    assert '"outcome":"network_error"' in rows["lost"]
