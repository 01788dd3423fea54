"""Pure; no I/O. When a partner's plan years begin.

An exchange's QHP plan year is the calendar year. An employer's group plan year often is not
(July to June, October to September): a partner says so at onboarding (`edi834 partner rules
NAME --plan-year-start MONTH`). A plan year is named by the calendar year it begins in, so a
July-June group's plan year 2027 runs from 2027-07-01 to 2028-06-30.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlanYear:
    start_month: int = 1  # 1..12

    def __post_init__(self) -> None:
        if not 1 <= self.start_month <= 12:
            raise ValueError(f"a plan year starts in month 1 to 12, not {self.start_month}")

    def of(self, day: dt.date) -> int:
        """The plan year `day` falls in."""
        return day.year if day.month >= self.start_month else day.year - 1

    def last_day(self, year: int) -> dt.date:
        """The plan year's last day (December 31 for a calendar plan year)."""
        if self.start_month == 1 or year >= dt.MAXYEAR:
            return dt.date(min(year, dt.MAXYEAR), 12, 31)
        return dt.date(year + 1, self.start_month, 1) - dt.timedelta(days=1)


CALENDAR = PlanYear()
"""January to December: an exchange's (the default)."""
