"""The partner-facing HTTP API: intake (`POST /v1/interchanges`) and the status API. A partner
authenticates with its bearer API key and sees only its own interchanges: another partner's id
answers 404, exactly like an id that does not exist."""

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from gateway.api.ratelimit import RateLimiter
from gateway.api.schemas import (
    AckOut,
    BusinessFindingOut,
    Counts,
    EnvelopeOut,
    ErrorOut,
    FindingOut,
    GroupOut,
    InterchangeDetail,
    InterchangePage,
    InterchangeSummary,
    MemberOut,
    MemberPage,
    ReceiptOut,
    ReconciliationItemOut,
    ReconciliationOut,
    TransactionSetOut,
)
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.migrate import pending
from gateway.db.models import Ack, Partner, Receipt, Status
from gateway.db.session import db_retry
from gateway.enrollment import queries
from gateway.enrollment.ledger import DRY_RUN_824
from gateway.errors import GatewayError, NotFound
from gateway.faults import crashpoint
from gateway.gate import interchange_acknowledged
from gateway.intake.receive import record_receipt
from gateway.intake.storage import StorageError, TooLarge
from gateway.logging import get_logger
from gateway.metrics import REJECTED_REQUESTS
from validators.issues import meaning, remedy

log = get_logger(__name__)

ACCEPTED_TYPES = {"application/edi-x12", "text/plain", "application/octet-stream"}
ACK_KINDS = {
    "ta1": "ta1",
    "999": "999",
    "824": "824",
    DRY_RUN_824: DRY_RUN_824,
    "rejection": "rejection",
}
ACK_MEDIA = {
    "ta1": "application/edi-x12",
    "999": "application/edi-x12",
    "824": "application/edi-x12",
    DRY_RUN_824: "application/edi-x12",
}
MAX_PAGE = 200
MAX_FINDINGS = 1000
MAX_SEQ = 2**31 - 1  # `seq` columns are 32-bit INTEGER: a larger `after` is a 422, not a 500

bearer = HTTPBearer(auto_error=False, description="the partner's API key")
ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "missing or unknown API key"},
    404: {"model": ErrorOut, "description": "no such interchange (or not yours)"},
}


