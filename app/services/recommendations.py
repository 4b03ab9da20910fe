"""Recommendation rules: creation, edits, the status lifecycle, progress, timeline and the report.

Progress rules (DESIGN §1/§3):

* ``progress`` is 0–100 (outside → 422, request validation).
* 100 is reached exactly by the transition to ``implemented`` (which sets it); asking for 100 in any
  other status, or anything but 100 once implemented → **409** ``progress-requires-implemented`` /
  ``progress-fixed-when-implemented`` (a valid number in the wrong state is a conflict, not a
  malformed request).
* It never decreases: a lower value without ``reset_note`` → **409** ``progress-decrease``; with a
  ``reset_note`` it is an explicit reset, recorded on the timeline (``progress_reset``). A
  ``reset_note`` that does not accompany a decrease → **422** (the body contradicts itself).

``overdue`` is derived: ``due_on`` before today (``KOKOMA_TIMEZONE``) and not implemented, rejected
or withdrawn — the same rule in SQL for the filter (:func:`overdue_clause`) and in Python on read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlmodel import Session

from app.core.clock import get_clock
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.pagination import PageParams
from app.core.problems import ProblemType
from app.core.security import Principal
from app.models.recommendation import (
    CLOSED_RECOMMENDATION_STATUSES,
    RECOMMENDATION_TRANSITIONS,
    AddresseeSummary,
    EvidencePublic,
    Recommendation,
    RecommendationCategory,
    RecommendationCreate,
    RecommendationEvent,
    RecommendationEventPublic,
    RecommendationPublic,
    RecommendationReport,
    RecommendationStatus,
    RecommendationUpdate,
    ReportItem,
)
from app.repositories.recommendations import RecommendationFilter, RecommendationRepository
from app.repositories.reference import DistrictRepository, OrganisationRepository
from app.services import audit, outbox
from app.services.references import recommendation_reference
from app.services.timeline import entry_fields
from app.services.versioning import apply_changes, bump, check_if_match

STATUS_ORDER = tuple(RecommendationStatus)
#: Statuses whose progress counts towards an addressee's average in the report.
_PROGRESS_STATUSES = frozenset(STATUS_ORDER) - {
    RecommendationStatus.rejected,
    RecommendationStatus.withdrawn,
}


def is_overdue(rec: Recommendation, today: date) -> bool:
    return (
        rec.due_on is not None
        and rec.due_on < today
        and rec.status not in CLOSED_RECOMMENDATION_STATUSES
    )


def record_event(
    session: Session,
    rec: Recommendation,
    type_: str,
    principal: Principal,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> RecommendationEvent:
    """Append one entry to the recommendation's timeline (the caller holds the row lock)."""
    event = RecommendationEvent(
        recommendation_id=rec.id,
        seq=RecommendationRepository(session).next_event_seq(rec.id),
        **entry_fields(
            type_, principal, from_status=from_status, to_status=to_status, note=note, data=data
        ),
    )
    session.add(event)
    return event


