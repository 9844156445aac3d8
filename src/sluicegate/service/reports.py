"""STUB — being written: report buckets kept across restarts, and the report routes."""

from __future__ import annotations

from fastapi import APIRouter

from sluicegate.backends.database import Database
from sluicegate.call import Call
from sluicegate.clock import Clock
from sluicegate.outcomes import CallResult

router = APIRouter(tags=["reports"])


class ReportBook:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def start(self) -> None:
        return None

    def record(self, call: Call, result: CallResult) -> None:
        return None

    async def aclose(self) -> None:
        return None
