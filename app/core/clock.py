"""One injectable clock: rules take ``now``/``today`` from here, never from the wall clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Clock:
    tz: ZoneInfo
    fixed_now: datetime | None = None

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        if self.fixed_now is not None:
            return self.fixed_now.astimezone(UTC)
        return datetime.now(UTC)

    def today(self) -> date:
        """Today's date in the configured city time zone (``KOKOMA_TIMEZONE``)."""
        return self.now().astimezone(self.tz).date()


_override: Clock | None = None


def get_clock() -> Clock:
    if _override is not None:
        return _override
    from app.core.config import get_settings

    return Clock(tz=get_settings().tz)


def set_clock(clock: Clock | None) -> None:
    """Tests pin the clock here; ``None`` restores the wall clock."""
    global _override
    _override = clock
