"""The status API's response shapes (they are the OpenAPI contract)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class ReceiptOut(BaseModel):
    id: str
    sha256: str
    status: str
    status_url: str
    duplicate: bool = Field(description="true when these exact bytes were received before")


class Counts(BaseModel):
    sets_received: int
    sets_accepted: int
    sets_rejected: int
    members_received: int
    members_accepted: int
    members_rejected: int


class FindingOut(BaseModel):
    level: str
    family: str = Field(description="TA105, AK905, IK502, IK304, IK403, or FILE for unusable input")
    code: str
    meaning: str
    message: str
    remedy: str
    severity: str
    isa13: str | None = None
    gs06: str | None = None
    st02: str | None = None
    segment_id: str | None = None
    segment_position: int | None = None
    loop_id: str | None = None
    element_position: int | None = None
    component_position: int | None = None
    repetition_position: int | None = None
    element_ref: str | None = None
    bad_value: str | None = None
    business_unit: str | None = None


class TransactionSetOut(BaseModel):
    st01: str
    st02: str
    ack: str
    error_codes: list[str]
    members: int
    segments: int


class GroupOut(BaseModel):
    gs01: str
    gs06: str
    gs08: str
    ack: str
    sets_included: int
    sets_received: int
    sets_accepted: int
    transaction_sets: list[TransactionSetOut]


class EnvelopeOut(BaseModel):
    isa13: str
    sender: str
    receiver: str
    isa09: str
    isa10: str
    usage: str
    ta1_code: str
    ta1_note: str
    outcome: str
    groups: list[GroupOut]


class AckOut(BaseModel):
    kind: str
    filename: str
    control_number: int | None
    sha256: str
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    url: str


class InterchangeSummary(BaseModel):
    id: str
    status: str
    outcome: str | None
    channel: str
    filename: str | None
    sha256: str
    size: int
    received_at: dt.datetime
    processed_at: dt.datetime | None
    isa13: list[str]
    counts: Counts


class InterchangeDetail(InterchangeSummary):
    interchanges: list[EnvelopeOut]
    findings: list[FindingOut]
    findings_total: int
    error: str | None = Field(
        default=None, description="why processing failed (status failed), in general terms"
    )
    links: dict[str, str]


class InterchangePage(BaseModel):
    items: list[InterchangeSummary]
    next_cursor: str | None


class ErrorOut(BaseModel):
    error: str
