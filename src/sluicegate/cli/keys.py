"""``sluicegate keys``: create, list and revoke the service's API keys.

Each command acts in one of two places. On the **database** (``--data-dir``, SQLite, the
default ``.sluicegate``; or ``--postgres``, shared by several instances): the operator's
way, any org, with or without a running service. Or through a **running service**
(``--url`` with an admin ``--key`` of ``--org``): that org's keys only, over
``/v1/keys``. Of ``--url``, ``--data-dir`` and ``--postgres``, the one given on the command
line is used, else the one from the environment (where ``SLUICEGATE_POSTGRES_URL`` wins
over ``SLUICEGATE_DATA_DIR``, as for ``serve``); any other two is an error.

A data dir that does not exist is an error (exit 2) unless ``keys create --create``: a
mistyped path must not become a new, empty database. Exit codes are those of every
command: 1 an error answer (no such key), 2 bad input, 3 the database or service cannot
be reached.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import quote

import typer

from sluicegate.cli.remote import Key, Org, Remote, checked, dump, fail
from sluicegate.service.options import CONFIG_ENV

if TYPE_CHECKING:
    from sluicegate.wiring import Shared

_T = TypeVar("_T")

keys = typer.Typer(help="API keys: create, list and revoke them.", no_args_is_help=True)

DEFAULT_DATA_DIR = Path(".sluicegate")
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="SLUICEGATE_DATA_DIR", show_default=False,
                 help="The service's data dir (default .sluicegate): act on its database."),
]  # fmt: skip
PostgresUrl = Annotated[
    str | None,
    typer.Option("--postgres", envvar="SLUICEGATE_POSTGRES_URL", show_default=False,
                 help="The PostgreSQL database shared by several instances: act on it."),
]  # fmt: skip
ServiceUrl = Annotated[
    str | None,
    typer.Option("--url", envvar="SLUICEGATE_URL", show_default=False,
                 help="A running service: act through its API, with an admin --key."),
]  # fmt: skip
Output = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")]
Made = Annotated[str, typer.Option("--output", "-o", help="text, json or yaml.")]
COLUMNS = {"keyId": "KEY ID", "org": "ORG", "role": "ROLE", "name": "NAME", "state": "STATE",
           "createdAt": "CREATED", "expiresAt": "EXPIRES", "revokedAt": "REVOKED"}  # fmt: skip


def _place(
    ctx: typer.Context,
    url: str | None,
    key: str | None,
    org: str | None,
    data_dir: Path | None,
    postgres: str | None,
) -> Remote | Path | Shared:
    """Where the command acts: a :class:`Remote`, a data dir or the shared database."""
    given = [name for name, value in (("url", url), ("data_dir", data_dir),
                                      ("postgres", postgres)) if value is not None]  # fmt: skip
    typed = [name for name in given if _source(ctx, name) == "COMMANDLINE"]
    if typed:
        given = typed
    elif given == ["data_dir", "postgres"]:  # both in the environment: as for `serve`
        given = ["postgres"]
    if len(given) > 1:
        flags = " and ".join("--" + name.replace("_", "-") for name in given)
        fail(f"{flags} name different places: give only one")
    if url is not None and given == ["url"]:
        return Remote.of(url, key, org, "prod")
    if not given and os.environ.get(CONFIG_ENV):  # the service's settings file says where
        postgres, data_dir = _from_settings_file(Path(os.environ[CONFIG_ENV]))
    if postgres is not None and (given == ["postgres"] or not given):
        from sluicegate.wiring import Shared

        return Shared(redis_url="", postgres_url=postgres)
    return data_dir or DEFAULT_DATA_DIR


def _from_settings_file(file: Path) -> tuple[str | None, Path]:
    """The shared database and the data dir that the settings file ``file`` gives."""
    from sluicegate.service.options import BadSetting, load

    try:
        chosen = load(file=file, environ={}, flags={})
    except BadSetting as exc:
        fail(str(exc))
    return chosen["postgres_url"].value, chosen["data_dir"].value


def _source(ctx: typer.Context, name: str) -> str | None:
    """Where the value of the parameter ``name`` came from: ``COMMANDLINE``,
    ``ENVIRONMENT``, ``DEFAULT``..."""
    found = ctx.get_parameter_source(name)
    return None if found is None else found.name


def _run(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` on the database; its errors as one line and the exit code they mean."""
    from sluicegate.errors import InvalidInput, SluicegateError

    try:
        return asyncio.run(work)
    except InvalidInput as exc:
        fail(str(exc), 2)
    except SluicegateError as exc:
        fail(str(exc), 3)


