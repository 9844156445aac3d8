"""The operator's settings of ``sluicegate serve``, from a file, the environment and flags.

Every setting has one name: ``allowed_ports`` is the key ``allowed_ports:`` of the YAML
file (``--config`` or ``SLUICEGATE_CONFIG``), the variable ``SLUICEGATE_ALLOWED_PORTS``
and the flag ``--allowed-ports``. A flag wins over the variable, which wins over the file,
which wins over the default. Lists are YAML lists in the file and comma-separated text
elsewhere. Everything is checked here, once, before the service starts: a wrong value is a
:class:`BadSetting` that names the setting and where it came from, so that an operator
never learns of a typo from a failed call hours later. :func:`load` answers the values
with their sources, which ``sluicegate config show`` prints.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from sluicegate.errors import InvalidInput
from sluicegate.service import setting_values as read
from sluicegate.service.tracing import available as tracing_available
from sluicegate.settings import DefaultCap, Settings

ENV_PREFIX = "SLUICEGATE_"
CONFIG_ENV = "SLUICEGATE_CONFIG"
#: The private ranges ``allow_private_networks`` opens (RFC 1918, RFC 4193); never loopback.
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in
                         ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))  # fmt: skip


class BadSetting(Exception):
    """A setting that cannot be used: ``str()`` names it, its source, and what is wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One setting: its name, what it means, how text or YAML becomes its value."""

    name: str
    help: str
    parse: Callable[[object], Any]
    default: Any
    kind: type = str  # of its flag: str, int or bool
    secret: bool = False
    aliases: tuple[str, ...] = ()  # older flags, still accepted

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_D = Settings()
SETTINGS: tuple[Setting, ...] = (
    Setting(name="host", help="Interface to listen on.", parse=read.text, default="127.0.0.1"),
    Setting(name="port", help="Port to listen on (0: any free port).", parse=read.whole(0, 65535),
            default=8080, kind=int),
    Setting(name="data_dir", help="Where the service keeps its data (SQLite).", parse=read.path,
            default=Path(".sluicegate")),
    Setting(name="create", help="Create the data dir if it does not exist (--dev does too).",
            parse=read.switch, default=False, kind=bool),
    Setting(name="dev", help="Development: egress to loopback and any port, a first key, "
            "and a built-in external system at /dev/echo.", parse=read.switch, default=False,
            kind=bool),
    Setting(name="redis_url", help="Redis shared by several instances (slots, queues).",
            parse=read.optional_text, default=None, secret=True, aliases=("--redis",)),
    Setting(name="postgres_url", help="PostgreSQL shared by several instances (configs, "
            "keys, results, reports).", parse=read.optional_text, default=None, secret=True,
            aliases=("--postgres",)),
    Setting(name="redis_prefix", help="Starts every Redis key: deployments sharing one "
            "Redis use different ones.", parse=read.text, default="sg"),
    Setting(name="transport", help="HTTP client of the calls: aiohttp or reqwest.",
            parse=read.choice("aiohttp", "reqwest"), default="aiohttp"),
    Setting(name="log_format", help="text or json (one JSON object per line).",
            parse=read.choice("text", "json"), default="text"),
    Setting(name="log_level", help="debug, info, warning or error.",
            parse=read.choice("debug", "info", "warning", "error"), default="info"),
    Setting(name="cors_origins", help="Browser origins allowed to call the API (CORS).",
            parse=read.listed(read.text), default=()),
    Setting(name="allowed_hosts", help="Hosts called whatever address they resolve to "
            "(internal partners); their ports must still be allowed.", parse=read.listed(read.text),
            default=()),
    Setting(name="allowed_ports", help="Ports calls may reach.",
            parse=read.listed(read.whole(1, 65535)), default=tuple(sorted(_D.allowed_ports))),
    Setting(name="allowed_networks", help="Networks (CIDR) calls may reach though not public.",
            parse=read.listed(read.network), default=()),
    Setting(name="allow_private_networks", help="Let calls reach private networks (10/8, "
            "172.16/12, 192.168/16, fc00::/7); never loopback.", parse=read.switch, default=False,
            kind=bool),
    Setting(name="action_cap_count", help="Default cap of an action endpoint: calls ...",
            parse=read.whole(1), default=_D.action_default.count, kind=int),
    Setting(name="action_cap_period_ms", help="... per this many milliseconds.",
            parse=read.whole(1), default=_D.action_default.period_ms, kind=int),
    Setting(name="datasource_cap_count", help="Default cap of a data source: calls ...",
            parse=read.whole(1), default=_D.datasource_default.count, kind=int),
    Setting(name="datasource_cap_period_ms", help="... per this many milliseconds.",
            parse=read.whole(1), default=_D.datasource_default.period_ms, kind=int),
    Setting(name="datasource_allowlist", help="Hosts whose data sources may be capped above "
            "the default.", parse=read.listed(read.text), default=()),
    Setting(name="public_hosts", help="Hosts declared public: never allowlisted.",
            parse=read.listed(read.text), default=()),
    Setting(name="retry_schedule", help="Seconds before each retry (at most 3).",
            parse=read.listed(read.seconds), default=_D.retry_schedule),
    Setting(name="queue_max_age", help="Seconds a throttled call may wait (at most 21600).",
            parse=read.seconds, default=_D.queue_max_age),
    Setting(name="max_redirects", help="Redirects a call follows.", parse=read.whole(0),
            default=_D.max_redirects, kind=int),
    Setting(name="max_response_bytes", help="Bytes of a response body kept.",
            parse=read.whole(0), default=_D.max_response_bytes, kind=int),
    Setting(name="max_request_bytes", help="Bytes of a request body read.",
            parse=read.whole(1), default=_D.max_request_bytes, kind=int),
    Setting(name="max_batch_bytes", help="Bytes of a batch of calls read.",
            parse=read.whole(1), default=_D.max_batch_bytes, kind=int),
    Setting(name="max_bodies_bytes", help="Bytes of request bodies held at once.",
            parse=read.whole(1), default=_D.max_bodies_bytes, kind=int),
    Setting(name="max_header_bytes", help="Bytes of a request's headers.",
            parse=read.whole(1), default=_D.max_header_bytes, kind=int),
    Setting(name="max_in_flight_per_org", help="Calls one org may have in flight; over it, "
            "429.", parse=read.whole(1), default=_D.max_in_flight_per_org, kind=int),
    Setting(name="max_queued_per_org", help="Calls one org may have waiting in queues; over "
            "it, 429.", parse=read.whole(0), default=_D.max_queued_per_org, kind=int),
    Setting(name="data_key", help="Seal queued calls at rest with this key (from `sluicegate "
            "data-key`); older keys after commas still open.", parse=read.data_keys, default=(),
            secret=True),
    Setting(name="data_key_file", help="A file holding the data key(s).",
            parse=read.optional_path, default=None),
    Setting(name="callback_secret", help="Sign callbacks with this secret (whsec_<base64>, "
            "or text of 16+ bytes).", parse=read.secret, default=None, secret=True),
    Setting(name="callback_secret_file", help="A file holding the callback secret.",
            parse=read.optional_path, default=None),
    Setting(name="otel", help="Trace calls with OpenTelemetry (needs the otel extra; "
            "configured by the OTEL_* variables).", parse=read.switch, default=False, kind=bool),
)  # fmt: skip
BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True, slots=True, kw_only=True)
class Chosen:
    """A setting's value and where it came from: ``default``, ``file <path>:<line>``,
    ``env SLUICEGATE_...`` or ``flag --...``."""

    value: Any
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceOptions:
    """Everything ``serve`` was told: the engine's :class:`Settings` and the service's own."""

    host: str
    port: int
    data_dir: Path
    create: bool
    dev: bool
    redis_url: str | None
    postgres_url: str | None
    redis_prefix: str
    log_format: str
    log_level: str
    cors_origins: tuple[str, ...]
    otel: bool
    settings: Settings


def _read_file(path: Path) -> dict[str, Chosen]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise BadSetting(f"--config: cannot read {path}: {reason}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise BadSetting(f"{path}:{line}: not valid YAML: {exc.problem}") from None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date like 2001-02-30
        raise BadSetting(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise BadSetting(f"{path}: must be a mapping of setting names to values")
    lines = {key.value: key.start_mark.line + 1 for key, _ in node.value}
    found = {}
    for name, value in data.items():
        where = f"file {path}:{lines.get(name, 1)}"
        if name not in BY_NAME:
            close = difflib.get_close_matches(str(name), BY_NAME, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BadSetting(f"unknown setting {name!r} in {where}{hint}")
        found[name] = Chosen(value=value, source=where)
    return found


def load(
    *, file: Path | None, environ: Mapping[str, str], flags: Mapping[str, object]
) -> dict[str, Chosen]:
    """Every setting's value and source; ``flags`` holds only the flags given."""
    if file is None and environ.get(CONFIG_ENV):
        file = Path(environ[CONFIG_ENV])
    raw = {s.name: Chosen(value=s.default, source="default") for s in SETTINGS}
    if file is not None:
        raw |= _read_file(file)
    for setting in SETTINGS:
        if setting.env in environ:
            raw[setting.name] = Chosen(value=environ[setting.env], source=f"env {setting.env}")
        if flags.get(setting.name) is not None:
            raw[setting.name] = Chosen(value=flags[setting.name], source=f"flag {setting.flag}")
    chosen = {}
    for name, found in raw.items():
        if found.source == "default":
            chosen[name] = found
            continue
        try:
            chosen[name] = Chosen(value=BY_NAME[name].parse(found.value), source=found.source)
        except ValueError as exc:
            raise BadSetting(f"setting {name} ({found.source}): {exc}") from None
    return chosen


