"""/healthz, /readyz and /metrics: on the partner API, and alone (`create_health_app`) for the
sftp and worker roles. No key needed."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api.deps import GatewayDep
from gateway.api.schemas import ErrorOut
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.migrate import pending
from gateway.enrollment import queries
from gateway.logging import get_logger
from gateway.metrics import CORE_LAG, CORE_PENDING, LEDGER_FILES, queue_gauge
from gateway.web import add_routes

log = get_logger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorOut}})
def readyz(gw: GatewayDep) -> Response:
    """Ready for traffic: the database answers and no migration is pending."""
    try:
        with gw.engine.connect() as conn:
            repo.ping(conn)
        if pending(gw.engine):
            return JSONResponse({"error": "database migrations pending"}, 503)
    except Exception:
        return JSONResponse({"error": "database unreachable"}, 503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(gw: GatewayDep) -> Response:
    """Prometheus metrics; queue depth, ledger and core backlog are read from the database
    (so any one process reports the whole system's queue: scale workers on it)."""
    try:
        with gw.reads() as session:
            for status, n in repo.queue_depth(session).items():
                queue_gauge.labels(status=status).set(n)
            for status, n in queries.ledger_files(session).items():
                LEDGER_FILES.labels(status=status).set(n)
            backlog = queries.core_backlog(session)
            CORE_PENDING.set(backlog.pending)
            CORE_LAG.set(
                (dt.datetime.now(dt.UTC) - backlog.oldest).total_seconds() if backlog.oldest else 0
            )
    except Exception:
        log.warning("metrics_queue_depth_unavailable")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_health_app(gw: Gateway) -> FastAPI:
    """Probes and metrics only, for `edi834 sftp` and `edi834 worker` (EDI834_HEALTH_PORT)."""
    app = FastAPI(title="edi834 health", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw
    add_routes(app, router)
    return app
