"""Streaming readers for import bodies (CSV and NDJSON) and the CSV cell conventions of exports.

Memory stays constant: bytes arrive in chunks, are split into physical lines (one line at most
``MAX_LINE_BYTES``), decoded line by line and handed to :mod:`csv` (which pulls lines lazily) or
parsed as one JSON object per line. A line that is not UTF-8 or too long becomes an error of the
record it belongs to — never of the whole body — so a file with one bad row still imports the rest.

CSV as spreadsheets write it: UTF-8 with or without BOM; the separator (``;`` as German Excel
writes it, or ``,``, or a tab) is taken from the header line; quoting per RFC 4180; the first record
is the header row. Records are numbered from 1 after the header; blank records are skipped but
counted, so ``row + 1`` is the spreadsheet line when no cell spans lines.

Cells that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or CR) are
exported with a leading ``'`` (OWASP "CSV injection"); a leading ``'`` is itself escaped the same
way, and imports remove exactly one such quote, so text survives a round trip unchanged.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

#: A physical line longer than this is an error of its record (a legitimate record is < 128 KiB).
MAX_LINE_BYTES = 256 * 1024
#: The csv module's own per-field limit (characters); our columns are far shorter.
csv.field_size_limit(max(csv.field_size_limit(), 131_072))

_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")


def escape_cell(text: str) -> str:
    """Neutralise spreadsheet formulas in a text cell (reversible, see :func:`unescape_cell`)."""
    return "'" + text if text.startswith(_FORMULA_TRIGGERS) else text


def unescape_cell(text: str) -> str:
    if len(text) >= 2 and text[0] == "'" and text[1] in "=+-@\t\r'":
        return text[1:]
    return text


class UnreadableBody(Exception):
    """The body as a whole cannot be read (no header, unknown columns, UTF-16 …): a 422."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class LineTooLong(Exception):
    pass


@dataclass
class LineSplitter:
    """Byte chunks → text lines with their ``\\n`` kept (what :mod:`csv` wants), lazily.

    ``problems`` collects what went wrong on the lines handed out since the last
    :meth:`take_problems` (a record spans one or more lines). ``bytes_read`` feeds progress bars.
    """

    chunks: Iterable[bytes]
    max_line_bytes: int = MAX_LINE_BYTES
    bytes_read: int = 0
    line_no: int = 0
    problems: list[str] = field(default_factory=list)
    _iter: Iterator[bytes] | None = None
    _rest: bytes = b""
    _ready: list[str] = field(default_factory=list)
    _pos: int = 0
    _eof: bool = False
    _skipping: bool = False
    _started: bool = False

    def __iter__(self) -> LineSplitter:
        return self

    def take_problems(self) -> list[str]:
        problems, self.problems = self.problems, []
        return problems

    def __next__(self) -> str:
        while self._pos >= len(self._ready):
            self._ready, self._pos = [], 0
            if self._eof:
                raise StopIteration
            self._fill()
        line = self._ready[self._pos]
        self._pos += 1
        self.line_no += 1
        if line is _TOO_LONG:
            self.problems.append(f"line {self.line_no} is longer than {self.max_line_bytes} bytes")
            raise LineTooLong(self.problems[-1])
        return line

    def _fill(self) -> None:
        if self._iter is None:
            self._iter = iter(self.chunks)
        try:
            chunk = next(self._iter)
        except StopIteration:
            self._eof = True
            if self._rest and not self._skipping:
                self._ready = [self._decode(self._rest)]
            self._rest = b""
            return
        if not chunk:
            return
        self.bytes_read += len(chunk)
        if not self._started:
            self._started = True
            if chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise UnreadableBody(
                    "The body is UTF-16; send UTF-8 (in Excel: 'CSV UTF-8 (comma delimited)')."
                )
        data = self._rest + chunk if self._rest else chunk
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            self._rest = data
            if len(self._rest) > self.max_line_bytes:
                if not self._skipping:
                    self._ready = [_TOO_LONG]
                self._skipping, self._rest = True, b""
            return
        block, self._rest = data[: last_nl + 1], data[last_nl + 1 :]
        ready: list[str] = []
        if self._skipping:
            # the end of an over-long line that was already reported
            first_nl = block.find(b"\n")
            block = block[first_nl + 1 :]
            self._skipping = False
        if not block:
            return
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            ready = [self._decode(part + b"\n") for part in block[:-1].split(b"\n")]
        else:
            parts = text.split("\n")
            parts.pop()  # the empty string after the final newline
            ready = [part + "\n" for part in parts]
            if len(block) > self.max_line_bytes:
                limit = self.max_line_bytes
                ready = [
                    p if len(p) <= limit // 4 or len(p.encode()) <= limit else _TOO_LONG
                    for p in ready
                ]
        self._ready = ready

    def _decode(self, raw: bytes) -> str:
        if len(raw) > self.max_line_bytes:
            return _TOO_LONG
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            # counted once the line is handed out (see __next__ callers via take_problems)
            return _BadLine(raw.decode("utf-8", "replace"))


