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
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
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
    __table_args__ = (UniqueConstraint("isa_qualifier", "isa_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    isa_qualifier: Mapped[str] = mapped_column(String(2))
    isa_id: Mapped[str] = mapped_column(String(15))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    sftp_keys: Mapped[str] = mapped_column(Text, default="")  # OpenSSH public keys, one a line
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    webhook_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    webhook_secret: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Receipt(Base):
    __tablename__ = "receipts"
    __table_args__ = (
        # Identical bytes from the same partner are one receipt (NULL for partial uploads).
        UniqueConstraint("partner_id", "dedup_sha256"),
        Index("ix_receipts_status_lease", "status", "lease_expires_at"),
        Index("ix_receipts_partner_received", "partner_id", "received_at"),
        Index("ix_receipts_received", "received_at"),
        Index("ix_receipts_outcome_received", "outcome", "received_at"),
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

    partner: Mapped[Partner] = relationship(lazy="joined")
    envelopes: Mapped[list[Envelope]] = relationship(
        back_populates="receipt", order_by="Envelope.seq", lazy="selectin"
    )


class Envelope(Base):
    """One ISA…IEA interchange inside a received file."""

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

    transaction_sets: Mapped[list[TransactionSet]] = relationship(
        order_by="TransactionSet.seq", lazy="selectin"
    )


class TransactionSet(Base):
    __tablename__ = "transaction_sets"
    __table_args__ = (Index("ix_transaction_sets_st02", "st02"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    receipt_id: Mapped[str] = mapped_column(
        ForeignKey("receipts.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    st01: Mapped[str] = mapped_column(String(8))
    st02: Mapped[str] = mapped_column(String(16))
    st03: Mapped[str] = mapped_column(String(40))
    ack_code: Mapped[str] = mapped_column(String(1))
    error_codes: Mapped[str] = mapped_column(String(64), default="")  # IK502 codes, comma-separated
    member_count: Mapped[int] = mapped_column(Integer)
    segment_count: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[bool] = mapped_column(Boolean)
    findings_truncated: Mapped[bool] = mapped_column(Boolean, default=False)


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


class Ack(Base):
    """An acknowledgement we sent: TA1, 999, or a rejection notice for an unusable file."""

    __tablename__ = "acks"
    __table_args__ = (Index("ix_acks_undelivered", "delivered_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_id: Mapped[str] = mapped_column(
        ForeignKey("receipts.id", ondelete="CASCADE"), index=True
    )
    envelope_id: Mapped[int | None] = mapped_column(
        ForeignKey("envelopes.id", ondelete="CASCADE"), default=None
    )
    kind: Mapped[str] = mapped_column(String(16))  # ta1 | 999 | rejection
    control_number: Mapped[int | None] = mapped_column(BigInteger, default=None)
    filename: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)


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
