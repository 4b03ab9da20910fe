"""The records of a new incident, built in one place for every path that creates one — the API
(:meth:`app.services.incidents.IncidentService.create`) and the bulk import
(:mod:`app.services.imports.incidents`): the incident row, its ``created`` timeline entry, the
field names of its audit entry, and the incident as webhooks carry it (every incident event).

The builders work on plain values (a row is a tuple in :data:`NEW_INCIDENT_COLUMNS` order) so the
import can render thousands of rows without a model pass; the API turns the same values into an
:class:`~app.models.incident.Incident`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from app.core.security import Principal
from app.models.incident import Incident, IncidentStatus
from app.services.timeline import entry_fields

REPORTER_COLUMNS = ("reporter_name", "reporter_contact", "reporter_anonymous")

#: The columns of a new incident that differ per incident, in the order of
#: :func:`new_incident_row`; the rest are :func:`new_incident_constants`.
NEW_INCIDENT_COLUMNS = (
    "id",
    "reference",
    "title",
    "description",
    "district",
    "lat",
    "lon",
    "category",
    "escalation_level",
    "languages",
    "status",
    "occurred_at",
    "reported_at",
    "source",
    "external_id",
    "organisation_id",
    "has_reporter",
    "reporter_name",
    "reporter_contact",
    "reporter_anonymous",
)
_REPORTED = IncidentStatus.reported.value


def new_incident_row(
    incident_id: uuid.UUID, reference: str, fields: Mapping[str, Any], now: datetime
) -> tuple[Any, ...]:
    """A new incident's per-row values (:data:`NEW_INCIDENT_COLUMNS`). ``fields`` has the
    incident's own fields by column name (``status`` ``None``: reported; ``reported_at``
    ``None``: now)."""
    return (
        incident_id,
        reference,
        fields["title"],
        fields["description"],
        fields["district"],
        fields["lat"],
        fields["lon"],
        fields["category"],
        fields["escalation_level"],
        fields["languages"],
        fields["status"] or _REPORTED,
        fields["occurred_at"],
        fields["reported_at"] or now,
        fields["source"],
        fields["external_id"],
        fields["organisation_id"],
        fields["has_reporter"],
        fields["reporter_name"],
        fields["reporter_contact"],
        fields["reporter_anonymous"],
    )


def new_incident_constants(now: datetime) -> dict[str, Any]:
    """The columns every incident created at ``now`` shares."""
    return {"status_changed_at": now, "version": 1, "created_at": now, "updated_at": now}


def new_incident(
    incident_id: uuid.UUID, reference: str, fields: Mapping[str, Any], now: datetime
) -> Incident:
    """The model of a new incident (the API's path), from the same builders as the import's."""
    return Incident(
        **dict(
            zip(
                NEW_INCIDENT_COLUMNS,
                new_incident_row(incident_id, reference, fields, now),
                strict=True,
            )
        ),
        **new_incident_constants(now),
    )


def created_event_columns(
    principal: Principal, now: datetime, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``created`` timeline entry of incidents created at ``now``, but for ``id``,
    ``incident_id`` and ``to_status`` (the incident's status)."""
    columns = entry_fields("created", principal, data=data, at=now)
    del columns["to_status"]
    return columns


def public_incident_fields(names: Iterable[str]) -> list[str]:
    """Column names as the API names them (``reporter``, ``location``), for audit and timeline."""
    fields = set()
    for name in names:
        if name in REPORTER_COLUMNS or name == "has_reporter":
            fields.add("reporter")
        elif name in ("lat", "lon"):
            fields.add("location")
        elif name != "reference":
            fields.add(name)
    return sorted(fields)


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value  # an enum member → its value


def incident_webhook_view(
    get: Callable[[str], Any], competences: list[str], open_slots: Sequence[str] = ()
) -> dict[str, Any]:
    """The incident as webhooks carry it (never reporter data), JSON-ready. ``open_slots``: see
    :func:`app.services.incidents.open_slots_of` (none for a new incident).

    ``get(column)`` reads the incident's columns: ``row.__getitem__`` of a dict of values (the
    import, no model pass) or ``functools.partial(getattr, incident)`` of a model (the API).
    """
    lat, lon = get("lat"), get("lon")
    organisation_id = get("organisation_id")
    return {
        "id": str(get("id")),
        "reference": get("reference"),
        "title": get("title"),
        "description": get("description"),
        "district": get("district"),
        "location": {"lat": lat, "lon": lon} if lat is not None and lon is not None else None,
        "category": _plain(get("category")),
        "escalation_level": get("escalation_level"),
        "required_competences": list(competences),
        "languages": list(get("languages")),
        "status": _plain(get("status")),
        "occurred_at": _rfc3339(get("occurred_at")),
        "reported_at": _rfc3339(get("reported_at")),
        "source": _plain(get("source")),
        "external_id": get("external_id"),
        "organisation_id": str(organisation_id) if organisation_id is not None else None,
        "reporter": None,
        "open_slots": list(open_slots),
        "version": get("version"),
        "created_at": _rfc3339(get("created_at")),
        "updated_at": _rfc3339(get("updated_at")),
    }
