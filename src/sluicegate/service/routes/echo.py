"""Placeholder: ``/dev/echo``, the built-in external system of ``serve --dev`` (issue 10)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)


@router.api_route("/dev/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def echo() -> dict[str, str]:
    return {"echo": "ok"}
