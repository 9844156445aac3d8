"""Placeholder: filled in by issue 10's work on queues."""

from __future__ import annotations

from fastapi import APIRouter

from sluicegate.service.bodies import JsonRoute

router = APIRouter(route_class=JsonRoute)