def create_app(gw: Gateway, *, on_receipt: Callable[[], None] | None = None) -> FastAPI:
    settings = gw.settings
    limiter = RateLimiter(settings.rate_limit_per_minute)
    app = FastAPI(
        title="edi834-gateway",
        summary="X12 834 (005010X220A1) intake and acknowledgement status, per trading partner",
        version="1",
    )

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error_type=type(exc).__name__)
        return JSONResponse({"error": "internal error"}, 500)

    def authenticate(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Partner:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise GatewayError("an API key is required", 401, {"WWW-Authenticate": "Bearer"})

        @db_retry
        def lookup() -> Partner | None:
            with gw.reads() as session:
                return repo.partner_by_api_key(session, credentials.credentials)

        try:
            partner = lookup()
        except Exception as exc:
            raise GatewayError(
                "the gateway's database is unavailable; try again", 503, {"Retry-After": "5"}
            ) from exc
        if partner is None:
            raise GatewayError("unknown or disabled API key", 401, {"WWW-Authenticate": "Bearer"})
        return partner

    PartnerDep = Annotated[Partner, Depends(authenticate)]

    def base_url(request: Request) -> str:
        return settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")

    # --- intake ------------------------------------------------------------------------------

    @app.post(
        "/v1/interchanges",
        status_code=202,
        response_model=ReceiptOut,
        responses={
            200: {"model": ReceiptOut, "description": "these exact bytes were received before"},
            400: {"model": ErrorOut, "description": "the request body is empty"},
            413: {"model": ErrorOut},
            415: {"model": ErrorOut},
            429: {"model": ErrorOut},
            507: {"model": ErrorOut},
            **ERRORS,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    t: {"schema": {"type": "string", "format": "binary"}}
                    for t in sorted(ACCEPTED_TYPES)
                },
            }
        },
        tags=["intake"],
    )
    async def submit(
        request: Request,
        partner: PartnerDep,
        x_filename: Annotated[
            str | None,
            Header(max_length=255, description="the file's name, kept for the ack names"),
        ] = None,
    ) -> Response:
        """Send one 834 file as the raw request body. It is stored durably before the answer;
        its TA1/999 follow at `status_url` and in your SFTP outbound/."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ACCEPTED_TYPES:
            REJECTED_REQUESTS.labels(reason="media_type").inc()
            raise GatewayError(f"send the file as one of {', '.join(sorted(ACCEPTED_TYPES))}", 415)
        declared = request.headers.get("content-length")
        if (
            declared
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > settings.max_body_bytes
        ):
            REJECTED_REQUESTS.labels(reason="too_large").inc()
            raise GatewayError(f"file larger than {settings.max_body_bytes} bytes", 413)
        wait = limiter.take(partner.id)
        if wait:
            REJECTED_REQUESTS.labels(reason="rate_limited").inc()
            raise GatewayError("too many files; slow down", 429, {"Retry-After": str(int(wait))})
        try:
            pending_blob = gw.blobs.begin(limit=settings.max_body_bytes)
        except StorageError as exc:
            raise GatewayError(f"could not store the file: {exc}", 507) from exc
        try:
            async for chunk in request.stream():
                pending_blob.write(chunk)
            crashpoint("body_received")
        except TooLarge as exc:
            pending_blob.discard()
            REJECTED_REQUESTS.labels(reason="too_large").inc()
            raise GatewayError(f"file larger than {settings.max_body_bytes} bytes", 413) from exc
        except StorageError as exc:
            pending_blob.discard()
            REJECTED_REQUESTS.labels(reason="storage").inc()
            log.error("blob_store_failed", partner_id=partner.id)
            raise GatewayError(f"could not store the file durably: {exc}", 507) from exc
        except BaseException:
            pending_blob.discard()  # client went away mid-body: nothing was promised
            raise

        def store() -> tuple[Receipt, bool] | None:
            # fsync, rename, fsync the directory, then commit the row: one trip to the
            # threadpool, not two (each trip is CPU on the event loop, issue 6).
            blob = pending_blob.commit()
            if blob.size == 0:
                return None
            return record_receipt(
                gw, partner_id=partner.id, blob=blob, channel="http", filename=x_filename
            )

        try:
            stored = await run_in_threadpool(store)
        except StorageError as exc:
            pending_blob.discard()
            REJECTED_REQUESTS.labels(reason="storage").inc()
            log.error("blob_store_failed", partner_id=partner.id)
            raise GatewayError(f"could not store the file durably: {exc}", 507) from exc
        except Exception as exc:
            log.error("receipt_commit_failed", partner_id=partner.id, error_type=type(exc).__name__)
            raise GatewayError(
                "the file could not be recorded (database unavailable); send it again",
                503,
                {"Retry-After": "10"},
            ) from exc
        if stored is None:
            REJECTED_REQUESTS.labels(reason="empty").inc()
            raise GatewayError("the request body is empty", 400)
        receipt, created = stored
        if created and on_receipt is not None:
            on_receipt()
        body = ReceiptOut(
            id=receipt.id,
            sha256=receipt.sha256,
            status=receipt.status,
            status_url=f"{base_url(request)}/v1/interchanges/{receipt.id}",
            duplicate=not created,
        )
        crashpoint("before_response")
        return JSONResponse(body.model_dump(), 202 if created else 200)

    # --- status ------------------------------------------------------------------------------

    def _summary(r: Receipt) -> InterchangeSummary:
        return InterchangeSummary(
            id=r.id,
            status=r.status,
            outcome=r.outcome,
            channel=r.channel,
            filename=r.filename,
            sha256=r.sha256,
            size=r.size,
            received_at=r.received_at,
            processed_at=r.processed_at,
            isa13=[e.isa13 for e in r.envelopes],
            counts=Counts(
                sets_received=r.sets_received,
                sets_accepted=r.sets_accepted,
                sets_rejected=r.sets_rejected,
                members_received=r.members_received,
                members_accepted=r.members_accepted,
                members_rejected=r.members_rejected,
            ),
        )

    @app.get(
        "/v1/interchanges",
        response_model=InterchangePage,
        responses={400: {"model": ErrorOut, "description": "invalid cursor"}, **ERRORS},
        tags=["status"],
    )
    def list_interchanges(
        partner: PartnerDep,
        status: Annotated[Status | None, Query()] = None,
        outcome: Annotated[
            str | None,
            Query(pattern="^(accepted|accepted_with_errors|partially_accepted|rejected)$"),
        ] = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        isa13: Annotated[str | None, Query(max_length=16)] = None,
        gs06: Annotated[str | None, Query(max_length=16)] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> InterchangePage:
        """Your interchanges, newest first. Pass `next_cursor` back as `cursor` for the next
        page."""
        after = _decode_cursor(cursor) if cursor else None
        f = repo.ReceiptFilter(
            partner_id=partner.id,
            status=status.value if status else None,
            outcome=outcome,
            since=_aware(since),
            until=_aware(until),
            isa13=isa13,
            gs06=gs06,
        )
        with gw.reads() as session:
            rows = repo.list_receipts(session, f, limit=limit + 1, after=after)
            items = [_summary(r) for r in rows[:limit]]
        next_cursor = (
            _encode_cursor(rows[limit - 1].received_at, rows[limit - 1].id)
            if len(rows) > limit
            else None
        )
        return InterchangePage(items=items, next_cursor=next_cursor)

    @app.get(
        "/v1/interchanges/{interchange_id}",
        response_model=InterchangeDetail,
        responses=ERRORS,
        tags=["status"],
    )
    def get_interchange(
        interchange_id: str, partner: PartnerDep, request: Request
    ) -> InterchangeDetail:
        """Status, outcome, counts, envelope ids and every finding (first 1,000)."""
        with gw.reads() as session:
            r = repo.receipt_detail(session, interchange_id, partner.id)
            if r is None:
                raise NotFound()
            isa13_of: dict[int, str] = {}
            gs06_of: dict[int, str] = {}
            st02_of: dict[int, str] = {}
            envelopes = []
            for e in r.envelopes:
                isa13_of[e.id] = e.isa13
                answered = interchange_acknowledged(e.ta1_code)
                groups = []
                for g in e.groups:
                    gs06_of[g.id] = g.gs06
                    sets = []
                    for t in g.transaction_sets:
                        st02_of[t.id] = t.st02
                        sets.append(
                            TransactionSetOut(
                                st01=t.st01,
                                st02=t.st02,
                                ack=t.ack_code if answered else None,
                                error_codes=[c for c in t.error_codes.split(",") if c],
                                members=t.member_count,
                                segments=t.segment_count,
                                findings_omitted=t.findings_omitted,
                                gate=t.gate,
                                gate_reason=t.gate_reason,
                            )
                        )
                    groups.append(
                        GroupOut(
                            gs01=g.gs01,
                            gs06=g.gs06,
                            gs08=g.gs08,
                            ack=g.ack_code if answered else None,
                            sets_included=g.sets_included,
                            sets_received=g.sets_received,
                            sets_accepted=g.sets_accepted if answered else 0,
                            transaction_sets=sets,
                        )
                    )
                envelopes.append(
                    EnvelopeOut(
                        isa13=e.isa13,
                        sender=f"{e.sender_qualifier}:{e.sender_id}",
                        receiver=f"{e.receiver_qualifier}:{e.receiver_id}",
                        isa09=e.isa09,
                        isa10=e.isa10,
                        usage=e.usage,
                        ta1_code=e.ta1_code,
                        ta1_note=e.ta1_note,
                        outcome=e.outcome,
                        groups=groups,
                    )
                )
            findings = [
                FindingOut(
                    level=f.level,
                    family=f.family,
                    code=f.code,
                    meaning=meaning(f.family, f.code) if f.family != "FILE" else f.message,
                    message=f.message,
                    remedy=remedy(f.family, f.code)
                    if f.family != "FILE"
                    else "Send a complete X12 interchange starting with a 106-byte ISA segment.",
                    severity=f.severity,
                    isa13=isa13_of.get(f.envelope_id) if f.envelope_id else None,
                    gs06=gs06_of.get(f.group_id) if f.group_id else None,
                    st02=st02_of.get(f.set_id) if f.set_id else None,
                    segment_id=f.segment_id,
                    segment_position=f.segment_position,
                    loop_id=f.loop_id,
                    element_position=f.element_position,
                    component_position=f.component_position,
                    repetition_position=f.repetition_position,
                    element_ref=f.element_ref,
                    bad_value=f.bad_value,
                    business_unit=f.business_unit,
                )
                for f in repo.findings_of(session, r.id, MAX_FINDINGS)
            ]
            # Fewer than the page: that is all of them (no COUNT query).
            total = (
                len(findings)
                if len(findings) < MAX_FINDINGS
                else repo.count_findings(session, r.id)
            )
            summary = _summary(r)
        root = f"{base_url(request)}/v1/interchanges/{r.id}"
        return InterchangeDetail(
            **summary.model_dump(),
            interchanges=envelopes,
            findings=findings,
            findings_total=total,
            error="processing failed inside the gateway; the insurer's operators have been "
            "alerted and no acknowledgement was sent"
            if r.status == Status.FAILED
            else None,
            ledger_status=r.ledger_status,
            members_applied=r.members_applied,
            members_business_rejected=r.members_business_rejected,
            links={
                "self": root,
                "acks": f"{root}/acks",
                "members": f"{root}/members",
                "reconciliation": f"{root}/reconciliation",
            },
        )

    @app.get(
        "/v1/interchanges/{interchange_id}/acks",
        response_model=list[AckOut],
        responses=ERRORS,
        tags=["status"],
    )
    def list_acks(interchange_id: str, partner: PartnerDep, request: Request) -> list[AckOut]:
        """The acknowledgements sent for this file (also in your SFTP outbound/)."""
        with gw.reads() as session:
            if repo.get_receipt(session, interchange_id, partner.id) is None:
                raise NotFound()
            acks = repo.acks_of(session, interchange_id)
            root = f"{base_url(request)}/v1/interchanges/{interchange_id}/acks"
            return [
                AckOut(
                    kind=a.kind,
                    filename=a.filename,
                    control_number=a.control_number,
                    sha256=a.sha256,
                    created_at=a.created_at,
                    delivered_at=a.delivered_at,
                    url=f"{root}/{a.kind}",
                )
                for a in acks
            ]

    @app.get(
        "/v1/interchanges/{interchange_id}/acks/{kind}",
        # Not PlainTextResponse: its text/plain would be documented for the JSON 401/404 too.
        response_class=Response,
        responses={200: {"content": {"application/edi-x12": {}, "application/json": {}}}, **ERRORS},
        tags=["status"],
    )
    def get_ack(interchange_id: str, kind: str, partner: PartnerDep) -> Response:
        """The X12 text of the TA1, 999 or 824 (`kind` = ta1 | 999 | 824 | rejection). A file
        with several interchanges gets its acks of that kind one after another."""
        if kind not in ACK_KINDS:
            raise NotFound("acknowledgement")
        with gw.reads() as session:
            if repo.get_receipt(session, interchange_id, partner.id) is None:
                raise NotFound()
            acks: list[Ack] = [a for a in repo.acks_of(session, interchange_id) if a.kind == kind]
        if not acks:
            raise NotFound("acknowledgement")
        media = ACK_MEDIA.get(kind, "application/json")
        return Response(
            b"".join(a.content for a in acks),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{acks[0].filename}"'},
        )

    # --- the enrollment ledger -----------------------------------------------------------------

    @app.get(
        "/v1/interchanges/{interchange_id}/members",
        response_model=MemberPage,
        responses=ERRORS,
        tags=["ledger"],
    )
    def list_members(
        interchange_id: str,
        partner: PartnerDep,
        outcome: Annotated[
            str | None,
            Query(pattern="^(applied|rejected|audited|not_applied|would_apply|would_reject)$"),
        ] = None,
        after: Annotated[int, Query(ge=-1, le=MAX_SEQ)] = -1,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> MemberPage:
        """Each member of your 834 sets, in file order, with what became of it: applied to the
        enrollment ledger, rejected by a business rule (with the rule, the reason and the
        position), audited (an audit file is compared, not applied), not_applied (its set did
        not pass the gate: rejected by the TA1 or 999, a test interchange, … — `reason` says
        which), or would_apply / would_reject (a dry run of an onboarding sender's test file)."""
        with gw.reads() as session:
            r = repo.get_receipt(session, interchange_id, partner.id)
            if r is None:
                raise NotFound()
            results = queries.member_results(
                session, interchange_id, outcome=outcome, after=after, limit=limit + 1
            )
            counts = queries.outcome_counts(session, interchange_id)
            items = [
                MemberOut(
                    seq=m.event.seq,
                    member_key=m.event.member_key,
                    subscriber_number=m.event.subscriber_number,
                    policy=m.event.policy_key,
                    subscriber=m.event.subscriber,
                    relationship=m.event.relationship_code,
                    maintenance_type=m.event.maintenance_type,
                    maintenance_reason=m.event.maintenance_reason,
                    outcome=m.event.outcome,
                    reason=m.event.note,
                    isa13=m.event.isa13,
                    gs06=m.event.gs06,
                    st02=m.event.st02,
                    segment_position=m.event.segment_position,
                    findings=[
                        BusinessFindingOut(
                            rule=f.rule,
                            snip=f.snip,
                            severity=f.severity,
                            title=queries.rule_title(f.rule),
                            message=f.message,
                            remedy=queries.rule_remedy(f.rule),
                            segment_id=f.segment_id,
                            segment_position=f.segment_position,
                            element_position=f.element_position,
                        )
                        for f in m.findings
                    ],
                )
                for m in results[:limit]
            ]
            return MemberPage(
                ledger_status=r.ledger_status,
                counts=counts,
                items=items,
                next_after=items[-1].seq if len(results) > limit else None,
            )

    @app.get(
        "/v1/interchanges/{interchange_id}/reconciliation",
        response_model=ReconciliationOut,
        responses=ERRORS,
        tags=["ledger"],
    )
    def get_reconciliation(
        interchange_id: str,
        partner: PartnerDep,
        request: Request,
        after: Annotated[int, Query(ge=-1, le=MAX_SEQ)] = -1,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> ReconciliationOut:
        """For an audit (BGN08 4, INS03 030) or replace (BGN08 RX) file: how it compares with
        the enrollment ledger — members missing on either side and field mismatches."""
        with gw.reads() as session:
            if repo.get_receipt(session, interchange_id, partner.id) is None:
                raise NotFound()
            rec = queries.reconciliation_of(session, interchange_id)
            if rec is None:
                raise NotFound("reconciliation")
            items = queries.reconciliation_items(session, rec.id, after=after, limit=limit + 1)
            return ReconciliationOut(
                created_at=rec.created_at,
                members_in_file=rec.members_in_file,
                members_matched=rec.members_matched,
                missing_in_ledger=rec.missing_in_ledger,
                missing_in_file=rec.missing_in_file,
                mismatches=rec.mismatches,
                items=[
                    ReconciliationItemOut(
                        kind=i.kind,
                        member_key=i.member_key,
                        field=i.field,
                        file_value=i.file_value,
                        ledger_value=i.ledger_value,
                        st02=i.st02,
                        segment_position=i.segment_position,
                    )
                    for i in items[:limit]
                ],
                next_after=items[limit - 1].seq if len(items) > limit else None,
                csv_url=f"{base_url(request)}/v1/interchanges/{interchange_id}/reconciliation.csv",
            )

    @app.get(
        "/v1/interchanges/{interchange_id}/reconciliation.csv",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}}, **ERRORS},
        tags=["ledger"],
    )
    def get_reconciliation_csv(interchange_id: str, partner: PartnerDep) -> StreamingResponse:
        """The reconciliation report as CSV."""
        with gw.reads() as session:
            if repo.get_receipt(session, interchange_id, partner.id) is None:
                raise NotFound()
            rec = queries.reconciliation_of(session, interchange_id)
            if rec is None:
                raise NotFound("reconciliation")
            rec_id = rec.id

        def rows() -> Iterator[str]:
            with gw.reads() as session:
                yield from queries.reconciliation_csv(session, rec_id)

        return StreamingResponse(
            rows(),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="reconciliation-{interchange_id}.csv"'
            },
        )

    # --- operations --------------------------------------------------------------------------

    add_health_routes(app, gw)
    return app


