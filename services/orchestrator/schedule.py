"""Cron fire times in an IANA timezone, with defined behaviour across daylight-saving changes.

Schedules are wall-clock times in the pipeline's timezone (``0 5 * * *`` in Europe/Berlin is
05:00 Berlin time in winter and in summer). Two moments a year the wall clock is not a line:

* **Spring forward** (a wall time does not exist, e.g. 02:30 in Berlin on the last Sunday of
  March): the run happens at the first instant after the gap (03:00). If that instant is also a
  regular fire time, it fires once.
* **Fall back** (a wall time happens twice): the run happens at the first occurrence only, so a
  daily job runs once. Exception: when the hour field is ``*`` (the job runs every hour), both
  occurrences fire, so an hourly job runs every real hour (25 runs that day).

Every fire time is returned as an aware UTC datetime.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from croniter import croniter

from services.common.spec.model import cron_expression

MAX_GAP_MINUTES = 24 * 60


def _exists(wall: datetime, zone: zoneinfo.ZoneInfo) -> bool:
    aware = wall.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def _is_ambiguous(wall: datetime, zone: zoneinfo.ZoneInfo) -> bool:
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    return first != second


def _instants(wall: datetime, zone: zoneinfo.ZoneInfo, every_hour: bool) -> list[datetime]:
    """The UTC instants a wall-clock fire time stands for (zero gaps, one or two)."""
    if not _exists(wall, zone):
        moved = wall
        for _ in range(MAX_GAP_MINUTES):
            moved += timedelta(minutes=1)
            if _exists(moved, zone):
                break
        return [moved.replace(tzinfo=zone).astimezone(UTC)]
    if _is_ambiguous(wall, zone):
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if every_hour:
            return [first, wall.replace(tzinfo=zone, fold=1).astimezone(UTC)]
        return [first]
    return [wall.replace(tzinfo=zone).astimezone(UTC)]


def iter_fire_times(schedule: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``after`` (aware), ascending, as UTC datetimes."""
    zone = zoneinfo.ZoneInfo(timezone)
    expr = cron_expression(schedule)
    every_hour = expr.split()[1] == "*"
    after_utc = after.astimezone(UTC)
    # Start an hour early on the wall clock so that a second occurrence of an ambiguous hour,
    # or a time moved out of a gap, just before ``after`` is not missed; filtered below.
    start = after_utc.astimezone(zone).replace(tzinfo=None) - timedelta(hours=2)
    cron = croniter(expr, start)
    last: datetime | None = None
    while True:
        wall = cron.get_next(datetime)
        for instant in _instants(wall, zone, every_hour):
            if instant > after_utc and (last is None or instant > last):
                last = instant
                yield instant


def fire_times_between(
    schedule: str, timezone: str, after: datetime, until: datetime, limit: int = 10_000
) -> list[datetime]:
    """Fire times in ``(after, until]``, at most ``limit`` (the oldest)."""
    result: list[datetime] = []
    for instant in iter_fire_times(schedule, timezone, after):
        if instant > until or len(result) >= limit:
            break
        result.append(instant)
    return result


def next_fire_times(schedule: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after``."""
    result: list[datetime] = []
    for instant in iter_fire_times(schedule, timezone, after):
        result.append(instant)
        if len(result) >= count:
            break
    return result
