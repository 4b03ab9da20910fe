"""Process-wide runtime tuning, applied once a process has loaded what it keeps for its lifetime."""

from __future__ import annotations

import gc


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
