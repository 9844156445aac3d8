"""The ``sluicegate`` command: a thin layer over the library and the service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="sluicegate: guardrails for journeys calling external systems.")
keys = typer.Typer(help="API keys of the service.")
app.add_typer(keys, name="keys")

DataDir = Annotated[Path, typer.Option("--data-dir", help="Where the service keeps its data.")]


@app.command()
def demo() -> None:
    """Send a burst of calls from three journeys to a flaky loopback system and show
    how every call ended under capping, throttling, timeouts and retries."""
    from sluicegate import demo as demo_module

    demo_module.main()


@app.command()
def serve(
    data_dir: DataDir = Path(".sluicegate"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    dev: Annotated[
        bool, typer.Option(help="Allow egress to loopback and any port; make a first key.")
    ] = False,
) -> None:
    """Run the HTTP service: the Adobe-compatible configuration API, calls and reports."""
    from sluicegate.service.server import run
    from sluicegate.service.server import serve as serve_forever

    run(lambda: serve_forever(data_dir=data_dir, host=host, port=port, dev=dev, say=typer.echo))


@keys.command("create")
def create_key(
    data_dir: DataDir,
    org: Annotated[str, typer.Option(help="The org the key acts for.")],
    role: Annotated[str, typer.Option(help="admin, editor, caller or viewer.")] = "admin",
) -> None:
    """Create an API key; the token is printed alone on the last line."""
    from sluicegate.errors import SluicegateError
    from sluicegate.service.keys import create

    try:
        token = asyncio.run(create(data_dir=data_dir, org=org, role=role))
    except SluicegateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Created a {role} key for org {org!r}. Keep it secret; it is not shown again:")
    typer.echo(token)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
