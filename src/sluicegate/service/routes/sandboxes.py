"""Sandboxes of an org: every org has ``prod`` (production); admins add more."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from sluicegate.service.bodies import JsonRoute
from sluicegate.service.context import Admin, Reader
from sluicegate.service.problems import responses


class SandboxIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    type: Literal["production", "development"]


class SandboxOut(BaseModel):
    name: str
    type: str


class SandboxList(BaseModel):
    results: list[SandboxOut]


router = APIRouter(
    route_class=JsonRoute,
    prefix="/v1/sandboxes",
    tags=["sandboxes"],
    responses=responses({409: "A sandbox of that name exists"}),
)


@router.post("", response_model=SandboxOut, status_code=201)
async def create_sandbox(body: SandboxIn, ctx: Admin) -> SandboxOut:
    """Add a sandbox to the org (409 if the name is taken)."""
    made = await ctx.runtime.tenants.create_sandbox(org=ctx.org, name=body.name, type=body.type)
    return SandboxOut(name=made.name, type=made.type)


@router.get("", response_model=SandboxList)
async def list_sandboxes(ctx: Reader) -> SandboxList:
    """The org's sandboxes, oldest first."""
    found = await ctx.runtime.tenants.sandboxes(ctx.org)
    return SandboxList(results=[SandboxOut(name=s.name, type=s.type) for s in found])
