"""Pure; no I/O, no clock (the caller passes `now`). When a partner is expected to have sent a
file: `daily 06:00`, `weekdays 06:00`, `weekly mon 06:00` or `monthly 1 06:00`, in the partner's
IANA time zone. A *deadline* is one such moment; the file for a deadline is due between the
deadline before it and it."""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FORMS = "daily HH:MM, weekdays HH:MM, weekly mon HH:MM or monthly 1 HH:MM"
_SPEC = re.compile(
    r"^(?P<cadence>daily|weekdays|weekly|monthly)"
    r"(?:\s+(?P<which>mon|tue|wed|thu|fri|sat|sun|\d{1,2}))?"
    r"\s+(?P<hh>\d{1,2}):(?P<mm>\d{2})$"
)


class Cadence(enum.StrEnum):
    DAILY = "daily"
    WEEKDAYS = "weekdays"  # Monday to Friday
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be read; the message says what is accepted."""


@dataclass(frozen=True, slots=True)
class Schedule:
    cadence: Cadence
    at: dt.time
    tz: str = "UTC"
    weekday: int = 0  # weekly: 0 = Monday
    day: int = 1  # monthly: day of the month (a shorter month: its last day)

    def __str__(self) -> str:
        hhmm = self.at.strftime("%H:%M")
        if self.cadence == Cadence.WEEKLY:
            return f"weekly {WEEKDAYS[self.weekday]} {hhmm}"
        if self.cadence == Cadence.MONTHLY:
            return f"monthly {self.day} {hhmm}"
        return f"{self.cadence.value} {hhmm}"

    def describe(self) -> str:
        """For people: "daily by 06:00 (America/New_York)"."""
        hhmm = self.at.strftime("%H:%M")
        when = {
            Cadence.DAILY: "daily",
            Cadence.WEEKDAYS: "every weekday",
            Cadence.WEEKLY: f"every {calendar.day_name[self.weekday]}",
            Cadence.MONTHLY: f"monthly on day {self.day}",
        }[self.cadence]
        return f"{when} by {hhmm} ({self.tz})"


def parse_schedule(text: str, tz: str = "UTC") -> Schedule | None:
    """The schedule in `text` (None for an empty text: no file is expected), or ScheduleError."""
    text = " ".join(text.lower().split())
    if not text or text == "none":
        return None
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {tz!r}: use an IANA name such as America/New_York"
        ) from None
    found = _SPEC.fullmatch(text)
    if not found:
        raise ScheduleError(f"schedule {text!r}: use {FORMS}")
    hh, mm = int(found["hh"]), int(found["mm"])
    if hh > 23 or mm > 59:
        raise ScheduleError(f"schedule {text!r}: the time is HH:MM, 00:00 to 23:59")
    cadence, which = Cadence(found["cadence"]), found["which"]
    at = dt.time(hh, mm)
    if cadence == Cadence.WEEKLY:
        if which not in WEEKDAYS:
            raise ScheduleError(f"schedule {text!r}: weekly needs a day, e.g. weekly mon 06:00")
        return Schedule(cadence, at, tz, weekday=WEEKDAYS.index(which))
    if cadence == Cadence.MONTHLY:
        if which is None or not which.isdigit() or not 1 <= int(which) <= 31:
            raise ScheduleError(
                f"schedule {text!r}: monthly needs a day 1-31, e.g. monthly 1 06:00"
            )
        return Schedule(cadence, at, tz, day=int(which))
    if which is not None:
        raise ScheduleError(f"schedule {text!r}: use {FORMS}")
    return Schedule(cadence, at, tz)


def _due_on(schedule: Schedule, day: dt.date) -> bool:
    if schedule.cadence == Cadence.DAILY:
        return True
    if schedule.cadence == Cadence.WEEKDAYS:
        return day.weekday() < 5
    if schedule.cadence == Cadence.WEEKLY:
        return day.weekday() == schedule.weekday
    last = calendar.monthrange(day.year, day.month)[1]
    return day.day == min(schedule.day, last)


def _deadline(schedule: Schedule, day: dt.date) -> dt.datetime:
    local = dt.datetime.combine(day, schedule.at, tzinfo=ZoneInfo(schedule.tz))
    return local.astimezone(dt.UTC)


def deadlines(schedule: Schedule, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(the deadline before the last, the last deadline at or before `now`), in UTC."""
    day = now.astimezone(ZoneInfo(schedule.tz)).date()
    found: list[dt.datetime] = []
    for back in range(130):  # two monthly deadlines are at most 62 days apart
        candidate = day - dt.timedelta(days=back)
        if _due_on(schedule, candidate):
            moment = _deadline(schedule, candidate)
            if moment <= now:
                found.append(moment)
                if len(found) == 2:
                    return found[1], found[0]
    raise AssertionError("a schedule has a deadline every 62 days")  # pragma: no cover


def next_deadline(schedule: Schedule, now: dt.datetime) -> dt.datetime:
    """The first deadline after `now`, in UTC."""
    day = now.astimezone(ZoneInfo(schedule.tz)).date()
    for ahead in range(64):
        candidate = day + dt.timedelta(days=ahead)
        if _due_on(schedule, candidate):
            moment = _deadline(schedule, candidate)
            if moment > now:
                return moment
    raise AssertionError("a schedule has a deadline every 62 days")  # pragma: no cover
