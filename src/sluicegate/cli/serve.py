"""``sluicegate serve`` and the commands that run in the service's own process or data."""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from sluicegate.service.options import Chosen
    from sluicegate.wiring import Shared

commands = typer.Typer()
config = typer.Typer(help="The service's settings.", no_args_is_help=True)
Output = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")]


@commands.command()
def demo() -> None:
    """Send a burst of calls from three journeys to a flaky loopback system and show
    how every call ended under capping, throttling, timeouts and retries."""
    from sluicegate import demo as demo_module

    demo_module.main()


def _with_setting_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` ``--config`` and one flag per setting of
    :mod:`sluicegate.service.options`, each None unless given, so that a flag given can be
    told from a default and win over the file and the environment."""
    from sluicegate.service.options import CONFIG_ENV, SETTINGS

    kinds: dict[type, Any] = {str: str | None, int: int | None, bool: bool | None}
    hints = typing.get_type_hints(command, include_extras=True)
    declared = inspect.signature(command).parameters.values()
    own = [p.replace(annotation=hints[p.name]) for p in declared if p.kind != p.VAR_KEYWORD]
    params = [*own, inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Path | None, typer.Option("--config", show_default=False,
            help=f"A YAML file of settings (env {CONFIG_ENV}).")])]  # fmt: skip
    for setting in SETTINGS:
        names = [setting.flag, *setting.aliases]
        if setting.kind is bool:
            names = [f"{setting.flag}/--no-{setting.flag[2:]}"]
        option = typer.Option(
            *names, show_default=False, help=f"{setting.help} (env {setting.env})"
        )
        annotation = Annotated[kinds[setting.kind], option]  # type: ignore[valid-type,name-defined]
        params.append(inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=None, annotation=annotation))  # fmt: skip
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return command


def _chosen(given: dict[str, object]) -> dict[str, Chosen]:
    from sluicegate.service.options import BadSetting, load

    config = given.pop("config")
    assert config is None or isinstance(config, Path)
    try:
        return load(file=config, environ=os.environ, flags=given)
    except BadSetting as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@commands.command()
@_with_setting_flags
def serve(**given: object) -> None:
    """Run the HTTP service: the Adobe-compatible configuration API, calls and reports.

    Alone, it keeps its data in --data-dir (SQLite). Several instances behind one load
    balancer share --redis and --postgres instead, and enforce one set of rules together.
    Every setting comes from a flag, else its SLUICEGATE_* variable, else the --config
    file, else its default: `sluicegate config show` prints where each came from."""
    from sluicegate.errors import InvalidInput, StorageError
    from sluicegate.service.options import BadSetting, options
    from sluicegate.service.server import CannotListen, run
    from sluicegate.service.server import serve as serve_forever
    from sluicegate.wiring import Shared

    try:
        chosen = options(_chosen(given))
    except BadSetting as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    where: Path | Shared = chosen.data_dir
    if chosen.postgres_url is not None and chosen.redis_url is not None:
        where = Shared(redis_url=chosen.redis_url, postgres_url=chosen.postgres_url,
                       prefix=chosen.redis_prefix)  # fmt: skip
    try:
        run(lambda: serve_forever(where=where, options=chosen, say=typer.echo))
    except (StorageError, CannotListen) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    except InvalidInput as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None


@config.command("show")
@_with_setting_flags
def show(output: Output = "table", **given: object) -> None:
    """Print the settings `serve` would run with, given the same file, environment and
    flags, and where each came from. Secrets are never printed."""
    from sluicegate.cli.remote import aligned, dump
    from sluicegate.service.options import BY_NAME, shown

    if output not in ("table", "json", "yaml"):
        typer.echo(f"error: --output must be table, json or yaml, not {output!r}", err=True)
        raise typer.Exit(2)
    chosen = _chosen(given)
    rows = {name: {"value": shown(BY_NAME[name], found.value), "source": found.source}
            for name, found in chosen.items()}  # fmt: skip
    if output != "table":
        typer.echo(dump(rows, output))
        return
    lines = [
        ("SETTING", "VALUE", "SOURCE"),
        *((name, str(row["value"]), str(row["source"])) for name, row in rows.items()),
    ]
    typer.echo("\n".join(aligned(lines)))


@commands.command("data-key")
def data_key() -> None:
    """Print a new random data key for --data-key / SLUICEGATE_DATA_KEY. Keep it apart
    from the data dir: whoever holds both reads the queued calls."""
    from sluicegate.sealing import new_key

    typer.echo(new_key())
