"""Every table model, imported so that ``SQLModel.metadata`` is complete (Alembic, tests)."""

from app.models import base  # noqa: F401  (naming convention first)
from app.models.assignment import Assignment
from app.models.incident import (
    Incident,
    IncidentCompetence,
    IncidentEvent,
    IncidentNote,
)
from app.models.manager import Absence, Manager, ManagerCompetence, ManagerDistrict
from app.models.notification import Notification
from app.models.outbox import OutboxEvent
from app.models.recommendation import (
    Recommendation,
    RecommendationDistrict,
    RecommendationEvent,
    RecommendationIncident,
)
from app.models.reference import Competence, District, DistrictNeighbour, Organisation
from app.models.roster import RosterVersion
from app.models.system import ApiKey, AuditEvent, IdempotencyRecord, ReferenceCounter
from app.models.tally import IncidentTallyCategory, IncidentTallyLevel
from app.models.webhook import WebhookAttempt, WebhookDelivery, WebhookSubscription

__all__ = [
    "Absence",
    "ApiKey",
    "Assignment",
    "AuditEvent",
    "Competence",
    "District",
    "DistrictNeighbour",
    "IdempotencyRecord",
    "Incident",
    "IncidentCompetence",
    "IncidentEvent",
    "IncidentNote",
    "IncidentTallyCategory",
    "IncidentTallyLevel",
    "Manager",
    "ManagerCompetence",
    "ManagerDistrict",
    "Notification",
    "Organisation",
    "OutboxEvent",
    "Recommendation",
    "RecommendationDistrict",
    "RecommendationEvent",
    "RecommendationIncident",
    "ReferenceCounter",
    "RosterVersion",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
]
