"""`/v1/interchanges` and `/v1/interchanges/{id}`: a partner's files, their status, outcome,
counts, envelope ids and findings."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from gateway.api.deps import (
    ERRORS,
    CurrentPartner,
    GatewayDep,
    OwnedReceiptStatus,
    base_url_of,
    read_status,
    remembered_partner,
)
from gateway.api.lean import in_thread
from gateway.api.params import ZonedTime
from gateway.api.schemas import ErrorOut, InterchangeDetail, InterchangePage
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import iso_z
from gateway.db.models import COUNT_COLUMNS, LedgerStatus, Status
from gateway.errors import GatewayError, NotFound
from gateway.gate import interchange_acknowledged
from parsers.charset import as_sent
from validators.issues import meaning, remedy
from validators.setlist import SETS_LISTED

MAX_PAGE = 200
FAILED = (
    "processing failed inside the gateway; the insurer's operators have been alerted and no "
    "acknowledgement was sent"
)
PARTIAL = (
    "the upload ended before the file was closed (the connection dropped, or the SFTP server "
    "stopped): what arrived is kept but is not processed and gets no acknowledgement; send the "
    "whole file again"
)
_WHY_NOT_ANSWERED = {Status.FAILED: FAILED, Status.PARTIAL: PARTIAL}
FILE_REMEDY = "Send a complete X12 interchange starting with a 106-byte ISA segment."

router = APIRouter(prefix="/v1/interchanges", tags=["status"])


@router.get(
    "",
    response_model=InterchangePage,
    responses={400: {"model": ErrorOut, "description": "invalid cursor"}, **ERRORS},
)
def list_interchanges(
    partner: CurrentPartner,
    gw: GatewayDep,
    status: Annotated[Status | None, Query()] = None,
    outcome: Annotated[
        str | None,
        Query(pattern="^(accepted|accepted_with_errors|partially_accepted|rejected)$"),
    ] = None,
    # With a zone (Z or +hh:mm): a time without one, or a number, is refused, not guessed (422).
    since: Annotated[
        ZonedTime | None,
        Query(description="received at or after (ISO 8601 with a zone; `+` as %2B)"),
    ] = None,
    until: Annotated[
        ZonedTime | None, Query(description="received before (ISO 8601 with a zone)")
    ] = None,
    isa13: Annotated[str | None, Query(max_length=16)] = None,
    gs06: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Response:
    """Your interchanges, newest first. Pass `next_cursor` back as `cursor` for the next
    page."""
    after = _decode_cursor(cursor) if cursor else None
    f = repo.ReceiptFilter(
        partner_id=partner.id,
        status=status.value if status else None,
        outcome=outcome,
        since=since,
        until=until,
        isa13=isa13,
        gs06=gs06,
    )
    return json_response(page_of(read_page(gw, f, limit, after), limit))


_LIMIT = re.compile(r"[1-9][0-9]{0,2}")  # what pydantic takes as an int, as written
_STATUSES = frozenset(s.value for s in Status)


async def list_interchanges_fast(request: Request) -> Response | None:
    """`list_interchanges` for a remembered key (gateway.api.lean) and query parameters it
    would take as they are — each at most once: `limit` written as a plain number within
    range, `status` one of the enum's values, `cursor` one of ours — the same page read in one
    thread trip. None for any other request (another parameter, a repeated or malformed one, a
    cursor that does not decode): FastAPI answers it as declared (its 422s, the 400)."""
    partner = remembered_partner(request)
    if partner is None:
        return None
    limit, status, after = 50, None, None
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():  # Starlette's parse, as FastAPI's
        if name in seen:
            return None
        seen.add(name)
        if name == "limit" and _LIMIT.fullmatch(value) and int(value) <= MAX_PAGE:
            limit = int(value)
        elif name == "status" and value in _STATUSES:
            status = value
        elif name == "cursor" and 0 < len(value) <= 200:
            try:
                after = _decode_cursor(value)
            except GatewayError:
                return None
        else:
            return None
    gw: Gateway = request.app.state.gateway
    f = repo.ReceiptFilter(partner_id=partner.id, status=status)
    page = await in_thread(request, read_page, gw, f, limit, after)
    return json_response(page_of(page, limit))


def read_page(
    gw: Gateway, f: repo.ReceiptFilter, limit: int, after: tuple[dt.datetime, str] | None
) -> repo.ReceiptPage:
    """A page of `limit` receipts and the first of the next (is there one?)."""
    with gw.read_engine.connect() as conn:
        return repo.list_receipts(conn, f, limit=limit + 1, after=after)


def page_of(page: repo.ReceiptPage, limit: int) -> dict[str, object]:
    """InterchangePage from a page read with one row more than `limit`."""
    rows = page.rows
    next_cursor = (
        _encode_cursor(rows[limit - 1][RECEIVED_AT], rows[limit - 1][0])
        if len(rows) > limit
        else None
    )
    return {
        "items": [summary_of(r, page.isa13s[r[0]]) for r in rows[:limit]],
        "next_cursor": next_cursor,
    }


@router.get("/{interchange_id}", response_model=InterchangeDetail, responses=ERRORS)
async def get_interchange(found: OwnedReceiptStatus) -> Response:
    """Status, outcome, counts, envelope ids and every finding (first 1,000)."""
    # async: what is left is encoding what the dependency read, no I/O and no threadpool trip
    return json_response(detail_of(found.rows, found.base_url))


async def get_interchange_fast(request: Request) -> Response | None:
    """`get_interchange` for a remembered key (gateway.api.lean): the same rows read in one
    thread trip, the same answer and the same 404; None for any other request."""
    partner = remembered_partner(request)
    if partner is None:
        return None
    gw: Gateway = request.app.state.gateway
    found = await in_thread(request, read_status, gw, request.path_params["interchange_id"],
                            partner.id)  # fmt: skip
    if found is None:
        raise NotFound()
    return json_response(detail_of(found, base_url_of(request, gw)))


# The answers are built as JSON-ready dicts straight from the rows and encoded once (issue 19):
# no pydantic model built and validated per object. Their shapes are the schemas' in
# gateway.api.schemas (InterchangeSummary, InterchangeDetail, …), field for field and in
# their order; tests/gateway/test_api_lean.py checks every answer against them.
RECEIVED_AT = 7  # repo.SUMMARY_COLUMNS: id, status, outcome, channel, filename, sha256, size, …
_COUNTS = len(repo.SUMMARY_COLUMNS) - len(COUNT_COLUMNS)
_ENVELOPE = len(repo.DETAIL_COLUMNS)
_GROUP = _ENVELOPE + len(repo.ENVELOPE_COLUMNS)
_SET = _GROUP + len(repo.GROUP_COLUMNS)


def json_response(content: object) -> Response:
    """`content` encoded as pydantic encodes a response model: UTF-8, compact."""
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, media_type="application/json")


def _when(moment: dt.datetime | None) -> str | None:
    """A stored (UTC) time as pydantic writes it: ISO 8601 with Z."""
    return iso_z(moment) if moment is not None else None


def summary_of(r: Sequence[Any], isa13: list[str]) -> dict[str, object]:
    """InterchangeSummary from a row of repo.SUMMARY_COLUMNS (or DETAIL_COLUMNS)."""
    rid, status, outcome, channel, filename, sha256, size, received_at, processed_at = r[:_COUNTS]
    return {
        "id": rid,
        "status": status,
        "outcome": outcome,
        "channel": channel,
        "filename": filename,
        "sha256": sha256,
        "size": size,
        "received_at": _when(received_at),
        "processed_at": _when(processed_at),
        "isa13": isa13,
        "counts": dict(zip(COUNT_COLUMNS, r[_COUNTS : _COUNTS + len(COUNT_COLUMNS)], strict=True)),
    }


def detail_of(found: repo.ReceiptStatus, base_url: str) -> dict[str, object]:
    """InterchangeDetail from the status read's rows."""
    first = found.tree[0]
    envelopes, isa13_of, gs06_of, st02_of = _envelopes_of(found.tree)
    st02_of.update(found.unlisted_st02)
    ledger_status, members_applied, members_business_rejected = first[_ENVELOPE - 3 : _ENVELOPE]
    root = f"{base_url}/v1/interchanges/{first[0]}"
    return {
        **summary_of(first, list(isa13_of.values())),
        "interchanges": envelopes,
        "findings": [_finding_of(f, isa13_of, gs06_of, st02_of) for f in found.findings],
        "findings_total": found.findings_total,
        "error": _WHY_NOT_ANSWERED.get(first[1]),
        "ledger_status": ledger_status,
        "members_applied": members_applied,
        "members_business_rejected": members_business_rejected,
        "links": {
            "self": root,
            "acks": f"{root}/acks",
            "members": f"{root}/members",
            # An audit's report; other files have none (the address would answer 404).
            **(
                {"reconciliation": f"{root}/reconciliation"}
                if ledger_status == LedgerStatus.RECONCILED
                else {}
            ),
        },
    }


