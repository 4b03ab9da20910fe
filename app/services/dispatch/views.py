"""Assignment reads and who may see which assignment (``GET /assignments``, ``GET …/{id}``), and
the visible assignment with its incident locked, as every answer to an offer starts."""

from __future__ import annotations

import dataclasses
import uuid

from sqlmodel import Session

from app.core.errors import NotFound
from app.core.pagination import PageParams
from app.core.security import Principal
from app.models.assignment import Assignment
from app.models.assignment_schemas import AssignmentPublic
from app.models.incident import Incident
from app.models.system import Role
from app.repositories.dispatch import AssignmentFilter, DispatchRepository


class AssignmentViews:
    """The read half of :class:`~app.services.dispatch.service.DispatchService`."""

    session: Session
    repo: DispatchRepository

    def get(self, assignment_id: uuid.UUID, principal: Principal) -> AssignmentPublic:
        assignment = self.session.get(Assignment, assignment_id)
        if assignment is None or not self._may_see(assignment, principal):
            raise NotFound(f"No assignment {assignment_id}.")
        return self.public(assignment, principal)

    def page(
        self, flt: AssignmentFilter, params: PageParams, principal: Principal
    ) -> tuple[list[AssignmentPublic], str | None]:
        if principal.role == Role.manager:
            flt = dataclasses.replace(
                flt, scope_manager_id=principal.manager_id or uuid.UUID(int=0)
            )
        elif principal.role == Role.partner:
            flt = dataclasses.replace(
                flt, scope_organisation_id=principal.organisation_id or uuid.UUID(int=0)
            )
        rows, cursor = self.repo.page(flt, params)
        return [self._public(a, name, principal) for a, name in rows], cursor

    def public(self, assignment: Assignment, principal: Principal) -> AssignmentPublic:
        name = self.repo.display_names([assignment.manager_id]).get(assignment.manager_id)
        return self._public(assignment, name, principal)

    @staticmethod
    def _public(assignment: Assignment, name: str | None, principal: Principal) -> AssignmentPublic:
        view = AssignmentPublic.model_validate(assignment)
        view.manager_display_name = name
        if principal.role == Role.partner:
            view.decline_reason = None
            view.withdraw_reason = None
        return view

    def _may_see(self, assignment: Assignment, principal: Principal) -> bool:
        if principal.is_staff:
            return True
        if principal.role == Role.manager:
            return (
                principal.manager_id is not None and assignment.manager_id == principal.manager_id
            )
        if principal.role == Role.partner:
            incident = self.session.get(Incident, assignment.incident_id)
            return (
                incident is not None
                and incident.organisation_id is not None
                and incident.organisation_id == principal.organisation_id
            )
        return False

    def _locked(
        self, assignment_id: uuid.UUID, principal: Principal
    ) -> tuple[Assignment, Incident]:
        """The assignment (if visible) with its incident row locked, both freshly read."""
        assignment = self.session.get(Assignment, assignment_id)
        if assignment is None or not self._may_see(assignment, principal):
            raise NotFound(f"No assignment {assignment_id}.")
        (incident,) = self.repo.incidents([assignment.incident_id], for_update=True)
        self.session.refresh(assignment)
        return assignment, incident