class RecommendationService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.repo = RecommendationRepository(session)

    # --- reads ---------------------------------------------------------------------------------

    def load(self, rec_id: uuid.UUID, *, for_update: bool = False) -> Recommendation:
        rec = self.repo.get(rec_id, for_update=for_update)
        if rec is None:
            raise NotFound(f"No recommendation {rec_id}.")
        return rec

    def to_public(self, recs: Sequence[Recommendation]) -> list[RecommendationPublic]:
        ids = [r.id for r in recs]
        districts = self.repo.districts_of(ids)
        evidence = self.repo.evidence_of(ids)
        today = get_clock().today()
        return [
            RecommendationPublic(
                id=r.id,
                reference=r.reference,
                title=r.title,
                body=r.body,
                category=RecommendationCategory(r.category),
                issued_by=r.issued_by,
                addressee=r.addressee,
                status=RecommendationStatus(r.status),
                progress=r.progress,
                due_on=r.due_on,
                overdue=is_overdue(r, today),
                districts=districts.get(r.id, []),
                incident_ids=[e["incident_id"] for e in evidence.get(r.id, [])],
                evidence=[EvidencePublic(**e) for e in evidence.get(r.id, [])],
                version=r.version,
                created_at=r.created_at,
                updated_at=r.updated_at,
                status_changed_at=r.status_changed_at,
                implemented_at=r.implemented_at,
            )
            for r in recs
        ]

    def public_one(self, rec: Recommendation) -> RecommendationPublic:
        return self.to_public([rec])[0]

    def page(
        self, flt: RecommendationFilter, params: PageParams
    ) -> tuple[list[RecommendationPublic], str | None]:
        rows, cursor = self.repo.page(flt, params, get_clock().today())
        return self.to_public(rows), cursor

    def events(
        self, rec_id: uuid.UUID, params: PageParams
    ) -> tuple[list[RecommendationEventPublic], str | None]:
        rec = self.load(rec_id)
        rows, cursor = self.repo.events_page(rec.id, params)
        return [RecommendationEventPublic.model_validate(e) for e in rows], cursor

    # --- writes --------------------------------------------------------------------------------

    def _check_references(
        self,
        *,
        organisations: dict[str, uuid.UUID | None],
        districts: Iterable[str] = (),
        incident_ids: Iterable[uuid.UUID] = (),
    ) -> None:
        orgs = OrganisationRepository(self.session)
        for field, org_id in organisations.items():
            if org_id is not None and not orgs.exists(org_id):
                raise Unprocessable.for_field(field, f"Unknown organisation {org_id}.")
        wanted = set(districts)
        missing = wanted - DistrictRepository(self.session).existing_codes(wanted)
        if missing:
            raise Unprocessable.for_field(
                "districts", f"Unknown district(s): {', '.join(sorted(missing))}."
            )
        wanted_ids = set(incident_ids)
        missing_ids = wanted_ids - self.repo.existing_incident_ids(wanted_ids)
        if missing_ids:
            raise Unprocessable.for_field(
                "incident_ids", f"Unknown incident(s): {', '.join(sorted(map(str, missing_ids)))}."
            )

    def create(self, body: RecommendationCreate, principal: Principal) -> RecommendationPublic:
        self._check_references(
            organisations={"issued_by": body.issued_by, "addressee": body.addressee},
            districts=body.districts,
            incident_ids=body.incident_ids,
        )
        if body.progress == 100:
            raise _progress_requires_implemented()
        clock = get_clock()
        now = clock.now()
        rec = Recommendation(
            reference=recommendation_reference(self.session, now.astimezone(clock.tz).year),
            title=body.title,
            body=body.body,
            category=body.category,
            issued_by=body.issued_by,
            addressee=body.addressee,
            status=RecommendationStatus.draft,
            progress=body.progress,
            due_on=body.due_on,
            created_by=principal.key_id,
            created_at=now,
            updated_at=now,
            status_changed_at=now,
        )
        self.session.add(rec)
        self.session.flush()
        self.repo.set_districts(rec.id, body.districts)
        self.repo.set_incidents(rec.id, body.incident_ids)
        record_event(self.session, rec, "created", principal, to_status=rec.status)
        audit.record(
            self.session, principal, "create", "recommendation", rec.id, body.model_fields_set
        )
        self.session.flush()
        return self.public_one(rec)

    def update(
        self,
        rec_id: uuid.UUID,
        body: RecommendationUpdate,
        principal: Principal,
        if_match: int | None,
    ) -> RecommendationPublic:
        rec = self.load(rec_id, for_update=True)
        check_if_match(rec, if_match)
        fields = body.model_fields_set
        for name in ("title", "category", "issued_by", "addressee", "progress"):
            if name in fields and getattr(body, name) is None:
                raise Unprocessable.for_field(name, f"{name} cannot be null.", "none")
        self._check_references(
            organisations={
                "issued_by": body.issued_by if "issued_by" in fields else None,
                "addressee": body.addressee if "addressee" in fields else None,
            },
            districts=body.districts or (),
            incident_ids=body.incident_ids or (),
        )
        new_progress = body.progress if "progress" in fields else None
        reset_note = body.reset_note if "reset_note" in fields else None
        self._check_progress(rec, new_progress, reset_note)

        changes: dict[str, Any] = body.model_dump(
            include=fields & {"title", "body", "category", "issued_by", "addressee", "due_on"}
        )
        if "body" in changes and changes["body"] is None:
            changes["body"] = ""
        changed = apply_changes(rec, changes)
        if "districts" in fields:
            current = self.repo.districts_of([rec.id]).get(rec.id, [])
            wanted = sorted(set(body.districts or []))
            if current != wanted:
                self.repo.set_districts(rec.id, wanted)
                changed.append("districts")
        if "incident_ids" in fields:
            current_ids = sorted(
                e["incident_id"] for e in self.repo.evidence_of([rec.id]).get(rec.id, [])
            )
            wanted_ids = sorted(set(body.incident_ids or []))
            if current_ids != wanted_ids:
                self.repo.set_incidents(rec.id, wanted_ids)
                changed.append("incident_ids")
        progress_changed = new_progress is not None and new_progress != rec.progress
        if changed:
            record_event(self.session, rec, "updated", principal, data={"fields": sorted(changed)})
        if progress_changed:
            assert new_progress is not None
            old = rec.progress
            rec.progress = new_progress
            is_reset = new_progress < old
            record_event(
                self.session,
                rec,
                "progress_reset" if is_reset else "progress_changed",
                principal,
                note=reset_note if is_reset else None,
                data={"from": old, "to": new_progress},
            )
            changed.append("progress")
        if changed:
            bump(self.session, rec)
            audit.record(self.session, principal, "update", "recommendation", rec.id, changed)
        self.session.flush()
        return self.public_one(rec)

    @staticmethod
    def _check_progress(
        rec: Recommendation, new_progress: int | None, reset_note: str | None
    ) -> None:
        if new_progress is None:
            if reset_note is not None:
                raise Unprocessable.for_field(
                    "reset_note", "reset_note is only allowed with a lower progress.", "value_error"
                )
            return
        current = rec.progress
        if rec.status == RecommendationStatus.implemented:
            if new_progress != 100:
                raise Conflict(
                    "An implemented recommendation keeps progress 100.",
                    type_=ProblemType.PROGRESS_FIXED_WHEN_IMPLEMENTED,
                )
        elif new_progress == 100:
            raise _progress_requires_implemented()
        if new_progress < current and reset_note is None:
            raise Conflict(
                f"Progress never decreases ({current} → {new_progress}); send a reset_note to "
                "reset it explicitly.",
                type_=ProblemType.PROGRESS_DECREASE,
            )
        if reset_note is not None and new_progress >= current:
            raise Unprocessable.for_field(
                "reset_note",
                f"reset_note is only allowed when lowering progress (now {current}).",
                "value_error",
            )

    def set_status(
        self, rec_id: uuid.UUID, to_status: str, note: str | None, principal: Principal
    ) -> RecommendationPublic:
        try:
            target = RecommendationStatus(to_status)
        except ValueError:
            raise Unprocessable.for_field(
                "status", f"Unknown status '{to_status}'.", "enum"
            ) from None
        rec = self.load(rec_id, for_update=True)
        current = RecommendationStatus(rec.status)
        if target not in RECOMMENDATION_TRANSITIONS[current]:
            raise Conflict(
                f"A recommendation cannot go from '{current}' to '{target}'.",
                type_=ProblemType.INVALID_TRANSITION,
            )
        now = get_clock().now()
        rec.status = target
        rec.status_changed_at = now
        fields = ["status"]
        data: dict[str, Any] = {}
        if target == RecommendationStatus.implemented:
            if rec.progress != 100:
                data = {"progress_from": rec.progress, "progress_to": 100}
                rec.progress = 100
                fields.append("progress")
            rec.implemented_at = now
            fields.append("implemented_at")
        bump(self.session, rec)
        record_event(
            self.session,
            rec,
            "status_changed",
            principal,
            from_status=current,
            to_status=target,
            note=note,
            data=data,
        )
        audit.record(self.session, principal, "status", "recommendation", rec.id, fields)
        self.session.flush()
        public = self.public_one(rec)
        outbox.emit(
            self.session,
            "recommendation.status_changed",
            {
                "recommendation": public.model_dump(mode="json", exclude={"body", "evidence"}),
                "from_status": str(current),
                "to_status": str(target),
            },
        )
        return public

    # --- report --------------------------------------------------------------------------------

    def report(self) -> RecommendationReport:
        today = get_clock().today()
        districts: dict[uuid.UUID, list[str]] = {}
        rows = self.repo.report_rows(today)
        if rows:
            districts = self.repo.districts_of(r.id for r in rows)
        items = [
            ReportItem(
                id=r.id,
                reference=r.reference,
                title=r.title,
                category=r.category,
                addressee=r.addressee,
                addressee_name=r.addressee_name,
                status=r.status,
                progress=r.progress,
                due_on=r.due_on,
                overdue=bool(r.overdue),
                days_overdue=(today - r.due_on).days if r.overdue else None,
                evidence_count=int(r.evidence_count),
                districts=districts.get(r.id, []),
            )
            for r in rows
        ]
        summaries: dict[uuid.UUID, dict[str, Any]] = {}
        for addressee, name, status, n, overdue, progress_sum in self.repo.status_by_addressee(
            today
        ):
            entry = summaries.setdefault(
                addressee,
                {
                    "name": name,
                    "by_status": {s.value: 0 for s in STATUS_ORDER},
                    "overdue": 0,
                    "progress_sum": 0,
                    "progress_n": 0,
                },
            )
            entry["by_status"][status] = int(n)
            entry["overdue"] += int(overdue or 0)
            if status in _PROGRESS_STATUSES:
                entry["progress_sum"] += int(progress_sum or 0)
                entry["progress_n"] += int(n)
        by_addressee = [
            AddresseeSummary(
                addressee=addressee,
                addressee_name=entry["name"],
                by_status=entry["by_status"],
                total=sum(entry["by_status"].values()),
                overdue=entry["overdue"],
                average_progress=(
                    round(entry["progress_sum"] / entry["progress_n"], 1)
                    if entry["progress_n"]
                    else None
                ),
            )
            for addressee, entry in summaries.items()
        ]
        overdue_items = sorted(
            (i for i in items if i.overdue), key=lambda i: (i.due_on or today, i.reference)
        )
        return RecommendationReport(
            generated_on=today,
            total=len(items),
            overdue=len(overdue_items),
            by_addressee=by_addressee,
            overdue_items=overdue_items,
            items=items,
        )


def _progress_requires_implemented() -> Conflict:
    return Conflict(
        "Progress 100 is reached by the transition to 'implemented', not set by hand.",
        type_=ProblemType.PROGRESS_REQUIRES_IMPLEMENTED,
    )
