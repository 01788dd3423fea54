"""The rejects list: files with problems (or any result), filtered, sorted and paged, and the
same list as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from gateway.context import Gateway
from gateway.dashboard.deps import CurrentViewer, GatewayDep, render
from gateway.dashboard.formatting import parse_day
from gateway.db import reports
from gateway.db.models import Receipt
from gateway.logging import get_logger
from gateway.web import download

log = get_logger(__name__)
PAGE = 50
CSV_COLUMNS = (
    "id",
    "received_at",
    "partner",
    "channel",
    "filename",
    "status",
    "outcome",
    "isa13",
    "codes",
    "sets_received",
    "sets_rejected",
    "members_received",
    "members_rejected",
    "resolved_at",
    "sha256",
)
router = APIRouter()


@router.get("/dashboard/rejects", response_class=HTMLResponse)
def rejects(
    request: Request,
    viewer: CurrentViewer,
    gw: GatewayDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    sort: str = "received",
    order: str = "desc",
) -> Response:
    f, q = _filter(request)
    with gw.reads() as s:
        total = reports.count_rejects(s, f)
        rows = reports.list_rejects(
            s, f, sort=sort, descending=order != "asc", offset=(page - 1) * PAGE, limit=PAGE
        )
        ids = [r.id for r, _ in rows]
        codes = reports.codes_for(s, ids)
        isa13s = reports.envelope_ids_for(s, ids)
        partners = reports.partner_names(s)
    base = {k: v for k, v in q.items() if k not in ("page",)}
    return render(
        request,
        "rejects.html",
        viewer,
        rows=rows,
        codes=codes,
        isa13s=isa13s,
        total=total,
        page=page,
        pages=max(1, (total + PAGE - 1) // PAGE),
        q=q,
        partners=partners,
        results=reports.RESULTS,
        families=reports.FAMILIES,
        sort=sort,
        order=order,
        page_url=lambda n: "/dashboard/rejects?" + urlencode({**base, "page": n}),
        sort_url=lambda col: (
            "/dashboard/rejects?"
            + urlencode(
                {
                    **{k: v for k, v in base.items() if k not in ("sort", "order")},
                    "sort": col,
                    "order": "asc" if sort == col and order == "desc" else "desc",
                }
            )
        ),
        csv_url="/dashboard/rejects.csv?"
        + urlencode({k: v for k, v in base.items() if k not in ("sort", "order")}),
    )


@router.get("/dashboard/rejects.csv")
def rejects_csv(request: Request, viewer: CurrentViewer, gw: GatewayDep) -> Response:
    f, _ = _filter(request)
    log.info("rejects_exported", operator=viewer.username)
    return download(_csv_rows(gw, f), "text/csv", "edi834-rejects.csv")


def _filter(request: Request) -> tuple[reports.RejectFilter, dict[str, str]]:
    q = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
    family, code = None, None
    if "code" in q:
        fam, _, c = q["code"].partition(":")
        family = fam.upper() if fam.upper() in reports.FAMILIES else None
        code = c or None
    result = q.get("result", "problems")
    f = reports.RejectFilter(
        partner=q.get("partner"),
        since=parse_day(q.get("since")),
        until=parse_day(q.get("until"), end=True),
        result=result if result in (*reports.RESULTS, "all") else "problems",
        family=family,
        code=code,
        isa13=q.get("isa13"),
        gs06=q.get("gs06"),
        st02=q.get("st02"),
        resolved=q.get("resolved") if q.get("resolved") in ("yes", "no") else None,
    )
    return f, q


def _csv_rows(gw: Gateway, f: reports.RejectFilter) -> Iterator[str]:
    """Every matching file, streamed: their codes and ISA13s looked up 500 files at a time."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    with gw.reads() as s:
        batch: list[tuple[Receipt, str]] = []

        def flush() -> str:
            ids = [r.id for r, _ in batch]
            codes = reports.codes_for(s, ids)
            isa13s = reports.envelope_ids_for(s, ids)
            for r, partner in batch:
                w.writerow(
                    [
                        r.id,
                        r.received_at.isoformat(),
                        partner,
                        r.channel,
                        r.filename or "",
                        r.status,
                        r.outcome or "",
                        " ".join(isa13s.get(r.id, [])),
                        " ".join(f"{fam}:{c}" for fam, c, _ in codes.get(r.id, [])),
                        r.sets_received,
                        r.sets_rejected,
                        r.members_received,
                        r.members_rejected,
                        r.resolved_at.isoformat() if r.resolved_at else "",
                        r.sha256,
                    ]
                )
            batch.clear()
            out = buf.getvalue()
            buf.seek(0)
            buf.truncate()
            return out

        yield flush()
        for row in reports.iter_rejects(s, f):
            batch.append(row)
            if len(batch) >= 500:
                yield flush()
        yield flush()