def _envelopes_of(
    tree: Sequence[Sequence[Any]],
) -> tuple[list[dict[str, Any]], dict[int, str], dict[int, str], dict[int, str]]:
    """EnvelopeOut for each envelope of the joined rows (receipt ⟕ envelope ⟕ group ⟕ set, in
    seq order), and the ISA13 / GS06 / ST02 of each envelope, group and set id."""
    envelopes: list[dict[str, Any]] = []
    isa13_of: dict[int, str] = {}
    gs06_of: dict[int, str] = {}
    st02_of: dict[int, str] = {}
    envelope: dict[str, Any] = {}
    group: dict[str, Any] = {}
    answered = False
    for row in tree:
        (eid, isa13, s_qual, s_id, r_qual, r_id, isa09, isa10, usage, ta1_code, ta1_note,
         outcome) = row[_ENVELOPE:_GROUP]  # fmt: skip
        if eid is None:
            continue  # no envelope: an unusable file, or not processed yet
        if eid not in isa13_of:
            isa13_of[eid] = isa13
            # Under a TA1 rejection no 999 answered the groups: no AK9/IK5 to show.
            answered = interchange_acknowledged(ta1_code)
            envelope = {
                "isa13": isa13,
                "sender": f"{s_qual}:{s_id}",
                "receiver": f"{r_qual}:{r_id}",
                "isa09": isa09,
                "isa10": isa10,
                "usage": usage,
                "ta1_code": ta1_code,
                "ta1_note": ta1_note,
                "outcome": outcome,
                "groups": [],
            }
            envelopes.append(envelope)
        gid, gs01, gs06, gs08, g_ack, included, received, accepted = row[_GROUP:_SET]
        if gid is None:
            continue
        if gid not in gs06_of:
            gs06_of[gid] = gs06
            group = {
                "gs01": gs01,
                "gs06": gs06,
                "gs08": gs08,
                "ack": g_ack if answered else None,
                "sets_included": included,
                "sets_received": received,
                "sets_accepted": accepted if answered else 0,
                "transaction_sets": [],
                "transaction_sets_omitted": max(0, received - SETS_LISTED),
            }
            envelope["groups"].append(group)
        (tid, st01, st02, t_ack, error_codes, members, segments, omitted, gate,
         gate_reason) = row[_SET:]  # fmt: skip
        if tid is None:
            continue
        st02_of[tid] = st02
        group["transaction_sets"].append(
            {
                "st01": st01,
                "st02": st02,
                "ack": t_ack if answered else None,
                "error_codes": [c for c in error_codes.split(",") if c],
                "members": members,
                "segments": segments,
                "findings_omitted": omitted,
                "gate": gate,
                "gate_reason": gate_reason,
            }
        )
    return envelopes, isa13_of, gs06_of, st02_of


