"""The manager importer: rows keyed by ``email`` (case-insensitive), validated as
``POST /managers`` validates a body, written in bulk (manager, districts, competences, audit)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date
from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam, delete, select, update
from sqlmodel import col

from app.core.clock import get_clock
from app.models.base import table_of
from app.models.manager import Manager, ManagerCompetence, ManagerDistrict, ManagerStatus
from app.repositories.bulk import bulk_insert
from app.services.imports.base import (
    MANAGER_COLUMNS,
    MANAGER_REQUIRED,
    FieldError,
    Importer,
    ImportResult,
    audit_writer,
    raise_if_duplicate,
    write_now,
)
from app.services.imports.cells import _bool, _int, _list, _text

_MANAGER_UPDATABLE = (
    "display_name",
    "phone",
    "organisation_id",
    "home_district",
    "languages",
    "max_open_assignments",
    "notify_by_email",
)


def _competence_holdings(raw: Any, is_csv: bool) -> Any:
    """``code:certified_on:expires_on|…`` (CSV) or a JSON list of objects (NDJSON)."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return raw
    if not isinstance(raw, str):
        raise FieldError("must be 'code:certified_on:expires_on|…' or a list of objects")
    holdings = []
    for part in raw.split("|"):
        part = part.strip()
        if not part:
            continue
        pieces = [p.strip() for p in part.split(":")]
        if len(pieces) not in (2, 3):
            raise FieldError("each entry must be code:certified_on[:expires_on]")
        holdings.append(
            {
                "code": pieces[0],
                "certified_on": pieces[1],
                "expires_on": pieces[2] if len(pieces) == 3 and pieces[2] else None,
            }
        )
    return holdings


