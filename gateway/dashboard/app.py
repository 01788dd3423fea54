"""The operators' reject dashboard: its own FastAPI app on its own listener (never the partner
port). Server-rendered with Jinja2; operator sessions in the database; CSRF tokens on every form;
member data masked unless an admin reveals it, and every reveal or download of member data
audited."""

import csv
import datetime as dt
import hmac
import io
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gateway.context import Gateway
from gateway.dashboard.chart import rejects_chart
from gateway.dashboard.segments import MASK, mask_ack, mask_value, segment_contexts
from gateway.db import reports
from gateway.db import repositories as repo
from gateway.db.base import utcnow
from gateway.db.models import AuditEntry, Envelope, Operator, Receipt, Role, Status
from gateway.db.session import unit_of_work
from gateway.enrollment import queries
from gateway.enrollment.rules import RULES, Severity
from gateway.logging import get_logger
from gateway.operators import LoginRefused, authenticate, close_session, find_session, open_session
from validators.issues import meaning, remedy

log = get_logger(__name__)
HERE = Path(__file__).resolve().parent
COOKIE = "edi834_session"
LOGIN_CSRF = "edi834_login_csrf"
PAGE = 50
CONTEXT_LIMIT = 200  # findings shown with their segment in context
MEMBER_LIMIT = 200  # members shown on an interchange page
ITEM_LIMIT = 500  # reconciliation items shown on an interchange page (the CSV has them all)
SEVERITIES = (Severity.REJECT.value, Severity.WARN.value)
BUSINESS_FILTERS = ("partner", "rule", "severity", "before")
# X220A1 INS03 Maintenance Type Code.
MAINTENANCE_TYPES = {
    "001": "change",
    "021": "addition",
    "024": "cancellation or termination",
    "025": "reinstatement",
    "030": "audit or compare",
}
# How a core delivery failed, by the exception's type: never its message, which can quote a
# URL or a path.
_TRANSPORT_ERRORS = {
    "ConnectError": "could not connect to the core system",
    "ConnectTimeout": "the core system did not answer in time",
    "ReadTimeout": "the core system did not answer in time",
    "WriteTimeout": "the core system did not answer in time",
    "PoolTimeout": "the core system did not answer in time",
    "InvalidURL": "the core system's URL is not valid",
    "UnsupportedProtocol": "the core system's URL is not valid",
    "ReadError": "the connection to the core system failed",
    "WriteError": "the connection to the core system failed",
    "CloseError": "the connection to the core system failed",
    "NetworkError": "the connection to the core system failed",
    "RemoteProtocolError": "the connection to the core system failed",
    "LocalProtocolError": "the connection to the core system failed",
    "ProxyError": "the connection to the core system failed",
    "OSError": "could not write the core export file",
    "PermissionError": "could not write the core export file",
    "FileNotFoundError": "could not write the core export file",
    "NotADirectoryError": "could not write the core export file",
    "IsADirectoryError": "could not write the core export file",
}
_EXCEPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,80}")


class NotLoggedIn(Exception):
    pass


class Forbidden(Exception):
    pass


class BadCsrf(Exception):
    pass


class Viewer:
    """The logged-in operator for this request."""

    def __init__(self, username: str, role: str, csrf: str, token: str) -> None:
        self.username = username
        self.role = role
        self.csrf = csrf
        self.token = token

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def _parse_day(value: str | None, *, end: bool = False) -> dt.datetime | None:
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value[:10])
    except ValueError:
        return None
    moment = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return moment + dt.timedelta(days=1) if end else moment


