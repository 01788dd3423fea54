"""The rejects list: files with problems (or any result), filtered, sorted and paged, and the
same list as CSV."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.context import Gateway
from gateway.csvfile import CsvLines
from gateway.dashboard.codes import CodeFilter, parse_code
from gateway.dashboard.deps import AdminForm, CurrentViewer, GatewayDep, PageError, Viewer, render
from gateway.dashboard.formatting import clamp, parse_day, safe_next, unreadable_days
from gateway.db import reports
from gateway.db.base import iso_z
from gateway.db.models import Receipt
from gateway.logging import get_logger
from gateway.services import audit, interchanges
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


@dataclass
class Notes:
    """What the page says about the filter: the code it filters on, or why it matches nothing."""

    code: CodeFilter | None = None
    code_problem: str | None = None  # why the code typed matches nothing (beside its box)
    problems: list[str] = field(default_factory=list)
    done: str | None = None  # what the last bulk action did


def _done_value(viewer: Viewer, action: str, done: int, asked: int) -> str:
    """What a bulk action did, for the page it goes back to — signed with the operator's
    session secret, so an address cannot make the page say that files were resolved."""
    said = f"{action}:{done}:{asked}"
    return f"{said}:{_mac(viewer, said)}"


def _mac(viewer: Viewer, said: str) -> str:
    return hmac.new(viewer.csrf.encode(), said.encode(), hashlib.sha256).hexdigest()[:16]


def _done(value: str, viewer: Viewer) -> str | None:
    said, _, mac = value.rpartition(":")
    if not hmac.compare_digest(mac, _mac(viewer, said)):
        return None
    action, _, counts = said.partition(":")
    done, _, asked = counts.partition(":")
    if action not in ("resolve", "reprocess") or not (done.isdigit() and asked.isdigit()):
        return None
    if asked == "0":
        return "No file was ticked: nothing was done."
    verb = "marked resolved" if action == "resolve" else "queued again"
    skipped = int(asked) - int(done)
    extra = f" ({skipped} could not be: not processed or failed)" if skipped > 0 else ""
    return f"{done} file{'' if done == '1' else 's'} {verb}{extra}."


@router.get("/dashboard/rejects", response_class=HTMLResponse)
def rejects(
    request: Request,
    viewer: CurrentViewer,
    gw: GatewayDep,
    page: int = 1,
    sort: str = "received",
    order: str = "desc",
) -> Response:
    f, q, notes = _filter(request, viewer)
    if sort not in reports.SORTS:
        notes.problems.append(f"“{sort[:40]}” is not a column to sort by; sorted by received.")
        sort = "received"
    if order not in ("asc", "desc"):
        notes.problems.append(f"“{order[:40]}” is not asc or desc; newest first.")
        order = "desc"
    with gw.reads() as s:
        total = reports.count_rejects(s, f)
        pages = max(1, (total + PAGE - 1) // PAGE)
        page = clamp(page, 1, pages)  # page=0 is the first page, page=999999 the last
        rows = reports.list_rejects(
            s, f, sort=sort, descending=order != "asc", offset=(page - 1) * PAGE, limit=PAGE
        )
        ids = [r.id for r, _ in rows]
        codes = reports.codes_for(s, ids)
        isa13s = reports.envelope_ids_for(s, ids)
        partners = reports.partner_names(s)
    if f.member:  # the files found, one entry each: never the ID searched
        audit.record_search(gw, viewer.username, ids, "rejects searched by member ID")
    base = {k: v for k, v in q.items() if k not in ("page",)}
    return render(
        request,
        "rejects.html",
        viewer,
        rows=rows,
        notes=notes,
        codes=codes,
        isa13s=isa13s,
        total=total,
        page=page,
        pages=pages,
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
        here="/dashboard/rejects?" + urlencode({**base, "page": page}),
        csv_url="/dashboard/rejects.csv?"
        + urlencode({k: v for k, v in base.items() if k not in ("sort", "order")}),
    )


@router.post("/dashboard/rejects/bulk")
async def bulk(request: Request, viewer: AdminForm, gw: GatewayDep) -> Response:
    """Resolve or reprocess the ticked files at once (each audited), then back to the list
    (redirect-after-POST) saying how many."""
    form = await request.form()  # read (and cached) by the CSRF check
    ids = [str(v) for v in form.getlist("ids")][: interchanges.BULK_LIMIT]
    action = str(form.get("action", ""))
    back = safe_next(str(form.get("back", "/dashboard/rejects")))
    if action == "resolve":
        note = str(form.get("note", ""))[:2000]
        done = await run_in_threadpool(interchanges.resolve_many, gw, ids, viewer.username, note)
    elif action == "reprocess":
        done = await run_in_threadpool(interchanges.reprocess_many, gw, ids, viewer.username)
    else:
        raise PageError("Choose resolve or reprocess.", 400, title="Nothing done")
    parts = urlsplit(back)
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k != "done"]
    kept.append(("done", _done_value(viewer, action, len(done), len(ids))))
    return RedirectResponse(f"{parts.path}?{urlencode(kept)}", 303)


@router.get("/dashboard/rejects.csv")
def rejects_csv(request: Request, viewer: CurrentViewer, gw: GatewayDep) -> Response:
    f, q, _ = _filter(request, viewer)
    log.info("rejects_exported", operator=viewer.username)
    if f.member:  # audited as a search, as on the page; the ID itself is not written down
        audit.record(gw, viewer.username, "search_member", None, "rejects CSV by member ID")
        q = {**q, "member": "(a member ID)"}
    audit.record(gw, viewer.username, "export_csv", None, "rejects CSV: " + urlencode(q)[:1000])
    return download(_csv_rows(gw, f), "text/csv", "edi834-rejects.csv")


SEARCHES = ("file", "isa13", "gs06", "st02", "member")
"""Finding one file: these search every result unless a result is chosen."""


def _filter(request: Request, viewer: Viewer) -> tuple[reports.RejectFilter, dict[str, str], Notes]:
    q = {k: v.strip() for k, v in request.query_params.items() if v.strip() and k != "done"}
    notes = Notes(done=_done(request.query_params.get("done", ""), viewer))
    if "member" in q and not viewer.is_admin:
        q.pop("member")  # a member id is member data: admins only
        notes.problems.append("Searching by member ID needs the admin role.")
    notes.problems += unreadable_days(q)
    if q.get("resolved", "yes") not in ("yes", "no"):
        notes.problems.append(f"“{q.pop('resolved')}” is not yes or no; it was left out.")
    code = parse_code(q["code"]) if "code" in q else CodeFilter()
    if code.problem:
        notes.code_problem = code.problem
    elif code.family:
        notes.code = code
    searching = any(k in q for k in SEARCHES)
    result = q.get("result") or ("all" if searching else "problems")
    if result not in (*reports.RESULTS, "all"):
        notes.problems.append(f"“{result}” is not a result; showing files with problems.")
        result = "problems"
    q["result"] = result
    f = reports.RejectFilter(
        partner=q.get("partner"),
        since=parse_day(q.get("since")),
        until=parse_day(q.get("until"), end=True),
        result=result,
        family=code.family,
        code=code.code,
        isa13=q.get("isa13"),
        gs06=q.get("gs06"),
        st02=q.get("st02"),
        resolved=q.get("resolved"),
        filename=q.get("file"),
        member=q.get("member"),
        nothing=bool(code.problem),
    )
    return f, q, notes


def _csv_rows(gw: Gateway, f: reports.RejectFilter) -> Iterator[str]:
    """Every matching file, streamed: their codes and ISA13s looked up 500 files at a time."""
    lines = CsvLines(CSV_COLUMNS)
    # A transaction, not `gw.reads()`: the export streams through a server-side cursor, which
    # PostgreSQL opens only inside one (in autocommit the CSV was its header alone); a read
    # one, not `gw.sessions()`, whose write lock on SQLite stopped every writer until the end.
    with gw.read_transaction() as s:
        batch: list[tuple[Receipt, str]] = []

        def flush() -> str:
            ids = [r.id for r, _ in batch]
            codes = reports.codes_for(s, ids)
            isa13s = reports.envelope_ids_for(s, ids)
            for r, partner in batch:
                lines.add(
                    [
                        r.id,
                        iso_z(r.received_at),
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
                        iso_z(r.resolved_at) if r.resolved_at else "",
                        r.sha256,
                    ]
                )
            batch.clear()
            return lines.take()

        yield flush()
        for row in reports.iter_rejects(s, f):
            batch.append(row)
            if len(batch) >= 500:
                yield flush()
        yield flush()
