"""PRIVACY.md stays true: it lists exactly the columns the models mark as personal."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Boolean

import app.models  # noqa: F401  (every table registered)
from app.core.config import Settings
from app.models.base import metadata
from app.models.privacy import INFO_KEY

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "PRIVACY.md").read_text(encoding="utf-8")
#: Column names that hold contact data wherever they appear.
CONTACT_NAME = re.compile(r"(e_?mail|phone|contact|reporter_name|address)$")
#: ``| `table.column` | kind | …`` rows of the "Personal fields" table.
ROW = re.compile(r"^\| `([a-z_]+)\.([a-z_]+)` \| (direct|free text) \|", re.MULTILINE)


def marked_columns() -> dict[tuple[str, str], str]:
    return {
        (table.name, column.name): column.info[INFO_KEY].replace("_", " ")
        for table in metadata.sorted_tables
        for column in table.columns
        if INFO_KEY in column.info
    }


def documented_columns() -> dict[tuple[str, str], str]:
    section = DOC.split("## Personal fields", 1)[1].split("\n## ", 1)[0]
    return {(table, column): kind for table, column, kind in ROW.findall(section)}


def test_every_marked_column_is_documented_with_its_kind() -> None:
    marked, documented = marked_columns(), documented_columns()
    missing = {f"{t}.{c}" for t, c in marked} - {f"{t}.{c}" for t, c in documented}
    assert not missing, f"PRIVACY.md does not list the personal column(s) {sorted(missing)}"
    assert {k: v for k, v in documented.items() if k in marked} == marked


def test_every_documented_column_exists_and_is_marked() -> None:
    marked = marked_columns()
    stale = sorted(f"{t}.{c}" for t, c in documented_columns() if (t, c) not in marked)
    assert not stale, f"PRIVACY.md lists column(s) the models do not mark personal: {stale}"


def test_contact_columns_are_marked() -> None:
    unmarked = sorted(
        f"{table.name}.{column.name}"
        for table in metadata.sorted_tables
        for column in table.columns
        if CONTACT_NAME.search(column.name)
        and INFO_KEY not in column.info
        # a flag named after a channel (``manager.notify_by_email``) holds no contact data
        and not isinstance(column.type, Boolean)
    )
    assert not unmarked, f"mark these columns personal (app/models/privacy.py): {unmarked}"


def test_the_core_fields_are_covered() -> None:
    """The fields DESIGN §4 protects are marked (a guard against removing a mark)."""
    assert {
        ("incident", "reporter_name"),
        ("incident", "reporter_contact"),
        ("manager", "email"),
        ("manager", "phone"),
        ("manager", "display_name"),
    } <= set(marked_columns())


def test_retention_default_is_documented() -> None:
    default = Settings.model_fields["reporter_retention_days"].default
    assert f"`KOKOMA_REPORTER_RETENTION_DAYS` (default {default})" in DOC


def test_readme_links_privacy() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(PRIVACY.md)" in readme
