"""Process-wide runtime tuning, applied once a process has loaded what it keeps for its lifetime
(the app at import, ``kokoma import`` and ``kokoma worker`` before they start)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: Seconds a Python thread may hold the GIL while another one waits for it (CPython: 5 ms).
SWITCH_INTERVAL = 0.0005


def tune_runtime() -> None:
    freeze_startup_objects()
    shorten_thread_switches()


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, classes, the app, the ORM's tables: ~185,000 of them)
    into the garbage collector's permanent generation, so that its full collections no longer
    walk them again and again.

    Measured on a 100,000-row incident import on PostgreSQL: the collector took ~28 % of the
    Python time (3.95 → 2.86 s CPU, 19.5k → 23.8k rows/s with this). Nothing is leaked: the
    objects frozen are the ones alive for the whole process anyway, collected once before.
    """
    gc.collect()
    gc.freeze()


def shorten_thread_switches() -> None:
    """Let a thread that waits for the GIL have it after 0.5 ms instead of 5 ms.

    An import's database thread needs the GIL back after every round trip (a dozen per batch)
    while the parsing thread holds it: with 5 ms the server idled, waiting for the client, 14 % of
    the time. Measured, 100,000 rows in-process on PostgreSQL, three runs each: 20.1k → 22.3k
    rows/s. HTTP reads: no measurable difference (harness, SQLite, 5 s each: get by id 644 → 624
    req/s, filtered list 159 → 179, both within run-to-run noise; see bench/README.md).
    """
    sys.setswitchinterval(SWITCH_INTERVAL)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while the block runs (reference counting still frees).

    For one long, CPU-bound unit of work that builds ~10⁵ objects which all stay alive until it
    ends (a batch auto-dispatch of 1,000 incidents × 5,000 managers): the collector walked them
    again and again — ~260 collections, 0.12 s of 0.85 s CPU in-process (bench/README.md). The
    collector is process-wide: a concurrent request's cyclic garbage is collected once the block
    ends; nested or concurrent blocks leave it as they found it only when the outermost ends
    (a block ending earlier re-enables it — less gain, no harm).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
