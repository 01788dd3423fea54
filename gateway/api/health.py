"""/healthz, /readyz and /metrics: on the partner API, and alone (`create_health_app`) for the
sftp and worker roles. No key needed."""

from __future__ import annotations

import datetime as dt
import shutil

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api.deps import GatewayDep
from gateway.api.problems import problem
from gateway.api.schemas import ErrorOut
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.migrate import pending
from gateway.enrollment import queries
from gateway.logging import get_logger
from gateway.metrics import (
    ACK_LATENCY,
    ACK_SLA,
    ACKS_NOT_PICKED_UP,
    ALERTS_OPEN,
    DATABASE_UP,
    LEDGER_FILES,
    PARTNER_FILE_MISSING,
    PARTNER_LAST_FILE,
    QUEUE_OLDEST,
    STUCK_FILES,
    queue_gauge,
    set_core_backlog,
)
from gateway.watch.report import INCIDENT_KINDS, WatchReport, watch_report
from gateway.web import add_routes

log = get_logger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorOut}})
def readyz(gw: GatewayDep) -> Response:
    """Ready for traffic: the database answers, no migration is pending, and the blob store
    can be written (every file is on disk before it is "received": without it, each upload
    would be a 507)."""
    try:
        with gw.engine.connect() as conn:
            repo.ping(conn)
        if pending(gw.engine):
            return problem(503, "not_ready", "database migrations pending")
    except Exception:
        return problem(503, "unavailable", "database unreachable")
    if not gw.blobs.writable():
        log.error("blob_store_not_writable")
        return problem(503, "storage_unavailable", "the blob store cannot be written")
    short = _short_of_space(gw)
    if short is not None:
        log.error("storage_nearly_full", where=short)
        return problem(
            503,
            "storage_unavailable",
            f"less than {gw.settings.ready_min_free_mb} MB free for the {short}",
        )
    return JSONResponse({"status": "ready"})


def _short_of_space(gw: Gateway) -> str | None:
    """What is (nearly) full: the blob store, or a SQLite database's folder — a full disk
    answered every upload with a 507 or a 503 while /readyz said ready (an on-call drill)."""
    need = gw.settings.ready_min_free_mb * 1024 * 1024
    try:
        if shutil.disk_usage(gw.blobs.root).free < need:
            return "blob store"
        sqlite = gw.settings.sqlite_path
        if sqlite is not None and shutil.disk_usage(sqlite.parent).free < need:
            return "database"
    except OSError:
        return "blob store"
    return None


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(gw: GatewayDep) -> Response:
    """Prometheus metrics; queue depth, ledger and core backlog are read from the database
    (so any one process reports the whole system's queue: scale workers on it)."""
    try:
        with gw.reads() as session:
            for status, n in repo.queue_depth(session).items():
                queue_gauge.labels(status=status).set(n)
            oldest = repo.oldest_waiting(session)
            now = dt.datetime.now(dt.UTC)
            QUEUE_OLDEST.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
            for status, n in queries.ledger_files(session).items():
                LEDGER_FILES.labels(status=status).set(n)
            backlog = queries.core_backlog(session)
            set_core_backlog(
                pending=backlog.pending,
                oldest=backlog.oldest,
                configured=gw.settings.core_configured,
                now=dt.datetime.now(dt.UTC),
            )
            export_watch(watch_report(session, gw.settings, gw.clock()))
        DATABASE_UP.set(1)
    except Exception:
        # The gauges read from the database keep their last values: this one says they are old.
        DATABASE_UP.set(0)
        log.warning("metrics_queue_depth_unavailable")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def export_watch(report: WatchReport) -> None:
    """The watch report as gauges, so Prometheus alerting works without EDI834_ALERT_URL."""
    ACK_SLA.set(report.sla_seconds)
    STUCK_FILES.set(report.stuck_count)
    open_kinds: dict[str, int] = dict.fromkeys(INCIDENT_KINDS, 0)
    for incident in report.incidents():
        open_kinds[incident.kind] = open_kinds.get(incident.kind, 0) + 1
    for kind, n in open_kinds.items():
        ALERTS_OPEN.labels(kind=kind).set(n)
    for p in report.partners:
        if p.last_file_at is not None:
            PARTNER_LAST_FILE.labels(partner=p.partner).set(p.last_file_at.timestamp())
        PARTNER_FILE_MISSING.labels(partner=p.partner).set(1 if p.missing else 0)
        ACKS_NOT_PICKED_UP.labels(partner=p.partner).set(p.unpicked)
        for quantile, value in (("0.5", p.latency.p50), ("0.95", p.latency.p95)):
            if value is not None:
                ACK_LATENCY.labels(partner=p.partner, quantile=quantile).set(value)


def create_health_app(gw: Gateway) -> FastAPI:
    """Probes and metrics only, for `edi834 sftp` and `edi834 worker` (EDI834_HEALTH_PORT)."""
    app = FastAPI(title="edi834 health", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw
    add_routes(app, router)
    return app
