"""How a setting's value is read: from YAML (a number, a list, a switch) or from the text
of a flag or a variable (``"443,8443"``, ``"true"``). Each reader takes either, answers
the value, or raises ``ValueError`` saying what is wrong, which
:mod:`~sluicegate.service.options` prefixes with the setting's name and source."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sluicegate.errors import InvalidInput
from sluicegate.sealing import parse_keys


def text(value: object) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("must be text")
    text = str(value).strip()
    if not text or not text.isprintable():
        raise ValueError("must be printable, non-empty text")
    return text


def optional_text(value: object) -> str | None:
    return None if value is None or value == "" else text(value)


def switch(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def whole(low: int, high: int | None = None) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("must be a whole number")
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be a whole number, not {value!r}") from None
        if number < low or (high is not None and number > high):
            raise ValueError(f"must be {low}-{high}" if high is not None else f"must be >= {low}")
        return number

    return parse


def seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"must be a number of seconds, not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError("must be a finite number >= 0")
    return number


def _items(value: object) -> list[object]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [value]


def listed(item: Callable[[object], Any]) -> Callable[[object], tuple[Any, ...]]:
    def parse(value: object) -> tuple[Any, ...]:
        return tuple(item(part) for part in _items(value))

    return parse


def network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text(value), strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network in CIDR form ({exc})") from None


def choice(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        chosen = text(value).lower()
        if chosen not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return chosen

    return parse


def path(value: object) -> Path:
    return Path(text(value)).expanduser()


def optional_path(value: object) -> Path | None:
    return None if value is None or value == "" else path(value)


def data_keys(value: object) -> tuple[bytes, ...]:
    try:
        return parse_keys(text(value)) if value else ()
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


def secret(value: object) -> bytes | None:
    """A callback signing secret: ``whsec_<base64>`` as Standard Webhooks writes them,
    else the text's UTF-8 bytes (at least 16 of them)."""
    given = optional_text(value)
    if given is None:
        return None
    if given.startswith("whsec_"):
        try:
            found = base64.b64decode(given.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError("a whsec_ secret must be base64 after its prefix") from None
    else:
        found = given.encode()
    if len(found) < 16:
        raise ValueError("must be at least 16 bytes")
    return found
