"""Alembic from code: upgrade to head, and compare the database's revision with head."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_and_head(engine: Engine) -> tuple[str | None, str | None]:
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head_revision()


def upgrade(revision: str = "head") -> None:
    command.upgrade(alembic_config(), revision)


def downgrade(revision: str = "base") -> None:
    command.downgrade(alembic_config(), revision)


def database_label(url: str) -> str:
    """The database as a person can find it: a SQLite file by its absolute path (a relative
    default resolves against the working directory), a server URL without its password."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if not parsed.database or parsed.database == ":memory:":
            return "sqlite (in memory)"
        return f"sqlite:///{Path(parsed.database).resolve()}"
    return parsed.render_as_string(hide_password=True)


def sqlite_file_missing(url: str) -> bool:
    """A SQLite file database whose file does not exist (opening it would create it empty)."""
    parsed = make_url(url)
    return (
        parsed.drivername.startswith("sqlite")
        and bool(parsed.database)
        and parsed.database != ":memory:"
        and not Path(parsed.database).exists()
    )


def not_migrated_reason(url: str, engine: Engine) -> str | None:
    """Why the database cannot be used by this kokoma yet — ``None`` when it is at head.

    Never creates a missing SQLite file. Connection errors propagate (the database is not
    reachable, which is another problem than an unmigrated one).
    """
    label = database_label(url)
    if sqlite_file_missing(url):
        return (
            f"database {label} is not migrated: run `kokoma migrate` (the file does not "
            "exist yet; DATABASE_URL chooses another database)"
        )
    current, head = current_and_head(engine)
    if current == head:
        return None
    if current is None:
        return f"database {label} is not migrated: run `kokoma migrate`"
    if not _is_known(current):
        return (
            f"database {label} is at schema revision {current}, which this kokoma does not "
            f"know (newest here: {head}): run the kokoma version that migrated it"
        )
    return (
        f"database {label} is not migrated to this kokoma's schema (at {current}, newest "
        f"{head}): run `kokoma migrate`"
    )


def _is_known(revision: str) -> bool:
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except Exception:  # alembic raises its own CommandError/ResolutionError subclasses
        return False
    return True


def cli_database_problem() -> str | None:
    """For the CLI, before a command uses the configured database: what stops it, in one line
    (not migrated, behind, unreachable), or ``None``."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.core.config import get_settings
    from app.core.db import get_engine

    url = get_settings().sqlalchemy_url
    # Reading the revision is no migration: keep alembic's "Context impl …" lines off the CLI's
    # output (`kokoma api-key create` prints only the key on stdout).
    log = logging.getLogger("alembic.runtime.migration")
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        return not_migrated_reason(url, get_engine())
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"database {database_label(url)} is not reachable: {cause}"
    finally:
        log.setLevel(level)