def _existing(path: Path, *, create: bool = False, data: bool = True) -> Path:
    """``path``, a data dir that exists (unless ``create``), holding a service database
    if ``data``: else exit 2."""
    from sluicegate.errors import InvalidInput
    from sluicegate.service.db import DB_NAME, existing

    try:
        found = existing(path, create=create)
    except InvalidInput as exc:
        fail(str(exc))
    if data and not (found / DB_NAME).exists():
        fail(f"the data dir {found} holds no sluicegate data (no {DB_NAME})")
    return found


@keys.command("create")
def create_key(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="admin, editor, caller or viewer.")],
    org: Org = None,
    name: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Expire after this long: 90d, 12h, 30m, 2w, 1d12h.")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="Expire at this ISO-8601 time (UTC without offset).")
    ] = None,
    data_dir: DataDir = None,
    create: Annotated[bool, typer.Option("--create", help="Make the data dir if missing.")] = False,
    postgres: PostgresUrl = None,
    url: ServiceUrl = None,
    key: Key = None,
    output: Made = "text",
) -> None:
    """Create an API key of --org with --role. The token is printed alone on the last line
    (or as `token` with --output json/yaml); it is not shown again."""
    from sluicegate.clock import SystemClock
    from sluicegate.errors import InvalidInput
    from sluicegate.service import keys as service

    checked(output, ("text", "json", "yaml"))
    if not org:
        fail("give the org with --org or SLUICEGATE_ORG")
    try:
        chosen = service.role_of(role)
        expires = service.expiry(at=expires_at, within=expires_in, now=SystemClock().now())
    except InvalidInput as exc:
        fail(str(exc))
    place = _place(ctx, url, key, org, data_dir, postgres)
    if create and not isinstance(place, Path):
        fail("--create applies to a data dir only")
    if isinstance(place, Remote):
        body = {"role": chosen.value, "name": name, "expiresAt": service.iso(expires)}
        made = place.request("POST", "/v1/keys", json=body)
        token = made.pop("token")
    else:
        where = _existing(place, create=create, data=False) if isinstance(place, Path) else place
        token, made = _run(service.create(where=where, org=org, role=chosen, name=name,
                                          expires_at=expires))  # fmt: skip
    if output != "text":
        typer.echo(dump({**made, "token": token}, output))
        return
    until = f", expiring {made['expiresAt']}" if made["expiresAt"] else ""
    typer.echo(f"Created the {chosen.value} key {made['keyId']} of org {org!r}{until}.")
    typer.echo("Keep it secret; it is not shown again:")
    typer.echo(token)


@keys.command("list")
def list_keys(
    ctx: typer.Context,
    org: Org = None,
    data_dir: DataDir = None,
    postgres: PostgresUrl = None,
    url: ServiceUrl = None,
    key: Key = None,
    output: Output = "table",
) -> None:
    """List the keys of --org (on the database without --org: every org's), oldest first,
    revoked and expired ones too. Never a token."""
    from sluicegate.service import keys as service

    checked(output, ("table", "json", "yaml"))
    place = _place(ctx, url, key, org, data_dir, postgres)
    if isinstance(place, Remote):
        found: list[dict[str, Any]] = place.request("GET", "/v1/keys")["results"]
    else:
        where = _existing(place) if isinstance(place, Path) else place
        found = _run(service.listing(where=where, org=org))
    if output != "table":
        typer.echo(dump(found, output))
        return
    rows = [list(COLUMNS.values())]
    rows += [[str(entry[field] or "-") for field in COLUMNS] for entry in found]
    widths = [max(len(row[n]) for row in rows) for n in range(len(COLUMNS))]
    for row in rows:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@keys.command("revoke")
def revoke_key(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...), from `keys list`.")],
    org: Org = None,
    data_dir: DataDir = None,
    postgres: PostgresUrl = None,
    url: ServiceUrl = None,
    key: Key = None,
) -> None:
    """Revoke a key: refused from then on (by a running service within a second). On the
    database, --org (optional) must be the key's org; through a service it always is."""
    from sluicegate.service import keys as service

    place = _place(ctx, url, key, org, data_dir, postgres)
    if isinstance(place, Remote):
        place.request("DELETE", f"/v1/keys/{quote(key_id, safe='')}")
        typer.echo(f"Revoked {key_id}.")
        return
    where = _existing(place) if isinstance(place, Path) else place
    found = _run(service.revoke(where=where, key=key_id, org=org))
    if found is None:
        fail(f"KEY_NOT_FOUND: no key {key_id!r}" + (f" in org {org!r}" if org else ""), 1)
    typer.echo(f"Revoked {key_id} ({found['role']} key of org {found['org']!r}) "
               f"at {found['revokedAt']}.")  # fmt: skip
