"""The status API's response shapes (they are the OpenAPI contract)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, TypeVar

from pydantic import BaseModel, Field, WithJsonSchema

from gateway.db.models import AckKind, Channel, LedgerStatus, MemberOutcome, Status

M = TypeVar("M", bound=BaseModel)


def from_row(model: type[M], row: object, **given: object) -> M:
    """`model` from an ORM row: each field not `given` is the row's attribute of that name."""
    values = {name: getattr(row, name) for name in model.model_fields if name not in given}
    return model(**values, **given)


def _one_of(*values: str) -> WithJsonSchema:
    """A string the document lists the values of, for generated clients (issue 18); the value
    is passed through as stored, so the lists are the code's own enums where it has them."""
    return WithJsonSchema({"type": "string", "enum": list(values)})


StatusName = Annotated[str, _one_of(*Status)]
ChannelName = Annotated[str, _one_of(*Channel)]
AckKindName = Annotated[str, _one_of(*AckKind)]
LedgerStatusName = Annotated[str, _one_of(*LedgerStatus)]
MemberOutcomeName = Annotated[str, _one_of(*MemberOutcome)]
OutcomeName = Annotated[
    str, _one_of("accepted", "accepted_with_errors", "partially_accepted", "rejected")
]
FindingLevel = Annotated[
    str, _one_of("file", "interchange", "group", "transaction", "segment", "element")
]
FindingSeverity = Annotated[str, _one_of("reject", "warn")]
ReconciliationKind = Annotated[str, _one_of("missing_in_ledger", "missing_in_file", "mismatch")]


class ReceiptOut(BaseModel):
    id: str
    sha256: str
    status: StatusName
    status_url: str
    duplicate: bool = Field(description="true when these exact bytes were received before")


class Counts(BaseModel):
    """What the TA1 and 999 said (syntax and the implementation guide): a member "accepted"
    here can still be refused by the business rules — see `members_applied` and
    `members_business_rejected` on the interchange."""

    sets_received: int
    sets_accepted: int
    sets_rejected: int
    members_received: int
    members_accepted: int = Field(description="in sets the 999 accepted")
    members_rejected: int = Field(description="in sets the 999 (or a TA1) rejected")


class FindingOut(BaseModel):
    level: FindingLevel
    family: str = Field(description="TA105, AK905, IK502, IK304, IK403, or FILE for unusable input")
    code: str
    meaning: str
    message: str
    remedy: str
    severity: FindingSeverity
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
    ack: str | None = Field(
        description="IK501 as the 999 said it; null when a TA1 rejected the interchange (no 999 "
        "answered its groups)"
    )
    error_codes: list[str]
    members: int
    segments: int
    findings_omitted: int = Field(
        default=0,
        description="findings past the per-set cap: counted, not listed (the 999 carries the "
        "first ones)",
    )
    gate: str | None = Field(
        description="what becomes of the set's members: apply (the enrollment ledger and the "
        "core system), dry_run (an onboarding sender's test data: business rules only) or "
        "not_applied"
    )
    gate_reason: str = Field(description="why the members are not applied; empty when applied")


class GroupOut(BaseModel):
    gs01: str
    gs06: str
    gs08: str
    ack: str | None = Field(
        description="AK901 as the 999 said it; null when a TA1 rejected the interchange"
    )
    sets_included: int
    sets_received: int
    sets_accepted: int = Field(
        description="sets the gateway accepted: none in a group the 999 rejects (AK901 R), "
        "where the 999's AK904 still counts the sets whose IK501 is A or E"
    )
    transaction_sets: list[TransactionSetOut] = Field(
        description="the group's first 1,000 sets, in file order (the 999 answers every one)"
    )
    transaction_sets_omitted: int = Field(
        default=0, description="the group's sets past the first 1,000: counted, not listed"
    )


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


class RejectionProblem(BaseModel):
    reason: str = Field(description="why no ISA could be read: binary, not_x12, empty, …")
    offset: int | None = Field(description="the byte offset it was noticed at")
    message: str


class RejectionNotice(BaseModel):
    """The `rejection` ack (application/json): the answer to input with no usable ISA, which
    no TA1 can answer."""

    receipt_id: str
    file: str | None
    outcome: Annotated[str, _one_of("rejected")]
    problems: list[RejectionProblem]
    note: str


