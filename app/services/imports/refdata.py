"""The reference data an import checks its rows against, loaded once per import."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from app.models.reference import Competence, District, Organisation


@dataclass
class ReferenceData:
    districts: set[str]
    competences: set[str]
    organisations: set[uuid.UUID]

    @classmethod
    def load(cls, session: Session) -> ReferenceData:
        return cls(
            districts=set(session.scalars(select(col(District.code)))),
            competences=set(session.scalars(select(col(Competence.code)))),
            organisations=set(session.scalars(select(col(Organisation.id)))),
        )
