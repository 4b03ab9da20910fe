"""The ``kokoma`` console script."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Annotated

import typer

from app.core.config import get_settings

cli = typer.Typer(help="kokoma — municipal conflict management backend.", no_args_is_help=True)
api_key_cli = typer.Typer(help="Manage API keys.", no_args_is_help=True)
cli.add_typer(api_key_cli, name="api-key")
retention_cli = typer.Typer(
    help="Erase personal data past its retention period (PRIVACY.md).", no_args_is_help=True
)
cli.add_typer(retention_cli, name="retention")


def _register_integration() -> None:
    """``kokoma import incidents|managers`` and ``kokoma worker`` (app/cli_integration.py)."""
    from app.cli_integration import import_cli, worker

    cli.add_typer(import_cli, name="import")
    cli.command("worker")(worker)


_register_integration()


def require_migrated() -> None:
    """Stop a command that needs the database unless it is migrated: one line on stderr saying
    what to do, exit code 2, no traceback (and no empty SQLite file left behind)."""
    from app.core.migrations import cli_database_problem

    problem = cli_database_problem()
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest migration (creates a SQLite file if needed)."""
    from app.core.migrations import database_label, upgrade

    upgrade("head")
    typer.echo(f"database {database_label(get_settings().sqlalchemy_url)} at head", err=True)


def warn_connection_budget(workers: int) -> None:
    """Say at start when ``workers`` processes may open more connections than the database
    admits (a database that cannot be asked now is left to /readyz)."""
    from app.core.db import connection_budget_warning, get_engine, reset_engine

    try:
        warning = connection_budget_warning(get_engine(), get_settings(), workers)
    except Exception:
        return
    finally:
        reset_engine()  # the workers open their own connections
    if warning:
        typer.echo(f"warning: {warning}", err=True)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (KOKOMA_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (KOKOMA_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (KOKOMA_WORKERS)")] = None,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development)")] = False,
) -> None:
    """Run the API with uvicorn."""
    import uvicorn

    from app.core.db import reset_engine
    from app.core.migrations import cli_database_problem

    settings = get_settings()
    workers = workers or settings.workers
    # The worker processes read it too: /readyz checks the connection budget of all of them.
    os.environ["KOKOMA_WORKERS"] = str(workers)
    problem = cli_database_problem()
    if problem:  # still serve: /readyz says not ready and each call answers 503 saying so
        typer.echo(f"warning: {problem}", err=True)
    else:
        warn_connection_budget(workers)
    reset_engine()  # the check's connection is not handed to the server's workers
    uvicorn.run(
        "app.main:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


@cli.command("seed-demo")
def seed_demo() -> None:
    """Load Erfurt's pilot districts, competences, organisations and demo records (idempotent)."""
    from app.services.seed import seed_demo_data

    require_migrated()
    summary = seed_demo_data()
    typer.echo(json.dumps(summary, indent=2), err=True)


@api_key_cli.command("create")
def api_key_create(
    role: Annotated[str, typer.Option(help="admin|coordinator|manager|partner|viewer")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by")],
    organisation: Annotated[str | None, typer.Option(help="Organisation id (partner)")] = None,
    manager: Annotated[str | None, typer.Option(help="Manager id (manager)")] = None,
) -> None:
    """Create an API key and print it — only the key — on stdout."""
    from pydantic import ValidationError

    from app.core.db import session_scope
    from app.core.errors import AppError
    from app.core.security import SYSTEM_PRINCIPAL
    from app.models.system import ApiKeyCreate
    from app.services.api_keys import ApiKeyService

    require_migrated()
    try:
        body = ApiKeyCreate.model_validate(
            {
                "name": name,
                "role": role,
                "organisation_id": uuid.UUID(organisation) if organisation else None,
                "manager_id": uuid.UUID(manager) if manager else None,
            }
        )
        with session_scope() as session:
            created = ApiKeyService(session).create(body, SYSTEM_PRINCIPAL)
    except (ValidationError, ValueError, AppError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(created.key)


@retention_cli.command("run")
def retention_run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be erased only")
    ] = False,
) -> None:
    """Erase the reporter data of incidents closed, withdrawn or referred more than
    KOKOMA_REPORTER_RETENTION_DAYS ago; print their references (never names) on stdout."""
    from app.services.privacy.retention import run_retention

    require_migrated()
    report = run_retention(dry_run=dry_run)
    for reference in report.references:
        typer.echo(reference)
    days = get_settings().reporter_retention_days
    verb = "would be erased (dry run, nothing changed)" if dry_run else "erased"
    typer.echo(
        f"{len(report.references)} incident(s) closed, withdrawn or referred before "
        f"{report.cutoff.isoformat()} ({days} days): reporter data {verb}",
        err=True,
    )
    if not dry_run:
        typer.echo(f"{report.idempotency_purged} expired idempotency record(s) deleted", err=True)


@cli.command("export-openapi")
def export_openapi(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Where to write the document (default openapi/openapi.json)",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="The same as FILE",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write the app's OpenAPI document (committed as openapi/openapi.json)."""
    from app.api.openapi import render_openapi

    if file is not None and output is not None and file != output:
        typer.echo(f"error: two destinations ({file} and --output {output}): give one", err=True)
        raise typer.Exit(2)
    target = file or output or Path("openapi/openapi.json")
    from app.main import app

    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_openapi(app.openapi()), encoding="utf-8")
    typer.echo(f"wrote {target}", err=True)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
