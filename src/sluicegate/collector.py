"""The garbage collector's settings for a long-running engine process.

What was measured (``bench/gc_costs.py``; docs/performance.md, "Garbage collection"):
the engine's calls leave no cyclic garbage (no object collected over 20,000 calls with
30% of their attempts failing, nor over 200,000 queued), so what the collector does on
the hot path is walk objects that are alive anyway:

* a young collection walks every tracked object made since the last one that is still
  alive: at 1,000 concurrent ``gate.submit`` callers, the 17,000-19,000 objects of the
  calls in flight, about 1 ms each time, every 700 net allocations (CPython's default);
* a full collection walks everything: the process's modules, functions and classes
  (37,000-42,000 objects in the library's processes, more in the service), and whatever
  callers keep, such as a handle per queued call. CPython 3.11 runs one each time the
  objects that survived grow by a quarter, so a process whose callers keep handles runs
  one at every such step, each longer than the last.

:func:`tune` moves what is alive once the process has started to a generation that is
never walked again (``gc.freeze``) and collects the young generation every 50,000 net
allocations rather than 700. Collections still run, so cycles someone makes are still
reclaimed, later.
"""

from __future__ import annotations

import gc

#: Net allocations of tracked objects between two young collections (CPython: 700).
YOUNG_THRESHOLD = 50_000
#: Young collections per middle one, and middle ones per full one (CPython: 10 and 10).
OLDER_THRESHOLDS = (20, 20)


def tune() -> None:
    """Collect once, freeze what survives, and collect less often (see the module).

    Call it once, after start-up (the imports, the app, the rules loaded) and before
    the traffic: what is alive then lives as long as the process.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