class AckOut(BaseModel):
    kind: AckKindName
    filename: str
    control_number: int | None
    sha256: str
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    url: str


class InterchangeSummary(BaseModel):
    id: str
    status: StatusName
    outcome: OutcomeName | None = Field(
        description="the acknowledgements' verdict (TA1 and 999), not the ledger's: a file "
        "accepted here can have every member refused by the business rules (its "
        "`members_business_rejected`, its 824)"
    )
    channel: ChannelName
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
        default=None,
        description="why processing failed (status failed), in general terms, or why the file "
        "is not processed (status partial: an upload cut short)",
    )
    ledger_status: LedgerStatusName | None = Field(
        default=None,
        description="enrollment ledger stage: pending, applied (the stage ran over the file's "
        "members: each was applied or refused, see the two counts below), reconciled (an audit "
        "file), not_applied (no 834 set passed the gate), dry_run (an onboarding sender's test "
        "file) or failed; null when the file had no 834 set",
    )
    members_applied: int = Field(default=0, description="members the ledger applied")
    members_business_rejected: int = Field(
        default=0,
        description="members the business rules refused (not applied): the 824's TEDs; with "
        "members_applied 0, nothing of the file reached the ledger",
    )
    links: dict[str, str] = Field(
        description="self, acks, members; reconciliation only for an audit (ledger_status "
        "reconciled)"
    )


