"""Parsing of the ``Accept`` header, shared by every route that offers more than one format."""

from __future__ import annotations

from collections.abc import Iterator


def accept_ranges(accept: str) -> Iterator[tuple[int, str, float]]:
    """``(position, media range in lower case, q)`` for each entry of an ``Accept`` header.

    A q-value that is not a number counts as 0 (not acceptable); NaN is passed through for the
    caller to refuse.
    """
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        yield position, media.lower(), q
