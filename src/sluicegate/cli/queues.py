"""Placeholder: ``sluicegate queues`` (list, pause, resume, purge), issue 10."""

from __future__ import annotations

import typer

queues = typer.Typer(help="Throttling queues: list, pause, resume, purge.", no_args_is_help=True)


@queues.command("list")
def list_queues() -> None:
    """Placeholder."""
