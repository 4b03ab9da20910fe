"""An incident row of an import: validated and normalised (CSV or NDJSON, flat or as the API
writes it), with a fast path for the common CSV row that decides nothing differently."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from app.models.incident import IncidentCategory, IncidentSource, IncidentStatus
from app.models.languages import validate_language_codes
from app.services.imports.base import INCIDENT_COLUMNS, FieldError
from app.services.imports.cells import (
    _bool,
    _code,
    _csv_text,
    _float,
    _int,
    _list,
    _text,
    _timestamp,
    _uuid,
)
from app.services.imports.refdata import ReferenceData
from app.services.references import parse_incident_reference

_SOURCES = tuple(s.value for s in IncidentSource)
_CATEGORIES = frozenset(c.value for c in IncidentCategory)
_STATUSES = frozenset(s.value for s in IncidentStatus)
# precompiled checks of the fast CSV path (IncidentImporter._validate_csv_fast)
_SOURCE_SET = frozenset(_SOURCES)
_IMPORT_SOURCE = IncidentSource.import_.value
_IMPORTABLE_STATUSES = _STATUSES - {
    IncidentStatus.dispatched.value,
    IncidentStatus.in_progress.value,
}
_INCIDENT_COLUMN_SET = frozenset(INCIDENT_COLUMNS)
_LEVELS = {str(level): level for level in range(1, 10)}
_MISSING = object()


#: Fields of the API's incident the server sets: ignored in an NDJSON row (like ``reference``
#: beside an ``external_id``), so the items of ``GET /incidents`` re-import as they are.
_SERVER_FIELDS = frozenset({"id", "version", "created_at", "updated_at", "open_slots"})

_REPORTER_KEYS = {
    "name": "reporter_name",
    "contact": "reporter_contact",
    "anonymous": "reporter_anonymous",
}


def _flatten_api_shape(
    values: dict[str, Any],
) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
    """An NDJSON incident may also come as the API writes it: ``location {lat, lon}`` and
    ``reporter {name, contact, anonymous}`` (each may be ``null``: none) instead of the flat
    columns. Returns the flat form and the errors of the nested fields."""
    if "location" not in values and "reporter" not in values:
        return values, []
    flat, errors = dict(values), []
    location = flat.pop("location", _MISSING)
    if location is not _MISSING:
        if "lat" in values or "lon" in values:
            errors.append(("location", "give either location or lat/lon"))
            flat.pop("lat", None)  # one error for the conflict, not a second one for lat/lon
            flat.pop("lon", None)
        elif location is None:
            flat["lat"] = flat["lon"] = None
        elif isinstance(location, dict) and set(location) == {"lat", "lon"}:
            flat["lat"], flat["lon"] = location["lat"], location["lon"]
        else:
            errors.append(("location", 'must be {"lat": …, "lon": …} or null'))
    reporter = flat.pop("reporter", _MISSING)
    if reporter is not _MISSING:
        if any(column in values for column in _REPORTER_KEYS.values()):
            errors.append(("reporter", "give either reporter or the reporter_… fields"))
            for column in _REPORTER_KEYS.values():
                flat.pop(column, None)
        elif reporter is None:
            flat.update(dict.fromkeys(_REPORTER_KEYS.values()))
        elif isinstance(reporter, dict) and set(reporter) <= set(_REPORTER_KEYS):
            flat.update({column: reporter.get(key) for key, column in _REPORTER_KEYS.items()})
        else:
            errors.append(("reporter", 'must be {"name", "contact", "anonymous"} or null'))
    return flat, errors


class IncidentRowValidation:
    """Row validation of :class:`app.services.imports.incidents.IncidentImporter`."""

    refs: ReferenceData
    #: Cells that repeat (code lists, timestamps, the header's column set) → parsed value,
    #: each bounded so memory stays constant.
    _lists: dict[tuple[str, str], list[str]]
    _stamps: dict[str, datetime | None]
    _present: dict[tuple[str, ...], frozenset[str]]

    def _init_caches(self) -> None:
        self._lists, self._stamps, self._present = {}, {}, {}

    def validate(
        self, values: dict[str, Any], is_csv: bool
    ) -> tuple[dict[str, Any] | None, Any, list[tuple[str | None, str]]]:
        if is_csv:
            fast = self._validate_csv_fast(values)
            if fast is not None:
                return fast, (fast["source"], fast["external_id"]), []
            return self._validate(values, is_csv)
        values, shape_errors = _flatten_api_shape(values)
        parsed, key, errors = self._validate(values, is_csv)
        errors = shape_errors + errors
        return (None if errors else parsed), key, errors

    def _validate_csv_fast(self, values: dict[str, Any]) -> dict[str, Any] | None:
        """The common case of a CSV row, checked with precompiled sets and cached cells.

        Returns exactly what :meth:`_validate` returns for a valid row, or ``None`` as soon as
        anything is off (an error, an unusual cell) — then :meth:`_validate` runs and words the
        errors. So this path decides nothing the full validation would decide differently.
        """
        try:
            get = values.get
            keys = tuple(values)
            present = self._present.get(keys)
            if present is None:
                if not all(name in _INCIDENT_COLUMN_SET for name in keys):
                    return None
                present = frozenset(keys)
                if len(self._present) < 64:
                    self._present[keys] = present
            external_id = _csv_text(get("external_id"), 200)
            title = _csv_text(get("title"), 200)
            district = _csv_text(get("district"), 64)
            category = _csv_text(get("category"), 64)
            if (
                external_id is None
                or title is None
                or district not in self.refs.districts
                or category not in _CATEGORIES
            ):
                return None
            source = _csv_text(get("source"), 64) or _IMPORT_SOURCE
            if source not in _SOURCE_SET:
                return None
            description = get("description") or ""
            if description:
                description = _csv_text(description, 20_000, strip=False) or ""
            lat = _float(get("lat"), True, -90.0, 90.0)
            lon = _float(get("lon"), True, -180.0, 180.0)
            if (lat is None) != (lon is None):
                return None
            raw_level = get("escalation_level")
            level = _LEVELS.get(raw_level) if isinstance(raw_level, str) else None
            if level is None:
                return None
            competences = self._code_list("required_competences", get("required_competences"))
            languages = self._code_list("languages", get("languages"))
            if competences is None or languages is None:
                return None
            status = _csv_text(get("status"), 64)
            if status is not None and status not in _IMPORTABLE_STATUSES:
                return None
            occurred_at = self._stamp(get("occurred_at"))
            reported_at = self._stamp(get("reported_at"))
            organisation_id = _uuid(get("organisation_id"), True)
            if organisation_id is not None and organisation_id not in self.refs.organisations:
                return None
            name = _csv_text(get("reporter_name"), 200)
            contact = _csv_text(get("reporter_contact"), 320)
            anonymous = _bool(get("reporter_anonymous"), True)
        except FieldError:
            return None
        return {
            "source": source,
            "external_id": external_id,
            "reference": None,
            "title": title,
            "description": description,
            "district": district,
            "lat": lat,
            "lon": lon,
            "category": category,
            "escalation_level": level,
            "required_competences": competences,
            "languages": languages,
            "status": status,
            "occurred_at": occurred_at,
            "reported_at": reported_at,
            "organisation_id": organisation_id,
            "has_reporter": name is not None or contact is not None or anonymous is not None,
            "reporter_name": name,
            "reporter_contact": contact,
            "reporter_anonymous": bool(anonymous),
            "present": present,
        }

    def _code_list(self, name: str, raw: Any) -> list[str] | None:
        """A valid ``a|b`` cell as the full validation normalises it (cached), else ``None``.

        The cached lists are shared between rows: nothing downstream mutates them.
        """
        if raw is None or raw == "":
            return []
        cached = self._lists.get((name, raw))
        if cached is not None:
            return cached
        try:
            items = _list(raw, True, 20)
            if name == "languages":
                value = validate_language_codes(items)
            else:
                if not set(items) <= self.refs.competences:
                    return None
                value = sorted(set(items))
        except (FieldError, ValueError):
            return None
        if len(self._lists) < 4096:
            self._lists[(name, raw)] = value
        return value

    def _stamp(self, raw: Any) -> datetime | None:
        if raw in self._stamps:
            return self._stamps[raw]
        value = _timestamp(raw, True)  # raises FieldError
        if len(self._stamps) < 4096:
            self._stamps[raw] = value
        return value

    def _validate(
        self, values: dict[str, Any], is_csv: bool
    ) -> tuple[dict[str, Any] | None, Any, list[tuple[str | None, str]]]:
        errors: list[tuple[str | None, str]] = []
        out: dict[str, Any] = {}
        refs = self.refs
        if not is_csv:
            for name in values:
                if name not in INCIDENT_COLUMNS and name not in _SERVER_FIELDS:
                    errors.append((name, "unknown field"))
        present = frozenset(name for name in values if name in INCIDENT_COLUMNS)

        def get(name: str, parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return parse(values.get(name), is_csv, *args, **kwargs)
            except FieldError as exc:
                errors.append((name, str(exc)))
                return None

        external_id = get("external_id", _text, 200)
        source = get("source", _code) or IncidentSource.import_.value
        if source not in _SOURCES:
            errors.append(("source", f"unknown source '{source}'; one of {', '.join(_SOURCES)}"))
        reference = None
        if external_id is None and "external_id" not in {e[0] for e in errors}:
            # an incident without an external id (created through the API, exported) is keyed
            # by its reference: a re-import finds it, or restores it with that reference
            reference = get("reference", _text, 20)
            if reference is None:
                if "reference" not in {e[0] for e in errors}:
                    errors.append(
                        (
                            "external_id",
                            "is required (or, for an incident without one, its reference)",
                        )
                    )
            elif parse_incident_reference(reference) is None:
                errors.append(("reference", "must be an incident reference, e.g. KOK-2026-00042"))
                reference = None
        if external_id is not None:
            key: Any = (source, external_id)
        else:
            key = (None, reference) if reference is not None else None
        out["source"], out["external_id"], out["reference"] = source, external_id, reference

        title = get("title", _text, 200)
        if title is None and "title" not in {e[0] for e in errors}:
            errors.append(("title", "is required"))
        out["title"] = title
        out["description"] = get("description", _text, 20_000, strip=False) or ""
        district = get("district", _code)
        if isinstance(district, str):
            district = district.lower()  # district codes match either case
        if district is None:
            if "district" not in {e[0] for e in errors}:
                errors.append(("district", "is required"))
        elif district not in refs.districts:
            errors.append(("district", f"unknown district '{district}'"))
        out["district"] = district
        lat = get("lat", _float, -90.0, 90.0)
        lon = get("lon", _float, -180.0, 180.0)
        if (lat is None) != (lon is None) and not any(e[0] in ("lat", "lon") for e in errors):
            errors.append(("lat" if lat is None else "lon", "lat and lon go together"))
        out["lat"], out["lon"] = lat, lon
        category = get("category", _code)
        if category is None:
            if "category" not in {e[0] for e in errors}:
                errors.append(("category", "is required"))
        elif category not in _CATEGORIES:
            errors.append(("category", f"unknown category '{category}'"))
        out["category"] = category
        level = get("escalation_level", _int, 1, 9)
        if level is None and "escalation_level" not in {e[0] for e in errors}:
            errors.append(("escalation_level", "is required (1–9)"))
        out["escalation_level"] = level
        competences = get("required_competences", _list, 20) or []
        unknown = sorted(set(competences) - refs.competences)
        if unknown:
            errors.append(
                (
                    "required_competences",
                    f"unknown competence(s): {', '.join(c[:64] for c in unknown)}",
                )
            )
        out["required_competences"] = sorted(set(competences))
        languages = get("languages", _list, 20) or []
        try:
            out["languages"] = validate_language_codes(languages)
        except ValueError as exc:
            errors.append(("languages", str(exc)[:200]))
        status = get("status", _code)
        if status is not None:
            if status not in _STATUSES:
                errors.append(("status", f"unknown status '{status}'"))
            elif status in (IncidentStatus.dispatched, IncidentStatus.in_progress):
                errors.append(("status", f"'{status}' is set by dispatch and cannot be imported"))
        out["status"] = status
        out["occurred_at"] = get("occurred_at", _timestamp)
        out["reported_at"] = get("reported_at", _timestamp)
        organisation_id = get("organisation_id", _uuid)
        if organisation_id is not None and organisation_id not in refs.organisations:
            errors.append(("organisation_id", "unknown organisation"))
        out["organisation_id"] = organisation_id
        name = get("reporter_name", _text, 200)
        contact = get("reporter_contact", _text, 320)
        anonymous = get("reporter_anonymous", _bool)
        out["has_reporter"] = name is not None or contact is not None or anonymous is not None
        out["reporter_name"], out["reporter_contact"] = name, contact
        out["reporter_anonymous"] = bool(anonymous)
        out["present"] = present
        if errors:
            return None, key, errors
        return out, key, errors
