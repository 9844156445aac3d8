"""Placeholder: ``sluicegate apply``, ``diff`` and ``get`` (config as code), issue 10."""

from __future__ import annotations

import typer

commands = typer.Typer()
