"""The overview: files per partner and result over a period, rejects per day, the most frequent
codes, what waits or failed, and the backlogs of the ledger and the core outbox."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from gateway.dashboard.chart import rejects_chart
from gateway.dashboard.deps import CurrentViewer, GatewayDep, render
from gateway.dashboard.formatting import clamp, in_general_terms, parse_day
from gateway.db import reports
from gateway.db.base import utcnow
from gateway.db.models import LedgerStatus, Receipt
from gateway.enrollment import queries
from gateway.watch import repository as watch_repo
from gateway.watch.report import watch_report

router = APIRouter()


@dataclass(frozen=True)
class LedgerBacklog:
    pending: int  # validated files waiting for the ledger
    oldest: dt.datetime | None  # when the longest-waiting of them was acknowledged (999)
    failed: int  # parked: applying them kept failing
    recent_failures: Sequence[tuple[Receipt, str]]  # the newest of those, with the partner


@router.get("/")
def root() -> Response:
    return RedirectResponse("/dashboard", 303)


@router.get("/dashboard", response_class=HTMLResponse)
def overview(
    request: Request,
    viewer: CurrentViewer,
    gw: GatewayDep,
    since: str | None = None,
    until: str | None = None,
    days: int = 7,
) -> Response:
    start, end = _period(since, until, clamp(days, 1, 366))
    with gw.reads() as s:
        counts = reports.overview_counts(s, start, end)
        per_day = reports.rejects_per_day(s, start, end)
        codes = reports.top_codes(s, start, end)
        waiting = reports.waiting_or_failed(s)
        core = queries.core_backlog(s)
        ledger = _ledger_backlog(s)
        watch = watch_report(s, gw.settings, gw.clock(), latency_since=start, latency_until=end)
        alerts = watch_repo.recent_alerts(s)
    totals = reports.PartnerCounts(partner="All partners")
    for c in counts:
        for name in vars(totals):
            if name != "partner":
                setattr(totals, name, getattr(totals, name) + getattr(c, name))
    settings = gw.settings
    return render(
        request,
        "overview.html",
        viewer,
        counts=counts,
        totals=totals,
        chart=rejects_chart(per_day, start.date(), (end - dt.timedelta(days=1)).date()),
        codes=codes,
        waiting=waiting,
        core=core,
        core_error=in_general_terms(core.last_error),
        core_configured=bool(settings.core_url) or settings.core_export_dir is not None,
        ledger=ledger,
        watch=watch,
        alerts=alerts,
        since=start.date().isoformat(),
        until=(end - dt.timedelta(days=1)).date().isoformat(),
    )


def _period(since: str | None, until: str | None, days: int) -> tuple[dt.datetime, dt.datetime]:
    end = parse_day(until, end=True) or (
        dt.datetime.combine(utcnow().date(), dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=1)
    )
    start = parse_day(since) or end - dt.timedelta(days=days)  # end >= 1970-01-02: no overflow
    return start, end


def _ledger_backlog(s: Session) -> LedgerBacklog:
    # The counts are the metrics' (enrollment.queries.ledger_files): one definition of each.
    files = queries.ledger_files(s)
    pending, failed = files[LedgerStatus.PENDING], files[LedgerStatus.FAILED]
    return LedgerBacklog(
        pending=pending,
        oldest=reports.ledger_oldest_pending(s) if pending else None,
        failed=failed,
        recent_failures=reports.ledger_failures(s) if failed else [],
    )
