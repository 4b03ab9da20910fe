"""Group commit: rows from many concurrent requests written in one transaction per batch.

A request hands its rows to :meth:`GroupCommitWriter.write` and awaits them: the call returns
only once the transaction that holds them has committed, and raises when it failed — so a
response that must not be sent without its rows (the reporter access log) is never sent without
them. The writer runs on the event loop itself, as a task: it takes whatever requests have queued
— up to ``max_rows`` rows; after ``max_wait`` seconds when that is set, else at the end of the
loop iteration that queued the first — and awaits one ``commit`` of all of them. While that commit
runs, the next requests queue up for the next batch. Under load that is one commit for many reads
instead of one per read; alone, a request waits for its own commit only.

No thread: an earlier writer thread cost each request two GIL hand-overs (waking the thread, then
the loop) — 0.3–0.6 ms of CPU per read under load (bench/README.md). The commit itself is a
coroutine (:meth:`app.core.reads.Reads.write_many`: psycopg's async connection on PostgreSQL; on
SQLite a short write on the loop, or a thread when the database is locked).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger("kokoma.group_commit")

#: Writes one batch of rows in one transaction and commits it (raises on failure).
CommitBatch = Callable[[Sequence[dict[str, Any]]], Awaitable[None]]

_Waiting = tuple[Sequence[dict[str, Any]], "asyncio.Future[None]"]


class GroupCommitWriter:
    """One writer per event loop (it holds that loop's futures and its task)."""

    def __init__(
        self,
        commit: CommitBatch,
        *,
        max_rows: int = 1000,
        max_wait: float = 0.0,
        name: str = "kokoma-group-commit",
    ) -> None:
        self._commit = commit
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.name = name
        self._waiting: list[_Waiting] = []
        self._task: asyncio.Task[None] | None = None
        #: batches committed and rows written (for tests and the benchmark notes)
        self.batches = 0
        self.rows = 0

    async def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Return once ``rows`` are committed; raise what the commit raised otherwise."""
        if not rows:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._waiting.append((rows, done))
        if self._task is None:
            self._task = loop.create_task(self._drain(), name=self.name)
        await done

    async def close(self) -> None:
        """Commit what is queued (the app's shutdown)."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def _drain(self) -> None:
        try:
            # Let the requests of this loop iteration (or of max_wait) join the first batch.
            await asyncio.sleep(self.max_wait)
            while self._waiting:
                batch, count = [], 0
                while self._waiting and (
                    not batch or count + len(self._waiting[0][0]) <= self.max_rows
                ):
                    item = self._waiting.pop(0)
                    batch.append(item)
                    count += len(item[0])
                await self._write(batch, count)
        except asyncio.CancelledError:  # the loop is shutting down: the waiting are cancelled too
            for _, done in self._waiting:
                done.cancel()
            self._waiting.clear()
            raise
        finally:
            self._task = None

    async def _write(self, batch: list[_Waiting], count: int) -> None:
        error: BaseException | None = None
        try:
            await self._commit([row for rows, _ in batch for row in rows])
            self.batches += 1
            self.rows += count
        except asyncio.CancelledError as exc:  # shutdown mid-commit: nobody is told "committed"
            error = exc
            raise
        except Exception as exc:  # handed to every waiting request
            log.warning(
                "group commit failed", extra={"error": type(exc).__name__, "requests": len(batch)}
            )
            error = exc
        finally:
            for _, done in batch:
                if not done.done():
                    if error is None:
                        done.set_result(None)
                    elif isinstance(error, asyncio.CancelledError):
                        done.cancel()
                    else:
                        done.set_exception(error)
