"""A generic repository holding its session: queries only, never commits, never raises HTTP."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlmodel import Session, SQLModel

M = TypeVar("M", bound=SQLModel)


class Repository(Generic[M]):
    model: type[M]

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, key: Any, *, for_update: bool = False) -> M | None:
        return self.session.get(self.model, key, with_for_update=for_update or None)

    def add(self, obj: M) -> M:
        self.session.add(obj)
        return obj

    def flush(self) -> None:
        self.session.flush()
