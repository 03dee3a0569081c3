"""Cron schedules as KubeRay's RayCronJob reads them, and the tick a retraining run belongs to.

A scheduled retraining run (`n1v1 retrain`) is idempotent per *scheduled time*: the latest tick of
its schedule at or before the moment it runs. Two RayJobs started for the same tick, or a retry
of one, therefore agree on which run they are, and a late start belongs to the tick it missed
only until the next tick passes.

The syntax is the one KubeRay v1.7.0 parses (`cron.ParseStandard` of robfig/cron v3), so that
`--schedule` can be the RayCronJob's `schedule` verbatim:

- five fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or JAN-DEC), day of
  week (0-6 or SUN-SAT; 0 is Sunday, and 7 is refused as robfig/cron refuses it);
- each field a comma list of `*` or `?` (every value), `a`, `a-b`, with an optional step `/n`;
  `a/n` means `a-max/n`;
- descriptors `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`;
  `@every <duration>` has no ticks of its own (it counts from the controller's start) and is
  refused;
- day of month and day of week: when either field is `*` or `?` (a step > 1 does not count) both
  must match, otherwise either may (the Vixie cron rule robfig/cron follows): `0 0 1 * MON` is
  midnight on the 1st and on every Monday.

Times are wall-clock times in `zone` (the RayCronJob's `timeZone`, default UTC; a `TZ=` or
`CRON_TZ=` prefix of the expression also names it). In a zone with daylight saving time, a wall
time the clocks skip has no tick here and one they repeat ticks at its first occurrence; KubeRay's
parser may differ in that hour, so schedule in UTC (the default) to stay clear of it.

Pure Python (pandas for time zones only): no Ray, no third-party cron library.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

import pandas as pd

from n1v1.config import ConfigError

MONTH_NAMES = {
    name: i
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
WEEKDAY_NAMES = {
    name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# robfig/cron looks five years ahead for the next tick; a 29 February on a given weekday can be
# 28 years apart, so look back far enough for any schedule that has ticks at all.
LOOKBACK_DAYS = 366 * 29


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES),
    _Field("day of week", 0, 6, WEEKDAY_NAMES),
)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed five-field schedule in a time zone; `latest_tick(now)` is the run's tick."""

    expression: str
    zone: str
    minutes: tuple[int, ...]  # descending, as latest_tick walks them
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # the day-of-month field was `*` or `?` (without a step > 1)
    any_weekday: bool

    def matches_date(self, date: dt.date) -> bool:
        """Whether `date` (a wall-clock date in the zone) has ticks."""
        if date.month not in self.months:
            return False
        day = date.day in self.days
        weekday = (date.weekday() + 1) % 7 in self.weekdays  # Python: Monday 0; cron: Sunday 0
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday

    def latest_tick(self, now: pd.Timestamp) -> pd.Timestamp:
        """The latest tick at or before `now` (timezone-aware), in UTC."""
        if now.tzinfo is None:
            raise ValueError(f"now={now} has no time zone")
        now = now.tz_convert("UTC")
        today = now.tz_convert(self.zone).date()
        for back in range(LOOKBACK_DAYS):
            date = today - dt.timedelta(days=back)
            if not self.matches_date(date):
                continue
            for hour in self.hours:
                for minute in self.minutes:
                    wall = pd.Timestamp(date.year, date.month, date.day, hour, minute)
                    tick = wall.tz_localize(self.zone, ambiguous=True, nonexistent="NaT")
                    if tick is not pd.NaT and tick <= now:
                        return tick.tz_convert("UTC")
        raise ConfigError(
            f"schedule {self.expression!r}: no tick in the {LOOKBACK_DAYS // 366} years before "
            f"{now:%Y-%m-%d %H:%M} UTC (a date that does not exist, such as 30 February?)"
        )


def parse_schedule(expression: str, zone: str | None = None) -> CronSchedule:
    """Parse `expression` (module docstring) in `zone` (IANA name, default UTC); a ConfigError
    names the field and the value that is wrong."""
    text = expression.strip()
    prefix_zone = None
    for prefix in ("CRON_TZ=", "TZ="):
        if text.startswith(prefix):
            prefix_zone, _, text = text.removeprefix(prefix).partition(" ")
            text = text.strip()
            break
    if prefix_zone is not None and zone is not None and prefix_zone != zone:
        raise ConfigError(
            f"schedule {expression!r} names the time zone {prefix_zone!r} but the time zone "
            f"given is {zone!r}; give one"
        )
    zone = _check_zone(prefix_zone or zone or "UTC")
    if text.startswith("@"):
        if text.startswith("@every"):
            raise ConfigError(
                f"schedule {expression!r}: @every counts from when the controller started, so "
                "its ticks are not known here; write the times as five cron fields"
            )
        if text.lower() not in DESCRIPTORS:
            raise ConfigError(
                f"schedule {expression!r}: unknown descriptor; one of {', '.join(DESCRIPTORS)}"
            )
        text = DESCRIPTORS[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        raise ConfigError(
            f"schedule {expression!r}: expected 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(parts)}"
        )
    parsed = [
        _parse_field(part, field, expression) for part, field in zip(parts, _FIELDS, strict=True)
    ]
    (minutes, _), (hours, _), (days, any_day), (months, _), (weekdays, any_weekday) = parsed
    return CronSchedule(
        expression=expression,
        zone=zone,
        minutes=tuple(sorted(minutes, reverse=True)),
        hours=tuple(sorted(hours, reverse=True)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(weekdays),
        any_day=any_day,
        any_weekday=any_weekday,
    )


def _check_zone(zone: str) -> str:
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"time zone {zone!r}: not an IANA time zone such as UTC or Europe/Paris"
        ) from None
    return zone


def _parse_field(text: str, field: _Field, expression: str) -> tuple[set[int], bool]:
    """The values of one field, and whether it was `*`/`?` without a step > 1."""
    values: set[int] = set()
    star = False
    for item in text.split(","):
        where = f"schedule {expression!r}: {field.name} {item!r}"
        range_text, slash, step_text = item.partition("/")
        if "/" in step_text:
            raise ConfigError(f"{where}: more than one '/'")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ConfigError(f"{where}: the step must be a positive whole number")
            step = int(step_text)
        if range_text in ("*", "?"):
            low, high = field.low, field.high
            star = star or step == 1
        else:
            bounds = range_text.split("-")
            if len(bounds) > 2:
                raise ConfigError(f"{where}: more than one '-'")
            low = _value(bounds[0], field, where)
            high = _value(bounds[1], field, where) if len(bounds) == 2 else low
            if slash and len(bounds) == 1:
                high = field.high  # `a/n` is `a-max/n`
            if low > high:
                raise ConfigError(f"{where}: the range starts after it ends")
        values.update(range(low, high + 1, step))
    return values, star


def _value(text: str, field: _Field, where: str) -> int:
    if field.names is not None and text.lower() in field.names:
        return field.names[text.lower()]
    if not text.isdigit():
        names = f" or a name ({', '.join(field.names)})" if field.names else ""
        raise ConfigError(f"{where}: {text!r} is not a number{names}")
    value = int(text)
    if not field.low <= value <= field.high:
        hint = " (0 is Sunday; 7 is not accepted)" if field.name == "day of week" else ""
        raise ConfigError(f"{where}: {value} is outside {field.low}-{field.high}{hint}")
    return value
