"""Erased values in free text and in the copies of a record (stored responses, outbox payloads)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlmodel import Session, col

from app.models.outbox import OutboxEvent
from app.models.system import IdempotencyRecord

#: What erased values are replaced with in free text.
ERASED = "[erased]"
#: Shorter values are erased from their fields but not searched for in free text (too many false
#: hits: a reporter called "Li" must not turn every "li" into "[erased]").
MIN_ERASE_LENGTH = 3

# --- erased values in free text -----------------------------------------------------------------


class ValueEraser:
    """Replaces literal, case-insensitive occurrences of erased values (whole words) in text."""

    def __init__(self, values: Iterable[str | None]) -> None:
        kept = {v.strip() for v in values if v and len(v.strip()) >= MIN_ERASE_LENGTH}
        self.values = sorted(kept, key=len, reverse=True)
        parts = []
        for value in self.values:
            left = r"(?<!\w)" if re.match(r"\w", value[0]) else ""
            right = r"(?!\w)" if re.match(r"\w", value[-1]) else ""
            parts.append(left + re.escape(value) + right)
        self.pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        self.forms = frozenset(self._search_forms())

    def text(self, value: str | None) -> str | None:
        if value is None or self.pattern is None:
            return value
        return self.pattern.sub(ERASED, value)

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        return value

    def _search_forms(self) -> set[str]:
        """Lower-cased forms the values take in stored text (raw and JSON-escaped)."""
        forms: set[str] = set()
        for value in self.values:
            for variant in (value, value.lower()):
                forms.add(variant.lower())
                forms.add(json.dumps(variant)[1:-1].lower())
                forms.add(json.dumps(variant, ensure_ascii=False)[1:-1].lower())
        return forms


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains_text(column: Any, needle: str) -> Any:
    return func.lower(column).like(f"%{_escape_like(needle.lower())}%", escape="\\")


def clip_text(value: str | None, length: int) -> str | None:
    return value if value is None or len(value) <= length else value[: length - 1] + "…"


# --- scrubbing of copies: idempotency responses, outbox payloads -------------------------------


@dataclass(frozen=True, slots=True)
class ScrubTarget:
    """One erased record: its id, the eraser of its values, and what to put into the personal
    keys of any JSON object carrying that id (``nested``: the keys sit in that sub-object, e.g.
    ``reporter`` inside an incident)."""

    record_id: uuid.UUID
    eraser: ValueEraser
    nulls: dict[str, Any] = field(default_factory=dict)
    nested: str | None = None


def _scrub_json(value: Any, targets: Sequence[ScrubTarget], hits: set[uuid.UUID]) -> Any:
    """Null the personal keys of objects that are the erased records, then erase the values in free text;
    the ids of the targets that changed something are added to ``hits``."""
    if isinstance(value, list):
        return [_scrub_json(v, targets, hits) for v in value]
    if isinstance(value, dict):
        out = {k: _scrub_json(v, targets, hits) for k, v in value.items()}
        for target in targets:
            if str(out.get("id")) != str(target.record_id):
                continue
            holder = out.get(target.nested) if target.nested else out
            if isinstance(holder, dict):
                for key, replacement in target.nulls.items():
                    if key in holder and holder[key] != replacement:
                        holder[key] = replacement
                        hits.add(target.record_id)
        return out
    if isinstance(value, str):
        for target in targets:
            erased = target.eraser.text(value)
            if erased != value:
                hits.add(target.record_id)
                value = erased
        return value
    return value


def _relevant(targets: Sequence[ScrubTarget], stored: str) -> list[ScrubTarget]:
    """The targets whose id or values occur in a stored text (a batch has many targets)."""
    text = stored.lower()
    return [
        t
        for t in targets
        if str(t.record_id) in text or any(form in text for form in t.eraser.forms)
    ]


def scrub_idempotency_records(session: Session, targets: Sequence[ScrubTarget]) -> set[uuid.UUID]:
    """Rewrite stored responses that carry an erased record or value; returns the ids of the
    targets found in one.

    Candidates are records whose body mentions a target's id or one of its values; the body is
    scrubbed as JSON (the personal keys of the erased record set to null, values erased in every
    string), or as text when it is not JSON. The record stays, so a retry still replays — the
    erased response.
    """
    hits: set[uuid.UUID] = set()
    if not targets:
        return hits
    needles = {str(t.record_id) for t in targets}
    for target in targets:
        needles |= target.eraser.forms
    records = session.scalars(
        select(IdempotencyRecord).where(
            col(IdempotencyRecord.response_body).is_not(None),
            or_(*(contains_text(IdempotencyRecord.response_body, n) for n in sorted(needles))),
        )
    ).all()
    for record in records:
        body = record.response_body or ""
        relevant = _relevant(targets, body)
        try:
            scrubbed = json.dumps(
                _scrub_json(json.loads(body), relevant, hits),
                ensure_ascii=False,
                separators=(",", ":"),
            )
        except ValueError:
            scrubbed = _scrub_json(body, relevant, hits)
        if scrubbed != body:
            record.response_body = scrubbed
            session.add(record)
    return hits


def scrub_outbox(session: Session, where: Any, targets: Sequence[ScrubTarget]) -> set[uuid.UUID]:
    """Scrub the outbox payloads selected by ``where`` (already delivered ones included)."""
    hits: set[uuid.UUID] = set()
    if not targets:
        return hits
    for event in session.scalars(select(OutboxEvent).where(where)).all():
        relevant = _relevant(targets, json.dumps(event.payload))
        scrubbed = _scrub_json(event.payload, relevant, hits)
        if scrubbed != event.payload:
            event.payload = scrubbed
            session.add(event)
    return hits


def erase_in_rows(
    session: Session, model: Any, where: Any, eraser: ValueEraser, columns: dict[str, int | None]
) -> int:
    """Erase the values in the given text/JSON columns of the selected rows; returns how many changed."""
    if eraser.pattern is None:
        return 0
    changed = 0
    for row in session.scalars(select(model).where(where)).all():
        dirty = False
        for name, length in columns.items():
            value = getattr(row, name)
            new = eraser.json(value) if isinstance(value, dict | list) else eraser.text(value)
            if isinstance(new, str) and length is not None:
                new = clip_text(new, length)
            if new != value:
                setattr(row, name, new)
                dirty = True
        if dirty:
            session.add(row)
            changed += 1
    return changed
