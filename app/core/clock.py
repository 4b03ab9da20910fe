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
_wall: tuple[object, Clock] | None = None  # (the settings it was made from, the clock)


def get_clock() -> Clock:
    global _wall
    if _override is not None:
        return _override
    from app.core.config import get_settings

    settings = get_settings()
    wall = _wall
    if wall is None or wall[0] is not settings:  # settings reloaded (tests): a clock for them
        wall = _wall = (settings, Clock(tz=settings.tz))
    return wall[1]


def set_clock(clock: Clock | None) -> None:
    """Tests pin the clock here; ``None`` restores the wall clock."""
    global _override
    _override = clock
