"""Manager rules: the roster, its lifecycle, competences, served districts and absences.

*Today* is the date in ``KOKOMA_TIMEZONE`` from the injectable clock; the day-boundary rules are
the pure functions below (tested without a database) and their SQL twins in
:mod:`app.repositories.managers` (tested through the API with a pinned clock):

* a competence is **valid** on a day when ``certified_on <= day`` and ``expires_on`` is null or
  ``>= day`` — it still counts on its expiry date and no longer the day after; expired ones are
  still listed in ``competences`` (for renewal) but count nowhere (filters, dispatch, expiring);
* it is **expiring** when valid today and ``expires_on <= today + expiring_competence_days`` (60);
* an absence **covers** a day when ``starts_on <= day <= ends_on`` (both inclusive);
* a manager is **available** when ``active`` and no absence covers today.

Who sees what (the rules: :mod:`app.services.visibility`): admins and coordinators everything; a
``manager`` key its own record in full and other managers without ``email``/``phone`` (``null``);
partners and viewers the redacted view (:class:`~app.models.manager_schemas.ManagerPublicRedacted`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.core.clock import get_clock
from app.core.config import get_settings
from app.core.db_errors import is_unique_violation
from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.core.pagination import PageParams
from app.core.problems import ProblemType
from app.core.security import Principal
from app.models.manager import (
    MANAGER_TRANSITIONS,
    Absence,
    Manager,
    ManagerCompetence,
    ManagerStatus,
)
from app.models.manager_schemas import (
    AbsenceCreate,
    AbsencePublic,
    CompetenceHoldingIn,
    CompetenceHoldingPublic,
    ExpiringCompetence,
    ManagerCreate,
    ManagerPublic,
    ManagerPublicRedacted,
    ManagerUpdate,
    ManagerView,
)
from app.models.system import Role
from app.repositories.managers import ManagerFilter, ManagerRepository
from app.repositories.reference import (
    CompetenceRepository,
    DistrictRepository,
    OrganisationRepository,
)
from app.services import audit, visibility
from app.services.versioning import apply_changes, bump, check_if_match

# --- pure day-boundary rules ---------------------------------------------------------------------


def competence_valid_on(certified_on: date, expires_on: date | None, day: date) -> bool:
    return certified_on <= day and (expires_on is None or expires_on >= day)


def expiring_competences(
    holdings: Iterable[tuple[str, date, date | None]], today: date, within_days: int
) -> list[tuple[str, date]]:
    """``(code, expires_on)`` of the holdings valid today that expire within ``within_days``."""
    horizon = today + timedelta(days=within_days)
    return sorted(
        (code, expires_on)
        for code, certified_on, expires_on in holdings
        if expires_on is not None
        and competence_valid_on(certified_on, expires_on, today)
        and expires_on <= horizon
    )


def absence_covers(starts_on: date, ends_on: date, day: date) -> bool:
    return starts_on <= day <= ends_on


def available_on(status: str, absences: Iterable[tuple[date, date]], day: date) -> bool:
    return status == ManagerStatus.active and not any(
        absence_covers(starts_on, ends_on, day) for starts_on, ends_on in absences
    )


# --- the service ---------------------------------------------------------------------------------

#: Fields a manager key may change on its own record.
SELF_EDITABLE = frozenset({"languages", "notify_by_email"})
_NOT_NULL = (
    "display_name",
    "email",
    "home_district",
    "districts",
    "languages",
    "max_open_assignments",
    "competences",
    "notify_by_email",
)


def _holdings(body: Sequence[CompetenceHoldingIn]) -> list[tuple[str, date, date | None]]:
    return sorted((h.code, h.certified_on, h.expires_on) for h in body)


def _stored(holdings: Sequence[ManagerCompetence]) -> list[tuple[str, date, date | None]]:
    return sorted((h.competence_code, h.certified_on, h.expires_on) for h in holdings)


class ManagerService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.repo = ManagerRepository(session)

    # --- views ---------------------------------------------------------------------------------

    def to_views(
        self,
        managers: Sequence[Manager],
        principal: Principal,
        absent: set[uuid.UUID] | None = None,
    ) -> list[ManagerView]:
        """Views of a batch: districts, competences (and absences) in one query each."""
        today = get_clock().today()
        ids = [m.id for m in managers]
        if absent is None:
            absent = self.repo.absent_ids(ids, today)
        districts = self.repo.districts_of(ids)
        if visibility.manager_view_redacted(principal):
            return [
                ManagerPublicRedacted(
                    id=m.id,
                    display_name=m.display_name,
                    status=ManagerStatus(m.status),
                    home_district=m.home_district,
                    districts=districts.get(m.id, []),
                    languages=list(m.languages),
                    available_today=m.status == ManagerStatus.active and m.id not in absent,
                )
                for m in managers
            ]
        competences = self.repo.competences_of(ids)
        within = get_settings().expiring_competence_days
        views: list[ManagerView] = []
        for m in managers:
            holdings = _stored(competences.get(m.id, []))
            contact = visibility.sees_manager_contact(principal, m.id)
            views.append(
                ManagerPublic(
                    **{name: getattr(m, name) for name in _PUBLIC_COLUMNS},
                    email=m.email if contact else None,
                    phone=m.phone if contact else None,
                    districts=districts.get(m.id, []),
                    competences=[
                        CompetenceHoldingPublic(code=c, certified_on=s, expires_on=e)
                        for c, s, e in holdings
                    ],
                    available_today=m.status == ManagerStatus.active and m.id not in absent,
                    expiring_competences=[
                        ExpiringCompetence(code=c, expires_on=e)
                        for c, e in expiring_competences(holdings, today, within)
                    ],
                )
            )
        return views

    def _full_view(self, manager: Manager, principal: Principal) -> ManagerPublic:
        view = self.to_views([manager], principal)[0]
        assert isinstance(view, ManagerPublic)  # writers are staff or the manager itself
        return view

    # --- reads ---------------------------------------------------------------------------------

    def load(self, manager_id: uuid.UUID, *, for_update: bool = False) -> Manager:
        manager = self.repo.get(manager_id, for_update=for_update)
        if manager is None:
            raise NotFound(f"No manager {manager_id}.")
        return manager

    def get(self, manager_id: uuid.UUID, principal: Principal) -> ManagerView:
        return self._logged(self.to_views([self.load(manager_id)], principal), principal)[0]

    def page(
        self, flt: ManagerFilter, params: PageParams, principal: Principal
    ) -> tuple[list[ManagerView], str | None]:
        rows, cursor = self.repo.page(flt, params, get_clock().today())
        absent = {m.id for m, is_absent in rows if is_absent}
        views = self.to_views([m for m, _ in rows], principal, absent)
        return self._logged(views, principal), cursor

    def _logged(self, views: list[ManagerView], principal: Principal) -> list[ManagerView]:
        """Reads that show e-mail/phone leave ``access`` audit entries (app.services.privacy.access_log)."""
        from app.services.privacy.access_log import log_access, manager_contact_fields

        log_access(
            self.session,
            principal,
            "manager",
            [(v.id, manager_contact_fields(v.email, v.phone)) for v in views],
        )
        return views

    # --- writes --------------------------------------------------------------------------------

    def _check_references(
        self,
        *,
        home_district: str | None = None,
        districts: Iterable[str] = (),
        competences: Iterable[str] = (),
        organisation_id: uuid.UUID | None = None,
    ) -> None:
        district_repo = DistrictRepository(self.session)
        if home_district is not None and not district_repo.existing_codes([home_district]):
            raise Unprocessable.for_field("home_district", f"Unknown district '{home_district}'.")
        wanted = set(districts)
        missing = wanted - district_repo.existing_codes(wanted)
        if missing:
            raise Unprocessable.for_field(
                "districts", f"Unknown district(s): {', '.join(sorted(missing))}."
            )
        wanted = set(competences)
        missing = wanted - CompetenceRepository(self.session).existing_codes(wanted)
        if missing:
            raise Unprocessable.for_field(
                "competences", f"Unknown competence(s): {', '.join(sorted(missing))}."
            )
        if organisation_id is not None and not OrganisationRepository(self.session).exists(
            organisation_id
        ):
            raise Unprocessable.for_field(
                "organisation_id", f"Unknown organisation {organisation_id}."
            )

    def _check_email_free(self, email: str, manager_id: uuid.UUID | None = None) -> None:
        other = self.repo.by_email(email)
        if other is not None and other.id != manager_id:
            raise Conflict("Another manager has this email address.", type_=ProblemType.DUPLICATE)

    def _flush_unique(self) -> None:
        try:
            with self.session.begin_nested():
                self.session.flush()
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise  # another constraint or a trigger: the generic 409 (app.core.db_errors)
            raise Conflict(
                "Another manager has this email address.", type_=ProblemType.DUPLICATE
            ) from None

    def create(self, body: ManagerCreate, principal: Principal) -> ManagerPublic:
        self._check_references(
            home_district=body.home_district,
            districts=body.districts,
            competences=[h.code for h in body.competences],
            organisation_id=body.organisation_id,
        )
        self._check_email_free(body.email)
        now = get_clock().now()
        manager = Manager(
            display_name=body.display_name,
            email=body.email,
            phone=body.phone,
            organisation_id=body.organisation_id,
            status=ManagerStatus(body.status),
            home_district=body.home_district,
            languages=body.languages,
            max_open_assignments=body.max_open_assignments,
            notify_by_email=body.notify_by_email,
            created_at=now,
            updated_at=now,
        )
        self.session.add(manager)
        self._flush_unique()
        self.repo.set_districts(manager.id, set(body.districts) - {body.home_district})
        self.repo.set_competences(manager.id, _holdings(body.competences))
        audit.record(
            self.session, principal, "create", "manager", manager.id, body.model_fields_set
        )
        self.session.flush()
        return self._full_view(manager, principal)

    def _check_may_edit(self, manager: Manager, fields: set[str], principal: Principal) -> None:
        if principal.is_staff:
            return
        if principal.role != Role.manager or principal.manager_id != manager.id:
            raise Forbidden("A manager key may edit its own profile only.")
        refused = sorted(fields - SELF_EDITABLE)
        if refused:
            raise Forbidden(
                f"A manager may change only {', '.join(sorted(SELF_EDITABLE))} on its profile, "
                f"not {', '.join(refused)}."
            )

    def update(
        self,
        manager_id: uuid.UUID,
        body: ManagerUpdate,
        principal: Principal,
        if_match: int | None,
    ) -> ManagerPublic:
        manager = self.load(manager_id, for_update=True)
        fields = set(body.model_fields_set)
        self._check_may_edit(manager, fields, principal)
        check_if_match(manager, if_match)
        for name in _NOT_NULL:
            if name in fields and getattr(body, name) is None:
                raise Unprocessable.for_field(name, f"{name} cannot be null.", "none")
        self._check_references(
            home_district=body.home_district if "home_district" in fields else None,
            districts=body.districts or (),
            competences=[h.code for h in body.competences or ()],
            organisation_id=body.organisation_id if "organisation_id" in fields else None,
        )
        if "email" in fields and body.email != manager.email:
            self._check_email_free(body.email or "", manager.id)
        if (
            "max_open_assignments" in fields
            and body.max_open_assignments is not None
            and body.max_open_assignments < manager.open_assignments
        ):
            raise Conflict(
                f"The manager holds {manager.open_assignments} open assignments; "
                "max_open_assignments cannot go below that.",
                type_=ProblemType.CAPACITY_IN_USE,
            )
        changes: dict[str, Any] = body.model_dump(
            include=fields
            & {
                "display_name",
                "email",
                "phone",
                "organisation_id",
                "home_district",
                "languages",
                "max_open_assignments",
                "notify_by_email",
            }
        )
        changed = apply_changes(manager, changes)
        current_districts = self.repo.districts_of([manager.id]).get(manager.id, [])
        wanted_districts = set(
            body.districts if body.districts is not None else current_districts
        ) - {manager.home_district}
        if sorted(wanted_districts) != current_districts:
            self.repo.set_districts(manager.id, wanted_districts)
            changed.append("districts")
        if body.competences is not None:
            current = _stored(self.repo.competences_of([manager.id]).get(manager.id, []))
            wanted = _holdings(body.competences)
            if current != wanted:
                self.repo.set_competences(manager.id, wanted)
                changed.append("competences")
        if changed:
            bump(self.session, manager)
            self._flush_unique()
            audit.record(self.session, principal, "update", "manager", manager.id, changed)
        self.session.flush()
        return self._full_view(manager, principal)

    def set_status(
        self, manager_id: uuid.UUID, to_status: str, note: str | None, principal: Principal
    ) -> ManagerPublic:
        """Move along the lifecycle; the optional ``note`` is not stored (the audit trail holds
        who changed the status and when)."""
        try:
            target = ManagerStatus(to_status)
        except ValueError:
            raise Unprocessable.for_field(
                "status", f"Unknown status '{to_status}'.", "enum"
            ) from None
        manager = self.load(manager_id, for_update=True)
        current = ManagerStatus(manager.status)
        if target not in MANAGER_TRANSITIONS[current]:
            detail = (
                "A retired manager's status is final."
                if current == ManagerStatus.retired
                else f"A manager cannot go from '{current}' to '{target}'."
            )
            raise Conflict(detail, type_=ProblemType.INVALID_TRANSITION)
        manager.status = target
        bump(self.session, manager)
        audit.record(self.session, principal, "status", "manager", manager.id, ["status"])
        self.session.flush()
        return self._full_view(manager, principal)

    # --- absences ------------------------------------------------------------------------------

    def _load_for_absences(self, manager_id: uuid.UUID, principal: Principal) -> Manager:
        manager = self.load(manager_id)
        if not principal.is_staff and principal.manager_id != manager.id:
            raise Forbidden("A manager key manages its own absences only.")
        return manager

    def add_absence(
        self, manager_id: uuid.UUID, body: AbsenceCreate, principal: Principal
    ) -> AbsencePublic:
        manager = self._load_for_absences(manager_id, principal)
        absence = Absence(
            manager_id=manager.id,
            starts_on=body.starts_on,
            ends_on=body.ends_on,
            reason=body.reason or None,
            created_at=get_clock().now(),
        )
        self.session.add(absence)
        self.session.flush()
        audit.record(
            self.session, principal, "create", "absence", absence.id, body.model_fields_set
        )
        return AbsencePublic.model_validate(absence)

    def absences(
        self, manager_id: uuid.UUID, params: PageParams, principal: Principal
    ) -> tuple[list[AbsencePublic], str | None]:
        manager = self._load_for_absences(manager_id, principal)
        rows, cursor = self.repo.absences_page(manager.id, params)
        return [AbsencePublic.model_validate(a) for a in rows], cursor

    def delete_absence(
        self, manager_id: uuid.UUID, absence_id: uuid.UUID, principal: Principal
    ) -> None:
        manager = self._load_for_absences(manager_id, principal)
        absence = self.repo.absence(manager.id, absence_id)
        if absence is None:
            raise NotFound(f"No absence {absence_id} for manager {manager_id}.")
        self.session.delete(absence)
        audit.record(self.session, principal, "delete", "absence", absence_id)
        self.session.flush()


_PUBLIC_COLUMNS = (
    "id",
    "display_name",
    "organisation_id",
    "status",
    "home_district",
    "languages",
    "max_open_assignments",
    "notify_by_email",
    "open_assignments",
    "version",
    "created_at",
    "updated_at",
)
