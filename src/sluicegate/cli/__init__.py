"""The ``sluicegate`` command: a thin layer over the library and the service.

Each group of commands lives in its own module; this one puts them together.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sluicegate.cli.apply import commands as config_as_code
from sluicegate.cli.calls import calls
from sluicegate.cli.keys import keys
from sluicegate.cli.listing import commands as listing
from sluicegate.cli.queues import queues
from sluicegate.cli.serve import commands, config

app = typer.Typer(help="sluicegate: guardrails for journeys calling external systems.",
                  no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})  # fmt: skip


def _version(asked: bool) -> None:
    if asked:
        from sluicegate import __version__

        typer.echo(f"sluicegate {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                          help="Print the version and exit.")] = False,
) -> None:  # fmt: skip
    """sluicegate: guardrails for journeys calling external systems."""


app.registered_commands += commands.registered_commands
app.registered_commands += config_as_code.registered_commands
app.registered_commands += listing.registered_commands
app.add_typer(keys, name="keys")
app.add_typer(config, name="config")
app.add_typer(calls, name="calls")
app.add_typer(queues, name="queues")


def main() -> None:
    app()