class _BadLine(str):
    """A line that was not valid UTF-8 (decoded with replacement characters)."""


_TOO_LONG = "\x00__too_long__\x00"


def _note_bad(splitter: LineSplitter, line: str) -> None:
    if isinstance(line, _BadLine):
        splitter.problems.append("is not valid UTF-8 (save the file as 'CSV UTF-8')")


class _WatchedLines:
    """Hands the splitter's lines to :mod:`csv`, noting undecodable ones."""

    def __init__(self, splitter: LineSplitter) -> None:
        self.splitter = splitter

    def __iter__(self) -> _WatchedLines:
        return self

    def __next__(self) -> str:
        line = next(self.splitter)
        _note_bad(self.splitter, line)
        return line


@dataclass(frozen=True, slots=True)
class Record:
    """One data record: ``values`` by column name, or ``problem`` when unreadable (neither: a
    blank record, skipped but counted)."""

    row: int
    values: dict[str, Any] | None
    problem: str | None = None


def detect_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def read_csv(
    splitter: LineSplitter, *, allowed: Iterable[str], required: Iterable[str]
) -> tuple[list[str], Iterator[Record]]:
    """Check the header row; return the columns and an iterator over the data records."""
    try:
        first = next(splitter)
    except StopIteration:
        raise UnreadableBody("The body is empty: a CSV import needs a header row.") from None
    except LineTooLong:
        raise UnreadableBody("The header row is too long.") from None
    if isinstance(first, _BadLine):
        raise UnreadableBody("The header row is not valid UTF-8 (save the file as 'CSV UTF-8').")
    first = first.removeprefix("\ufeff")
    delimiter = detect_delimiter(first)
    try:
        header = next(csv.reader([first], delimiter=delimiter, strict=True))
    except (csv.Error, StopIteration):
        raise UnreadableBody("The header row cannot be read as CSV.") from None
    columns = [name.strip().lower() for name in header]
    allowed_set, required_set = set(allowed), set(required)
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, name in enumerate(columns):
        loc = ["header", index + 1]
        if not name:
            errors.append({"loc": loc, "msg": "empty column name", "type": "empty"})
        elif name in seen:
            errors.append(
                {"loc": loc, "msg": f"column '{name[:64]}' appears twice", "type": "duplicate"}
            )
        elif name not in allowed_set:
            errors.append({"loc": loc, "msg": f"unknown column '{name[:64]}'", "type": "unknown"})
        seen.add(name)
    for name in sorted(required_set - seen):
        errors.append(
            {"loc": ["header"], "msg": f"required column '{name}' is missing", "type": "missing"}
        )
    if errors:
        raise UnreadableBody(
            "The first line must be a header row naming the documented columns; see errors.",
            errors,
        )
    return columns, _csv_records(splitter, columns, delimiter)


def _csv_records(splitter: LineSplitter, columns: list[str], delimiter: str) -> Iterator[Record]:
    reader = csv.reader(_WatchedLines(splitter), delimiter=delimiter, strict=True)
    width = len(columns)
    row = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except (csv.Error, LineTooLong) as exc:
            row += 1
            splitter.take_problems()
            yield Record(row, None, f"malformed CSV: {_short(exc)}")
            continue
        row += 1
        problems = splitter.take_problems()
        if problems:
            yield Record(row, None, f"the record {problems[0]}")
            continue
        if not any(fields):  # no fields, or only empty ones
            yield Record(row, None)  # blank: skipped, but counted
            continue
        if len(fields) != width:
            yield Record(row, None, f"expected {width} fields, found {len(fields)}")
            continue
        yield Record(row, dict(zip(columns, fields, strict=True)))


def read_ndjson(splitter: LineSplitter) -> Iterator[Record]:
    """One JSON object per line; blank lines are skipped but counted."""
    row = 0
    while True:
        try:
            line = next(splitter)
        except StopIteration:
            return
        except LineTooLong as exc:
            row += 1
            splitter.take_problems()
            yield Record(row, None, _short(exc))
            continue
        row += 1
        splitter.take_problems()
        if isinstance(line, _BadLine):
            yield Record(row, None, "the line is not valid UTF-8")
            continue
        if row == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            yield Record(row, None)  # blank: skipped, but counted
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            # orjson refuses what JSON allows but it cannot represent (a lone surrogate escape,
            # an integer beyond 64 bits): the standard parser reads those, and the cell checks
            # then name the field
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                yield Record(row, None, "the line is not valid JSON")
                continue
        if not isinstance(value, dict):
            yield Record(row, None, "each line must be a JSON object")
            continue
        yield Record(row, value)


def _short(exc: Exception) -> str:
    return str(exc)[:200]