def _age(moment: dt.datetime) -> str:
    seconds = int((utcnow() - moment).total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172_800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _masked(value: str | None, reveal: bool) -> str | None:
    """Member data (a member key, a rule's message, a compared value) unless revealed."""
    return value if reveal or not value else MASK


def _error_kind(error: str | None) -> str:
    """The exception's type from a stored error or traceback (its last line): what operators
    see before a reveal, as the message itself may quote member data."""
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    name = lines[-1].split(":", 1)[0].strip() if lines else ""
    return name.rsplit(".", 1)[-1] if _EXCEPTION_NAME.fullmatch(name) else "an internal error"


def _in_general_terms(error: str | None) -> str | None:
    """A core delivery's last error (`Type: detail`) as a kind of failure."""
    if not error:
        return None
    kind = _error_kind(error)
    status = re.fullmatch(r"CoreRefused: HTTP (\d{3})", error.strip())
    if status:
        return f"the core system refused the event (HTTP {status.group(1)})"
    return _TRANSPORT_ERRORS.get(kind, f"an internal error ({kind})")


def create_dashboard(gw: Gateway) -> FastAPI:
    settings = gw.settings
    secure_cookie = settings.tls_cert is not None
    app = FastAPI(title="edi834 reject dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(
        meaning=meaning,
        remedy=remedy,
        age=_age,
        rule_title=queries.rule_title,
        rule_remedy=queries.rule_remedy,
        error_kind=_error_kind,
        maintenance_types=MAINTENANCE_TYPES,
        mask=MASK,
    )

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        # Not "no-referrer": with it browsers send `Origin: null` on same-origin form posts,
        # which _same_origin (rightly) refuses. "same-origin" still sends nothing elsewhere.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(NotLoggedIn)
    async def _login_first(request: Request, _: NotLoggedIn) -> Response:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", 303)
        return HTMLResponse("Log in first.", 401)

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, __: Forbidden) -> Response:
        return HTMLResponse("This needs the admin role.", 403)

    @app.exception_handler(BadCsrf)
    async def _csrf(_: Request, __: BadCsrf) -> Response:
        return HTMLResponse("The form expired or did not come from this dashboard. Reload.", 403)

    def current(request: Request) -> Viewer:
        token = request.cookies.get(COOKIE)
        if not token:
            raise NotLoggedIn
        with unit_of_work(gw.sessions) as s:
            row = find_session(s, token, idle_minutes=settings.session_idle_minutes)
            if row is None:
                raise NotLoggedIn
            return Viewer(row.operator.username, row.operator.role, row.csrf_token, token)

    def admin(viewer: Annotated[Viewer, Depends(current)]) -> Viewer:
        if not viewer.is_admin:
            raise Forbidden
        return viewer

    def _same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return origin is None
        host = request.headers.get("host", "")
        return origin.split("://", 1)[-1] == host

    async def csrf_ok(request: Request, viewer: Annotated[Viewer, Depends(current)]) -> Viewer:
        form = await request.form()
        sent = str(form.get("csrf_token", ""))
        if not sent or not hmac.compare_digest(sent, viewer.csrf) or not _same_origin(request):
            raise BadCsrf
        return viewer

    ViewerDep = Annotated[Viewer, Depends(current)]
    AdminDep = Annotated[Viewer, Depends(admin)]
    CsrfDep = Annotated[Viewer, Depends(csrf_ok)]

    def render(request: Request, name: str, viewer: Viewer | None, **ctx: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"viewer": viewer, **ctx})

    # --- login -------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/dashboard") -> Response:
        token = secrets.token_hex(32)
        response = render(
            request, "login.html", None, csrf=token, next=_safe_next(next), error=None
        )
        response.set_cookie(
            LOGIN_CSRF, token, httponly=True, samesite="strict", secure=secure_cookie, max_age=3600
        )
        return response

    @app.post("/login", response_class=HTMLResponse)
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        csrf_token: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/dashboard",
    ) -> Response:
        expected = request.cookies.get(LOGIN_CSRF, "")
        if not expected or not hmac.compare_digest(expected, csrf_token):
            raise BadCsrf
        refused: LoginRefused | None = None
        with unit_of_work(gw.sessions) as s:
            # Caught inside the unit of work so the failure count (lockout) is committed.
            try:
                op: Operator = authenticate(
                    s, username, password, max_failures=settings.login_max_failures
                )
                token, _ = open_session(s, op)
            except LoginRefused as exc:
                refused = exc
        if refused is not None:
            log.info("operator_login_refused")
            response = render(
                request,
                "login.html",
                None,
                csrf=expected,
                next=_safe_next(next),
                error=refused.message,
            )
            response.status_code = 401
            return response
        log.info("operator_logged_in", operator=username)
        redirect = RedirectResponse(_safe_next(next), 303)
        redirect.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie, path="/"
        )
        redirect.delete_cookie(LOGIN_CSRF)
        return redirect

    @app.post("/logout")
    def logout(viewer: CsrfDep) -> Response:
        with unit_of_work(gw.sessions) as s:
            close_session(s, viewer.token)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # --- overview ----------------------------------------------------------------------------

    @app.get("/")
    def root() -> Response:
        return RedirectResponse("/dashboard", 303)

    def _period(since: str | None, until: str | None, days: int) -> tuple[dt.datetime, dt.datetime]:
        end = _parse_day(until, end=True) or (
            dt.datetime.combine(utcnow().date(), dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=1)
        )
        start = _parse_day(since) or end - dt.timedelta(days=days)
        return start, end

    @app.get("/dashboard", response_class=HTMLResponse)
    def overview(
        request: Request,
        viewer: ViewerDep,
        since: str | None = None,
        until: str | None = None,
        days: Annotated[int, Query(ge=1, le=366)] = 7,
    ) -> Response:
        start, end = _period(since, until, days)
        with gw.reads() as s:
            counts = reports.overview_counts(s, start, end)
            per_day = reports.rejects_per_day(s, start, end)
            codes = reports.top_codes(s, start, end)
            waiting = reports.waiting_or_failed(s)
            core = queries.core_backlog(s)
            ledger = reports.ledger_backlog(s)
        totals = reports.PartnerCounts(partner="All partners")
        for c in counts:
            for name in vars(totals):
                if name != "partner":
                    setattr(totals, name, getattr(totals, name) + getattr(c, name))
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
            core_error=_in_general_terms(core.last_error),
            core_configured=bool(settings.core_url) or settings.core_export_dir is not None,
            ledger=ledger,
            since=start.date().isoformat(),
            until=(end - dt.timedelta(days=1)).date().isoformat(),
        )

    # --- rejects -----------------------------------------------------------------------------

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
            since=_parse_day(q.get("since")),
            until=_parse_day(q.get("until"), end=True),
            result=result if result in (*reports.RESULTS, "all") else "problems",
            family=family,
            code=code,
            isa13=q.get("isa13"),
            gs06=q.get("gs06"),
            st02=q.get("st02"),
            resolved=q.get("resolved") if q.get("resolved") in ("yes", "no") else None,
        )
        return f, q

    @app.get("/dashboard/rejects", response_class=HTMLResponse)
    def rejects(
        request: Request,
        viewer: ViewerDep,
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

    @app.get("/dashboard/rejects.csv")
    def rejects_csv(request: Request, viewer: ViewerDep) -> Response:
        f, _ = _filter(request)

        def rows() -> Iterator[str]:
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(
                [
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
                ]
            )
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

        log.info("rejects_exported", operator=viewer.username)
        return StreamingResponse(
            rows(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="edi834-rejects.csv"'},
        )

    # --- business rejects (the ledger's rules) ----------------------------------------------

    def _business(
        request: Request, viewer: Viewer, params: Mapping[str, Any], reveal: bool
    ) -> Response:
        q = {
            k: str(params[k]).strip()
            for k in BUSINESS_FILTERS
            if k in params and str(params[k]).strip()
        }
        if q.get("severity") not in SEVERITIES:
            q.pop("severity", None)
        before = q.get("before", "")
        if not (before.isascii() and before.isdigit() and len(before) <= 12):
            q.pop("before", None)
        with gw.reads() as s:
            partner_id = None
            if "partner" in q:
                # An unknown partner matches nothing (not everything).
                partner_id = reports.partner_id(s, q["partner"]) or -1
            found = queries.business_findings(
                s,
                partner_id=partner_id,
                rule=q.get("rule"),
                severity=q.get("severity"),
                before_id=int(q["before"]) if "before" in q else None,
                limit=PAGE + 1,
            )
            since = utcnow() - dt.timedelta(days=7)
            counts = queries.rule_counts(s, since=since)
            partners = reports.partner_names(s)
        shown = found[:PAGE]
        if reveal:
            _audit_many(
                viewer.username,
                "reveal_member_data",
                sorted({b.receipt_id for b in shown}),
                "member data shown on the business rejects list",
            )
        rows = [
            {
                "b": b,
                "f": b.finding,
                "member_key": _masked(b.member_key, reveal),
                "message": _masked(b.finding.message, reveal),
            }
            for b in shown
        ]
        filters = {k: v for k, v in q.items() if k != "before"}
        summary = sorted(
            (
                (rule, severity, n, RULES[rule].snip if rule in RULES else None)
                for (rule, severity), n in counts.items()
            ),
            key=lambda c: (-c[2], c[0], c[1]),
        )
        return render(
            request,
            "business.html",
            viewer,
            rows=rows,
            q=q,
            filters=filters,
            partners=partners,
            rules=sorted(RULES.values(), key=lambda r: (r.snip, r.name)),
            severities=SEVERITIES,
            summary=summary,
            since=since,
            reveal=reveal,
            older_url=(
                "/dashboard/business?" + urlencode({**filters, "before": shown[-1].finding.id})
                if len(found) > PAGE
                else None
            ),
            newest_url="/dashboard/business?" + urlencode(filters) if "before" in q else None,
            filter_url=lambda **more: "/dashboard/business?" + urlencode(more),
        )

    @app.get("/dashboard/business", response_class=HTMLResponse)
    def business(request: Request, viewer: ViewerDep) -> Response:
        return _business(request, viewer, request.query_params, reveal=False)

    @app.post("/dashboard/business/reveal", response_class=HTMLResponse)
    async def business_reveal(request: Request, viewer: CsrfDep) -> Response:
        if not viewer.is_admin:
            raise Forbidden
        form = await request.form()  # already read (and cached) by the CSRF check
        response = await run_in_threadpool(_business, request, viewer, form, True)
        return response

    # --- one interchange ---------------------------------------------------------------------

    def _ledger(s: Session, r: Receipt, reveal: bool) -> dict[str, Any]:
        """The ledger stage of one file: its members and their business findings, and the
        reconciliation of an audit file; member data masked unless revealed."""
        counts = queries.outcome_counts(s, r.id)
        members = [
            {
                "e": m.event,
                "member_key": _masked(m.event.member_key, reveal),
                "findings": [{"f": f, "message": _masked(f.message, reveal)} for f in m.findings],
            }
            for m in queries.member_results(s, r.id, limit=MEMBER_LIMIT)
        ]
        rec = queries.reconciliation_of(s, r.id)
        items = list(queries.reconciliation_items(s, rec.id, limit=ITEM_LIMIT + 1)) if rec else []
        return {
            "counts": counts,
            "total": sum(counts.values()),
            "members": members,
            "rec": rec,
            "diffs": [  # not "items": a template reads ledger.items as dict.items
                {
                    "i": i,
                    "member_key": _masked(i.member_key, reveal),
                    "file_value": _masked(i.file_value, reveal),
                    "ledger_value": _masked(i.ledger_value, reveal),
                }
                for i in items[:ITEM_LIMIT]
            ],
            "more_diffs": len(items) > ITEM_LIMIT,
            "error_kind": _error_kind(r.ledger_error) if r.ledger_error else None,
            "has_member_data": bool(members or items or r.ledger_error),
        }

    def _detail(request: Request, viewer: Viewer, receipt_id: str, reveal: bool) -> Response:
        with gw.reads() as s:
            r = repo.get_receipt(s, receipt_id)
            if r is None:
                return HTMLResponse("No such interchange.", 404)
            envelopes: list[Envelope] = list(r.envelopes)
            env_ord = {e.id: n for n, e in enumerate(envelopes)}
            group_of: dict[int, tuple[int, str]] = {}
            set_of: dict[int, tuple[int, str]] = {}
            for e in envelopes:
                for g in e.groups:
                    group_of[g.id] = (g.seq, g.gs06)
                    for t in g.transaction_sets:
                        set_of[t.id] = (t.seq, t.st02)
            findings = list(repo.findings_of(s, r.id, 2000))
            total_findings = repo.count_findings(s, r.id)
            acks = list(repo.all_acks_of(s, r.id))
            history = list(repo.history_of(s, r.id))
            partner = r.partner.name
            ledger = _ledger(s, r, reveal)
        targets: dict[tuple[int, int, int, int], int | None] = {}
        keys: list[tuple[int, int, int, int] | None] = []
        for f in findings:
            key = None
            if (
                f.set_id in set_of
                and f.group_id in group_of
                and f.envelope_id in env_ord
                and f.segment_position
                and len(targets) < CONTEXT_LIMIT
            ):
                key = (
                    env_ord[f.envelope_id],
                    group_of[f.group_id][0],
                    set_of[f.set_id][0],
                    f.segment_position,
                )
                targets[key] = f.element_position
            keys.append(key)
        contexts = (
            segment_contexts(
                gw.blobs.chunks(r.blob_path),
                targets,
                reveal=reveal,
                max_segment_bytes=settings.max_segment_bytes,
            )
            if targets
            else {}
        )
        rows = [
            {
                "f": f,
                "gs06": group_of.get(f.group_id or -1, (0, ""))[1],
                "st02": set_of.get(f.set_id or -1, (0, ""))[1],
                "bad_value": mask_value(f.segment_id, f.element_position, f.bad_value, reveal),
                "business_unit": f.business_unit if reveal or not f.business_unit else "•••••",
                "context": contexts.get(key) if key else None,
            }
            for f, key in zip(findings, keys, strict=True)
        ]
        ack_views = [
            {
                "a": a,
                "text": mask_ack(a.content.decode("latin-1"), reveal)
                if a.kind != "rejection"
                else a.content.decode("utf-8", "replace"),
            }
            for a in acks
        ]
        return render(
            request,
            "detail.html",
            viewer,
            r=r,
            partner=partner,
            envelopes=envelopes,
            rows=rows,
            total_findings=total_findings,
            acks=ack_views,
            history=history,
            ledger=ledger,
            reveal=reveal,
            can_reprocess=r.status in (Status.PROCESSED, Status.FAILED),
        )

    @app.get("/dashboard/interchanges/{receipt_id}", response_class=HTMLResponse)
    def detail(request: Request, receipt_id: str, viewer: ViewerDep) -> Response:
        return _detail(request, viewer, receipt_id, reveal=False)

    def _audit(operator: str, action: str, receipt_id: str | None, detail: str) -> None:
        with unit_of_work(gw.sessions) as s:
            s.add(
                AuditEntry(operator=operator, action=action, receipt_id=receipt_id, detail=detail)
            )
        log.info("audited", operator=operator, action=action, receipt_id=receipt_id)

    def _audit_many(operator: str, action: str, receipt_ids: list[str], detail: str) -> None:
        """One entry per file, in one transaction: who saw which file's member data."""
        with unit_of_work(gw.sessions) as s:
            s.add_all(
                AuditEntry(operator=operator, action=action, receipt_id=rid, detail=detail)
                for rid in receipt_ids
            )
        log.info("audited", operator=operator, action=action, receipts=len(receipt_ids))

    @app.post("/dashboard/interchanges/{receipt_id}/reveal", response_class=HTMLResponse)
    async def reveal(request: Request, receipt_id: str, viewer: CsrfDep) -> Response:
        if not viewer.is_admin:
            raise Forbidden
        await run_in_threadpool(
            _audit,
            viewer.username,
            "reveal_member_data",
            receipt_id,
            "member data shown on the interchange page",
        )
        response = await run_in_threadpool(_detail, request, viewer, receipt_id, True)
        return response

    @app.get("/dashboard/interchanges/{receipt_id}/raw")
    def raw(receipt_id: str, viewer: AdminDep) -> Response:
        with gw.reads() as s:
            r = repo.get_receipt(s, receipt_id)
            if r is None:
                return HTMLResponse("No such interchange.", 404)
            path, name = gw.blobs.path(r.blob_path), r.filename or f"{r.id}.834"
        _audit(viewer.username, "download_raw_file", receipt_id, name)

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 16):
                    yield chunk

        return StreamingResponse(
            chunks(),
            media_type="application/edi-x12",
            headers={"Content-Disposition": f'attachment; filename="{_safe_name(name)}"'},
        )

    @app.get("/dashboard/interchanges/{receipt_id}/reconciliation.csv")
    def reconciliation_csv(receipt_id: str, viewer: AdminDep) -> Response:
        with gw.reads() as s:
            rec = queries.reconciliation_of(s, receipt_id)
            if rec is None:
                return HTMLResponse("This interchange has no reconciliation report.", 404)
            rec_id = rec.id
        name = f"reconciliation-{receipt_id}.csv"
        # Member keys and the compared values are member data: audited, like a raw download.
        _audit(viewer.username, "download_reconciliation", receipt_id, name)

        def chunks() -> Iterator[str]:
            with gw.reads() as s:
                yield from queries.reconciliation_csv(s, rec_id)

        return StreamingResponse(
            chunks(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{_safe_name(name)}"'},
        )

    @app.get("/dashboard/interchanges/{receipt_id}/acks/{ack_id}")
    def ack(receipt_id: str, ack_id: int, viewer: ViewerDep) -> Response:
        with gw.reads() as s:
            a = next((x for x in repo.all_acks_of(s, receipt_id) if x.id == ack_id), None)
            if a is None:
                return HTMLResponse("No such acknowledgement.", 404)
            content, name, kind = a.content, a.filename, a.kind
        if viewer.is_admin:
            _audit(viewer.username, "download_ack", receipt_id, name)
        elif kind != "rejection":
            content = mask_ack(content.decode("latin-1"), False).encode("latin-1")
        return Response(
            content,
            media_type="application/edi-x12" if kind != "rejection" else "application/json",
            headers={"Content-Disposition": f'attachment; filename="{_safe_name(name)}"'},
        )

    @app.post("/dashboard/interchanges/{receipt_id}/reprocess")
    def reprocess(receipt_id: str, viewer: CsrfDep) -> Response:
        if not viewer.is_admin:
            raise Forbidden
        with unit_of_work(gw.sessions) as s:
            done = repo.reprocess(s, receipt_id, viewer.username)
            if done is not None:
                s.add(
                    AuditEntry(
                        operator=viewer.username,
                        action="reprocess",
                        receipt_id=receipt_id,
                        detail="queued again",
                    )
                )
        if done is None:
            return HTMLResponse("Only processed or failed interchanges can be reprocessed.", 409)
        wake = gw.extra.get("wake")
        if callable(wake):
            wake()
        return RedirectResponse(f"/dashboard/interchanges/{receipt_id}", 303)

    @app.post("/dashboard/interchanges/{receipt_id}/resolve")
    def resolve(
        receipt_id: str, viewer: CsrfDep, note: Annotated[str, Form(max_length=2000)] = ""
    ) -> Response:
        if not viewer.is_admin:
            raise Forbidden
        with unit_of_work(gw.sessions) as s:
            r = s.get(Receipt, receipt_id)
            if r is None:
                return HTMLResponse("No such interchange.", 404)
            r.resolved_at = utcnow()
            r.resolved_by = viewer.username
            r.resolution_note = note.strip() or None
            repo.add_event(s, receipt_id, "resolved", f"by {viewer.username}: {note.strip()}")
            s.add(
                AuditEntry(
                    operator=viewer.username,
                    action="resolve",
                    receipt_id=receipt_id,
                    detail=note.strip()[:2000],
                )
            )
        return RedirectResponse(f"/dashboard/interchanges/{receipt_id}", 303)

    @app.get("/dashboard/audit", response_class=HTMLResponse)
    def audit(
        request: Request, viewer: AdminDep, page: Annotated[int, Query(ge=1)] = 1
    ) -> Response:
        with gw.reads() as s:
            entries = reports.audit_entries(s, offset=(page - 1) * 100, limit=100)
        return render(request, "audit.html", viewer, entries=entries, page=page)

    return app


def _safe_next(target: str) -> str:
    """Only local paths: no open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/dashboard"
    return target


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:120] or "file"