class ManagerImporter(Importer):
    columns = MANAGER_COLUMNS
    required = MANAGER_REQUIRED
    key_field = "email"

    def validate(
        self, values: dict[str, Any], is_csv: bool
    ) -> tuple[Any, Any, list[tuple[str | None, str]]]:
        from app.models.manager_schemas import ManagerCreate

        errors: list[tuple[str | None, str]] = []
        body: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in MANAGER_COLUMNS:
                errors.append((name, "unknown field"))
                continue
            try:
                if name in ("districts", "languages"):
                    value: Any = _list(raw, is_csv, 100)
                elif name == "competences":
                    value = _competence_holdings(raw, is_csv)
                elif name in ("max_open_assignments",):
                    value = _int(raw, is_csv, 1, 100)
                elif name == "notify_by_email":
                    value = _bool(raw, is_csv)
                elif name in (
                    "display_name",
                    "phone",
                    "email",
                    "status",
                    "home_district",
                    "organisation_id",
                ):
                    value = _text(raw, is_csv, 320)
                else:  # pragma: no cover - every column is handled above
                    value = raw
            except FieldError as exc:
                errors.append((name, str(exc)))
                continue
            if value is not None:
                body[name] = value
        email = body.get("email")
        key = email.strip().lower() if isinstance(email, str) else None
        if errors:
            return None, key, errors
        try:
            parsed = ManagerCreate.model_validate(body)
        except ValidationError as exc:
            for err in exc.errors():
                loc = err.get("loc") or ()
                name = str(loc[0]) if loc else None
                message = str(err.get("msg", "invalid"))
                if name is not None and name not in body and err.get("type") == "missing":
                    message = "is required"
                errors.append((name, message[:200]))
            return None, key, errors
        refs = self.refs
        if parsed.home_district not in refs.districts:
            errors.append(("home_district", f"unknown district '{parsed.home_district}'"))
        unknown = sorted(set(parsed.districts) - refs.districts)
        if unknown:
            errors.append(("districts", f"unknown district(s): {', '.join(unknown)}"))
        unknown = sorted({h.code for h in parsed.competences} - refs.competences)
        if unknown:
            errors.append(("competences", f"unknown competence(s): {', '.join(unknown)}"))
        if parsed.organisation_id is not None and parsed.organisation_id not in refs.organisations:
            errors.append(("organisation_id", "unknown organisation"))
        row = {
            "email": parsed.email,
            "display_name": parsed.display_name,
            "phone": parsed.phone,
            "organisation_id": parsed.organisation_id,
            "status": ManagerStatus(parsed.status).value,
            "home_district": parsed.home_district,
            "districts": sorted(set(parsed.districts) - {parsed.home_district}),
            "languages": parsed.languages,
            "max_open_assignments": parsed.max_open_assignments,
            "notify_by_email": parsed.notify_by_email,
            "competences": sorted(
                (h.code, h.certified_on, h.expires_on) for h in parsed.competences
            ),
            "present": {name for name in values if name in MANAGER_COLUMNS},
        }
        return (None if errors else row), parsed.email, errors

    def process(
        self, batch: list[tuple[int, dict[str, Any]]], write: bool, result: ImportResult
    ) -> None:
        session = self.session
        self.plan_for_growing_tables()
        emails = [row["email"] for _, row in batch]
        stmt = select(
            col(Manager.id),
            col(Manager.email),
            col(Manager.version),
            *(getattr(Manager, n) for n in _MANAGER_UPDATABLE),
        ).where(col(Manager.email).in_(emails))
        if write and self.is_pg:
            stmt = stmt.with_for_update()
        existing = {found.email: found for found in session.execute(stmt)}
        districts: dict[uuid.UUID, list[str]] = defaultdict(list)
        holdings: dict[uuid.UUID, list[tuple[str, date, date | None]]] = defaultdict(list)
        if existing:
            ids = [found.id for found in existing.values()]
            for manager_id, code in session.execute(
                select(col(ManagerDistrict.manager_id), col(ManagerDistrict.district_code)).where(
                    col(ManagerDistrict.manager_id).in_(ids)
                )
            ):
                districts[manager_id].append(code)
            for manager_id, code, certified_on, expires_on in session.execute(
                select(
                    col(ManagerCompetence.manager_id),
                    col(ManagerCompetence.competence_code),
                    col(ManagerCompetence.certified_on),
                    col(ManagerCompetence.expires_on),
                ).where(col(ManagerCompetence.manager_id).in_(ids))
            ):
                holdings[manager_id].append((code, certified_on, expires_on))
        creates, updates = [], []
        for _, row in batch:
            found = existing.get(row["email"])
            if found is None:
                creates.append(row)
                continue
            present = row["present"]
            changed = [
                name
                for name in _MANAGER_UPDATABLE
                if name in present and getattr(found, name) != row[name]
            ]
            if "home_district" in changed or "districts" in present:
                wanted = (
                    row["districts"]
                    if "districts" in present
                    else sorted(set(districts.get(found.id, [])) - {row["home_district"]})
                )
                if sorted(districts.get(found.id, [])) != wanted:
                    changed.append("districts")
                    row = {**row, "districts": wanted}
            if (
                "competences" in present
                and sorted(holdings.get(found.id, [])) != row["competences"]
            ):
                changed.append("competences")
            if changed:
                updates.append((found, row, changed))
            else:
                result.unchanged += 1
        result.created += len(creates)
        result.updated += len(updates)
        if write:
            self._create(creates)
            self._update(updates)

    def _create(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        now = get_clock().now()
        managers, links, certs, audits = [], [], [], []
        for row in rows:
            manager_id = uuid.uuid4()
            managers.append(
                {
                    "id": manager_id,
                    "display_name": row["display_name"],
                    "email": row["email"],
                    "phone": row["phone"],
                    "organisation_id": row["organisation_id"],
                    "status": row["status"],
                    "home_district": row["home_district"],
                    "languages": row["languages"],
                    "max_open_assignments": row["max_open_assignments"],
                    "notify_by_email": row["notify_by_email"],
                    "open_assignments": 0,
                    "last_assigned_at": None,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            links.extend(
                {"manager_id": manager_id, "district_code": code} for code in row["districts"]
            )
            certs.extend(
                {
                    "manager_id": manager_id,
                    "competence_code": code,
                    "certified_on": certified_on,
                    "expires_on": expires_on,
                }
                for code, certified_on, expires_on in row["competences"]
            )
            audits.append((manager_id, sorted(row["present"])))
        try:
            bulk_insert(self.session, Manager, managers)
        except Exception as exc:
            raise_if_duplicate(exc)
            raise
        bulk_insert(self.session, ManagerDistrict, links)
        bulk_insert(self.session, ManagerCompetence, certs)
        write_now(audit_writer(self.session, self.principal, now, "create", "manager", audits))

    def _update(self, updates: list[tuple[Any, dict[str, Any], list[str]]]) -> None:
        if not updates:
            return
        session = self.session
        now = get_clock().now()
        table = table_of(Manager)
        params, audits = [], []
        district_ids, district_rows, cert_ids, cert_rows = [], [], [], []
        for found, row, changed in updates:
            params.append(
                {
                    "b_id": found.id,
                    **{
                        f"b_{name}": (row[name] if name in changed else getattr(found, name))
                        for name in _MANAGER_UPDATABLE
                    },
                }
            )
            audits.append((found.id, sorted(changed)))
            if "districts" in changed:
                district_ids.append(found.id)
                district_rows.extend(
                    {"manager_id": found.id, "district_code": code} for code in row["districts"]
                )
            if "competences" in changed:
                cert_ids.append(found.id)
                cert_rows.extend(
                    {
                        "manager_id": found.id,
                        "competence_code": code,
                        "certified_on": certified_on,
                        "expires_on": expires_on,
                    }
                    for code, certified_on, expires_on in row["competences"]
                )
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                {
                    **{name: bindparam(f"b_{name}") for name in _MANAGER_UPDATABLE},
                    "version": table.c.version + 1,
                    "updated_at": now,
                }
            ),
            params,
        )
        if district_ids:
            session.connection().execute(
                delete(ManagerDistrict).where(col(ManagerDistrict.manager_id).in_(district_ids))
            )
            bulk_insert(session, ManagerDistrict, district_rows)
        if cert_ids:
            session.connection().execute(
                delete(ManagerCompetence).where(col(ManagerCompetence.manager_id).in_(cert_ids))
            )
            bulk_insert(session, ManagerCompetence, cert_rows)
        write_now(audit_writer(session, self.principal, now, "update", "manager", audits))
