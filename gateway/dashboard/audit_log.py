"""The audit log (admins only): who saw which file's member data, who changed what."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.dashboard.deps import AdminViewer, GatewayDep, render
from gateway.services import audit

router = APIRouter()


@router.get("/dashboard/audit", response_class=HTMLResponse)
def audit_log(request: Request, viewer: AdminViewer, gw: GatewayDep, page: int = 1) -> Response:
    page = max(1, page)
    return render(request, "audit.html", viewer, entries=audit.entries(gw, page=page), page=page)
