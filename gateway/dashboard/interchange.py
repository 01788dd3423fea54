"""One interchange: its envelopes, findings with their segment in context, acknowledgements,
history and ledger stage; an admin reveals member data or downloads the raw file (audited), and
queues the file again or marks it resolved (gateway.services.interchanges, audited)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.dashboard.deps import (
    AdminForm,
    AdminViewer,
    CurrentViewer,
    GatewayDep,
    PageError,
    Viewer,
    render,
    reveal_token,
    revealed,
)
from gateway.dashboard.formatting import error_kind, masked, member_id, safe_name
from gateway.dashboard.segments import ack_lines, mask_ack, mask_value, plain_mask, segment_contexts
from gateway.db import repositories as repo
from gateway.db.models import AckKind, Interchange, Receipt, Status
from gateway.enrollment import queries
from gateway.services import audit, interchanges
from gateway.web import download
from parsers.charset import as_sent

CONTEXT_LIMIT = 200  # findings shown with their segment in context
MEMBER_LIMIT = 200  # members shown on an interchange page
ITEM_LIMIT = 500  # reconciliation items shown on an interchange page (the CSV has them all)
FINDING_LIMIT = 2000
NO_SUCH = "No such interchange."

router = APIRouter(prefix="/dashboard/interchanges/{receipt_id}")


@router.get("", response_class=HTMLResponse)
def detail(
    request: Request,
    receipt_id: str,
    viewer: CurrentViewer,
    gw: GatewayDep,
    shown: Annotated[str | None, Query(alias="reveal")] = None,
) -> Response:
    return _page(request, viewer, gw, receipt_id, reveal=revealed(viewer, receipt_id, shown))


@router.post("/reveal")
def reveal(receipt_id: str, viewer: AdminForm, gw: GatewayDep) -> Response:
    """Audited, then redirected (after POST) to the page with member data shown: a reload
    neither submits again nor writes a second entry."""
    with gw.reads() as s:
        if repo.get_receipt(s, receipt_id) is None:
            raise PageError(NO_SUCH)
    audit.record(
        gw,
        viewer.username,
        "reveal_member_data",
        receipt_id,
        "member data shown on the interchange page",
    )
    token = reveal_token(viewer, receipt_id)
    return RedirectResponse(f"/dashboard/interchanges/{receipt_id}?reveal={token}#find-h", 303)


@router.get("/raw")
def raw(receipt_id: str, viewer: AdminViewer, gw: GatewayDep) -> Response:
    with gw.reads() as s:
        r = repo.get_receipt(s, receipt_id)
        if r is None:
            raise PageError(NO_SUCH)
        if r.purged_at is not None:
            raise PageError(_purged(r), 410, title="Purged")
        path, name = gw.blobs.path(r.blob_path), r.filename or f"{r.id}.834"
    audit.record(gw, viewer.username, "download_raw_file", receipt_id, name)

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 16):
                yield chunk

    return download(chunks(), "application/edi-x12", safe_name(name))


@router.get("/reconciliation.csv")
def reconciliation_csv(receipt_id: str, viewer: AdminViewer, gw: GatewayDep) -> Response:
    rows = interchanges.reconciliation_csv(gw, receipt_id)
    if rows is None:
        raise PageError("This interchange has no reconciliation report.")
    name = f"reconciliation-{receipt_id}.csv"
    # Member keys and the compared values are member data: audited, like a raw download.
    audit.record(gw, viewer.username, "download_reconciliation", receipt_id, name)
    return download(rows, "text/csv", safe_name(name))


@router.get("/acks/{ack_id}")
def ack(receipt_id: str, ack_id: int, viewer: CurrentViewer, gw: GatewayDep) -> Response:
    with gw.reads() as s:
        a = repo.ack_of(s, receipt_id, ack_id)
        if a is None:
            raise PageError("No such acknowledgement.")
        content, name, kind = a.content, a.filename, a.kind
        if not content and (r := repo.get_receipt(s, receipt_id)) and r.purged_at is not None:
            raise PageError(_purged(r), 410, title="Purged")
    if viewer.is_admin:
        audit.record(gw, viewer.username, "download_ack", receipt_id, name)
    elif kind != AckKind.REJECTION:
        # Bytes as sent (Latin-1 round-trips any byte): the mask must be a Latin-1 character.
        text = content.decode("latin-1")
        content = mask_ack(text, False, mask=plain_mask(text)).encode("latin-1")
    media = "application/edi-x12" if kind != AckKind.REJECTION else "application/json"
    return download(content, media, safe_name(name))


@router.post("/reprocess")
def reprocess(receipt_id: str, viewer: AdminForm, gw: GatewayDep) -> Response:
    if not interchanges.reprocess(gw, receipt_id, viewer.username):
        raise PageError(
            "Only processed or failed interchanges can be reprocessed.", 409, title="Not now"
        )
    return RedirectResponse(f"/dashboard/interchanges/{receipt_id}", 303)


@router.post("/resolve")
def resolve(
    receipt_id: str,
    viewer: AdminForm,
    gw: GatewayDep,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    if not interchanges.resolve(gw, receipt_id, viewer.username, note):
        raise PageError(NO_SUCH)
    return RedirectResponse(f"/dashboard/interchanges/{receipt_id}", 303)


@router.post("/reopen")
def reopen(receipt_id: str, viewer: AdminForm, gw: GatewayDep) -> Response:
    if not interchanges.reopen(gw, receipt_id, viewer.username):
        raise PageError("This interchange is not resolved.", 409, title="Not resolved")
    return RedirectResponse(f"/dashboard/interchanges/{receipt_id}", 303)


def _page(request: Request, viewer: Viewer, gw: Gateway, receipt_id: str, reveal: bool) -> Response:
    with gw.reads() as s:
        r = repo.get_receipt(s, receipt_id)
        if r is None:
            raise PageError(NO_SUCH)
        envelopes: list[Interchange] = list(r.envelopes)
        env_ord = {e.id: n for n, e in enumerate(envelopes)}
        group_of: dict[int, tuple[int, str]] = {}
        set_of: dict[int, tuple[int, str]] = {}
        for e in envelopes:
            for g in e.groups:
                group_of[g.id] = (g.seq, g.gs06)
        listed = repo.listed_sets(s, r.id)
        findings = list(repo.findings_of(s, r.id, FINDING_LIMIT))
        for t in (t for sets in listed.values() for t in sets):
            set_of[t.id] = (t.seq, t.st02)
        unlisted = {f.set_id for f in findings if f.set_id is not None} - set_of.keys()
        for t in repo.sets_by_id(s, unlisted):  # findings on sets past the first listed
            set_of[t.id] = (t.seq, t.st02)
        total_findings = repo.count_findings(s, r.id)
        acks = list(repo.all_acks_of(s, r.id))
        history = list(repo.history_of(s, r.id))
        partner = r.partner.name
        ledger = _ledger(s, r, reveal, gw.settings.dashboard_member_id)
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
            max_segment_bytes=gw.settings.max_segment_bytes,
        )
        if targets and r.purged_at is None  # a purged file's bytes are gone
        else {}
    )
    has_element: dict[tuple[int, int, int, int], bool] = {}
    # A segment's context is shown once: under the finding that names its element (IK403,
    # the element highlighted), else the first finding at that segment (IK304).
    first_of: dict[tuple[int, int, int, int], int] = {}
    for n, (f, key) in enumerate(zip(findings, keys, strict=True), start=1):
        if key is not None and (
            key not in first_of or (f.element_position and not has_element.get(key))
        ):
            first_of[key] = n
            has_element[key] = bool(f.element_position)
    rows = [
        {
            "f": f,
            "gs06": group_of.get(f.group_id or -1, (0, ""))[1],
            "st02": set_of.get(f.set_id or -1, (0, ""))[1],
            "bad_value": mask_value(f.segment_id, f.element_position, as_sent(f.bad_value), reveal),
            "business_unit": as_sent(f.business_unit) if reveal or not f.business_unit else "•••••",
            "context": contexts.get(key) if key and first_of[key] == n else None,
            "context_above": first_of[key] if key and first_of[key] != n else None,
        }
        for n, (f, key) in enumerate(zip(findings, keys, strict=True), start=1)
    ]
    ack_views = [
        {
            "a": a,
            "lines": ack_lines(mask_ack(a.content.decode("latin-1"), reveal))
            if a.kind != AckKind.REJECTION
            else [a.content.decode("utf-8", "replace")],
            "purged": r.purged_at is not None and not a.content,
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
        listed=listed,
        rows=rows,
        total_findings=total_findings,
        acks=ack_views,
        history=history,
        ledger=ledger,
        reveal=reveal,
        can_reprocess=r.status in (Status.PROCESSED, Status.FAILED) and r.purged_at is None,
        purged=_purged(r) if r.purged_at is not None else None,
    )


def _purged(r: Receipt) -> str:
    when = f" on {r.purged_at:%Y-%m-%d}" if r.purged_at is not None else ""
    return (
        f"This file's bytes and the member data kept from it were purged{when} under the "
        "retention policy (edi834 purge)."
    )


def _ledger(s: Session, r: Receipt, reveal: bool, shown_id: str) -> dict[str, Any]:
    """The ledger stage of one file: its members and their business findings, and the
    reconciliation of an audit file; member data masked unless revealed (member ids as
    `dashboard_member_id` says)."""
    counts = queries.outcome_counts(s, r.id)
    members = [
        {
            "e": m.event,
            "member_key": member_id(m.event.member_key, reveal, shown_id),
            "findings": [{"f": f, "message": masked(f.message, reveal)} for f in m.findings],
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
                "member_key": member_id(i.member_key, reveal, shown_id),
                "file_value": masked(i.file_value, reveal),
                "ledger_value": masked(i.ledger_value, reveal),
            }
            for i in items[:ITEM_LIMIT]
        ],
        "more_diffs": len(items) > ITEM_LIMIT,
        "error_kind": error_kind(r.ledger_error) if r.ledger_error else None,
        "has_member_data": bool(members or items or r.ledger_error),
    }
