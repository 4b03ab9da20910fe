"""The ``kokoma`` console script."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated

import typer

from app.core.config import get_settings

cli = typer.Typer(help="kokoma — municipal conflict management backend.", no_args_is_help=True)
api_key_cli = typer.Typer(help="Manage API keys.", no_args_is_help=True)
cli.add_typer(api_key_cli, name="api-key")
retention_cli = typer.Typer(help="Erase personal data past its retention period (PRIVACY.md).",
                            no_args_is_help=True)
cli.add_typer(retention_cli, name="retention")


def _register_integration() -> None:
    """``kokoma import incidents|managers`` and ``kokoma worker`` (app/cli_integration.py)."""
    from app.cli_integration import import_cli, worker

    cli.add_typer(import_cli, name="import")
    cli.command("worker")(worker)


_register_integration()


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest migration."""
    from app.core.migrations import upgrade

    upgrade("head")
    typer.echo("database at head", err=True)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (KOKOMA_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (KOKOMA_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (KOKOMA_WORKERS)")] = None,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development)")] = False,
) -> None:
    """Run the API with uvicorn."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "app.main:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        reload=reload,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


@cli.command("seed-demo")
def seed_demo() -> None:
    """Load Erfurt's pilot districts, competences, organisations and demo records (idempotent)."""
    from app.services.seed import seed_demo_data

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

    try:
        body = ApiKeyCreate(
            name=name,
            role=role,  # type: ignore[arg-type]
            organisation_id=uuid.UUID(organisation) if organisation else None,
            manager_id=uuid.UUID(manager) if manager else None,
        )
        with session_scope() as session:
            created = ApiKeyService(session).create(body, SYSTEM_PRINCIPAL)
    except (ValidationError, ValueError, AppError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(created.key)


@retention_cli.command("run")
def retention_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be erased only")] = False,
) -> None:
    """Erase the reporter data of incidents closed, withdrawn or referred more than
    KOKOMA_REPORTER_RETENTION_DAYS ago; print their references (never names) on stdout."""
    from app.services.privacy.retention import run_retention

    report = run_retention(dry_run=dry_run)
    for reference in report.references:
        typer.echo(reference)
    days = get_settings().reporter_retention_days
    verb = "would be erased (dry run, nothing changed)" if dry_run else "erased"
    typer.echo(f"{len(report.references)} incident(s) closed, withdrawn or referred before "
               f"{report.cutoff.isoformat()} ({days} days): reporter data {verb}", err=True)
    if not dry_run:
        typer.echo(f"{report.idempotency_purged} expired idempotency record(s) deleted", err=True)


@cli.command("export-openapi")
def export_openapi(
    output: Annotated[Path, typer.Option(help="Where to write the spec")] = Path(
        "openapi/openapi.json"
    ),
) -> None:
    """Write the app's OpenAPI document (committed as openapi/openapi.json)."""
    from app.main import app

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_openapi(app.openapi()), encoding="utf-8")
    typer.echo(f"wrote {output}", err=True)


def render_openapi(spec: dict[str, object]) -> str:
    return json.dumps(spec, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
