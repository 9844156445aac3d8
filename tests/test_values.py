"""Makers build the same frozen values as the constructors, and refuse what they cannot."""

from __future__ import annotations

import dataclasses

import pytest

from sluicegate.call import Call, Service
from sluicegate.outcomes import AttemptError, CallResult, ErrorKind, Outcome
from sluicegate.transport import Request, Response
from sluicegate.values import maker


def test_a_made_result_is_the_constructed_one() -> None:
    """Positional, in field order: equal, hashed alike, still frozen."""
    error = AttemptError(kind=ErrorKind.HTTP, message="HTTP 500", status=500)
    response = Response(status=500)
    made = maker(CallResult)("id", Outcome.HTTP_ERROR, 2, 1, 2, 0.5, 12.0, "e", error, None,
                             response)  # fmt: skip
    built = CallResult(call_id="id", outcome=Outcome.HTTP_ERROR, attempts=2, retries=1,
                       slots=2, queued_ms=0.5, execution_ms=12.0, endpoint="e", error=error,
                       response=response)  # fmt: skip
    assert built == made
    assert repr(built) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.attempts = 3  # type: ignore[misc]


def test_fields_left_out_take_their_defaults_and_factories() -> None:
    """A default is used as is; a factory makes a new value for every one made."""
    make = maker(Request)
    first, second = make("GET", "http://x/"), make("GET", "http://x/")
    assert Request(method="GET", url="http://x/") == first
    assert first.headers is not second.headers
    call = maker(Call)("o", "s", "j", Service.ACTION, "GET", "http://x/")
    assert Call(org="o", sandbox="s", journey="j", service=Service.ACTION, method="GET",
                url="http://x/") == call  # fmt: skip


def test_a_class_a_maker_cannot_build_is_refused() -> None:
    """Not slotted, a __post_init__, or a required field after a defaulted one."""

    @dataclasses.dataclass(frozen=True)
    class Loose:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None: ...

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Disordered:
        a: int = 1
        b: int

    for cls in (Loose, Checked, Disordered):
        with pytest.raises(TypeError):
            maker(cls)
