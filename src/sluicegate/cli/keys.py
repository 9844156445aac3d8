"""``sluicegate keys``: the service's API keys."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from sluicegate.cli.serve import DataDir, PostgresUrl, RedisUrl, _storage

keys = typer.Typer(help="API keys of the service.", no_args_is_help=True)


@keys.command("create")
def create_key(
    org: Annotated[str, typer.Option(help="The org the key acts for.")],
    role: Annotated[str, typer.Option(help="admin, editor, caller or viewer.")] = "admin",
    data_dir: DataDir = Path(".sluicegate"),
    redis: RedisUrl = None,
    postgres: PostgresUrl = None,
) -> None:
    """Create an API key; the token is printed alone on the last line."""
    from sluicegate.errors import SluicegateError
    from sluicegate.service.keys import create

    try:
        where = _storage(data_dir, redis, postgres, need_redis=False)
        token = asyncio.run(create(data_dir=where, org=org, role=role))
    except SluicegateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Created a {role} key for org {org!r}. Keep it secret; it is not shown again:")
    typer.echo(token)
