"""The collector's settings for a long-running process: frozen start-up, rarer passes."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sluicegate.collector import OLDER_THRESHOLDS, YOUNG_THRESHOLD, tune


@pytest.fixture
def restored() -> Iterator[None]:
    """The test process's own settings come back afterwards."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_tune_freezes_what_is_alive_and_collects_less_often() -> None:
    """What lives at start-up is out of every later collection; the thresholds are set."""
    alive: list[object] = []  # a list: tracked by the collector, as object() is not
    gc.unfreeze()
    tune()
    assert (YOUNG_THRESHOLD, *OLDER_THRESHOLDS) == gc.get_threshold()
    assert gc.get_freeze_count() > 0
    assert not any(tracked is alive for tracked in gc.get_objects())  # frozen, not walked
