"""What ``sluicegate apply`` changes: the steps that make a sandbox hold what a file says.

Pure: it compares a document of the file (:mod:`sluicegate.cli.manifest`) with what the
service holds, read by :mod:`sluicegate.cli.apply`, and lists each config's steps in the
order they are made:

* a new config is created, then deployed if the file says ``deployed: true``;
* a changed config is updated in place, then deployed again. It is not undeployed first:
  the service keeps enforcing a deployed capping config's old version until the deploy,
  and applies a deployed throttling config's update at once, so the endpoint is never
  left unguarded in between;
* a config the file wants undeployed is undeployed before it is updated, so its new
  version is never enforced;
* with ``prune``, a config a section does not list is undeployed, then deleted; a journey
  goes back to the default timeout. These come after the rest of their section.

A config is named by what cannot change under it: a capping config by its url and methods
(Adobe's have no name), a throttling config as the org's only one. So a file applied twice
changes nothing the second time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sluicegate.call import DEFAULT_TIMEOUT_SECONDS
from sluicegate.cli.manifest import Config, Journey, identity, label, normal
from sluicegate.cli.remote import Remote
from sluicegate.errors import InvalidConfig
from sluicegate.records import ConfigKind
from sluicegate.validation import ELEMENT_FIELDS

#: The sign of a step in the diff; deploy and undeploy have none.
SIGNS = {"create": "+", "update": "~", "delete": "-"}
Element = Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """What apply does to one config or journey: its steps, in the order they are made.
    ``line`` is where the file names it (its section's line, when pruned); ``fields`` the
    ``path: value`` it creates or the ``path: old -> new`` it updates."""

    kind: str
    label: str
    line: int
    steps: tuple[str, ...]
    fields: tuple[str, ...] = ()
    uid: str | None = None
    config: Config | None = None
    body: dict[str, Any] | None = None

    def shown(self, step: str) -> str:
        """``+ create capping GET https://...`` and, under it, the fields it sets."""
        head = [f"{SIGNS.get(step, ' ')} {step} {self.kind} {self.label}"]
        return "\n".join(head + [f"      {field}" for field in self.fields if step in SIGNS])


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The changes that make one sandbox (``remote``'s) hold what one document says."""

    remote: Remote
    changes: tuple[Change, ...]

    @property
    def size(self) -> int:
        """How many steps: what ``demo/prod: 3 changes`` counts."""
        return sum(len(change.steps) for change in self.changes)

    def head(self, note: str = "") -> str:
        """``demo/prod: 3 changes``, then ``note``; or ``demo/prod: no changes``."""
        where = f"{self.remote.org}/{self.remote.sandbox}"
        if not self.size:
            return f"{where}: no changes"
        return f"{where}: {self.size} change{'s' if self.size > 1 else ''}{note}"


def config_changes(kind: ConfigKind, wanted: Sequence[Config], held: Sequence[Element], *,
                   prune: bool, line: int) -> list[Change]:  # fmt: skip
    """The changes that make the service's configs of ``kind`` (``held``, oldest first:
    of two with one identity, the oldest is the one the file names) those ``wanted``."""
    named: dict[tuple[str, ...], Element] = {}
    for element in held:
        named.setdefault(identity(kind, payload_of(kind, element)), element)
    changes, matched = [], set()
    for config in wanted:
        found = named.get(config.identity)
        if found is None:
            steps = ("create", "deploy") if config.deployed else ("create",)
            changes.append(_change(config, steps, fields(None, config.payload)))
            continue
        matched.add(found["uid"])
        current = payload_of(kind, found)
        edited = current != config.payload
        changed = []
        if found["hasBeenDeployed"] and not config.deployed:
            changed.append("undeploy")
        if edited:
            changed.append("update")
        # A deployed throttling config enforces its update at once; capping waits for a deploy.
        if config.deployed and (found["state"] != "deployed"
                                or (edited and kind is ConfigKind.CAPPING)):  # fmt: skip
            changed.append("deploy")
        if changed:
            shown = fields(current, config.payload) if edited else ()
            changes.append(_change(config, tuple(changed), shown, uid=found["uid"]))
    for element in held if prune else ():
        if element["uid"] not in matched:
            steps = ("undeploy", "delete") if element["hasBeenDeployed"] else ("delete",)
            name = label(kind, payload_of(kind, element))
            changes.append(Change(kind=kind.value, label=name, line=line, steps=steps,
                                  uid=element["uid"]))  # fmt: skip
    return changes


def _change(config: Config, steps: tuple[str, ...], shown: tuple[str, ...],
            uid: str | None = None) -> Change:  # fmt: skip
    return Change(kind=config.kind.value, label=config.label, line=config.line, steps=steps,
                  fields=shown, uid=uid, config=config, body=config.payload)  # fmt: skip


def journey_changes(wanted: Sequence[Journey], declared: Mapping[str, int], *, prune: bool,
                    line: int) -> list[Change]:  # fmt: skip
    """Journeys to declare; with ``prune``, those declared but not wanted go back to the
    default (the service cannot forget a journey; one at the default acts as undeclared)."""
    goals = [(journey.journey_id, journey.timeout_seconds, journey.line) for journey in wanted]
    names = {journey.journey_id for journey in wanted}
    if prune:
        goals += [(name, DEFAULT_TIMEOUT_SECONDS, line) for name in declared if name not in names]
    changes = []
    for name, seconds, at in goals:
        now = declared.get(name)
        if now != seconds:
            shown = (
                f"timeoutSeconds: {seconds}"
                if now is None
                else f"timeoutSeconds: {now} -> {seconds}"
            )
            changes.append(Change(kind="journey", label=name, line=at, fields=(shown,),
                                  steps=("create" if now is None else "update",),
                                  body={"timeoutSeconds": seconds}))  # fmt: skip
    return changes


def payload_of(kind: ConfigKind, element: Element) -> dict[str, Any]:
    """The payload of an element the service shows, normalized like a file's."""
    try:
        return normal(kind, element)
    except InvalidConfig:  # a field this client does not know: compare it as it is
        return {name: value for name, value in element.items() if name not in ELEMENT_FIELDS}


def fields(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[str, ...]:
    """``path: value`` of every field of a new payload, or ``path: old -> new`` of each
    field an update changes (``(none)`` where there is none)."""
    after = _flat(new)
    if old is None:
        return tuple(f"{path}: {text(value)}" for path, value in after.items())
    before = _flat(old)
    paths = [*after, *(path for path in before if path not in after)]
    return tuple(f"{path}: {text(before.get(path))} -> {text(after.get(path))}"
                 for path in paths if before.get(path) != after.get(path))  # fmt: skip


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"services.action.rating.maxCallsCount": 500, ...}``: one entry per leaf."""
    if not isinstance(value, Mapping) or not value:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for name, item in value.items():
        flat.update(_flat(item, f"{prefix}.{name}" if prefix else name))
    return flat


def text(value: Any) -> str:
    """A value as the diff shows it: JSON, or ``(none)``."""
    return "(none)" if value is None else json.dumps(value, ensure_ascii=False)
