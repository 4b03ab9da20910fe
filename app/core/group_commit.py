"""Group commit: rows from many concurrent requests written in one transaction per batch.

A request hands its rows to :meth:`GroupCommitWriter.write` and awaits them: the call returns
only once the transaction that holds them has committed, and raises when it failed — so a
response that must not be sent without its rows (the reporter access log) is never sent without
them. One writer thread takes whatever requests have queued — up to ``max_rows`` rows, waiting
at most ``max_wait`` seconds for more once the first arrived (0: no waiting; the batch is what
queued while the previous commit ran) — inserts it with one ``executemany`` and commits once.
Under load that is one commit for many reads instead of one per read; alone, a request waits for
its own commit only, as before.

The writer thread is started on first use and stopped by :meth:`close` (the app's lifespan).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("kokoma.group_commit")

_STOP = object()

#: Writes one batch of rows in one transaction and commits it (raises on failure).
CommitBatch = Callable[[Sequence[dict[str, Any]]], None]


class GroupCommitWriter:
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
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: batches committed and rows written (for tests and the benchmark notes)
        self.batches = 0
        self.rows = 0

    async def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Return once ``rows`` are committed; raise what the commit raised otherwise."""
        if not rows:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._ensure_thread()
        self._queue.put((rows, loop, done))
        await done

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            count = len(first[0])
            stop = False
            deadline = time.monotonic() + self.max_wait
            while count < self.max_rows:
                try:
                    left = deadline - time.monotonic()
                    item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                count += len(item[0])
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[tuple[Sequence[dict[str, Any]], Any, Any]]) -> None:
        error: BaseException | None = None
        try:
            self._commit([row for rows, _, _ in batch for row in rows])
            self.batches += 1
            self.rows += sum(len(rows) for rows, _, _ in batch)
        except BaseException as exc:  # handed to every waiting request
            log.warning(
                "group commit failed", extra={"error": type(exc).__name__, "requests": len(batch)}
            )
            error = exc
        for _, loop, done in batch:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, done, error)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