class InterchangePage(BaseModel):
    items: list[InterchangeSummary]
    next_cursor: str | None


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (`application/problem+json`)."""

    type: str = Field(
        description="urn:edi834-gateway:problem:<code>; stable for a kind of error",
        examples=["urn:edi834-gateway:problem:rate_limited"],
    )
    title: str = Field(description="a short summary of the kind of error")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong with this request, in plain English")
    code: str = Field(
        description="the machine-readable name of the error: bad_request, empty_body, "
        "invalid_cursor, unauthorized, not_found, method_not_allowed, too_large, "
        "unsupported_media_type, invalid_request, idempotency_key_reused, rate_limited, "
        "internal_error, unavailable, "
        "not_ready, storage_unavailable",
        examples=["rate_limited"],
    )
    errors: list[dict[str, object]] | None = Field(
        default=None, description="invalid_request only: each parameter in error (loc, msg)"
    )


ErrorOut = Problem  # the name the routes' `responses=` use


class BusinessFindingOut(BaseModel):
    rule: str = Field(description="the business rule's name, e.g. duplicate-add")
    snip: int = Field(
        description="WEDI SNIP type: 3 balancing, 4 situational, 6 product, 7 partner"
    )
    severity: FindingSeverity = Field(description="reject (the member was not applied) or warn")
    title: str
    message: str
    remedy: str
    segment_id: str | None = None
    segment_position: int | None = None
    element_position: int | None = None


class MemberOut(BaseModel):
    seq: int = Field(description="the member's order in the file, from 0")
    member_key: str = Field(
        description="REF*17; else a subscriber's REF*0F; else (a dependent) its subscriber's "
        "REF*0F, a colon and a digest of who it is, kept when that is corrected"
    )
    subscriber_number: str
    policy: str = Field(
        description="the enrollment group: 2300 REF*1L, else 2000 REF*1L, else (no REF*1L "
        "sent) the subscriber's REF*0F"
    )
    subscriber: bool
    relationship: str
    maintenance_type: str
    maintenance_reason: str
    outcome: MemberOutcomeName = Field(
        description="applied, rejected (by a business rule), audited, not_applied (stopped at "
        "the gate: `reason` says why), would_apply or would_reject (a dry run of test data)"
    )
    reason: str = Field(
        default="",
        description="why the member was not applied at the gate (not_applied, dry runs); a "
        'member the business rules rejected has its reasons in `findings`, and "" here',
    )
    isa13: str
    gs06: str
    st02: str
    segment_position: int = Field(description="the INS's position in its transaction set")
    findings: list[BusinessFindingOut]


class MemberPage(BaseModel):
    ledger_status: LedgerStatusName | None = Field(
        description="pending, applied, reconciled (an audit file), not_applied, dry_run or "
        "failed; null when the file had no 834 set"
    )
    counts: dict[str, int]
    items: list[MemberOut]
    next_cursor: str | None = Field(
        default=None, description="pass back as `cursor` for the next page (none: the last)"
    )
    next_after: int | None = Field(
        description="deprecated, the same page as next_cursor: pass back as `after`",
        json_schema_extra={"deprecated": True},
    )


class ReconciliationItemOut(BaseModel):
    kind: ReconciliationKind = Field(description="missing_in_ledger, missing_in_file or mismatch")
    member_key: str
    field: str
    file_value: str
    ledger_value: str
    st02: str
    segment_position: int | None


class ReconciliationOut(BaseModel):
    created_at: dt.datetime
    members_in_file: int
    members_matched: int
    missing_in_ledger: int
    missing_in_file: int
    mismatches: int
    items: list[ReconciliationItemOut]
    next_after: int | None
    csv_url: str


class LedgerPeriodOut(BaseModel):
    begin: dt.date | None = Field(description="the first day these terms are in force")
    end: dt.date | None = Field(description="the last day (null: until the enrollment ends)")
    in_force: bool = Field(
        description="false for a period never in force (superseded, after the end, cancelled)"
    )
    plan_id: str = Field(description="REF*CE (CMS: 14-character plan id + 2-digit variant)")
    csr_variant: str = Field(description="the plan id's CSR variant (e.g. 01, 04, 06)")
    coverage_level: str = Field(description="HD05: IND, FAM, EMP, ESP, …")
    premium: str = Field(description='2750 PRE AMT 1, monthly ("": not sent)')
    aptc: str = Field(description='2750 APTC AMT, monthly ("": not sent)')
    csr_amount: str = Field(description='2750 CSR AMT, monthly ("": not sent)')
    rating_area: str = Field(description='2750 RATING AREA ("": not sent)')
    event_id: int | None = Field(description="the member event that last set these terms")


class TermsOut(BaseModel):
    plan_id: str
    csr_variant: str
    coverage_level: str
    premium: str
    aptc: str
    csr_amount: str
    rating_area: str


class EnrollmentOut(BaseModel):
    line: str = Field(description="HD03 insurance line: HLT, DEN, VIS, …")
    policy: str = Field(description="REF*1L, the exchange-assigned policy id")
    plan_year: int
    stint: int = Field(
        description="0; 1, 2, … for an enrollment again after a termination in the same plan "
        "year (a rehire, COBRA after a gap): (line, policy, plan_year, stint) names it"
    )
    state: str = Field(
        description="initial (awaiting effectuation), effectuated, terminated, cancelled"
    )
    begin: dt.date | None
    end: dt.date | None
    effectuated: bool
    paid_through: dt.date | None = Field(description="DTP*543, the last premium paid date")
    periods: list[LedgerPeriodOut]
    as_of: TermsOut | None = Field(
        default=None, description="the terms in force on `as_of` (null: not covered that day)"
    )


class LedgerMemberOut(BaseModel):
    member_key: str = Field(
        description="REF*17; else a subscriber's REF*0F; else (a dependent) its subscriber's "
        "REF*0F, a colon and a digest of who it is, kept when that is corrected"
    )
    subscriber_number: str
    subscriber: bool
    relationship: str
    policy: str
    status: str = Field(description="active while any enrollment is in force, else terminated")
    as_of: dt.date | None
    enrollments: list[EnrollmentOut]


class MonthLineOut(BaseModel):
    month: str = Field(description="YYYY-MM")
    member_key: str
    relationship: str
    line: str
    plan_id: str
    csr_variant: str
    coverage_level: str
    rating_area: str
    first_day: dt.date
    last_day: dt.date
    days: int = Field(description="days covered in the month by these terms")
    days_in_month: int
    premium: str | None = Field(description="PRE AMT 1 * days / days in month, to the cent")
    aptc: str | None
    csr_amount: str | None


class MonthTotalOut(BaseModel):
    month: str
    premium: str
    aptc: str
    csr_amount: str
    responsible: str = Field(
        description="premium less the APTC applied, which is never more than the premium: "
        "what the enrollee owes (never negative)"
    )
    aptc_excess: str = Field(
        description="APTC sent above the month's premium, not applied (0.00 when none): the "
        "exchange's APTC needs correcting, e.g. after a dependent ended"
    )


class PolicyMonthsOut(BaseModel):
    policy: str
    months: list[MonthLineOut]
    totals: list[MonthTotalOut]
    csv_url: str
