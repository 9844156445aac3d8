"""``sluicegate calls``: list ended calls, read one, follow new outcomes, replay one.

Every command talks to a running service (:mod:`sluicegate.cli.remote`: ``--url``,
``--key``, ``--org``, ``--sandbox``, or their environment variables). ``tail`` polls
``GET /v1/calls`` with the cursor of its last answer, oldest first: the service numbers
results in the order they are written, so every call is printed once, in the order the
results were written, even when calls end out of order or on several instances.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer

from sluicegate.cli.remote import (
    DEFAULT_URL,
    Key,
    Org,
    Remote,
    SandboxName,
    Url,
    aligned,
    checked,
    dump,
    fail,
)

calls = typer.Typer(help="Calls: list them, read one, follow new outcomes, replay one.",
                    no_args_is_help=True)  # fmt: skip

Journey = Annotated[str | None, typer.Option("--journey", help="Only this journey.")]
Outcome = Annotated[str | None, typer.Option(
    "--outcome", help="Only this outcome: success, capped, expired, timedout, http_error, "
                      "network_error or blocked.")]  # fmt: skip
Endpoint = Annotated[
    str | None,
    typer.Option(
        "--endpoint", help="Only this endpoint: a capping config uid, or a host without one."
    ),
]
Host = Annotated[str | None, typer.Option("--host", help="Only calls to this host.")]
Since = Annotated[str | None, typer.Option(
    "--since", help="Ended at or after: ISO-8601, epoch seconds, or a time ago (30s, 15m, 2h, "
                    "7d).")]  # fmt: skip
Until = Annotated[
    str | None,
    typer.Option("--until", help="Ended before: ISO-8601, epoch seconds, or a time ago."),
]
Output = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")]
CallId = Annotated[str, typer.Argument(help="The call's id.", show_default=False)]

_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Calls asked for by each poll of ``tail``: a full page is followed by the next at once.
TAIL_PAGE = 1000


def _time(text: str | None) -> str | None:
    """``text`` as the service reads it: a time ago (``15m``) becomes epoch seconds."""
    if text is None:
        return None
    found = _AGO.fullmatch(text.strip())
    if found is None:
        return text
    return f"{time.time() - float(found[1]) * _SECONDS[found[2]]:.3f}"


def _filters(journey: str | None, outcome: str | None, endpoint: str | None, host: str | None,
             since: str | None, until: str | None) -> dict[str, str]:  # fmt: skip
    given = {"journeyId": journey, "outcome": outcome, "endpoint": endpoint, "host": host,
             "from": _time(since), "to": _time(until)}  # fmt: skip
    return {name: value for name, value in given.items() if value is not None}


HEADINGS = ("ENDED", "CALL", "JOURNEY", "OUTCOME", "STATUS", "REQUEST")


def fields(call: dict[str, Any]) -> tuple[str, ...]:
    """What a line shows of an ended call: when it ended, its id, journey, outcome, HTTP
    status (``-`` without a response) and request."""
    status = "-" if call.get("status") is None else str(call["status"])
    request = f"{call.get('method') or '-'} {call.get('url') or '-'}"
    return (call["endedAt"], call["callId"], call["journeyId"], call["outcome"], status, request)


def line(call: dict[str, Any]) -> str:
    """One ended call on one line (``tail``: no column can know the width of the next)."""
    return "  ".join(fields(call))


def table(found: list[dict[str, Any]]) -> list[str]:
    """Ended calls under :data:`HEADINGS`, in aligned columns."""
    return aligned([HEADINGS, *map(fields, found)])


@calls.command("list")
def list_calls(
    journey: Journey = None,
    outcome: Outcome = None,
    endpoint: Endpoint = None,
    host: Host = None,
    since: Since = None,
    until: Until = None,
    order: Annotated[str, typer.Option(help="newest or oldest first.")] = "newest",
    limit: Annotated[int, typer.Option(help="Calls on the page, 1 to 1000.")] = 100,
    cursor: Annotated[str | None, typer.Option(help="Go on from an earlier page.")] = None,
    output: Output = "table",
    url: Url = DEFAULT_URL,
    key: Key = None,
    org: Org = None,
    sandbox: SandboxName = "prod",
) -> None:
    """List ended calls, newest first. A table ends with the command for the next page."""
    checked(output, ("table", "json", "yaml"))
    remote = Remote.of(url, key, org, sandbox)
    params = _filters(journey, outcome, endpoint, host, since, until) | {
        "order": order, "limit": str(limit)}  # fmt: skip
    if cursor is not None:
        params["cursor"] = cursor
    page = remote.request("GET", "/v1/calls", params=params)
    if output != "table":
        typer.echo(dump(page, output))
        return
    if page["calls"]:
        typer.echo("\n".join(table(page["calls"])))
    if page["next"] is not None and page["calls"]:
        typer.echo(f"more: sluicegate calls list --cursor {page['next']} (same filters)",
                   err=True)  # fmt: skip


@calls.command("get")
def get_call(
    call_id: CallId,
    output: Annotated[str, typer.Option("--output", "-o", help="json or yaml.")] = "json",
    url: Url = DEFAULT_URL,
    key: Key = None,
    org: Org = None,
    sandbox: SandboxName = "prod",
) -> None:
    """Print a call's result view, or its state while it has not ended."""
    checked(output, ("json", "yaml"))
    remote = Remote.of(url, key, org, sandbox)
    typer.echo(dump(remote.request("GET", f"/v1/calls/{quote(call_id, safe='')}"), output))


