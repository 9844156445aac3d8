"""``sluicegate serve`` and the commands that run in the service's own process or data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sluicegate.wiring import Shared

commands = typer.Typer()

DataDir = Annotated[Path, typer.Option("--data-dir", help="Where the service keeps its data.")]
RedisUrl = Annotated[
    str | None,
    typer.Option("--redis", envvar="SLUICEGATE_REDIS_URL",
                 help="Redis shared by several instances (slots, queues), e.g. redis://host:6379/0."),
]  # fmt: skip
PostgresUrl = Annotated[
    str | None,
    typer.Option("--postgres", envvar="SLUICEGATE_POSTGRES_URL",
                 help="PostgreSQL shared by several instances (configs, keys, results, reports)."),
]  # fmt: skip

RedisPrefix = Annotated[
    str,
    typer.Option("--redis-prefix", envvar="SLUICEGATE_REDIS_PREFIX",
                 help="Starts every Redis key: deployments sharing one Redis use different ones."),
]  # fmt: skip

DataKey = Annotated[
    str | None,
    typer.Option("--data-key", envvar="SLUICEGATE_DATA_KEY", show_default=False,
                 help="Seal queued calls at rest with this key (from `sluicegate data-key`); "
                      "older keys after commas still open. Prefer the environment variable."),
]  # fmt: skip
DataKeyFile = Annotated[
    Path | None,
    typer.Option("--data-key-file", envvar="SLUICEGATE_DATA_KEY_FILE",
                 help="A file holding the data key(s), instead of --data-key."),
]  # fmt: skip

TransportName = Annotated[
    str,
    typer.Option("--transport", envvar="SLUICEGATE_TRANSPORT",
                 help="HTTP client of the calls: aiohttp (default), or reqwest (faster; see "
                      "docs/engine.md, Transports)."),
]  # fmt: skip


def _storage(data_dir: Path, redis: str | None, postgres: str | None, *, need_redis: bool = True,
             prefix: str = "sg") -> Path | Shared:  # fmt: skip
    """The data directory, or the shared stores when their URLs are given."""
    from sluicegate.wiring import Shared

    if redis is None and postgres is None:
        return data_dir
    if postgres is None or (need_redis and redis is None):
        typer.echo("error: shared storage needs both --redis and --postgres "
                   "(or SLUICEGATE_REDIS_URL and SLUICEGATE_POSTGRES_URL)", err=True)  # fmt: skip
        raise typer.Exit(2)
    return Shared(redis_url=redis or "", postgres_url=postgres, prefix=prefix)


@commands.command()
def demo() -> None:
    """Send a burst of calls from three journeys to a flaky loopback system and show
    how every call ended under capping, throttling, timeouts and retries."""
    from sluicegate import demo as demo_module

    demo_module.main()


@commands.command()
def serve(
    data_dir: DataDir = Path(".sluicegate"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    dev: Annotated[
        bool, typer.Option(help="Allow egress to loopback and any port; make a first key.")
    ] = False,
    redis: RedisUrl = None,
    postgres: PostgresUrl = None,
    redis_prefix: RedisPrefix = "sg",
    transport: TransportName = "aiohttp",
    data_key: DataKey = None,
    data_key_file: DataKeyFile = None,
    max_in_flight_per_org: Annotated[
        int,
        typer.Option(
            envvar="SLUICEGATE_MAX_IN_FLIGHT_PER_ORG",
            min=1,
            help="Calls one org may have in flight; over it, 429.",
        ),
    ] = 10_000,
    max_queued_per_org: Annotated[
        int,
        typer.Option(
            envvar="SLUICEGATE_MAX_QUEUED_PER_ORG",
            min=0,
            help="Calls one org may have waiting in queues; over it, 429.",
        ),
    ] = 10_000_000,
) -> None:
    """Run the HTTP service: the Adobe-compatible configuration API, calls and reports.

    Alone, it keeps its data in --data-dir (SQLite). Several instances behind one load
    balancer share --redis and --postgres instead, and enforce one set of rules together."""
    from sluicegate.errors import InvalidInput, StorageError
    from sluicegate.sealing import parse_keys
    from sluicegate.service.server import run
    from sluicegate.service.server import serve as serve_forever
    from sluicegate.settings import Settings

    where = _storage(data_dir, redis, postgres, prefix=redis_prefix)
    try:
        if data_key_file is not None:
            try:
                data_key = data_key_file.read_text().strip()
            except OSError as exc:
                raise InvalidInput("INVALID_SETTINGS", f"cannot read it: {exc}") from None
        keys = parse_keys(data_key) if data_key else ()
    except InvalidInput as exc:
        option = "--data-key-file" if data_key_file is not None else "--data-key"
        typer.echo(f"error: {option}: {exc.message}", err=True)
        raise typer.Exit(2) from None
    try:
        settings = Settings(
            allow_loopback=dev, transport=transport,  # type: ignore[arg-type]
            data_keys=keys, max_in_flight_per_org=max_in_flight_per_org,
            max_queued_per_org=max_queued_per_org,
        )  # fmt: skip
    except InvalidInput as exc:
        typer.echo(f"error: --transport: {exc.message}", err=True)
        raise typer.Exit(2) from None
    try:
        run(lambda: serve_forever(where=where, host=host, port=port, dev=dev,
                                  settings=settings, say=typer.echo))  # fmt: skip
    except StorageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None


@commands.command("data-key")
def data_key() -> None:
    """Print a new random data key for --data-key / SLUICEGATE_DATA_KEY. Keep it apart
    from the data dir: whoever holds both reads the queued calls."""
    from sluicegate.sealing import new_key

    typer.echo(new_key())
