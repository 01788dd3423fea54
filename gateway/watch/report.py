"""What did not happen, as of `now` (the caller's clock, so tests inject it): per partner,
whether its expected file came, how long its acks took against the SLA, which acks it never
picked up; and the files no worker finished. The overview shows it, /metrics exports it and the
alerts post its incidents: one report, one definition of each."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from gateway.settings import Settings
from gateway.watch import repository as repo
from gateway.watch.schedule import Schedule, ScheduleError, deadlines, next_deadline, parse_schedule


@dataclass(frozen=True, slots=True)
class Latency:
    """Receipt to acks (TA1/999 stored), over a period: nearest-rank percentiles."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    over_sla: int = 0  # files answered later than the SLA

    @classmethod
    def of(cls, seconds: Sequence[float], sla: float) -> Latency:
        if not seconds:
            return cls()
        ranked = sorted(seconds)

        def rank(q: float) -> float:
            return ranked[max(0, math.ceil(q * len(ranked)) - 1)]

        return cls(len(ranked), rank(0.5), rank(0.95), sum(1 for s in ranked if s > sla))


@dataclass(frozen=True, slots=True)
class PartnerWatch:
    partner_id: int
    partner: str
    schedule: Schedule | None
    schedule_problem: str | None  # a stored schedule that cannot be read (then not watched)
    last_file_at: dt.datetime | None
    due: dt.datetime | None  # the last deadline that has passed
    window_start: dt.datetime | None  # the deadline before it: a file after this one counts
    next_due: dt.datetime | None
    missing: bool  # the last deadline passed without a file since the one before
    latency: Latency
    uses_sftp: bool
    unpicked: int  # acks in outbound/ longer than pickup_hours, never fetched
    oldest_unpicked: dt.datetime | None


INCIDENT_KINDS = ("missing_file", "ack_latency", "ack_pickup", "stuck", "failed", "core_backlog")


@dataclass(frozen=True, slots=True)
class Incident:
    key: str
    kind: str  # missing_file | ack_latency | ack_pickup | stuck | failed | core_backlog
    partner_id: int | None
    partner: str | None
    summary: str  # ids, counts and times only: never member data


@dataclass(frozen=True, slots=True)
class WatchReport:
    now: dt.datetime
    sla_seconds: float
    pickup_hours: float
    stuck_minutes: float
    partners: list[PartnerWatch] = field(default_factory=list)
    stuck_count: int = 0
    stuck: list[repo.StuckFile] = field(default_factory=list)
    failed_count: int = 0  # files parked as failed (validation or ledger), not resolved
    failed_oldest: dt.datetime | None = None
    core_pending: int = 0  # core events older than stuck_minutes, not delivered
    core_oldest: dt.datetime | None = None

    def late(self, p: PartnerWatch) -> bool:
        """The partner's p95 ack latency is over the SLA."""
        return p.latency.p95 is not None and p.latency.p95 > self.sla_seconds

    def incidents(self) -> list[Incident]:
        out: list[Incident] = []
        for p in self.partners:
            if p.missing and p.due is not None and p.schedule is not None:
                since = p.window_start.strftime("%Y-%m-%d %H:%M UTC") if p.window_start else "-"
                out.append(
                    Incident(
                        key=f"missing_file:{p.partner}:{p.due:%Y%m%dT%H%MZ}",
                        kind="missing_file",
                        partner_id=p.partner_id,
                        partner=p.partner,
                        summary=f"{p.partner}: no file since {since}; expected "
                        f"{p.schedule.describe()}, due {p.due:%Y-%m-%d %H:%M} UTC",
                    )
                )
            if self.late(p):
                out.append(
                    Incident(
                        key=f"ack_latency:{p.partner}",
                        kind="ack_latency",
                        partner_id=p.partner_id,
                        partner=p.partner,
                        summary=f"{p.partner}: acks p95 {p.latency.p95:.0f} s over the SLA of "
                        f"{self.sla_seconds:.0f} s ({p.latency.over_sla} of "
                        f"{p.latency.count} files late)",
                    )
                )
            if p.unpicked:
                oldest = (
                    p.oldest_unpicked.strftime("%Y-%m-%d %H:%M UTC") if p.oldest_unpicked else "-"
                )
                out.append(
                    Incident(
                        key=f"ack_pickup:{p.partner}",
                        kind="ack_pickup",
                        partner_id=p.partner_id,
                        partner=p.partner,
                        summary=f"{p.partner}: {p.unpicked} ack(s) in outbound/ not picked up "
                        f"after {self.pickup_hours:g} h (oldest written {oldest})",
                    )
                )
        if self.stuck_count:
            first = self.stuck[0].received_at if self.stuck else None
            out.append(
                Incident(
                    key="stuck_files",
                    kind="stuck",
                    partner_id=None,
                    partner=None,
                    summary=f"{self.stuck_count} file(s) received and not processed after "
                    f"{self.stuck_minutes:g} min"
                    + (f" (oldest received {first:%Y-%m-%d %H:%M} UTC)" if first else ""),
                )
            )
        if self.failed_count:
            out.append(
                Incident(
                    key="failed_files",
                    kind="failed",
                    partner_id=None,
                    partner=None,
                    summary=f"{self.failed_count} file(s) failed inside the gateway (validation "
                    "or the ledger) and are not resolved" + _oldest("received", self.failed_oldest),
                )
            )
        if self.core_pending:
            out.append(
                Incident(
                    key="core_backlog",
                    kind="core_backlog",
                    partner_id=None,
                    partner=None,
                    summary=f"{self.core_pending} event(s) for the core system not delivered "
                    f"after {self.stuck_minutes:g} min" + _oldest("written", self.core_oldest),
                )
            )
        return out


