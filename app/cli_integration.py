"""``kokoma import incidents|managers FILE`` and ``kokoma worker`` (registered in :mod:`app.cli`).

``import`` runs the same service as ``POST /api/v1/imports/…``: directly against the configured
database (one ``session_scope``, audited as ``system``), or with ``--url``/``--key`` against a
running server (a streamed upload). Progress is shown by bytes read; the summary goes to stderr
(``--json`` also prints the full report on stdout). Exit codes: 0 no errors, 1 rows with errors,
2 the file could not be imported at all (unreadable, refused, server unreachable).
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from app.services.imports import BodyFormat, ImportKind

import_cli = typer.Typer(
    help="Bulk-import incidents or managers from CSV or NDJSON (see README).",
    no_args_is_help=True,
)
_console = Console(stderr=True)
CHUNK_BYTES = 256 * 1024
_CONTENT_TYPES = {BodyFormat.csv: "text/csv", BodyFormat.ndjson: "application/x-ndjson"}


def _format_of(path: Path, given: str | None) -> BodyFormat:
    if given:
        return BodyFormat(given)
    return BodyFormat.ndjson if path.suffix.lower() in (".ndjson", ".jsonl") else BodyFormat.csv


def _import_file(
    kind: ImportKind,
    file: Path,
    *,
    dry_run: bool,
    atomic: bool,
    url: str | None,
    key: str | None,
    body_format: str | None,
    as_json: bool,
) -> None:
    if not file.is_file():
        _console.print(f"[red]error:[/red] no such file: {file}")
        raise typer.Exit(2)
    if not url:
        _require_migrated()
    fmt = _format_of(file, body_format)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_console,
    )
    with progress:
        task = progress.add_task(f"{kind} from {file.name}", total=file.stat().st_size)

        def chunks() -> Iterator[bytes]:
            with file.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    yield chunk
                    progress.advance(task, len(chunk))

        if url:
            report = _remote(kind, fmt, chunks(), dry_run, atomic, url, key)
        else:
            report = _direct(kind, fmt, chunks(), dry_run, atomic)
    _summary(report)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(1 if report["error_count"] else 0)


def _direct(
    kind: ImportKind, fmt: BodyFormat, chunks: Iterator[bytes], dry_run: bool, atomic: bool
) -> dict[str, Any]:
    from app.core.db import session_scope
    from app.core.errors import AppError
    from app.core.runtime import tune_runtime
    from app.core.security import SYSTEM_PRINCIPAL
    from app.services.imports import run_import

    tune_runtime()
    try:
        with session_scope() as session:
            result = run_import(
                session, kind, fmt, chunks, SYSTEM_PRINCIPAL, dry_run=dry_run, atomic=atomic
            )
    except AppError as exc:
        _problem({"detail": exc.detail, "errors": exc.errors})
        raise typer.Exit(2) from None
    return dict(result.__dict__)


def _require_migrated() -> None:
    from app.core.migrations import cli_database_problem

    problem = cli_database_problem()
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)


def _remote(
    kind: ImportKind,
    fmt: BodyFormat,
    chunks: Iterator[bytes],
    dry_run: bool,
    atomic: bool,
    url: str,
    key: str | None,
) -> dict[str, Any]:
    import httpx

    if not key:
        _console.print("[red]error:[/red] --key (or KOKOMA_API_KEY) is needed with --url")
        raise typer.Exit(2)
    endpoint = url.rstrip("/") + f"/api/v1/imports/{kind}"
    try:
        response = httpx.post(
            endpoint,
            content=chunks,
            params={"dry_run": str(dry_run).lower(), "atomic": str(atomic).lower()},
            headers={"Authorization": f"Bearer {key}", "Content-Type": _CONTENT_TYPES[fmt]},
            timeout=httpx.Timeout(60.0, read=None),
        )
    except httpx.HTTPError as exc:
        _console.print(f"[red]error:[/red] {endpoint}: {type(exc).__name__}: {exc}")
        raise typer.Exit(2) from None
    if response.status_code != 200:
        try:
            _problem(response.json())
        except ValueError:
            _console.print(f"[red]error:[/red] HTTP {response.status_code}")
        raise typer.Exit(2)
    report: dict[str, Any] = response.json()
    return report


def _problem(problem: dict[str, Any]) -> None:
    _console.print(f"[red]import refused:[/red] {problem.get('detail', problem)}")
    for error in problem.get("errors") or []:
        _console.print(f"  {'.'.join(str(p) for p in error.get('loc', []))}: {error.get('msg')}")


def _summary(report: dict[str, Any]) -> None:
    table = Table(title="dry run (nothing written)" if report["dry_run"] else "import")
    for column in ("rows", "created", "updated", "unchanged", "errors", "written"):
        table.add_column(column, justify="right")
    table.add_row(
        str(report["rows"]),
        str(report["created"]),
        str(report["updated"]),
        str(report["unchanged"]),
        str(report["error_count"]),
        "yes" if report["committed"] else "no",
    )
    _console.print(table)
    for error in report["errors"][:20]:
        field = f" {error['field']}" if error["field"] else ""
        _console.print(f"  row {error['row']}{field}: {error['message']}")
    if report["error_count"] > 20:
        _console.print(f"  … and {report['error_count'] - 20} more (--json lists up to 1,000)")
    if report["error_count"] and report["atomic"] and not report["dry_run"]:
        _console.print(
            "[yellow]nothing was written[/yellow] (atomic); fix the rows or use "
            "--no-atomic to write the valid ones"
        )


FileArg = Annotated[Path, typer.Argument(help="CSV (.csv) or NDJSON (.ndjson/.jsonl) file")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate and count; write nothing")]
AtomicOpt = Annotated[bool, typer.Option(help="Any row error → nothing is written")]
UrlOpt = Annotated[
    str | None, typer.Option(help="Import through a running server, e.g. http://127.0.0.1:8000")
]
KeyOpt = Annotated[str | None, typer.Option(envvar="KOKOMA_API_KEY", help="API key for --url")]
FormatOpt = Annotated[
    str | None, typer.Option("--format", help="csv or ndjson (default: by file extension)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the full report on stdout")]


@import_cli.command("incidents")
def import_incidents(
    file: FileArg,
    dry_run: DryRunOpt = False,
    atomic: AtomicOpt = True,
    url: UrlOpt = None,
    key: KeyOpt = None,
    body_format: FormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import incidents (upsert by source + external_id)."""
    _import_file(
        ImportKind.incidents,
        file,
        dry_run=dry_run,
        atomic=atomic,
        url=url,
        key=key,
        body_format=body_format,
        as_json=as_json,
    )


@import_cli.command("managers")
def import_managers(
    file: FileArg,
    dry_run: DryRunOpt = False,
    atomic: AtomicOpt = True,
    url: UrlOpt = None,
    key: KeyOpt = None,
    body_format: FormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import managers (upsert by email)."""
    _import_file(
        ImportKind.managers,
        file,
        dry_run=dry_run,
        atomic=atomic,
        url=url,
        key=key,
        body_format=body_format,
        as_json=as_json,
    )


def worker(
    once: Annotated[bool, typer.Option("--once", help="Run every job once and exit")] = False,
) -> None:
    """Deliver webhooks and e-mail notifications (and run the other periodic jobs) until
    SIGTERM/SIGINT."""
    from app.core.config import get_settings
    from app.core.logging import configure_logging
    from app.core.runtime import tune_runtime
    from app.services.worker import run_forever, run_once

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    _require_migrated()
    tune_runtime()
    if once:
        typer.echo(json.dumps(run_once()), err=True)
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_forever(stop=stop)
