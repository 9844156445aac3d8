"""How the report shows a figure: tables, targets, and one way to write each kind of value.

A :class:`Table` is written for a terminal (aligned columns) or as Markdown from the same
rows, so the two reports cannot disagree. A :class:`Target` is one row of the targets
table. The formatters are shared by every section, so that a figure of one kind reads the
same wherever it appears; a figure the run was too short to measure is NaN and shows as a
dash (:func:`known`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from machine import Interference
from measure import Series


@dataclass(frozen=True, slots=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]

    def text(self) -> str:
        widths = [
            max(len(row[i]) for row in [self.headers, *self.rows]) for i in range(len(self.headers))
        ]
        lines = [self.headers, ["-" * width for width in widths], *self.rows]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in lines
        )

    def markdown(self) -> str:
        lines = [self.headers, ["---"] * len(self.headers), *self.rows]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines)


@dataclass(frozen=True, slots=True)
class Target:
    """A measure, its goal, and for a throughput ratio the same ratio of client CPU per call
    (which other load on the machine disturbs less than wall time)."""

    label: str
    value: float
    goal: float
    higher_is_better: bool
    show: Callable[[float], str]
    by_cpu: float | None = None

    @property
    def met(self) -> bool:
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal

    def row(self) -> list[str]:
        goal = f"{'≥' if self.higher_is_better else '≤'} {self.show(self.goal)}"
        by_cpu = "" if self.by_cpu is None else self.show(self.by_cpu)
        verdict = "met" if self.met else "NOT met"
        return [self.label, self.show(self.value), by_cpu, goal, verdict]


def count(value: float) -> str:
    return f"{value:,.0f}"


def ratio(value: float) -> str:
    return f"{value:.2f}×"


def us(value: float) -> str:
    return f"{value:.1f} µs"


def nbytes(value: float) -> str:
    return f"{value:,.0f} B"


def mib(value: float) -> str:
    in_mib = value / 2**20
    return f"{in_mib:,.1f} MiB" if in_mib < 100 else f"{in_mib:,.0f} MiB"


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def share(value: float) -> str:
    return known(value, lambda part: f"{part:.1%}")


def known(value: float, show: Callable[[float], str]) -> str:
    """``show(value)``, or a dash for a figure the run was too short to measure (NaN)."""
    return "—" if math.isnan(value) else show(value)


def span(series: Series, show: Callable[[float], str]) -> str:
    return f"{show(series.low)} … {show(series.high)}"


def other_cpu(seen: Interference | None, during: str) -> str:
    """What other processes took of the machine ``during`` a part of the run, in a sentence."""
    if seen is None:
        return "CPU used by other processes: not measured (no /proc/stat)."
    return (
        f"CPU used by other processes during {during}: {seen.other_cpu:.2f} s of "
        f"{seen.capacity:.0f} s available ({seen.other_cpu / seen.capacity:.1%}); "
        f"hypervisor steal {seen.steal / seen.capacity:.1%}."
    )
