"""Placeholder: ``sluicegate calls`` (list, tail, replay), issue 10."""

from __future__ import annotations

import typer

calls = typer.Typer(help="Calls: list them, follow new outcomes, replay one.", no_args_is_help=True)


@calls.command("list")
def list_calls() -> None:
    """Placeholder."""