def _finding_of(
    f: Sequence[Any], isa13_of: dict[int, str], gs06_of: dict[int, str], st02_of: dict[int, str]
) -> dict[str, object]:
    """FindingOut from a row of repo.FINDING_COLUMNS, with the ISA13 / GS06 / ST02 of where it
    was found."""
    (envelope_id, group_id, set_id, level, family, code, message, severity, segment_id,
     segment_position, loop_id, element_position, component_position, repetition_position,
     element_ref, bad_value, business_unit) = f  # fmt: skip
    file_level = family == "FILE"
    return {
        "level": level,
        "family": family,
        "code": code,
        "meaning": message if file_level else meaning(family, code),
        "message": message,
        "remedy": FILE_REMEDY if file_level else remedy(family, code),
        "severity": severity,
        "isa13": isa13_of.get(envelope_id) if envelope_id else None,
        "gs06": gs06_of.get(group_id) if group_id else None,
        "st02": st02_of.get(set_id) if set_id else None,
        "segment_id": segment_id,
        "segment_position": segment_position,
        "loop_id": loop_id,
        "element_position": element_position,
        "component_position": component_position,
        "repetition_position": repetition_position,
        "element_ref": element_ref,
        "bad_value": as_sent(bad_value),
        "business_unit": as_sent(business_unit),
    }


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
        raise GatewayError("invalid cursor", 400, code="invalid_cursor") from exc