@calls.command("replay")
def replay_call(
    call_id: CallId,
    wait: Annotated[
        float,
        typer.Option(
            help="Seconds (0 to 60) to wait for the new call's outcome; 0 answers at once."
        ),
    ] = 0,
    output: Annotated[str, typer.Option("--output", "-o", help="json or yaml.")] = "json",
    url: Url = DEFAULT_URL,
    key: Key = None,
    org: Org = None,
    sandbox: SandboxName = "prod",
) -> None:
    """Make a new call with the request of a call that did not succeed; print the new
    call's result view, or its id and state when it has not ended."""
    checked(output, ("json", "yaml"))
    if not 0 <= wait <= 60:
        fail(f"--wait must be between 0 and 60 seconds, not {wait:g}")
    remote = replace(Remote.of(url, key, org, sandbox), timeout=wait + 30)
    answer = remote.request("POST", f"/v1/calls/{quote(call_id, safe='')}:replay",
                            json={"waitSeconds": wait})  # fmt: skip
    typer.echo(dump(answer, output))


@calls.command("tail")
def tail_calls(
    journey: Journey = None,
    outcome: Outcome = None,
    endpoint: Endpoint = None,
    host: Host = None,
    last: Annotated[int, typer.Option(help="First print this many calls that already ended.")] = 0,
    interval: Annotated[float, typer.Option(help="Seconds between two polls.")] = 1.0,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json (a line each).")] = (
        "text"
    ),
    url: Url = DEFAULT_URL,
    key: Key = None,
    org: Org = None,
    sandbox: SandboxName = "prod",
) -> None:
    """Print each call as it ends, one line each, until stopped (Ctrl-C, SIGTERM)."""
    checked(output, ("text", "json"))
    if not 0 <= last <= 1000:
        fail(f"--last must be between 0 and 1000, not {last}")
    if not 0.05 <= interval <= 3600:
        fail(f"--interval must be between 0.05 and 3600 seconds, not {interval:g}")
    remote = Remote.of(url, key, org, sandbox)
    filters = _filters(journey, outcome, endpoint, host, None, None)
    signal.signal(signal.SIGTERM, _stop)

    def show(call: dict[str, Any]) -> None:
        text = json.dumps(call, ensure_ascii=False) if output == "json" else line(call)
        typer.echo(text)

    try:
        with remote.client() as client:
            _follow(remote, client, filters, last, interval, show)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except BrokenPipeError:  # the reader left (``| head``): stop, and flush nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


def _follow(remote: Remote, client: httpx.Client, filters: dict[str, str], last: int,
            interval: float, show: Callable[[dict[str, Any]], None]) -> None:  # fmt: skip
    """Print the ``last`` calls, then every call written after them, forever."""
    first = remote.request("GET", "/v1/calls", client=client,
                           params=filters | {"limit": str(max(last, 1))})  # fmt: skip
    for call in reversed(first["calls"][:last]):
        show(call)
    cursor = first["tail"]
    while True:
        params = filters | {"cursor": cursor, "limit": str(TAIL_PAGE)}
        page = remote.request("GET", "/v1/calls", client=client, params=params)
        for call in page["calls"]:
            show(call)
        cursor = page["next"]
        if len(page["calls"]) < TAIL_PAGE:
            time.sleep(interval)


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends ``tail`` as Ctrl-C does: quietly, with exit code 0."""
    raise KeyboardInterrupt
