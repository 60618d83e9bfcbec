"""One place for "now", so tests and the sandbox can reason about time consistently."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def ensure_utc(value: datetime) -> datetime:
    """Treat naive datetimes as UTC (SQLite returns them naive) and convert aware ones to UTC."""
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def local(value: datetime, tz: str | ZoneInfo = SHANGHAI) -> datetime:
    """Show a stored UTC time in the operator's zone (Asia/Shanghai by default)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return ensure_utc(value).astimezone(zone)
