"""A config file of ``sluicegate apply``: capping and throttling configs and journey
timeouts, each value with the line of the file it is on.

One or more YAML documents, each a mapping (every field in docs/config-as-code.md)::

    org: demo          # optional: else --org / SLUICEGATE_ORG
    sandbox: prod      # optional: else --sandbox / SLUICEGATE_SANDBOX, then prod
    capping: [...]     # Adobe endpointConfig payloads, each with `deployed` (default true)
    throttling: [...]  # at most one Adobe throttlingConfig payload: one per org
    journeys: [...]    # {journeyId, timeoutSeconds}

Everything that can be checked without the service is checked here, all at once, so one
run lists every mistake: YAML syntax, unknown or duplicate keys, and each payload with the
service's own validation (:mod:`sluicegate.rules`), whose Adobe codes it reports. A
problem is located at the line of the key it is about, else of its entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, SequenceNode

from sluicegate.call import MAX_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS
from sluicegate.records import ConfigKind, parse
from sluicegate.rules import (
    CAPPING_FIELDS,
    THROTTLING_FIELDS,
    validate_capping,
    validate_throttling,
)
from sluicegate.validation import ELEMENT_FIELDS, Issue

Path = tuple[str | int, ...]

#: The keys a document may have.
SECTIONS = {"org", "sandbox", "capping", "throttling", "journeys"}
FIELDS = {ConfigKind.CAPPING: CAPPING_FIELDS, ConfigKind.THROTTLING: THROTTLING_FIELDS}
#: The code of an unknown field in a payload, as the service answers it.
UNKNOWN = {ConfigKind.CAPPING: "ERR_ENDPOINTCONFIG_111",
           ConfigKind.THROTTLING: "ERR_THROTTLING_CONFIG_106"}  # fmt: skip
#: A key a validation message names by another word.
NAMED = {"ERR_THROTTLING_CONFIG_104": "urlPattern", "ERR_THROTTLING_CONFIG_105": "urlPattern"}
MAX_JOURNEY_ID = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """Why a file cannot be applied: an Adobe code for a payload, ``INVALID_YAML`` or
    ``INVALID_FILE`` for the file itself; or a warning, which does not stop it."""

    line: int
    code: str
    message: str
    warning: bool = False

    def show(self, source: str) -> str:
        """``rules.yaml:12: CODE: message``, as compilers print it."""
        return (
            f"{source}:{self.line}: {'warning ' if self.warning else ''}{self.code}: {self.message}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """One capping or throttling config of a file. ``payload`` is normalized as the
    service stores it (methods upper-case and sorted), so it compares equal to the
    service's own; ``lines`` holds the line of each key under the entry."""

    kind: ConfigKind
    payload: dict[str, Any]
    deployed: bool
    line: int
    lines: Mapping[Path, int]
    warnings: tuple[Issue, ...] = ()

    @property
    def identity(self) -> tuple[str, ...]:
        return identity(self.kind, self.payload)

    @property
    def label(self) -> str:
        return label(self.kind, self.payload)

    def line_of(self, code: str, message: str) -> int:
        """The line of the key an issue of this config is about (see :func:`locate`)."""
        return locate(self.lines, self.line, code, message)

    def warning(self, code: str, message: str, service: str | None) -> Problem:
        """A warning of the service's validation (canDeploy), located in the file."""
        line = locate(self.lines, self.line, code, f"{message} services {service or ''}")
        return Problem(line=line, code=code, message=message, warning=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Journey:
    journey_id: str
    timeout_seconds: int
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """One YAML document: where it applies and what it wants there. A section left out
    is ``None``: ``--prune`` leaves what the service holds of it alone."""

    org: str | None
    sandbox: str | None
    line: int
    capping: tuple[Config, ...] | None = None
    throttling: tuple[Config, ...] | None = None
    journeys: tuple[Journey, ...] | None = None
    lines: Mapping[str, int] | None = None  # the line of each section

    def line_of(self, section: str) -> int:
        return (self.lines or {}).get(section, self.line)


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A whole file: its documents, or every problem found in it."""

    documents: tuple[Document, ...] = ()
    problems: tuple[Problem, ...] = ()


def identity(kind: ConfigKind, payload: Mapping[str, Any]) -> tuple[str, ...]:
    """What names a config, file and service alike: a capping config has no name, so its
    url and methods; a throttling config is the org's only one."""
    if kind is ConfigKind.THROTTLING:
        return ("throttling",)
    return (payload["url"], *payload["methods"])


def label(kind: ConfigKind, payload: Mapping[str, Any]) -> str:
    """``GET,POST https://api.example.org/*``: how the diff names a config."""
    url = payload["url"] if kind is ConfigKind.CAPPING else payload["urlPattern"]
    return f"{','.join(payload['methods'])} {url}"


def normal(kind: ConfigKind, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload fields of a valid payload or element, as the service stores them."""
    return parse(kind, dict(payload)).to_json()


def read(text: str) -> Manifest:
    """The documents of a file's text, or every problem that stops it being applied."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        return Manifest(problems=(Problem(line=line, code="INVALID_YAML",
                                          message=str(exc.problem or exc)),))  # fmt: skip
    except yaml.YAMLError as exc:
        return Manifest(problems=(Problem(line=1, code="INVALID_YAML", message=str(exc)),))
    reader = _Reader()
    documents = []
    for node in nodes:
        lines: dict[Path, int] = {}
        value = reader.plain(node, (), lines, set())
        if value is not None:
            documents.append(reader.document(value, lines))
    if not documents and not reader.problems:
        reader.problem(1, "no document: a file holds at least one mapping of org, sandbox, "
                          "capping, throttling and journeys")  # fmt: skip
    problems = sorted(reader.problems, key=lambda problem: problem.line)
    return Manifest(documents=tuple(documents), problems=tuple(problems))


