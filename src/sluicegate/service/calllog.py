"""STUB — being written: results of calls made through the service, idempotency, callbacks."""

from __future__ import annotations

from sluicegate.backends.database import Database
from sluicegate.call import Call
from sluicegate.clock import Clock
from sluicegate.gate import Gate
from sluicegate.outcomes import CallResult


class CallLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def start(self, gate: Gate) -> None:
        self._gate = gate

    def record(self, call: Call, result: CallResult) -> None:
        return None

    async def aclose(self) -> None:
        return None
