"""``sluicegate queues``: list an org's throttling queues, pause, resume or purge one.

Every command talks to a running service (:mod:`sluicegate.cli.remote`: ``--url``,
``--key``, ``--org``, ``--sandbox``, or their environment variables). A queue's id is its
throttling config's uid. ``purge`` ends calls for good, so it asks first, showing how many
calls it would end, and reads the answer from stdin; ``--yes`` skips the question
(scripts). Any answer but yes, or none (stdin closed), purges nothing and exits 2.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any
from urllib.parse import quote

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

queues = typer.Typer(help="Throttling queues: list, pause, resume, purge.", no_args_is_help=True)

QueueId = Annotated[
    str, typer.Argument(help="The queue's id: its throttling config's uid.", show_default=False)
]
Output = Annotated[str, typer.Option("--output", "-o", help="text, json or yaml.")]
HEADINGS = ("ID", "PAUSED", "DEPTH", "OLDEST", "RATE/S")


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def table(found: list[dict[str, Any]]) -> list[str]:
    """Queues under :data:`HEADINGS`, in aligned columns."""
    return aligned([HEADINGS, *((q["id"], "yes" if q["paused"] else "no", str(q["depth"]),
                                 _age(q.get("oldestAgeSeconds")), str(q["maxThroughput"]))
                                for q in found)])  # fmt: skip


def _agreed(question: str) -> bool:
    """Ask ``question`` on stderr; whether stdin answers yes (stdout stays the answer's)."""
    typer.echo(question, nl=False, err=True)
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():  # the answer was not echoed: end the question's line
        typer.echo(err=True)
    return answer.strip().lower() in ("y", "yes")


def _describe(queue: dict[str, Any]) -> str:
    state = "paused" if queue["paused"] else "running"
    return f"queue {queue['id']}: {state}, {queue['depth']} calls waiting"


@queues.command("list")
def list_queues(
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")] = "table",
    url: Url = DEFAULT_URL,
    key: Key = None,
    org: Org = None,
    sandbox: SandboxName = "prod",
) -> None:
    """List the org's throttling queues: paused or not, calls waiting, the oldest one's
    age, the rate they drain at."""
    checked(output, ("table", "json", "yaml"))
    found = Remote.of(url, key, org, sandbox).request("GET", "/v1/queues")["results"]
    typer.echo(dump(found, output) if output != "table" else "\n".join(table(found)))


def _step(step: str, queue_id: str, output: str, remote: Remote, said: str = "") -> None:
    """POST the ``step`` of the queue; print the answer as ``output`` (the text starting
    with what ``said`` makes of the answer's fields)."""
    answer: dict[str, Any] = remote.request("POST", f"/v1/queues/{quote(queue_id, safe='')}:{step}")
    typer.echo(dump(answer, output) if output != "text"
               else said.format_map(answer) + _describe(answer))  # fmt: skip


@queues.command("pause")
def pause(
    queue_id: QueueId,
    output: Output = "text",
    url: Url = DEFAULT_URL,
    key: Key = None,
    org: Org = None,
    sandbox: SandboxName = "prod",
) -> None:
    """Pause a queue: every instance stops sending its calls; new calls still queue."""
    checked(output, ("text", "json", "yaml"))
    _step("pause", queue_id, output, Remote.of(url, key, org, sandbox))


@queues.command("resume")
def resume(
    queue_id: QueueId,
    output: Output = "text",
    url: Url = DEFAULT_URL,
    key: Key = None,
    org: Org = None,
    sandbox: SandboxName = "prod",
) -> None:
    """Resume a paused queue: its calls go again at its rate, oldest first."""
    checked(output, ("text", "json", "yaml"))
    _step("resume", queue_id, output, Remote.of(url, key, org, sandbox))


@queues.command("purge")
def purge(
    queue_id: QueueId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    output: Output = "text",
    url: Url = DEFAULT_URL,
    key: Key = None,
    org: Org = None,
    sandbox: SandboxName = "prod",
) -> None:
    """End every call waiting in a queue, unsent (outcome expired, "purged by an
    operator"). Calls already sent are not affected. Asks first unless --yes."""
    checked(output, ("text", "json", "yaml"))
    remote = Remote.of(url, key, org, sandbox)
    if not yes:
        found = remote.request("GET", "/v1/queues")["results"]
        queue = next((q for q in found if q["id"] == queue_id), None)
        if queue is None:
            fail(f"the org has no throttling queue {queue_id!r}", 1)
        question = f"End the {queue['depth']} calls waiting in queue {queue_id}, unsent? [y/N] "
        if not _agreed(question):
            fail("nothing purged (answer y, or give --yes)")
    _step("purge", queue_id, output, remote, said="purged {purged} calls; ")
