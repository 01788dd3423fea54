"""ORM rows. A *receipt* is one received file (what the API calls an interchange); it holds one
or more ISA envelopes, their groups, transaction sets, findings and our acknowledgements. Raw
files live in the blob store (sha256 + path), never in rows."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db.base import Base, UTCDateTime, utcnow


class Status(enum.StrEnum):
    RECEIVED = "received"  # durably stored, waiting for a worker
    PROCESSING = "processing"  # claimed by a worker under a lease
    PROCESSED = "processed"  # validated; outcome and acks stored
    FAILED = "failed"  # the worker failed repeatedly (a bug, not bad data); parked for operators
    PARTIAL = "partial"  # the upload never completed; kept, never processed


class Channel(enum.StrEnum):
    HTTP = "http"
    SFTP = "sftp"


def new_id() -> str:
    return uuid.uuid4().hex


class Partner(Base):
    __tablename__ = "partners"
    __table_args__ = (
        UniqueConstraint("isa_qualifier", "isa_id"),
        Index("ix_partners_previous_api_key_hash", "previous_api_key_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    isa_qualifier: Mapped[str] = mapped_column(String(2))
    isa_id: Mapped[str] = mapped_column(String(15))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # A rotated key that still works until `previous_api_key_until` (partner rotate-key
    # --keep-old): the partner moves to the new key without an outage.
    previous_api_key_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    previous_api_key_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    sftp_keys: Mapped[str] = mapped_column(Text, default="")  # OpenSSH public keys, one a line
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    webhook_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    webhook_secret: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Business rules (issue 5): JSON {rule name: reject|warn|ignore} over the defaults; the
    # partner's plan ids (REF*CE / HD04), one a line, empty = not checked; whether to send 824s.
    rule_severities: Mapped[str] = mapped_column(Text, default="", server_default="")
    plan_ids: Mapped[str] = mapped_column(Text, default="", server_default="")
    send_824: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Onboarding (issue 13): the partner's test interchanges (ISA15 T) get a dry run of the
    # business rules, stored apart and never applied or delivered.
    onboarding: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # When a file is expected (gateway.watch.schedule: "daily 06:00", "weekly mon 06:00", …;
    # empty = not watched), in the partner's IANA time zone.
    expected_schedule: Mapped[str] = mapped_column(String(64), default="", server_default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # The last `partner_seq` given to this partner's core events (CoreDelivery.partner_seq).
    core_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


COUNT_COLUMNS = (
    "sets_received",
    "sets_accepted",
    "sets_rejected",
    "members_received",
    "members_accepted",
    "members_rejected",
)
"""A receipt's transaction-set and member counts, as the validator's `counts()` names them."""


class Receipt(Base):
    __tablename__ = "receipts"
    __table_args__ = (
        # Identical bytes from the same partner are one receipt (NULL for partial uploads).
        UniqueConstraint("partner_id", "dedup_sha256"),
        Index("ix_receipts_status_lease", "status", "lease_expires_at"),
        Index("ix_receipts_partner_received", "partner_id", "received_at"),
        Index("ix_receipts_received", "received_at"),
        Index("ix_receipts_outcome_received", "outcome", "received_at"),
        Index("ix_receipts_ledger_status", "ledger_status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    channel: Mapped[str] = mapped_column(String(8))
    filename: Mapped[str | None] = mapped_column(String(255), default=None)
    sha256: Mapped[str] = mapped_column(String(64))
    dedup_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    size: Mapped[int] = mapped_column(BigInteger)
    blob_path: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=Status.RECEIVED)
    outcome: Mapped[str | None] = mapped_column(String(24), default=None)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)  # internal error, operators
    unusable_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(64), default=None)
    resolution_note: Mapped[str | None] = mapped_column(Text, default=None)
    sets_received: Mapped[int] = mapped_column(Integer, default=0)
    sets_accepted: Mapped[int] = mapped_column(Integer, default=0)
    sets_rejected: Mapped[int] = mapped_column(Integer, default=0)
    members_received: Mapped[int] = mapped_column(Integer, default=0)
    members_accepted: Mapped[int] = mapped_column(Integer, default=0)
    members_rejected: Mapped[int] = mapped_column(Integer, default=0)
    # The enrollment ledger stage (after validation): None = nothing to apply (no accepted 834
    # set), then pending -> applied | reconciled (an audit) | failed (parked for operators).
    ledger_status: Mapped[str | None] = mapped_column(String(16), default=None)
    ledger_order: Mapped[str | None] = mapped_column(String(64), default=None)
    ledger_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ledger_progress: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ledger_error: Mapped[str | None] = mapped_column(Text, default=None)
    ledger_applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    members_applied: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    members_business_rejected: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When `edi834 purge` removed the file's bytes and the member data kept from it (retention).
    purged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)

    partner: Mapped[Partner] = relationship(lazy="joined")
    envelopes: Mapped[list[Interchange]] = relationship(
        back_populates="receipt", order_by="Interchange.seq", lazy="selectin"
    )


class Interchange(Base):
    """One ISA…IEA interchange inside a received file (table `envelopes`)."""

    __tablename__ = "envelopes"
    __table_args__ = (Index("ix_envelopes_isa13", "isa13"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_id: Mapped[str] = mapped_column(
        ForeignKey("receipts.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    isa13: Mapped[str] = mapped_column(String(16))
    sender_qualifier: Mapped[str] = mapped_column(String(4))
    sender_id: Mapped[str] = mapped_column(String(16))
    receiver_qualifier: Mapped[str] = mapped_column(String(4))
    receiver_id: Mapped[str] = mapped_column(String(16))
    isa09: Mapped[str] = mapped_column(String(8))
    isa10: Mapped[str] = mapped_column(String(8))
    usage: Mapped[str] = mapped_column(String(2))
    ta1_code: Mapped[str] = mapped_column(String(1))
    ta1_note: Mapped[str] = mapped_column(String(3))
    outcome: Mapped[str] = mapped_column(String(24))

    receipt: Mapped[Receipt] = relationship(back_populates="envelopes")
    groups: Mapped[list[Group]] = relationship(order_by="Group.seq", lazy="selectin")


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (Index("ix_groups_gs06", "gs06"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    envelope_id: Mapped[int] = mapped_column(
        ForeignKey("envelopes.id", ondelete="CASCADE"), index=True
    )
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    gs01: Mapped[str] = mapped_column(String(4))
    gs02: Mapped[str] = mapped_column(String(16))
    gs03: Mapped[str] = mapped_column(String(16))
    gs06: Mapped[str] = mapped_column(String(16))
    gs08: Mapped[str] = mapped_column(String(16))
    ack_code: Mapped[str] = mapped_column(String(1))
    sets_included: Mapped[int] = mapped_column(Integer)
    sets_received: Mapped[int] = mapped_column(Integer)
    sets_accepted: Mapped[int] = mapped_column(Integer)

    # Loaded only when read: a group can hold a million sets (repo.listed_sets reads a few).
    transaction_sets: Mapped[list[TransactionSet]] = relationship(
        order_by="TransactionSet.seq", lazy="select"
    )


class TransactionSet(Base):
    __tablename__ = "transaction_sets"
    __table_args__ = (
        Index("ix_transaction_sets_st02", "st02"),
        # A file's sets a page at a time, in id order (the ledger's decisions).
        Index("ix_transaction_sets_receipt_id_id", "receipt_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    st01: Mapped[str] = mapped_column(String(8))
    st02: Mapped[str] = mapped_column(String(16))
    st03: Mapped[str] = mapped_column(String(40))
    ack_code: Mapped[str] = mapped_column(String(1))
    error_codes: Mapped[str] = mapped_column(String(64), default="")  # IK502 codes, comma-separated
    member_count: Mapped[int] = mapped_column(Integer)
    # INS01 Y among them, counted as the set is validated (NULL: stored before issue 14; the
    # ledger counts them itself then).
    subscriber_count: Mapped[int | None] = mapped_column(Integer, default=None)
    segment_count: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[bool] = mapped_column(Boolean)
    findings_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    # Findings past the per-set cap: counted, not stored (the 999 says how many there were).
    findings_omitted: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The gate's decision (gateway.gate): apply | dry_run | not_applied, and why not.
    gate: Mapped[str | None] = mapped_column(String(16), default=None)
    gate_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")


class Finding(Base):
    """One finding, as in the acknowledgement. `bad_value` and `business_unit` may be member data
    (PHI): stored for the sender and operators, never logged."""

    __tablename__ = "findings"
    __table_args__ = (
        Index("ix_findings_receipt_seq", "receipt_id", "seq"),
        Index("ix_findings_family_code_receipt", "family", "code", "receipt_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id", ondelete="CASCADE"))
    envelope_id: Mapped[int | None] = mapped_column(
        ForeignKey("envelopes.id", ondelete="CASCADE"), default=None
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), default=None
    )
    set_id: Mapped[int | None] = mapped_column(
        ForeignKey("transaction_sets.id", ondelete="CASCADE"), default=None
    )
    seq: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    family: Mapped[str] = mapped_column(String(8))
    code: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(8))
    segment_id: Mapped[str | None] = mapped_column(String(8), default=None)
    segment_position: Mapped[int | None] = mapped_column(Integer, default=None)
    loop_id: Mapped[str | None] = mapped_column(String(16), default=None)
    element_position: Mapped[int | None] = mapped_column(Integer, default=None)
    component_position: Mapped[int | None] = mapped_column(Integer, default=None)
    repetition_position: Mapped[int | None] = mapped_column(Integer, default=None)
    element_ref: Mapped[str | None] = mapped_column(String(8), default=None)
    bad_value: Mapped[str | None] = mapped_column(Text, default=None)
    business_unit: Mapped[str | None] = mapped_column(String(80), default=None)


class AckKind(enum.StrEnum):
    TA1 = "ta1"
    X999 = "999"
    X824 = "824"
    X824_DRY_RUN = "824-dry-run"  # what an onboarding sender's test file would get: never sent
    REJECTION = "rejection"  # the notice for input with no usable ISA


DELIVERED_KINDS = frozenset(AckKind) - {AckKind.X824_DRY_RUN}
"""Kinds that go to the partner's outbound/ (and webhooks); a dry run's 824 stays in the API."""


class Ack(Base):
    """An acknowledgement we sent: TA1, 999, or a rejection notice for an unusable file."""

    __tablename__ = "acks"
    __table_args__ = (
        Index("ix_acks_undelivered", "delivered_at"),
        Index("ix_acks_pickup", "picked_up_at", "delivered_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_id: Mapped[str] = mapped_column(
        ForeignKey("receipts.id", ondelete="CASCADE"), index=True
    )
    envelope_id: Mapped[int | None] = mapped_column(
        ForeignKey("envelopes.id", ondelete="CASCADE"), default=None
    )
    kind: Mapped[str] = mapped_column(String(16))  # AckKind
    control_number: Mapped[int | None] = mapped_column(BigInteger, default=None)
    filename: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the partner first fetched it (an SFTP download of outbound/ to the end, or the
    # partner API), and how: "sftp" | "api". NULL: never picked up (gateway.watch).
    picked_up_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    picked_up_via: Mapped[str | None] = mapped_column(String(8), default=None)


class InterchangeKey(Base):
    """ISA13s a sender has used, for TA1 025. A unique constraint, not a read-then-write race."""

    __tablename__ = "interchange_keys"
    __table_args__ = (UniqueConstraint("partner_id", "sender_qualifier", "sender_id", "isa13"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    sender_qualifier: Mapped[str] = mapped_column(String(4))
    sender_id: Mapped[str] = mapped_column(String(16))
    isa13: Mapped[str] = mapped_column(String(16))
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id", ondelete="CASCADE"))


class Counter(Base):
    """Our own control numbers (ISA13/GS06 of the acks we send), persisted."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ReceiptEvent(Base):
    """The history of a receipt: received, claimed, processed, failed, delivered, …"""

    __tablename__ = "receipt_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_id: Mapped[str] = mapped_column(
        ForeignKey("receipts.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text, default=None)


class IdempotencyKey(Base):
    """A partner's `Idempotency-Key` on an upload (issue 18): within its window the same key
    names the same bytes, and answers with the receipt they got."""

    __tablename__ = "idempotency_keys"

    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    receipt_id: Mapped[str] = mapped_column(
        ForeignKey("receipts.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "delivered_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id", ondelete="CASCADE"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    gave_up: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class Role(enum.StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


class Operator(Base):
    """An insurer operations user of the dashboard (never a partner)."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.VIEWER)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class OperatorSession(Base):
    __tablename__ = "operator_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    operator: Mapped[Operator] = relationship(lazy="joined")


class Alert(Base):
    """One incident of gateway.watch (a missing file, late acks, acks not picked up, stuck
    files): opened once, closed once, each posted once to EDI834_ALERT_URL — not once a poll.
    `key` names the incident (a missed deadline is its own incident; the others are one per
    partner, or one for the gateway), so a second process opening it again is a no-op."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_unposted", "posted_state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(24))  # missing_file | ack_latency | ack_pickup | stuck
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), default=None)
    summary: Mapped[str] = mapped_column(Text, default="")  # ids and counts only: no member data
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # What was last posted: "" nothing yet, "opened", "closed"; a post is due while it lags.
    posted_state: Mapped[str] = mapped_column(String(8), default="", server_default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class AuditEntry(Base):
    """Who saw or did what: reveals of member data, raw downloads, reprocessing, resolutions."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    operator: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    receipt_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    detail: Mapped[str | None] = mapped_column(Text, default=None)


# --- the enrollment ledger (issue 5) ---------------------------------------------------------


class LedgerStatus(enum.StrEnum):
    PENDING = "pending"  # validated; waiting for its turn (the sender's order) to be applied
    APPLIED = "applied"
    RECONCILED = "reconciled"  # an audit / replace file: compared with the ledger, not applied
    NOT_APPLIED = "not_applied"  # every 834 set stopped at the gate: members listed, none applied
    DRY_RUN = "dry_run"  # an onboarding sender's test file: rules run, nothing applied
    FAILED = "failed"  # applying kept failing (a bug, not bad data): parked for operators


class LedgerMember(Base):
    """A member as the insurer now knows it, per sender. Member data: PHI, never logged."""

    __tablename__ = "ledger_members"
    __table_args__ = (
        UniqueConstraint("partner_id", "member_key"),
        Index("ix_ledger_members_partner_subscriber", "partner_id", "subscriber_number"),
        Index("ix_ledger_members_partner_status", "partner_id", "status"),
        Index("ix_ledger_members_identity", "birth_date", "id_value"),
        Index("ix_ledger_members_identity_name", "birth_date", func.upper(text("last_name"))),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    member_key: Mapped[str] = mapped_column(String(120))
    subscriber_number: Mapped[str] = mapped_column(String(80), default="")
    policy_key: Mapped[str] = mapped_column(String(120), default="")
    subscriber: Mapped[bool] = mapped_column(Boolean)
    relationship_code: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(16))  # active | terminated
    last_name: Mapped[str] = mapped_column(String(80), default="")
    first_name: Mapped[str] = mapped_column(String(80), default="")
    middle_name: Mapped[str] = mapped_column(String(80), default="")
    id_qualifier: Mapped[str] = mapped_column(String(2), default="")
    id_value: Mapped[str] = mapped_column(String(80), default="")  # NM109, e.g. an SSN
    birth_date: Mapped[dt.date | None] = mapped_column(Date, default=None)
    gender: Mapped[str] = mapped_column(String(1), default="")
    residence: Mapped[str] = mapped_column(Text, default="")  # JSON Address
    mailing: Mapped[str] = mapped_column(Text, default="")  # JSON Address
    contact: Mapped[str] = mapped_column(Text, default="")  # JSON {qualifier: number}
    reporting: Mapped[str] = mapped_column(Text, default="")  # JSON {2750 name: value}
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_event_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # The employer group its last applied event was sent for: REF*38, else N1*P5 N104 (0021).
    sponsor_group: Mapped[str] = mapped_column(String(80), default="", server_default="")

    coverages: Mapped[list[LedgerCoverage]] = relationship(
        order_by="LedgerCoverage.id",
        lazy="selectin",
        back_populates="member",
        cascade="all, delete-orphan",
    )


class LedgerCoverage(Base):
    """One enrollment of a member: a policy (REF*1L), an insurance line (HD03) and a plan year,
    its lifecycle state and dates (`gateway.enrollment.lifecycle`), and — for the terminal and
    the dashboard — the terms of its latest coverage period. Plan years coexist, and so do
    stints of one plan year: an enrollment again after a termination (a rehire, COBRA after
    a gap) is stint 1, 2, … (migration 0020)."""

    __tablename__ = "ledger_coverages"
    __table_args__ = (
        UniqueConstraint(
            "member_id",
            "insurance_line",
            "policy_number",
            "plan_year",
            "stint",
            name="uq_ledger_coverages_enrollment",
        ),
        Index("ix_ledger_coverages_policy_number", "policy_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("ledger_members.id", ondelete="CASCADE"))
    insurance_line: Mapped[str] = mapped_column(String(3))
    plan_year: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stint: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    plan_id: Mapped[str] = mapped_column(String(80), default="")  # REF*CE, else HD04
    policy_number: Mapped[str] = mapped_column(String(80), default="")  # REF*1L
    coverage_level: Mapped[str] = mapped_column(String(3), default="")
    benefit_begin: Mapped[dt.date | None] = mapped_column(Date, default=None)
    benefit_end: Mapped[dt.date | None] = mapped_column(Date, default=None)
    # The end it has while in force, restored by a reinstatement (migration 0018).
    scheduled_end: Mapped[dt.date | None] = mapped_column(Date, default=None)
    status: Mapped[str] = mapped_column(String(16))  # lifecycle.State
    effectuated: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    paid_through: Mapped[dt.date | None] = mapped_column(Date, default=None)  # DTP*543
    # 2750 REF02 values (AN 1/50), amounts as decimals (lifecycle): never cut (migration 0015)
    premium: Mapped[str] = mapped_column(String(50), default="")  # 2750 PRE AMT 1
    aptc: Mapped[str] = mapped_column(String(50), default="")  # 2750 APTC AMT
    csr_amount: Mapped[str] = mapped_column(String(50), default="", server_default="")
    rating_area: Mapped[str] = mapped_column(String(50), default="", server_default="")
    updated_event_id: Mapped[int | None] = mapped_column(Integer, default=None)

    member: Mapped[LedgerMember] = relationship(back_populates="coverages")
    periods: Mapped[list[LedgerPeriod]] = relationship(
        order_by="LedgerPeriod.begin",
        lazy="selectin",
        back_populates="coverage",
        cascade="all, delete-orphan",
    )


class LedgerPeriod(Base):
    """The terms of an enrollment in force from `begin` until the next period begins (or the
    enrollment ends): a change effective on a date closes one period and opens the next."""

    __tablename__ = "ledger_periods"
    __table_args__ = (UniqueConstraint("coverage_id", "begin"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    coverage_id: Mapped[int] = mapped_column(ForeignKey("ledger_coverages.id", ondelete="CASCADE"))
    begin: Mapped[dt.date] = mapped_column(Date)
    plan_id: Mapped[str] = mapped_column(String(80), default="")
    coverage_level: Mapped[str] = mapped_column(String(3), default="")
    premium: Mapped[str] = mapped_column(String(50), default="")  # as ledger_coverages'
    aptc: Mapped[str] = mapped_column(String(50), default="")
    csr_amount: Mapped[str] = mapped_column(String(50), default="")
    rating_area: Mapped[str] = mapped_column(String(50), default="")
    event_id: Mapped[int | None] = mapped_column(Integer, default=None)  # the last to set it
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    coverage: Mapped[LedgerCoverage] = relationship(back_populates="periods")


class MemberOutcome(enum.StrEnum):
    APPLIED = "applied"  # the ledger changed (warnings, if any, are findings)
    REJECTED = "rejected"  # a business rule rejected it; the ledger did not change
    AUDITED = "audited"  # part of an audit/replace file: compared, not applied
    NOT_APPLIED = "not_applied"  # stopped at the gate (`note` says why): validated, never applied
    WOULD_APPLY = "would_apply"  # a dry run (onboarding test data): the rules would apply it
    WOULD_REJECT = "would_reject"  # a dry run: the rules would reject it


class MemberEventRow(Base):
    """The append-only history: every member of every accepted 834 set, with where it came from
    and what became of it. `payload` is the extracted MemberEvent as JSON (PHI)."""

    __tablename__ = "member_events"
    __table_args__ = (
        UniqueConstraint("receipt_id", "envelope_seq", "group_seq", "set_seq", "segment_position"),
        Index("ix_member_events_partner_member", "partner_id", "member_key"),
        Index("ix_member_events_receipt_seq", "receipt_id", "seq"),
        Index("ix_member_events_receipt_member", "receipt_id", "member_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # order in the file
    envelope_seq: Mapped[int] = mapped_column(Integer)
    group_seq: Mapped[int] = mapped_column(Integer)
    set_seq: Mapped[int] = mapped_column(Integer)
    isa13: Mapped[str] = mapped_column(String(16))
    gs06: Mapped[str] = mapped_column(String(16))
    st02: Mapped[str] = mapped_column(String(16))
    segment_position: Mapped[int] = mapped_column(Integer)
    member_key: Mapped[str] = mapped_column(String(120))
    subscriber_number: Mapped[str] = mapped_column(String(80), default="")
    policy_key: Mapped[str] = mapped_column(String(120), default="")
    subscriber: Mapped[bool] = mapped_column(Boolean)
    relationship_code: Mapped[str] = mapped_column(String(2))
    maintenance_type: Mapped[str] = mapped_column(String(3))
    maintenance_reason: Mapped[str] = mapped_column(String(3))
    outcome: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(200), default="", server_default="")  # gate reason
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_members.id", ondelete="SET NULL"), default=None, index=True
    )
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class BusinessFinding(Base):
    """A business rule's finding on one member (or on a whole set: QTY totals)."""

    __tablename__ = "business_findings"
    __table_args__ = (
        Index("ix_business_findings_receipt", "receipt_id", "id"),
        Index("ix_business_findings_rule", "rule", "severity"),
        Index("ix_business_findings_rule_id", "rule", "id"),
        Index("ix_business_findings_partner_id", "partner_id", "id"),
        Index("ix_business_findings_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id", ondelete="CASCADE"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("member_events.id", ondelete="CASCADE"), default=None, index=True
    )
    envelope_seq: Mapped[int] = mapped_column(Integer)
    group_seq: Mapped[int] = mapped_column(Integer)
    set_seq: Mapped[int] = mapped_column(Integer)
    st02: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str] = mapped_column(String(40))
    snip: Mapped[int] = mapped_column(Integer)
    severity: Mapped[str] = mapped_column(String(8))  # reject | warn
    message: Mapped[str] = mapped_column(Text)  # may quote member data (PHI): never logged
    segment_id: Mapped[str | None] = mapped_column(String(8), default=None)
    segment_position: Mapped[int | None] = mapped_column(Integer, default=None)
    element_position: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A dry run's finding (onboarding test data): shown apart, never in production figures.
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # For the insurer's operators only (e.g. which other sender enrolled the same person):
    # never in the partner API or the 824, which quote `message`.
    operator_note: Mapped[str] = mapped_column(Text, default="", server_default="")


class CoreDelivery(Base):
    """Transactional outbox of applied member events for the insurer's core system. Written in
    the same transaction as the ledger change; the idempotency key is stable across retries,
    restarts and reprocessing, so redelivery is harmless."""

    __tablename__ = "core_outbox"
    __table_args__ = (
        Index("ix_core_outbox_due", "delivered_at", "next_attempt_at"),
        Index("uq_core_outbox_partner_seq", "partner_id", "partner_seq", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("member_events.id", ondelete="CASCADE"), unique=True
    )
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    # 1, 2, 3, … per partner, with no gap, in ledger order (the payload's `partner_seq`): a
    # core system sees a missing event. NULL for events written before migration 0024.
    partner_seq: Mapped[int | None] = mapped_column(BigInteger, default=None)
    payload: Mapped[str] = mapped_column(Text)  # JSON (PHI)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # An event the core refused for good, moved past by an operator (`edi834 core skip`):
    # delivered_at is set too, so the queue goes on; the core never got it from us.
    skipped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    skipped_by: Mapped[str | None] = mapped_column(String(64), default=None)
    skip_reason: Mapped[str | None] = mapped_column(Text, default=None)


class Reconciliation(Base):
    """An audit (BGN08 4 / INS03 030) or replace (BGN08 RX) file compared with the ledger."""

    __tablename__ = "reconciliations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_id: Mapped[str] = mapped_column(
        ForeignKey("receipts.id", ondelete="CASCADE"), index=True
    )
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    members_in_file: Mapped[int] = mapped_column(Integer, default=0)
    members_matched: Mapped[int] = mapped_column(Integer, default=0)
    missing_in_ledger: Mapped[int] = mapped_column(Integer, default=0)
    missing_in_file: Mapped[int] = mapped_column(Integer, default=0)
    mismatches: Mapped[int] = mapped_column(Integer, default=0)


class ReconciliationItem(Base):
    __tablename__ = "reconciliation_items"
    __table_args__ = (Index("ix_reconciliation_items_rec_seq", "reconciliation_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reconciliation_id: Mapped[int] = mapped_column(
        ForeignKey("reconciliations.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))  # missing_in_ledger | missing_in_file | mismatch
    member_key: Mapped[str] = mapped_column(String(120))
    field: Mapped[str] = mapped_column(String(40), default="")
    file_value: Mapped[str] = mapped_column(Text, default="")  # PHI
    ledger_value: Mapped[str] = mapped_column(Text, default="")  # PHI
    segment_position: Mapped[int | None] = mapped_column(Integer, default=None)
    st02: Mapped[str] = mapped_column(String(16), default="")
