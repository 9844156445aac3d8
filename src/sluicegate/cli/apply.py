"""``sluicegate apply`` and ``diff``: configs and journeys as code, against a running
service (docs/config-as-code.md); ``get`` (:mod:`sluicegate.cli.listing`) shows them.

``apply -f rules.yaml`` reads the whole file first (:mod:`sluicegate.cli.manifest`) and
changes nothing if any of it is invalid: every problem is printed at its line, exit 2.
Then, for each document, it reads what the service holds, works out the steps
(:mod:`sluicegate.cli.plan`) and makes them one at a time, printing each once made. The
service's refusal stops it at once, printed at the line of the config refused, exit 1:
what was made before stays made, and applying the file again finishes the work. Refusals
the service would make of a throttling config (1463, 1465) are found before any change.
``diff`` prints the steps and makes none; with ``--exit-code`` it exits 4 when there are
some, as 1, 2 and 3 already mean an error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer

from sluicegate.cli.manifest import Document, Problem
from sluicegate.cli.manifest import read as read_manifest
from sluicegate.cli.plan import (
    SIGNS,
    Change,
    Plan,
    config_changes,
    journey_changes,
)
from sluicegate.cli.remote import (
    ADOBE,
    DEFAULT_URL,
    PATHS,
    Key,
    Org,
    Remote,
    SandboxName,
    Url,
    fail,
)
from sluicegate.records import ConfigKind

commands = typer.Typer()

FileOption = Annotated[
    str,
    typer.Option("-f", "--file", help="The YAML file of configs and journeys ('-': stdin)."),
]
PruneOption = Annotated[
    bool,
    typer.Option("--prune", help="Also delete the configs that a section of the file does "
                                 "not list (and set its journeys back to 30 s)."),
]  # fmt: skip
CHANGES_EXIT = 4


@commands.command()
def apply(file: FileOption, dry_run: Annotated[bool, typer.Option(
              "--dry-run", help="Print the changes; make none.")] = False,
          prune: PruneOption = False, url: Url = DEFAULT_URL, key: Key = None, org: Org = None,
          sandbox: SandboxName = "prod") -> None:  # fmt: skip
    """Make the service hold the capping and throttling configs and journeys of a file:
    create, update, deploy and undeploy them in a safe order, and print what changed."""
    source, plans = _plans(file, prune, url, key, org, sandbox)
    for plan in plans:
        if dry_run:
            _show(plan, source, " (dry run: none made)")
        else:
            _carry_out(plan, source)


@commands.command()
def diff(file: FileOption, prune: PruneOption = False,
         exit_code: Annotated[bool, typer.Option(
             "--exit-code", help=f"Exit {CHANGES_EXIT} when there are changes.")] = False,
         url: Url = DEFAULT_URL, key: Key = None, org: Org = None,
         sandbox: SandboxName = "prod") -> None:  # fmt: skip
    """Print what `apply` would change, and change nothing."""
    source, plans = _plans(file, prune, url, key, org, sandbox)
    for plan in plans:
        _show(plan, source)
    if exit_code and any(plan.size for plan in plans):
        raise typer.Exit(CHANGES_EXIT)


def _plans(file: str, prune: bool, url: str, key: str | None, org: str | None,
           sandbox: str) -> tuple[str, list[Plan]]:  # fmt: skip
    """The file's name and a plan per document; exits 2 on any problem of the file."""
    source = "<stdin>" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {source}: {exc}")
    manifest = read_manifest(text)
    _stop(source, manifest.problems, 2)
    targets: dict[tuple[str, str], Document] = {}
    remotes = []
    for document in manifest.documents:
        remote = Remote.of(url, key, document.org or org, document.sandbox or sandbox)
        twin = targets.setdefault((remote.org, remote.sandbox), document)
        if twin is not document:
            _stop(source, [Problem(line=document.line, code="INVALID_FILE", message=(
                f"the document at line {twin.line} is also for {remote.org}/{remote.sandbox}"))],
                  2)  # fmt: skip
        remotes.append((document, remote))
    plans = [_plan(document, remote, prune, source) for document, remote in remotes]
    _one_throttling_per_org(plans, source)
    return source, plans


def _one_throttling_per_org(plans: list[Plan], source: str) -> None:
    """Refuse now a file whose documents create throttling configs in two sandboxes of
    one org: the service would refuse the second (1465) after the first was made."""
    first: dict[str, int] = {}  # org: the line of the throttling config it creates
    for plan in plans:
        made = [c.line for c in plan.changes if c.kind == "throttling" and "create" in c.steps]
        for line in made:
            if first.setdefault(plan.remote.org, line) != line:
                message = (f"the throttling config at line {first[plan.remote.org]} is the "
                           "org's only one: an org has one throttling config")  # fmt: skip
                _stop(source, [Problem(line=line, code="1465", message=message)], 2)


def _plan(document: Document, remote: Remote, prune: bool, source: str) -> Plan:
    """Read what the service holds where ``document`` applies, and what to change."""
    changes: list[Change] = []
    with remote.client() as client:
        for kind, wanted in ((ConfigKind.CAPPING, document.capping),
                             (ConfigKind.THROTTLING, document.throttling)):  # fmt: skip
            if wanted is None:
                continue
            line = document.line_of(kind.value)
            held = _read(client, "POST", f"{ADOBE}/list/{PATHS[kind]}", line, source)
            found = config_changes(kind, wanted, held, prune=prune, line=line)
            for change in found:
                if change.kind == "throttling" and "create" in change.steps:
                    _check_throttling(remote, client, change.line, source)
            changes += found
        if document.journeys is not None:
            line = document.line_of("journeys")
            held = _read(client, "GET", "/v1/journeys", line, source)
            declared = {item["journeyId"]: item["timeoutSeconds"] for item in held}
            changes += journey_changes(document.journeys, declared, prune=prune, line=line)
    return Plan(remote=remote, changes=tuple(changes))