def _or_file(chosen: Mapping[str, Chosen], name: str, parse: Callable[[object], Any]) -> Any:
    """The value of the secret setting ``name``, or of the file ``name_file`` names; never
    both, since neither could then be said to win."""
    given, path = chosen[name], chosen[f"{name}_file"].value
    if path is None:
        return given.value
    if given.source != "default":
        raise BadSetting(f"settings {name} ({given.source}) and {name}_file: give one of them")
    try:
        return parse(path.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise BadSetting(f"setting {name}_file: cannot read it: {reason}") from None
    except ValueError as exc:
        raise BadSetting(f"setting {name}_file: {exc}") from None


def options(chosen: Mapping[str, Chosen]) -> ServiceOptions:
    """The service's options from :func:`load`'s answer, checked together."""
    value = {name: found.value for name, found in chosen.items()}
    keys = _or_file(chosen, "data_key", read.data_keys)
    secret = _or_file(chosen, "callback_secret", read.secret)
    if (value["redis_url"] is None) != (value["postgres_url"] is None):
        raise BadSetting("settings redis_url and postgres_url: shared storage needs both")
    networks = value["allowed_networks"]
    if value["allow_private_networks"]:
        networks += PRIVATE_NETWORKS
    try:
        settings = Settings(
            allow_loopback=value["dev"], transport=value["transport"], data_keys=keys,
            allowed_hosts=frozenset(value["allowed_hosts"]),
            allowed_ports=frozenset(value["allowed_ports"]), allowed_networks=networks,
            action_default=DefaultCap(count=value["action_cap_count"],
                                      period_ms=value["action_cap_period_ms"]),
            datasource_default=DefaultCap(count=value["datasource_cap_count"],
                                          period_ms=value["datasource_cap_period_ms"]),
            datasource_allowlist=frozenset(value["datasource_allowlist"]),
            public_hosts=frozenset(value["public_hosts"]),
            retry_schedule=tuple(value["retry_schedule"]), queue_max_age=value["queue_max_age"],
            max_redirects=value["max_redirects"], max_response_bytes=value["max_response_bytes"],
            max_request_bytes=value["max_request_bytes"],
            max_batch_bytes=value["max_batch_bytes"], max_bodies_bytes=value["max_bodies_bytes"],
            max_header_bytes=value["max_header_bytes"],
            max_in_flight_per_org=value["max_in_flight_per_org"],
            max_queued_per_org=value["max_queued_per_org"],
            callback_secret=secret,
        )  # fmt: skip
    except InvalidInput as exc:
        raise BadSetting(f"settings: {exc.message}") from None
    if value["otel"] and not tracing_available():
        raise BadSetting(f"setting otel ({chosen['otel'].source}): needs the otel extra: "
                         "pip install 'sluicegate[otel]'")  # fmt: skip
    data_dir = value["data_dir"]
    shared = value["postgres_url"] is not None
    if not shared and not data_dir.is_dir() and not (value["create"] or value["dev"]):
        raise BadSetting(f"setting data_dir ({chosen['data_dir'].source}): {data_dir} does not "
                         "exist: pass --create to make it, or fix the path")  # fmt: skip
    return ServiceOptions(
        host=value["host"], port=value["port"], data_dir=data_dir, create=value["create"],
        dev=value["dev"], redis_url=value["redis_url"], postgres_url=value["postgres_url"],
        redis_prefix=value["redis_prefix"], log_format=value["log_format"],
        log_level=value["log_level"], cors_origins=value["cors_origins"], otel=value["otel"],
        settings=settings,
    )  # fmt: skip


def shown(setting: Setting, value: Any) -> Any:
    """``value`` as ``config show`` prints it: secrets hidden, and a database's URL as its
    scheme, user, host and path only (a password may sit in its user part, or in its
    query; a ``key=value`` connection string is hidden whole)."""
    if value is None or value == ():
        return value
    if setting.name in ("redis_url", "postgres_url"):
        parts = urlsplit(value)
        if not parts.scheme or not parts.hostname:
            return "*** (set)"
        user = f"{parts.username}:***@" if parts.password else ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, f"{user}{parts.hostname}{port}", parts.path, "", ""))
    if setting.secret:
        return "*** (set)"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [str(item) if not isinstance(item, int | float) else item for item in value]
    return value