class _Reader:
    """Turns YAML nodes into plain values and documents, noting every problem."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._scalars = SafeConstructor()

    def problem(self, line: int, message: str, code: str = "INVALID_FILE") -> None:
        self.problems.append(Problem(line=line, code=code, message=message))

    def plain(self, node: Node, path: Path, lines: dict[Path, int], open_: set[int]) -> Any:
        """The value of ``node``; the line of it and of everything under it in ``lines``."""
        lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in open_:  # an alias of a node that holds it: YAML allows the loop
            self.problem(node.start_mark.line + 1, "a value that contains itself")
            return None
        if isinstance(node, MappingNode):
            mapping: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key, line = self.scalar(key_node), key_node.start_mark.line + 1
                if not isinstance(key, str):
                    self.problem(line, f"a key must be text, not {key!r}")
                elif key in mapping:
                    self.problem(
                        line, f"duplicate key {key!r} (first at line {lines[(*path, key)]})"
                    )
                else:
                    lines[(*path, key)] = line
                    mapping[key] = self.plain(value_node, (*path, key), lines, open_ | {id(node)})
            return mapping
        if isinstance(node, SequenceNode):
            return [self.plain(item, (*path, index), lines, open_ | {id(node)})
                    for index, item in enumerate(node.value)]  # fmt: skip
        return self.scalar(node)

    def scalar(self, node: Node) -> Any:
        """A scalar's value; one YAML cannot build (an unknown tag ``!foo``, a date that
        does not exist) is a problem at its line, and reads as None."""
        try:
            return self._scalars.construct_object(node)
        except (yaml.YAMLError, ValueError) as exc:
            why = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else exc
            self.problem(node.start_mark.line + 1, f"not a value YAML can read: {why}")
            return None

    def document(self, doc: Any, lines: dict[Path, int]) -> Document:
        start = lines[()]
        if not isinstance(doc, dict):
            self.problem(start, "a document is a mapping of org, sandbox, capping, throttling "
                                "and journeys")  # fmt: skip
            return Document(org=None, sandbox=None, line=start)
        for key in sorted(set(doc) - SECTIONS):
            self.problem(lines[(key,)], f"unknown key {key!r}: expecting one of "
                                        f"{', '.join(sorted(SECTIONS))}")  # fmt: skip
        where = [self.text(doc, name, lines) for name in ("org", "sandbox")]
        kinds = {"capping": ConfigKind.CAPPING, "throttling": ConfigKind.THROTTLING}
        configs = {name: None if name not in doc else self.configs(kind, doc[name], (name,), lines)
                   for name, kind in kinds.items()}  # fmt: skip
        journeys = None if "journeys" not in doc else self.journeys(doc["journeys"], lines)
        return Document(org=where[0], sandbox=where[1], line=start, capping=configs["capping"],
                        throttling=configs["throttling"], journeys=journeys,
                        lines={str(path[0]): line for path, line in lines.items()
                               if len(path) == 1})  # fmt: skip

    def text(self, doc: dict[str, Any], name: str, lines: dict[Path, int]) -> str | None:
        value = doc.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            self.problem(lines[(name,)], f"{name} must be a name, not {value!r}")
            return None
        return value

    def items(self, value: Any, path: Path, lines: dict[Path, int], what: str) -> list[Any]:
        """The items of a section: a list (``null`` is an empty one)."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(lines[path], f"{path[0]} must be a list of {what}")
            return []
        return value

    def configs(
        self, kind: ConfigKind, value: Any, path: Path, lines: dict[Path, int]
    ) -> tuple[Config, ...]:
        found: list[Config] = []
        for index, item in enumerate(self.items(value, path, lines, f"{kind} configs")):
            here = (*path, index)
            if not isinstance(item, dict):
                self.problem(lines[here], f"a {kind} config is a mapping of its fields")
                continue
            config = self.config(kind, item, here, lines)
            if config is None:
                continue
            twin = next((c for c in found if c.identity == config.identity), None)
            if twin is not None and kind is ConfigKind.THROTTLING:
                message = f"only one config allowed per org (the first is at line {twin.line})"
                self.problem(config.line, f"throttling config: {message}", code="1465")
            elif twin is not None:
                self.problem(config.line, f"another capping config has the same url and "
                                          f"methods (line {twin.line})")  # fmt: skip
            found.append(config)
        return tuple(found)

    def config(
        self, kind: ConfigKind, item: dict[str, Any], here: Path, lines: dict[Path, int]
    ) -> Config | None:
        deployed = item.get("deployed", True)
        if not isinstance(deployed, bool):
            self.problem(lines[(*here, "deployed")], f"deployed is true or false, not {deployed!r}")
        payload = {key: value for key, value in item.items() if key in FIELDS[kind]}
        for key in item.keys() - FIELDS[kind] - {"deployed"}:
            message = f"{kind} config: invalid payload: unknown field {key!r}"
            if key in ELEMENT_FIELDS:
                message += " (the service sets it: a file names a config by what it is)"
            self.problem(lines[(*here, key)], message, code=UNKNOWN[kind])
        check = validate_capping if kind is ConfigKind.CAPPING else validate_throttling
        validation = check(payload)
        inner = {path[len(here):]: line for path, line in lines.items()
                 if path[:len(here)] == here and len(path) > len(here)}  # fmt: skip
        for error in validation.errors:
            line = locate(inner, lines[here], error.code, error.message)
            self.problem(line, error.message, error.code)
        if validation.errors or not isinstance(deployed, bool):
            return None
        return Config(kind=kind, payload=normal(kind, payload), deployed=deployed,
                      line=lines[here], lines=inner, warnings=validation.warnings)  # fmt: skip

    def journeys(self, value: Any, lines: dict[Path, int]) -> tuple[Journey, ...]:
        found: dict[str, Journey] = {}
        for index, item in enumerate(self.items(value, ("journeys",), lines, "journeys")):
            here = ("journeys", index)
            if not isinstance(item, dict):
                self.problem(lines[here], "a journey is a mapping of journeyId and timeoutSeconds")
                continue
            for key in sorted(item.keys() - {"journeyId", "timeoutSeconds"}):
                self.problem(lines[(*here, key)], f"unknown key {key!r}: a journey has "
                                                  "journeyId and timeoutSeconds")  # fmt: skip
            journey, seconds = item.get("journeyId"), item.get("timeoutSeconds")
            if not isinstance(journey, str) or not 1 <= len(journey) <= MAX_JOURNEY_ID:
                self.problem(lines.get((*here, "journeyId"), lines[here]),
                             f"journeyId must be text of 1 to {MAX_JOURNEY_ID} characters, "
                             f"not {journey!r}")  # fmt: skip
                continue
            if (not isinstance(seconds, int) or isinstance(seconds, bool)
                    or not MIN_TIMEOUT_SECONDS <= seconds <= MAX_TIMEOUT_SECONDS):  # fmt: skip
                self.problem(lines.get((*here, "timeoutSeconds"), lines[here]),
                             f"timeoutSeconds must be an integer from {MIN_TIMEOUT_SECONDS} to "
                             f"{MAX_TIMEOUT_SECONDS}, not {seconds!r}")  # fmt: skip
                continue
            if journey in found:
                self.problem(lines[here], f"journey {journey!r} is already at line "
                                          f"{found[journey].line}")  # fmt: skip
                continue
            found[journey] = Journey(journey_id=journey, timeout_seconds=seconds, line=lines[here])
        return tuple(found.values())


def locate(lines: Mapping[Path, int], default: int, code: str, message: str) -> int:
    """The line of the key a validation message is about: of the keys under an entry, the
    one whose path the message names most of (``services.action.rating.maxCallsCount``
    for "maxCallsCount ... for action"), then the one with the fewest parts it does not
    name; ``default`` (the entry's line) when it names none."""
    words = {_stem(word) for word in re.findall(r"\w+", message)}
    if code in NAMED:
        words.add(_stem(NAMED[code]))
    ranked = []
    for path, line in lines.items():
        if all(isinstance(part, str) for part in path):
            named = sum(1 for part in path if _stem(str(part)) in words)
            ranked.append((-named, len(path) - named, line))
    best = min(ranked, default=(0, 0, default))
    return best[2] if best[0] < 0 else default


def _stem(word: str) -> str:
    """``methods`` and ``method`` alike: how a message and a key are compared."""
    return word.lower().removesuffix("s")