def _check_throttling(remote: Remote, client: httpx.Client, line: int, source: str) -> None:
    """Refuse now, before any change, a throttling config the service would refuse at
    creation: outside a production sandbox (1463), or a second one in the org (1465)."""
    boxes = _read(client, "GET", "/v1/sandboxes", line, source)
    if not any(box["name"] == remote.sandbox and box["type"] == "production" for box in boxes):
        message = "throttling configs can only be created in a production sandbox"
        _stop(source, [Problem(line=line, code="1463", message=message)], 1)
    endpoints = _read(client, "GET", "/v1/endpoints", line, source)
    if any(entry["kind"] == "throttling" for entry in endpoints):
        message = ("throttling config: only one config allowed per org; the org's is managed "
                   "from another sandbox")  # fmt: skip
        _stop(source, [Problem(line=line, code="1465", message=message)], 1)


def _show(plan: Plan, source: str, note: str = "") -> None:
    """Print the plan's steps (and the warnings of what it creates or updates)."""
    typer.echo(plan.head(note))
    for change in plan.changes:
        for step in change.steps:
            typer.echo(change.shown(step))
        if change.config is not None and any(s in SIGNS for s in change.steps):
            for issue in change.config.warnings:
                warning = change.config.warning(issue.code, issue.message, issue.service)
                typer.echo(warning.show(source), err=True)


def _carry_out(plan: Plan, source: str) -> None:
    """Make the plan's changes one step at a time, printing each once made; stop at the
    first the service refuses (exit 1)."""
    typer.echo(plan.head())
    with plan.remote.client() as client:
        for change in plan.changes:
            for step in change.steps:
                answer = _step(client, change, step, source)
                if step == "create" and change.config is not None:
                    change = replace(change, uid=answer["uid"])
                typer.echo(change.shown(step))
                if step in ("create", "update") and change.config is not None:
                    for issue in answer["canDeploy"]["warnings"]:
                        service = issue["scope"]["endpointConfigService"]
                        warning = change.config.warning(issue["warningCode"], issue["warning"],
                                                        service)  # fmt: skip
                        typer.echo(warning.show(source), err=True)


def _read(client: httpx.Client, method: str, path: str, line: int, source: str) -> Any:
    """The ``results`` of a list the service answers; its refusal (an unknown sandbox, a
    key of another org...) is printed at ``line`` of the file, exit 1."""
    status, answer = _send(client, method, path)
    if not 200 <= status < 300:
        _refuse(source, [_problem(line, status, answer)], 1)
    return answer["results"]


def _step(client: httpx.Client, change: Change, step: str, source: str) -> Any:
    """Make one step; the service's answer. A refusal is printed at the file's line."""
    if change.kind == "journey":
        method, path = "PUT", f"/v1/journeys/{quote(change.label, safe='')}"
    else:
        base = f"{ADOBE}/{PATHS[ConfigKind(change.kind)]}"
        method, path = {"create": ("POST", base), "update": ("PUT", f"{base}/{change.uid}"),
                        "delete": ("DELETE", f"{base}/{change.uid}"),
                        }.get(step, ("POST", f"{base}/{change.uid}/{step}"))  # fmt: skip
    body = change.body if step in ("create", "update") else None
    status, answer = _send(client, method, path, body)
    if not 200 <= status < 300:
        _refuse(source, _problems(change, status, answer), 1)
    return answer


def _problems(change: Change, status: int, answer: Any) -> list[Problem]:
    """A refusal at the line of what it refused: each validation error of a config at the
    line of its key, else the answer's code and message at the config's line."""
    if change.config is not None and isinstance(answer, dict) and answer.get("errors"):
        return [Problem(line=change.config.line_of(error["errorCode"], error["error"]),
                        code=error["errorCode"], message=error["error"])
                for error in answer["errors"]]  # fmt: skip
    return [_problem(change.line, status, answer)]


def _send(client: httpx.Client, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """The status and JSON answer of one request; a service out of reach exits 3."""
    try:
        response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the service at {str(client.base_url).rstrip('/')}: {exc}", 3)
    try:
        return response.status_code, response.json() if response.content else None
    except ValueError:
        return response.status_code, {"message": response.text[:500]}


def _problem(line: int, status: int, answer: Any) -> Problem:
    """An error answer as a problem at ``line``: its code (the status if it has none)."""
    answer = answer if isinstance(answer, dict) else {}
    return Problem(line=line, code=str(answer.get("code", status)),
                   message=str(answer.get("message", "no message")))  # fmt: skip


def _stop(source: str, problems: Sequence[Problem], code: int) -> None:
    """Print every problem at its line and exit ``code``; nothing when there is none."""
    if problems:
        _refuse(source, problems, code)


def _refuse(source: str, problems: Sequence[Problem], code: int) -> NoReturn:
    for problem in problems:
        typer.echo(problem.show(source), err=True)
    raise typer.Exit(code)