def add_health_routes(app: FastAPI, gw: Gateway) -> None:
    """/healthz, /readyz and /metrics: on the API, and alone for the sftp and worker roles."""

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorOut}})
    def readyz() -> Response:
        """Ready for traffic: the database answers and no migration is pending."""
        try:
            with gw.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            if pending(gw.engine):
                return JSONResponse({"error": "database migrations pending"}, 503)
        except Exception:
            return JSONResponse({"error": "database unreachable"}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus metrics; queue depth, ledger and core backlog are read from the database
        (so any one process reports the whole system's queue: scale workers on it)."""
        from gateway.metrics import CORE_LAG, CORE_PENDING, LEDGER_FILES, queue_gauge

        try:
            with gw.reads() as session:
                for status, n in repo.queue_depth(session).items():
                    queue_gauge.labels(status=status).set(n)
                for status, n in queries.ledger_files(session).items():
                    LEDGER_FILES.labels(status=status).set(n)
                backlog = queries.core_backlog(session)
                CORE_PENDING.set(backlog.pending)
                CORE_LAG.set(
                    (dt.datetime.now(dt.UTC) - backlog.oldest).total_seconds()
                    if backlog.oldest
                    else 0
                )
        except Exception:
            log.warning("metrics_queue_depth_unavailable")
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_health_app(gw: Gateway) -> FastAPI:
    """Probes and metrics only, for `edi834 sftp` and `edi834 worker` (EDI834_HEALTH_PORT)."""
    app = FastAPI(title="edi834 health", docs_url=None, redoc_url=None, openapi_url=None)
    add_health_routes(app, gw)
    return app


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _encode_cursor(at: dt.datetime, rid: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{rid}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        at, rid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return _aware(dt.datetime.fromisoformat(at)) or dt.datetime.now(dt.UTC), rid
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise GatewayError("invalid cursor", 400) from exc