def _oldest(what: str, moment: dt.datetime | None) -> str:
    return f" (oldest {what} {moment:%Y-%m-%d %H:%M} UTC)" if moment else ""


def watch_report(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    *,
    latency_since: dt.datetime | None = None,
    latency_until: dt.datetime | None = None,
) -> WatchReport:
    """The report as of `now`; ack latency over [latency_since, latency_until) (default: the
    last ack_latency_hours)."""
    since = latency_since or now - dt.timedelta(hours=settings.ack_latency_hours)
    until = latency_until or now + dt.timedelta(microseconds=1)  # up to now, inclusive
    sla = float(settings.ack_sla_seconds)
    last = repo.last_files(session)
    delays = repo.ack_delays(session, since, until)
    unpicked = repo.unpicked_acks(session, now - dt.timedelta(hours=settings.pickup_hours))
    cutoff = now - dt.timedelta(minutes=settings.stuck_minutes)
    stuck_count, stuck = repo.stuck_files(session, cutoff)
    failed_count, failed_oldest = repo.failed_files(session)
    core_pending, core_oldest = repo.core_backlog(session, cutoff)
    watched = [
        _partner(row, last.get(row.id), delays.get(row.id, []), unpicked.get(row.id), sla, now)
        for row in repo.partners(session)
    ]
    return WatchReport(
        now=now,
        sla_seconds=sla,
        pickup_hours=settings.pickup_hours,
        stuck_minutes=settings.stuck_minutes,
        partners=watched,
        stuck_count=stuck_count,
        stuck=stuck,
        failed_count=failed_count,
        failed_oldest=failed_oldest,
        core_pending=core_pending,
        core_oldest=core_oldest,
    )


def _partner(
    row: repo.PartnerRow,
    last_file_at: dt.datetime | None,
    delays: Sequence[float],
    unpicked: tuple[int, dt.datetime] | None,
    sla: float,
    now: dt.datetime,
) -> PartnerWatch:
    schedule, problem = None, None
    try:
        schedule = parse_schedule(row.schedule, row.timezone)
    except ScheduleError as exc:
        problem = str(exc)
    due = start = upcoming = None
    missing = False
    if schedule is not None:
        start, due = deadlines(schedule, now)
        upcoming = next_deadline(schedule, now)
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
        # A partner added after the last deadline owed nothing yet.
        expected = created < due
        missing = expected and (last_file_at is None or last_file_at <= start)
    count, oldest = unpicked if unpicked and row.uses_sftp else (0, None)
    return PartnerWatch(
        partner_id=row.id,
        partner=row.name,
        schedule=schedule,
        schedule_problem=problem,
        last_file_at=last_file_at,
        due=due,
        window_start=start,
        next_due=upcoming,
        missing=missing,
        latency=Latency.of(delays, sla),
        uses_sftp=row.uses_sftp,
        unpicked=count,
        oldest_unpicked=oldest,
    )
