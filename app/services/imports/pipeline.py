"""The import run: records parsed on the caller's thread, the database work of each batch on a
thread of its own (:class:`Pipeline`), the transaction rules of ``atomic`` and ``dry_run``."""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlmodel import Session

from app.core.config import get_settings
from app.core.errors import Unprocessable
from app.core.problems import ProblemType
from app.core.security import Principal
from app.services.csv_io import LineSplitter, Record, UnreadableBody, read_csv, read_ndjson
from app.services.imports.base import BodyFormat, Importer, ImportKind, ImportResult
from app.services.imports.incidents import IncidentImporter
from app.services.imports.managers import ManagerImporter
from app.services.imports.refdata import ReferenceData


class Pipeline:
    """Runs an import's database work on one thread of its own while the caller parses.

    Per batch the database thread first *prepares* it (:meth:`Importer.prepare`: look up the
    existing keys, reserve references), the caller's thread then *plans* it in Python
    (:meth:`Importer.plan`: classify, render the rows) and hands back the writes, which the
    database thread runs in order. A batch's look-up is queued before the previous batch's writes,
    so the database always has work while Python renders (keys are unique within a file, so a
    look-up never depends on the writes still queued before it). The driver releases the GIL
    while it waits for the server: on PostgreSQL the server's time and Python's now overlap.

    Commits per batch (``atomic=false``) end the row locks and the advisory lock of a look-up, so
    then each batch is planned as soon as it is submitted: its look-up is queued after the
    previous batch's writes and commit (the thread runs its queue in order). Memory: at most
    ``_MAX_QUEUED`` rendered batches wait, so it stays bounded whatever the file's size. The
    session is used only on the database thread until :meth:`drain` returns.
    """

    _MAX_QUEUED = 2

    def __init__(self, importer: Importer, result: ImportResult) -> None:
        self.importer, self.result = importer, result
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kokoma-import")
        self._prepared: deque[tuple[list[tuple[int, Any]], bool, bool, Future[Any]]] = deque()
        self._writes: deque[Future[Any]] = deque()

    def _run(self, call: Callable[[], Any]) -> Future[Any]:
        return self._executor.submit(contextvars.copy_context().run, call)

    def submit(self, batch: list[tuple[int, Any]], write: bool, *, commit: bool) -> None:
        importer = self.importer
        self._prepared.append(
            (batch, write, commit, self._run(lambda: importer.prepare(batch, write)))
        )
        if commit or len(self._prepared) > 1:
            self._plan_oldest()

    def _plan_oldest(self) -> None:
        batch, write, commit, prepared = self._prepared.popleft()
        writes = self.importer.plan(batch, self._result(prepared), write, self.result)
        if commit:
            writes.append(self.importer.commit)
        if writes:
            self._writes.append(self._run(lambda: [call() for call in writes]))
        while self._writes and (len(self._writes) > self._MAX_QUEUED or self._writes[0].done()):
            self._writes.popleft().result()  # re-raises what went wrong there

    def _result(self, prepared: Future[Any]) -> Any:
        try:
            return prepared.result()
        except BaseException:
            # writes queued before this look-up ran before it: when one of them failed, the
            # look-up only met the aborted transaction — the write's error is the one to report
            for earlier in self._writes:
                failure = earlier.exception() if earlier.done() else None
                if failure is not None:
                    raise failure from None
            raise

    def drain(self) -> None:
        """Plan and write every submitted batch; re-raise the first error."""
        while self._prepared:
            self._plan_oldest()
        while self._writes:
            self._writes.popleft().result()

    def stop(self) -> None:
        """After a failure: wait for the queued work (its own errors are superseded)."""
        for *_, future in self._prepared:
            future.cancel()
        self._prepared.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._writes.clear()

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def run_import(
    session: Session,
    kind: ImportKind,
    body_format: BodyFormat,
    chunks: Iterable[bytes],
    principal: Principal,
    *,
    dry_run: bool = False,
    atomic: bool = True,
) -> ImportResult:
    """Import a streamed body; raises :class:`Unprocessable` when the body as a whole is unreadable.

    Commits what it writes (see the module docstring); the caller's later commit is a no-op.
    """
    settings = get_settings()
    splitter = LineSplitter(chunks)
    importer_cls: type[Importer] = (
        IncidentImporter if kind == ImportKind.incidents else (ManagerImporter)
    )
    result = ImportResult(dry_run=dry_run, atomic=atomic)
    pipeline: Pipeline | None = None
    importer: Importer | None = None
    try:
        records: Iterator[Record]
        if body_format == BodyFormat.csv:
            _, records = read_csv(
                splitter, allowed=importer_cls.columns, required=importer_cls.required
            )
        else:
            records = read_ndjson(splitter)
        importer = importer_cls(session, principal, ReferenceData.load(session))
        pipeline = Pipeline(importer, result)
        is_csv = body_format == BodyFormat.csv
        write = not dry_run
        seen: set[int] = set()
        batch: list[tuple[int, Any]] = []
        for record in records:
            result.rows = record.row
            if record.values is None and record.problem is None:
                pass  # a blank record: skipped, but counted
            elif record.values is None:
                result.add_error(record.row, None, record.problem or "unreadable record")
            else:
                parsed, key, errors = importer.validate(record.values, is_csv)
                if key is not None:
                    digest = hash(key)
                    if digest in seen:
                        errors.append(
                            (
                                importer.key_field,
                                "appears more than once in this file (only the first "
                                "occurrence is imported)",
                            )
                        )
                        parsed = None
                    seen.add(digest)
                for field_name, message in errors:
                    result.add_error(record.row, field_name, message)
                if parsed is not None and not errors:
                    batch.append((record.row, parsed))
            if write and atomic and result.error_count:
                pipeline.drain()
                importer.rollback()
                write = False
            if len(batch) >= settings.import_batch_rows:
                pipeline.submit(batch, write, commit=write and not atomic)
                batch = []
        if batch:
            pipeline.submit(batch, write, commit=False)
        pipeline.drain()
        if write:
            importer.commit()
        elif not dry_run:
            # atomic and a row failed: nothing was created or updated (a dry run says what would be)
            result.created = result.updated = 0
        result.committed = write
        return result
    except UnreadableBody as exc:
        if pipeline is not None:
            pipeline.stop()
        _roll_back(session, importer)
        raise Unprocessable(
            exc.message,
            type_=ProblemType.UNREADABLE_IMPORT,
            errors=exc.errors or [{"loc": ["body"], "msg": exc.message, "type": "unreadable"}],
        ) from None
    except BaseException:
        if pipeline is not None:
            pipeline.stop()
        _roll_back(session, importer)
        raise
    finally:
        if pipeline is not None:
            pipeline.close()
        if importer is not None:
            importer.close()


def _roll_back(session: Session, importer: Importer | None) -> None:
    if importer is None:
        session.rollback()
    else:
        importer.rollback()
