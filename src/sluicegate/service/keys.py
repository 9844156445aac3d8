"""Creating keys from the command line, while the service runs or not."""

from __future__ import annotations

from pathlib import Path

from sluicegate.clock import SystemClock
from sluicegate.errors import InvalidInput
from sluicegate.service.db import open_db
from sluicegate.service.tenants import Role, Tenants
from sluicegate.wiring import Shared


async def create(*, data_dir: Path | Shared, org: str, role: str) -> str:
    """A new token for ``org`` with ``role``, stored (hashed) in ``data_dir`` or in the
    shared PostgreSQL database, where every instance finds it."""
    try:
        chosen = Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput("INVALID_ROLE", f"role must be one of {roles}, not {role!r}") from None
    db = await open_db(data_dir)
    try:
        return await Tenants(db, SystemClock()).create_key(org=org, role=chosen)
    finally:
        await db.aclose()
