"""The ``sluicegate`` command: a thin layer over the library."""

from __future__ import annotations

import typer

app = typer.Typer(help="sluicegate: guardrails for journeys calling external systems.")


@app.callback()
def _root() -> None:
    """Keep sub-commands explicit, even while there is only one."""


@app.command()
def demo() -> None:
    """Send a burst of calls from three journeys to a flaky loopback system and show
    how every call ended under capping, throttling, timeouts and retries."""
    from sluicegate import demo as demo_module

    demo_module.main()


def main() -> None:
    app()
