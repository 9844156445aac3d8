"""``sluicegate get``: what a running service holds, as a table, JSON or YAML.

``get configs`` and ``get journeys`` show the sandbox's capping and throttling configs
and its journeys; with ``-o yaml`` their output is a file that ``apply -f`` takes
(:mod:`sluicegate.cli.apply`). ``get queues`` shows the org's throttling queues.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from sluicegate.cli.plan import payload_of
from sluicegate.cli.remote import (
    ADOBE,
    DEFAULT_URL,
    PATHS,
    Key,
    Org,
    Remote,
    SandboxName,
    Url,
    aligned,
    dump,
)
from sluicegate.records import ConfigKind

commands = typer.Typer()


class Listing(StrEnum):
    CONFIGS = "configs"
    JOURNEYS = "journeys"
    QUEUES = "queues"


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


@commands.command()
def get(what: Annotated[Listing, typer.Argument(metavar="WHAT",
                                                help="configs, journeys or queues.")],
        output: Annotated[Output, typer.Option("-o", "--output", help="table, json or yaml.")
                          ] = Output.TABLE,
        url: Url = DEFAULT_URL, key: Key = None, org: Org = None,
        sandbox: SandboxName = "prod") -> None:  # fmt: skip
    """Show the sandbox's capping and throttling configs, its journeys, or the org's
    throttling queues. `get configs -o yaml` (or journeys) is a file `apply -f` takes."""
    remote = Remote.of(url, key, org, sandbox)
    where = {"org": remote.org, "sandbox": remote.sandbox}
    if what is Listing.CONFIGS:
        held = {kind: remote.request("POST", f"{ADOBE}/list/{path}")["results"]
                for kind, path in PATHS.items()}  # fmt: skip
        doc: Any = where | {kind.value: [_entry(kind, e) for e in elements]
                            for kind, elements in held.items()}  # fmt: skip
        columns: tuple[str, ...] = ("kind", "uid", "state", "enforced", "methods", "url", "limits")
        rows: list[tuple[str, ...]] = [
            (kind.value, e["uid"], e["state"], _yes(e["hasBeenDeployed"]), ",".join(e["methods"]),
             e.get("url") or e["urlPattern"], _limits(e))
            for kind, elements in held.items() for e in elements]  # fmt: skip
    elif what is Listing.JOURNEYS:
        journeys = remote.request("GET", "/v1/journeys")["results"]
        doc = where | {"journeys": journeys}
        columns = ("journeyId", "timeoutSeconds")
        rows = [(j["journeyId"], str(j["timeoutSeconds"])) for j in journeys]
    else:
        paused = {q["id"] for q in remote.request("GET", "/v1/queues")["results"] if q["paused"]}
        doc = [_queue(entry) | {"paused": entry["endpoint"] in paused}
               for entry in remote.request("GET", "/v1/endpoints")["results"]
               if entry["kind"] == "throttling"]  # fmt: skip
        columns = ("uid", "methods", "urlPattern", "enforced", "paused", "rate/s", "depth",
                   "oldest s")  # fmt: skip
        rows = [(q["uid"], ",".join(q["methods"]), q["urlPattern"], _yes(q["enforced"]),
                 _yes(q["paused"]), str(q["maxThroughput"]), str(q["depth"]),
                 _cell(q["oldestAgeSeconds"])) for q in doc]  # fmt: skip
    if output is not Output.TABLE:
        typer.echo(dump(doc, output.value))
        return
    typer.echo("\n".join(aligned([[c.upper() for c in columns], *rows])))


def _entry(kind: ConfigKind, element: dict[str, Any]) -> dict[str, Any]:
    """A config as a file has it: its payload and whether it is deployed. A config whose
    update is not deployed yet is deployed: applying it deploys the update."""
    return payload_of(kind, element) | {"deployed": element["hasBeenDeployed"]}


def _queue(entry: dict[str, Any]) -> dict[str, Any]:
    """A throttling config's queue as ``get queues`` shows it."""
    rule, queue = entry["rules"][0], entry["queue"]
    return {"uid": entry["endpoint"], "urlPattern": entry["url"], "methods": rule["methods"],
            "state": rule["state"], "enforced": rule["enforced"],
            "maxThroughput": queue["maxThroughput"], "depth": queue["depth"],
            "oldestAgeSeconds": queue.get("oldestAgeSeconds")}  # fmt: skip


def _limits(element: dict[str, Any]) -> str:
    if "maxThroughput" in element:
        return f"{element['maxThroughput']}/s"
    found = []
    for service, limit in element["services"].items():
        rating = limit["rating"]
        conns = limit.get("maxHttpConnections")
        found.append(f"{service} {rating['maxCallsCount']}/{rating['periodInMs']}ms"
                     + (f", {conns} conns" if conns else ""))  # fmt: skip
    return "; ".join(found)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)
