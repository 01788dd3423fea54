"""Every query the gateway runs. Repositories never commit: the caller's unit of work does."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, lazyload
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from gateway.db.base import UTCDateTime, utcnow
from gateway.db.models import (
    COUNT_COLUMNS,
    DELIVERED_KINDS,
    Ack,
    AuditEntry,
    Channel,
    Counter,
    Finding,
    Group,
    IdempotencyKey,
    Interchange,
    InterchangeKey,
    Partner,
    Receipt,
    ReceiptEvent,
    Status,
    TransactionSet,
    WebhookDelivery,
    new_id,
)
from gateway.metrics import LEASE_TAKEOVERS
from validators.setlist import SETS_LISTED

T = TypeVar("T", bound=tuple[Any, ...])
CONTROL_NUMBER = "control_number"
REPROCESS_REQUESTED = "reprocess_requested"  # a receipt event: an operator queued it again
PURGED = "purged"  # a receipt event: its member data removed (gateway.services.retention)
MAX_CONTROL_NUMBER = 999_999_999


def hash_api_key(key: str) -> str:
    # API keys are 256-bit random tokens: a fast hash is the right tool (no brute force possible).
    return hashlib.sha256(key.encode()).hexdigest()


# --- partners -------------------------------------------------------------------------------


def key_owner(session: Session, key_hash: str) -> tuple[int, str] | None:
    """The id and name of the enabled partner whose API key hashes to `key_hash` (two columns,
    not the row: the partner API's authentication, issue 19)."""
    row = session.execute(
        select(Partner.id, Partner.name).where(Partner.api_key_hash == key_hash, Partner.enabled)
    ).first()
    if row is None:  # a rotated key kept for a while (rare: asked only when the first misses)
        row = session.execute(
            select(Partner.id, Partner.name).where(
                Partner.previous_api_key_hash == key_hash,
                Partner.previous_api_key_until > utcnow(),
                Partner.enabled,
            )
        ).first()
    return (row[0], row[1]) if row is not None else None


def partner_by_name(session: Session, name: str) -> Partner | None:
    return session.scalar(select(Partner).where(Partner.name == name))


def partner_by_isa(session: Session, qualifier: str, isa_id: str) -> Partner | None:
    return session.scalar(
        select(Partner).where(Partner.isa_qualifier == qualifier, Partner.isa_id == isa_id)
    )


def partner_by_id(session: Session, partner_id: int) -> Partner | None:
    return session.get(Partner, partner_id)


def list_partners(session: Session) -> Sequence[Partner]:
    return session.scalars(select(Partner).order_by(Partner.name)).all()


def enabled_sftp_keys(session: Session) -> list[tuple[str, int, str]]:
    """(name, id, stored SFTP key lines) of every enabled partner that has keys."""
    rows = session.execute(
        select(Partner.name, Partner.id, Partner.sftp_keys).where(
            Partner.enabled.is_(True), Partner.sftp_keys != ""
        )
    )
    return [(name, pid, keys) for name, pid, keys in rows]


# --- receipts -------------------------------------------------------------------------------


def add_event(session: Session, receipt_id: str, event: str, detail: str | None = None) -> None:
    session.add(ReceiptEvent(receipt_id=receipt_id, event=event, detail=detail))


def find_duplicate_receipt(session: Session, partner_id: int, sha256: str) -> Receipt | None:
    return session.scalar(
        select(Receipt).where(Receipt.partner_id == partner_id, Receipt.dedup_sha256 == sha256)
    )


# The intake's statements, built once (SQLite's, PostgreSQL's): a request passes its values.
_RECEIPTS = cast(Table, Receipt.__table__)
_INSERT_RECEIPT = {
    dialect: insert_(_RECEIPTS)
    .on_conflict_do_nothing(index_elements=["partner_id", "dedup_sha256"])
    .returning(*_RECEIPTS.columns)
    for dialect, insert_ in (("sqlite", sqlite_insert), ("postgresql", pg_insert))
}
_INSERT_EVENT = insert(cast(Table, ReceiptEvent.__table__))


def insert_events(session: Session, events: Sequence[tuple[str, str, str | None]]) -> None:
    """(receipt id, event, detail) rows as add_event adds them, in one Core INSERT: for paths
    that write no ORM objects (issue 19)."""
    if events:
        session.connection().execute(
            _INSERT_EVENT, [{"receipt_id": r, "event": e, "detail": d} for r, e, d in events]
        )


def insert_receipt(session: Session, receipt: Receipt) -> tuple[Receipt, bool]:
    """Insert, or return the existing receipt for the same bytes from the same partner.
    The unique constraint decides, under concurrency too: one INSERT … ON CONFLICT
    (partner_id, dedup_sha256) DO NOTHING RETURNING (a concurrent twin waits for the first
    one's commit, then inserts nothing). No look-up first (a resend is rare), no savepoint and
    no ORM flush: Core, on the intake's hot path (issues 6 and 19). `receipt` is a transient row
    whose set attributes are inserted; it comes back as the database wrote it."""
    values = {c.key: v for c in _RECEIPTS.columns if (v := getattr(receipt, c.key)) is not None}
    row = session.execute(_INSERT_RECEIPT[session.get_bind().dialect.name], values).first()
    if row is None:
        existing = find_duplicate_receipt(session, receipt.partner_id, receipt.dedup_sha256 or "")
        if existing is None:
            raise RuntimeError("a receipt conflicted with one that is not there")
        return existing, False
    for key, value in row._mapping.items():
        setattr(receipt, key, value)
    session.execute(
        _INSERT_EVENT,
        {
            "receipt_id": receipt.id,
            "event": "received",
            "detail": f"{receipt.channel} {receipt.size} bytes",
        },
    )
    return receipt, True


@dataclass(frozen=True, slots=True)
class ReceiptRef:
    """A receipt as the intake answers it (not an ORM row: issue 19)."""

    id: str
    sha256: str
    status: str


# The intake's one statement (issue 19): the receipt and its 'received' event. Every column with
# a Python default is given (a statement inside a CTE gets no Core defaults).
_RECEIVED_COLUMNS = (
    "id",
    "partner_id",
    "channel",
    "filename",
    "sha256",
    "dedup_sha256",
    "size",
    "blob_path",
    "status",
    "received_at",
)
_RECEIPT_DEFAULTS = {
    c.key: c.default.arg
    for c in _RECEIPTS.columns
    if isinstance(c.default, ScalarElementColumnDefault) and c.key not in _RECEIVED_COLUMNS
}
_EVENTS = cast(Table, ReceiptEvent.__table__)


def _received_insert(insert_: Callable[[Table], Any]) -> Any:
    return (
        insert_(_RECEIPTS)
        .values({**{k: bindparam(k) for k in _RECEIVED_COLUMNS}, **_RECEIPT_DEFAULTS})
        .on_conflict_do_nothing(index_elements=["partner_id", "dedup_sha256"])
        .returning(_RECEIPTS.c.id, _RECEIPTS.c.status)
    )


WORK_CHANNEL = "edi834_received"
"""PostgreSQL: the channel a new receipt is announced on (NOTIFY, sent when it commits), so
the workers LISTENing on it wake at once instead of at their next poll."""


def _receive_postgresql() -> Select[Any]:
    """WITH new AS (INSERT receipt … ON CONFLICT DO NOTHING RETURNING), event AS (INSERT its
    event FROM new) SELECT FROM new, with pg_notify(WORK_CHANNEL) for the new row: one
    statement, hence one round trip and, on a connection in autocommit, its own transaction."""
    new = _received_insert(pg_insert).cte("new")
    event = insert(_EVENTS).from_select(
        ["receipt_id", "at", "event", "detail"],
        select(
            new.c.id,
            bindparam("received_at", type_=_RECEIPTS.c.received_at.type),
            literal("received"),
            bindparam("detail"),
        ),
    )
    return select(new.c.id, new.c.status, func.pg_notify(WORK_CHANNEL, "")).add_cte(
        event.cte("event")
    )


_RECEIVE_POSTGRESQL = _receive_postgresql()
_RECEIVE_SQLITE = _received_insert(sqlite_insert)
_RECEIVED_EVENT = insert(_EVENTS)
_DUPLICATE_OF = select(_RECEIPTS.c.id, _RECEIPTS.c.status).where(
    _RECEIPTS.c.partner_id == bindparam("partner_id"),
    _RECEIPTS.c.dedup_sha256 == bindparam("dedup_sha256"),
)


def receive(
    conn: Connection,
    *,
    partner_id: int,
    channel: str,
    filename: str | None,
    sha256: str,
    size: int,
    blob_path: str,
    partial: bool,
    now: dt.datetime,
) -> tuple[ReceiptRef, bool]:
    """Insert a stored blob's receipt and its 'received' event, or return the partner's
    existing receipt for the same bytes (created False: the unique constraint decides, under
    concurrency too). A partial upload is never a duplicate. PostgreSQL: one statement (on a
    connection in autocommit it is its own transaction: one round trip); SQLite: two, in the
    caller's transaction. Core, no Session: the intake's hot path (issue 19)."""
    values: dict[str, object] = {
        "id": new_id(),
        "partner_id": partner_id,
        "channel": channel,
        "filename": filename,
        "sha256": sha256,
        "dedup_sha256": None if partial else sha256,
        "size": size,
        "blob_path": blob_path,
        "status": Status.PARTIAL if partial else Status.RECEIVED,
        "received_at": now,
    }
    detail = f"{channel} {size} bytes"
    if conn.dialect.name == "postgresql":
        rows = _rows(conn, _RECEIVE_POSTGRESQL, {**values, "detail": detail})
        row = rows[0] if rows else None
    else:
        row = conn.execute(_RECEIVE_SQLITE, values).first()
        if row is not None:
            event = {"receipt_id": row[0], "at": now, "event": "received", "detail": detail}
            conn.execute(_RECEIVED_EVENT, event)
    if row is not None:
        return ReceiptRef(row[0], sha256, row[1]), True
    existing = conn.execute(
        _DUPLICATE_OF, {"partner_id": partner_id, "dedup_sha256": values["dedup_sha256"]}
    ).first()
    if existing is None:
        raise RuntimeError("a receipt conflicted with one that is not there")
    return ReceiptRef(existing[0], sha256, existing[1]), False


def idempotency_key(
    session: Session, partner_id: int, key: str, since: dt.datetime
) -> IdempotencyKey | None:
    """The partner's key, if used at or after `since` (older uses are forgotten)."""
    row = session.get(IdempotencyKey, (partner_id, key))
    return row if row is not None and row.created_at >= since else None


def remember_idempotency_key(
    session: Session,
    *,
    partner_id: int,
    key: str,
    sha256: str,
    receipt_id: str,
    now: dt.datetime,
    since: dt.datetime,
) -> IdempotencyKey:
    """Record the key for these bytes' receipt; a use before `since` is forgotten and replaced,
    a later one stays as it is (the window runs from the first use). When another request
    recorded it first, under concurrency, its row is returned: the caller compares the bytes."""
    row = session.get(IdempotencyKey, (partner_id, key))
    if row is not None:
        if row.created_at < since:
            row.sha256, row.receipt_id, row.created_at = sha256, receipt_id, now
        return row
    row = IdempotencyKey(
        partner_id=partner_id, key=key, sha256=sha256, receipt_id=receipt_id, created_at=now
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        existing = session.get(IdempotencyKey, (partner_id, key), populate_existing=True)
        if existing is None:
            raise
        return existing
    return row


def sftp_files_shown(
    session: Session, partner_id: int, since: dt.datetime
) -> Sequence[tuple[str, int, dt.datetime]]:
    """(filename, size, received_at) of a partner's SFTP receipts that inbound/ still shows:
    those not processed yet, and those received at or after `since`; oldest first."""
    columns = (Receipt.filename, Receipt.size, Receipt.received_at)
    mine = (Receipt.partner_id == partner_id, Receipt.channel == Channel.SFTP)
    waiting = select(*columns).where(
        *mine, Receipt.status.in_((Status.RECEIVED, Status.PROCESSING))
    )
    recent = select(*columns).where(
        *mine, Receipt.received_at >= since, Receipt.status != Status.PARTIAL
    )
    rows = session.execute(waiting.union(recent)).all()
    return sorted(
        ((name, size, at) for name, size, at in rows if name is not None), key=lambda r: r[2]
    )


# The status API's reads (issue 19): Core statements built once, run on a Connection (no
# Session, no ORM identity map or instances); each request binds its values and reuses the
# statement's compiled form. Rows come back as plain tuples for the API to encode.
SUMMARY_COLUMNS = (
    Receipt.id,
    Receipt.status,
    Receipt.outcome,
    Receipt.channel,
    Receipt.filename,
    Receipt.sha256,
    Receipt.size,
    Receipt.received_at,
    Receipt.processed_at,
    *(getattr(Receipt, name) for name in COUNT_COLUMNS),
)
"""A status summary's receipt columns, in this order (the API's encoders rely on it)."""
DETAIL_COLUMNS = (
    *SUMMARY_COLUMNS,
    Receipt.ledger_status,
    Receipt.members_applied,
    Receipt.members_business_rejected,
)
ENVELOPE_COLUMNS = (
    Interchange.id,
    Interchange.isa13,
    Interchange.sender_qualifier,
    Interchange.sender_id,
    Interchange.receiver_qualifier,
    Interchange.receiver_id,
    Interchange.isa09,
    Interchange.isa10,
    Interchange.usage,
    Interchange.ta1_code,
    Interchange.ta1_note,
    Interchange.outcome,
)
GROUP_COLUMNS = (
    Group.id,
    Group.gs01,
    Group.gs06,
    Group.gs08,
    Group.ack_code,
    Group.sets_included,
    Group.sets_received,
    Group.sets_accepted,
)
SET_COLUMNS = (
    TransactionSet.id,
    TransactionSet.st01,
    TransactionSet.st02,
    TransactionSet.ack_code,
    TransactionSet.error_codes,
    TransactionSet.member_count,
    TransactionSet.segment_count,
    TransactionSet.findings_omitted,
    TransactionSet.gate,
    TransactionSet.gate_reason,
)
FINDING_COLUMNS = (
    Finding.envelope_id,
    Finding.group_id,
    Finding.set_id,
    Finding.level,
    Finding.family,
    Finding.code,
    Finding.message,
    Finding.severity,
    Finding.segment_id,
    Finding.segment_position,
    Finding.loop_id,
    Finding.element_position,
    Finding.component_position,
    Finding.repetition_position,
    Finding.element_ref,
    Finding.bad_value,
    Finding.business_unit,
)
_RECEIPT_TREE = (
    select(*DETAIL_COLUMNS, *ENVELOPE_COLUMNS, *GROUP_COLUMNS, *SET_COLUMNS)
    .select_from(Receipt)
    .outerjoin(Interchange, Interchange.receipt_id == Receipt.id)
    .outerjoin(Group, Group.envelope_id == Interchange.id)
    .outerjoin(
        TransactionSet,
        (TransactionSet.group_id == Group.id)
        & (TransactionSet.seq < literal_column(str(SETS_LISTED))),
    )
    .where(Receipt.id == bindparam("receipt_id"), Receipt.partner_id == bindparam("partner_id"))
    .order_by(Interchange.seq, Group.seq, TransactionSet.seq)
)
_TREE_SET_ID = len(DETAIL_COLUMNS) + len(ENVELOPE_COLUMNS) + len(GROUP_COLUMNS)
_FINDING_SET_ID = 2  # FINDING_COLUMNS
_FINDINGS_PAGE = (
    select(*FINDING_COLUMNS)
    .where(Finding.receipt_id == bindparam("receipt_id"))
    .order_by(Finding.seq)
    .limit(bindparam("limit"))
)
_COUNT_FINDINGS = (
    select(func.count()).select_from(Finding).where(Finding.receipt_id == bindparam("receipt_id"))
)


@dataclass(frozen=True, slots=True)
class ReceiptStatus:
    """What the status read shows, as rows: `tree` is the receipt joined with its envelopes,
    groups and transaction sets (DETAIL_COLUMNS, then ENVELOPE_, GROUP_ and SET_COLUMNS, None
    where a level is empty; ordered by each level's seq), `findings` its first findings
    (FINDING_COLUMNS, by seq) and `findings_total` how many there are in all."""

    tree: Sequence[Sequence[Any]]
    findings: Sequence[Sequence[Any]]
    findings_total: int
    # ST02 of the sets the findings are on that the tree does not list (past SETS_LISTED).
    unlisted_st02: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    sql: str
    defaults: dict[str, Any]  # the statement's own bound values (inlined defaults)
    bind_processors: dict[str, Callable[[Any], Any]]
    utc_columns: tuple[int, ...]  # UTCDateTime result columns: their processing, done here


# By the statement itself (held, so no other can take its id): module-level statements only.
_DRIVER_STATEMENTS: dict[Any, _DriverStatement | None] = {}


def _driver_statement(conn: Connection, stmt: Any) -> _DriverStatement | None:
    """The statement compiled once for the driver, or None when it is not a plain one (its
    bind parameters expanded at execution)."""
    if stmt in _DRIVER_STATEMENTS:
        return _DRIVER_STATEMENTS[stmt]
    compiled = stmt.compile(dialect=conn.dialect)
    sql = str(compiled)
    found = None
    if "POSTCOMPILE" not in sql and not compiled.literal_execute_params:
        processors = {
            name: processor
            for bind, name in compiled.bind_names.items()
            if (processor := bind.type.bind_processor(conn.dialect)) is not None
        }
        found = _DriverStatement(
            sql,
            {name: b.effective_value for b, name in compiled.bind_names.items() if not b.required},
            processors,
            tuple(
                i
                for i, column in enumerate(stmt.selected_columns)
                if isinstance(column.type, UTCDateTime)
            ),
        )
    _DRIVER_STATEMENTS[stmt] = found
    return found


def _rows(conn: Connection, stmt: Any, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
    """The rows of a prebuilt statement (a select, or one that returns rows) with named bind
    parameters, as Core returns them (times as UTCDateTime makes them). On PostgreSQL, on a
    connection in autocommit (the reads' and single_write's), it runs on the driver's cursor,
    compiled once: Core's execution and result set-up (and psycopg's column descriptions,
    which Core asks for) cost more than half of the status read's database work — 560 against
    200-250 us of CPU a read — and 150 us of a received file's 400, measured (issue 19).
    Should the driver fail, the statement is run again through Core, which reports the error
    and invalidates a dead connection's pool as for any statement (in autocommit the failed
    statement left no transaction behind; a write that did reach the database meets its own
    row's unique constraint, as a retry would)."""
    if conn.dialect.name == "postgresql" and conn.connection.dbapi_connection.autocommit:  # type: ignore[union-attr]
        compiled = _driver_statement(conn, stmt)
        if compiled is not None:
            values = {**compiled.defaults, **params}
            for name, process in compiled.bind_processors.items():
                values[name] = process(values[name])
            try:
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(compiled.sql, values)
                    rows = list(cursor.fetchall())
                finally:
                    cursor.close()
            except conn.dialect.loaded_dbapi.Error:
                pass  # Core's turn: the same error, reported and handled as Core does
            else:
                if compiled.utc_columns and rows:
                    rows = [_in_utc(row, compiled.utc_columns) for row in rows]
                return rows
    return list(conn.execute(stmt, params).all())


def _in_utc(row: tuple[Any, ...], columns: tuple[int, ...]) -> tuple[Any, ...]:
    values = list(row)
    for i in columns:
        moment = values[i]
        if isinstance(moment, dt.datetime):
            values[i] = moment.astimezone(dt.UTC)
    return tuple(values)


def receipt_status(
    conn: Connection, receipt_id: str, partner_id: int, max_findings: int = 1000
) -> ReceiptStatus | None:
    """A partner's receipt, its tree and its first `max_findings` findings: two queries, and a
    COUNT only when there are more findings than that (the status API's hot path, issues 6 and
    19)."""
    tree = _rows(conn, _RECEIPT_TREE, {"receipt_id": receipt_id, "partner_id": partner_id})
    if not tree:
        return None
    findings = _rows(conn, _FINDINGS_PAGE, {"receipt_id": receipt_id, "limit": max_findings})
    total = (
        len(findings)
        if len(findings) < max_findings
        else conn.scalar(_COUNT_FINDINGS, {"receipt_id": receipt_id}) or 0
    )
    unlisted = {f[_FINDING_SET_ID] for f in findings} - {row[_TREE_SET_ID] for row in tree}
    unlisted.discard(None)
    st02: dict[int, str] = {}
    if unlisted:  # findings on sets past the first SETS_LISTED of their group
        query = select(TransactionSet.id, TransactionSet.st02)
        rows = conn.execute(query.where(TransactionSet.id.in_(sorted(unlisted))))
        st02 = {row[0]: row[1] for row in rows}
    return ReceiptStatus(tree, findings, total, st02)


def receipt_row(session: Session, receipt_id: str, partner_id: int) -> Receipt | None:
    """A partner's receipt, the row alone: not its partner nor its envelope tree."""
    return session.scalar(
        select(Receipt)
        .where(Receipt.id == receipt_id, Receipt.partner_id == partner_id)
        .options(lazyload(Receipt.partner), lazyload(Receipt.envelopes))
    )


def get_receipt(session: Session, receipt_id: str, partner_id: int | None = None) -> Receipt | None:
    stmt = select(Receipt).where(Receipt.id == receipt_id)
    if partner_id is not None:
        stmt = stmt.where(Receipt.partner_id == partner_id)
    return session.scalar(stmt)


def processing_receipt(session: Session, receipt_id: str) -> Receipt | None:
    """A receipt and its partner (joined: one query, not two), as the worker stores a file's
    results: not its envelope tree (loaded with every Receipt otherwise: a query for a file
    that has none yet)."""
    return session.scalar(
        select(Receipt)
        .where(Receipt.id == receipt_id)
        .options(lazyload(Receipt.envelopes), joinedload(Receipt.partner))
    )


@dataclass(frozen=True, slots=True)
class ReceiptFilter:
    partner_id: int | None = None
    status: str | None = None
    outcome: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    isa13: str | None = None
    gs06: str | None = None


def _filtered(f: ReceiptFilter, stmt: Select[T]) -> Select[T]:
    if f.partner_id is not None:
        stmt = stmt.where(Receipt.partner_id == f.partner_id)
    if f.status:
        stmt = stmt.where(Receipt.status == f.status)
    if f.outcome:
        stmt = stmt.where(Receipt.outcome == f.outcome)
    if f.since:
        stmt = stmt.where(Receipt.received_at >= f.since)
    if f.until:
        stmt = stmt.where(Receipt.received_at < f.until)
    return with_control_numbers(stmt, f.isa13, f.gs06)


def like_literal(text: str) -> str:
    """`text` for a LIKE pattern with `escape="\\"`, matched as written: its `%`, `_` and
    backslashes are not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def control_number_forms(value: str) -> list[str]:
    """The ways a control number can be stored, for a search as a person types it: ISA13 is
    always nine digits (`000043303`) and GS06 one to nine, with or without leading zeros, so
    `43303`, `043303` and `000043303` find one another. Anything but digits: as typed."""
    value = value.strip()
    if not value.isdigit() or not value.isascii() or len(value) > 9:
        return [value]
    bare = value.lstrip("0") or "0"
    return [bare.zfill(width) for width in range(len(bare), 10)]


def with_control_numbers(stmt: Select[T], isa13: str | None, gs06: str | None) -> Select[T]:
    """Receipts with an interchange numbered `isa13` and a group numbered `gs06` (either
    as `control_number_forms` reads it)."""
    if isa13:
        stmt = stmt.where(
            Receipt.id.in_(
                select(Interchange.receipt_id).where(
                    Interchange.isa13.in_(control_number_forms(isa13))
                )
            )
        )
    if gs06:
        stmt = stmt.where(
            Receipt.id.in_(
                select(Group.receipt_id).where(Group.gs06.in_(control_number_forms(gs06)))
            )
        )
    return stmt


@dataclass(frozen=True, slots=True)
class ReceiptPage:
    """A page of receipt summaries as rows (SUMMARY_COLUMNS), newest first, and each one's
    envelopes' ISA13s in envelope order."""

    rows: Sequence[Sequence[Any]]
    isa13s: dict[str, list[str]]


def _page_of(filtered: Select[Any], after: bool, limit: Any) -> Select[Any]:
    """The page (a select of SUMMARY_COLUMNS, filtered) after the cursor's (received_at, id)
    when `after`, newest first, joined with its envelopes' ISA13s: one statement, one row per
    envelope (one for a receipt without)."""
    if after:
        at = bindparam("after_at", type_=UTCDateTime)
        filtered = filtered.where(
            or_(
                Receipt.received_at < at,
                and_(Receipt.received_at == at, Receipt.id < bindparam("after_id", type_=String)),
            )
        )
    newest_first = filtered.order_by(Receipt.received_at.desc(), Receipt.id.desc())
    page = newest_first.limit(limit).subquery()
    return (
        select(*page.c, Interchange.isa13)
        .select_from(page)
        .outerjoin(Interchange, Interchange.receipt_id == page.c.id)
        .order_by(page.c.received_at.desc(), page.c.id.desc(), Interchange.seq)
    )


# A partner's page, by (a status filter, a cursor): built once, as the status read's statements
# (the list's usual requests, its fast path's only ones).
_PARTNER_PAGES = {
    (status, after): _page_of(
        select(*SUMMARY_COLUMNS).where(
            Receipt.partner_id == bindparam("partner_id"),
            *([Receipt.status == bindparam("status")] if status else []),
        ),
        after,
        bindparam("limit"),
    )
    for status in (False, True)
    for after in (False, True)
}


def list_receipts(
    conn: Connection,
    f: ReceiptFilter,
    *,
    limit: int,
    after: tuple[dt.datetime, str] | None = None,
) -> ReceiptPage:
    """Newest first; `after` is the (received_at, id) of the last row of the previous page.
    One query, the page joined with its envelopes' ISA13s (issue 19: Core rows, no ORM
    instances); a partner's page with at most a status filter is a statement built once, run
    as the status read's (_rows)."""
    params: dict[str, Any] = {}
    if after is not None:
        params["after_at"], params["after_id"] = after
    if f.partner_id is not None and not (f.outcome or f.since or f.until or f.isa13 or f.gs06):
        stmt = _PARTNER_PAGES[bool(f.status), after is not None]
        params.update(partner_id=f.partner_id, limit=limit)
        if f.status:
            params["status"] = f.status
        joined = _rows(conn, stmt, params)
    else:
        stmt = _page_of(_filtered(f, select(*SUMMARY_COLUMNS)), after is not None, limit)
        joined = conn.execute(stmt, params).all()
    rows: list[Sequence[Any]] = []
    isa13s: dict[str, list[str]] = {}
    for row in joined:
        rid = row[0]
        if rid not in isa13s:
            rows.append(row[:-1])
            isa13s[rid] = []
        if row[-1] is not None:
            isa13s[rid].append(row[-1])
    return ReceiptPage(rows, isa13s)


def listed_sets(session: Session, receipt_id: str) -> dict[int, list[TransactionSet]]:
    """Each group's first SETS_LISTED sets (group id -> sets, by seq): what a page shows."""
    out: dict[int, list[TransactionSet]] = {}
    for t in session.scalars(
        select(TransactionSet)
        .where(TransactionSet.receipt_id == receipt_id, TransactionSet.seq < SETS_LISTED)
        .order_by(TransactionSet.group_id, TransactionSet.seq)
    ):
        out.setdefault(t.group_id, []).append(t)
    return out


def sets_by_id(session: Session, ids: Collection[int]) -> Sequence[TransactionSet]:
    if not ids:
        return []
    return session.scalars(select(TransactionSet).where(TransactionSet.id.in_(list(ids)))).all()


def findings_of(session: Session, receipt_id: str, limit: int | None = None) -> Sequence[Finding]:
    stmt = select(Finding).where(Finding.receipt_id == receipt_id).order_by(Finding.seq)
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).all()


def count_findings(session: Session, receipt_id: str) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Finding).where(Finding.receipt_id == receipt_id)
        )
        or 0
    )


def acks_of(session: Session, receipt_id: str) -> Sequence[Ack]:
    return session.scalars(
        select(Ack).where(Ack.receipt_id == receipt_id, Ack.superseded.is_(False)).order_by(Ack.id)
    ).all()


def ping(conn: Connection) -> None:
    """The database answers (readiness)."""
    conn.execute(text("SELECT 1"))


def oldest_waiting(session: Session) -> dt.datetime | None:
    """When the oldest receipt still waiting for a worker was received (None: none waits)."""
    return session.scalar(
        select(func.min(Receipt.received_at)).where(Receipt.status == Status.RECEIVED)
    )


def queue_depth(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Receipt.status, func.count())
        .where(Receipt.status.in_([Status.RECEIVED, Status.PROCESSING]))
        .group_by(Receipt.status)
    ).all()
    out = {Status.RECEIVED.value: 0, Status.PROCESSING.value: 0}
    out.update({str(status): int(n) for status, n in rows})
    return out


# --- the worker's queue ---------------------------------------------------------------------


def claim_next(
    session: Session, *, worker_id: str, lease_seconds: int, now: dt.datetime | None = None
) -> Receipt | None:
    """Lease the oldest receipt that is waiting, or whose lease has expired (its worker died).
    PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the write lock taken by BEGIN IMMEDIATE."""
    now = now or utcnow()
    due = or_(
        and_(
            Receipt.status == Status.RECEIVED,
            or_(Receipt.lease_expires_at.is_(None), Receipt.lease_expires_at <= now),
        ),
        and_(Receipt.status == Status.PROCESSING, Receipt.lease_expires_at <= now),
    )
    receipt = session.scalar(
        select(Receipt)
        .where(due)
        .order_by(Receipt.received_at, Receipt.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=Receipt)
        .options(lazyload(Receipt.envelopes))  # the worker reads none: one query fewer
    )
    if receipt is None:
        return None
    expired = receipt.status == Status.PROCESSING
    if expired:
        LEASE_TAKEOVERS.labels(stage="validate").inc()
    receipt.status = Status.PROCESSING
    receipt.lease_owner = worker_id
    receipt.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
    receipt.started_at = now
    receipt.attempts += 1
    add_event(
        session,
        receipt.id,
        "claimed",
        f"attempt {receipt.attempts} by {worker_id}" + (" (lease expired)" if expired else ""),
    )
    return receipt


@dataclass(frozen=True, slots=True)
class Claimed:
    """A receipt just leased by claim_next_at_once, with what the worker needs of it and of its
    partner (not an ORM row: issue 19)."""

    id: str
    partner_id: int
    blob_path: str
    filename: str | None
    received_at: dt.datetime
    attempts: int
    error: str | None
    lease_expired: bool  # it was another worker's, whose lease ran out
    partner_name: str
    isa_qualifier: str
    isa_id: str


def _claim_postgresql() -> Select[Any]:
    """claim_next as one statement: WITH next AS (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1),
    claimed AS (UPDATE … FROM next RETURNING …), event AS (INSERT its 'claimed' event) SELECT
    claimed ⋈ partners. The same rows, lease and event as claim_next's."""
    r = _RECEIPTS.c
    now = bindparam("now", type_=r.received_at.type)
    due = or_(
        and_(
            r.status == Status.RECEIVED,
            or_(r.lease_expires_at.is_(None), r.lease_expires_at <= now),
        ),
        and_(r.status == Status.PROCESSING, r.lease_expires_at <= now),
    )
    upcoming = (
        select(r.id, r.status.label("was"))
        .where(due)
        .order_by(r.received_at, r.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .cte("upcoming")
    )
    claimed = (
        update(_RECEIPTS)
        .where(r.id == upcoming.c.id)
        .values(
            status=Status.PROCESSING,
            lease_owner=bindparam("worker_id", type_=String),
            lease_expires_at=bindparam("until", type_=r.received_at.type),
            started_at=now,
            attempts=r.attempts + 1,
        )
        .returning(
            r.id,
            r.partner_id,
            r.blob_path,
            r.filename,
            r.received_at,
            r.attempts,
            r.error,
            upcoming.c.was,
        )
        .cte("claimed")
    )
    expired = case((claimed.c.was == Status.PROCESSING, " (lease expired)"), else_="")
    detail = (
        literal("attempt ")
        + sql_cast(claimed.c.attempts, String)
        + literal(" by ")
        + bindparam("worker_id", type_=String)
        + expired
    )
    event = insert(_EVENTS).from_select(
        ["receipt_id", "at", "event", "detail"],
        select(claimed.c.id, now, literal("claimed"), detail),
    )
    return (
        select(
            *(
                claimed.c[k]
                for k in (
                    "id",
                    "partner_id",
                    "blob_path",
                    "filename",
                    "received_at",
                    "attempts",
                    "error",
                )
            ),
            claimed.c.was == Status.PROCESSING,
            Partner.name,
            Partner.isa_qualifier,
            Partner.isa_id,
        )
        .join_from(claimed, Partner, Partner.id == claimed.c.partner_id)
        .add_cte(event.cte("event"))
    )


_CLAIM_POSTGRESQL = _claim_postgresql()


def claim_next_at_once(
    conn: Connection, *, worker_id: str, lease_seconds: int, now: dt.datetime | None = None
) -> Claimed | None:
    """claim_next on PostgreSQL in one statement, on a connection in autocommit (Gateway.
    single_write): its own transaction, one round trip, instead of BEGIN, the SELECT … FOR
    UPDATE SKIP LOCKED, the UPDATE, the event's INSERT and COMMIT through a Session (issue
    19). The caller decides on a file whose attempts are used up (park it)."""
    now = now or utcnow()
    until = now + dt.timedelta(seconds=lease_seconds)
    rows = _rows(conn, _CLAIM_POSTGRESQL, {"now": now, "until": until, "worker_id": worker_id})
    if not rows:
        return None
    claimed = Claimed(*rows[0])
    if claimed.lease_expired:
        LEASE_TAKEOVERS.labels(stage="validate").inc()
    return claimed


def extend_lease(session: Session, receipt_id: str, worker_id: str, lease_seconds: int) -> bool:
    result = session.execute(
        update(Receipt)
        .where(Receipt.id == receipt_id, Receipt.lease_owner == worker_id)
        .where(Receipt.status == Status.PROCESSING)
        .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_seconds))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(
    session: Session, receipt_id: str, worker_id: str, *, retry_after: float, error: str | None
) -> Receipt | None:
    """Give a claimed receipt back to the queue (shutdown, or a failed attempt to retry)."""
    receipt = session.scalar(
        select(Receipt).where(Receipt.id == receipt_id, Receipt.lease_owner == worker_id)
    )
    if receipt is None or receipt.status != Status.PROCESSING:
        return None
    receipt.status = Status.RECEIVED
    receipt.lease_owner = None
    receipt.lease_expires_at = utcnow() + dt.timedelta(seconds=retry_after)
    if error is not None:
        receipt.error = error
    add_event(session, receipt_id, "released", error)
    return receipt


# An interchange's key, one statement: nothing when that sender's ISA13 is recorded already.
_INSERT_INTERCHANGE_KEY = {
    dialect: insert_(cast(Table, InterchangeKey.__table__))
    .on_conflict_do_nothing(index_elements=["partner_id", "sender_qualifier", "sender_id", "isa13"])
    .returning(InterchangeKey.id)
    for dialect, insert_ in (("sqlite", sqlite_insert), ("postgresql", pg_insert))
}


def register_isa13(session: Session, values: dict[str, object]) -> bool:
    """Record an interchange's key (partner, sender, ISA13, receipt); False when another
    receipt recorded it first. The unique constraint decides, under concurrency too (PostgreSQL
    waits for a concurrent insert of the same key to commit or roll back), in one statement:
    no savepoint around an INSERT that may fail (issue 19: two round trips fewer a file)."""
    stmt = _INSERT_INTERCHANGE_KEY[session.get_bind().dialect.name]
    return session.execute(stmt, values).first() is not None


_ISA13_USED = (
    select(InterchangeKey.id)
    .where(
        InterchangeKey.partner_id == bindparam("partner_id"),
        InterchangeKey.sender_qualifier == bindparam("qualifier"),
        InterchangeKey.sender_id == bindparam("sender"),
        InterchangeKey.isa13 == bindparam("isa13"),
        InterchangeKey.receipt_id != bindparam("receipt_id"),
    )
    .limit(1)
)


def is_isa13_used(
    conn: Connection, partner_id: int, qualifier: str, sender: str, isa13: str, receipt_id: str
) -> bool:
    """Another receipt recorded this interchange key (TA1 025). One prebuilt statement on a
    read connection (the driver's cursor on PostgreSQL): every file asks, and through a
    Session the question cost ~10% of the worker's CPU per small file (issue 19)."""
    params = {
        "partner_id": partner_id,
        "qualifier": qualifier,
        "sender": sender,
        "isa13": isa13,
        "receipt_id": receipt_id,
    }
    return bool(_rows(conn, _ISA13_USED, params))


_NEXT_CONTROL_NUMBERS = text("SELECT nextval('edi834_control_numbers') FROM generate_series(1, :n)")


def take_control_numbers(session: Session, count: int) -> list[int]:
    """`count` control numbers, wrapping after 999999999. PostgreSQL: from a sequence, unique
    across any number of processes without a lock (consecutive unless two callers interleave);
    SQLite: consecutive, under the counter row's lock (one writer at a time anyway)."""
    if count == 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return [
            int(n)
            for n in session.connection().execute(_NEXT_CONTROL_NUMBERS, {"n": count}).scalars()
        ]
    row = session.scalar(select(Counter).where(Counter.name == CONTROL_NUMBER).with_for_update())
    if row is None:
        row = Counter(name=CONTROL_NUMBER, value=0)
        session.add(row)
        session.flush()
    numbers = [(row.value + i) % MAX_CONTROL_NUMBER + 1 for i in range(count)]
    row.value = numbers[-1]
    return numbers


def undelivered_acks(
    session: Session, limit: int = 100, *, skip_partners: Collection[str] = ()
) -> Sequence[tuple[int, str, str, bytes, str]]:
    """(id, receipt id, filename, content, partner name) of the acks waiting to be delivered,
    oldest first, but those of `skip_partners` (names): one query."""
    stmt = (
        select(Ack.id, Ack.receipt_id, Ack.filename, Ack.content, Partner.name)
        .join(Receipt, Receipt.id == Ack.receipt_id)
        .join(Partner, Partner.id == Receipt.partner_id)
        .where(
            Ack.delivered_at.is_(None),
            Ack.superseded.is_(False),
            Ack.kind.in_([k.value for k in DELIVERED_KINDS]),
        )
    )
    if skip_partners:
        stmt = stmt.where(Partner.name.not_in(list(skip_partners)))
    rows = session.execute(stmt.order_by(Ack.id).limit(limit)).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def mark_acks_delivered(session: Session, ack_ids: Sequence[int], now: dt.datetime) -> set[int]:
    """Mark these acks delivered; the ids of those that were not yet (another worker's outbox
    may have delivered one meanwhile): one statement."""
    return set(
        session.scalars(
            update(Ack)
            .where(Ack.id.in_(ack_ids), Ack.delivered_at.is_(None))
            .values(delivered_at=now)
            .returning(Ack.id)
            .execution_options(synchronize_session=False)
        )
    )


def due_webhooks(session: Session, now: dt.datetime, limit: int = 50) -> Sequence[WebhookDelivery]:
    return session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.gave_up.is_(False),
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def stuck_receipts(session: Session) -> Sequence[Receipt]:
    return session.scalars(select(Receipt).where(Receipt.status == Status.PROCESSING)).all()


def reprocess(session: Session, receipt_id: str, operator: str) -> Receipt | None:
    """Queue a processed or failed receipt again. Its findings and envelope rows are replaced by
    the new run; its old acks stay (superseded) in the history; new acks get new numbers. A
    processed file whose ledger stage failed gets that stage again, and keeps its acks."""
    from sqlalchemy import delete

    # Locked: a purge committing meanwhile is seen (its bytes gone), not overwritten.
    receipt = session.get(Receipt, receipt_id, with_for_update={"of": Receipt})
    if receipt is None or receipt.status not in (Status.PROCESSED, Status.FAILED):
        return None
    if receipt.purged_at is not None:  # its bytes are gone (retention)
        return None
    if receipt.status == Status.PROCESSED and receipt.ledger_status == "failed":
        # Validated and answered; only its ledger stage failed: that stage again, from the
        # chunk it reached, under the acks the partner already has (no new 999, no .r2).
        receipt.ledger_status = "pending"
        receipt.ledger_attempts = 0
        receipt.ledger_error = None
        receipt.lease_owner = None
        receipt.lease_expires_at = None
        add_event(session, receipt_id, REPROCESS_REQUESTED, f"by {operator}; the ledger stage")
        return receipt
    # Detach the old acks from the envelope rows first (their FK cascades), then keep them.
    session.execute(
        update(Ack).where(Ack.receipt_id == receipt_id).values(superseded=True, envelope_id=None)
    )
    for model in (Finding, TransactionSet, Group, Interchange, InterchangeKey):
        session.execute(delete(model).where(model.receipt_id == receipt_id))
    previous = receipt.outcome or receipt.status
    receipt.status = Status.RECEIVED
    receipt.outcome = None
    receipt.attempts = 0
    receipt.error = None
    receipt.processed_at = None
    receipt.lease_owner = None
    receipt.lease_expires_at = None
    receipt.unusable_reason = None
    for name in COUNT_COLUMNS:
        setattr(receipt, name, 0)
    add_event(session, receipt_id, REPROCESS_REQUESTED, f"by {operator}; was {previous}")
    return receipt


def history_of(session: Session, receipt_id: str) -> Sequence[ReceiptEvent]:
    return session.scalars(
        select(ReceiptEvent).where(ReceiptEvent.receipt_id == receipt_id).order_by(ReceiptEvent.id)
    ).all()


def all_acks_of(session: Session, receipt_id: str) -> Sequence[Ack]:
    return session.scalars(select(Ack).where(Ack.receipt_id == receipt_id).order_by(Ack.id)).all()


def mark_resolved(
    session: Session, receipt_id: str, operator: str, note: str | None
) -> Receipt | None:
    """An operator has dealt with a problem file: who, when and why, in its history too."""
    receipt = session.get(Receipt, receipt_id)
    if receipt is None:
        return None
    receipt.resolved_at = utcnow()
    receipt.resolved_by = operator
    receipt.resolution_note = note
    add_event(session, receipt_id, "resolved", f"by {operator}: {note or ''}")
    return receipt


def mark_picked_up(session: Session, partner_name: str, filename: str, *, via: str) -> int:
    """The partner fetched this ack file (outbound/ name): the first pick-up is kept."""
    partner_id = select(Partner.id).where(Partner.name == partner_name).scalar_subquery()
    receipts = select(Receipt.id).where(Receipt.partner_id == partner_id)
    result = session.execute(
        update(Ack)
        .where(
            Ack.filename == filename,
            Ack.picked_up_at.is_(None),
            Ack.receipt_id.in_(receipts),
        )
        .values(picked_up_at=utcnow(), picked_up_via=via)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def mark_acks_picked_up(session: Session, ack_ids: Sequence[int], *, via: str) -> None:
    """Acks the partner fetched over its API."""
    if ack_ids:
        session.execute(
            update(Ack)
            .where(Ack.id.in_(list(ack_ids)), Ack.picked_up_at.is_(None))
            .values(picked_up_at=utcnow(), picked_up_via=via)
        )


def reopen(session: Session, receipt_id: str, operator: str) -> Receipt | None:
    """A resolved file is open again (its resolution stays in its history)."""
    receipt = session.get(Receipt, receipt_id)
    if receipt is None or receipt.resolved_at is None:
        return None
    receipt.resolved_at = None
    receipt.resolved_by = None
    receipt.resolution_note = None
    add_event(session, receipt_id, "reopened", f"by {operator}")
    return receipt


def ack_of(session: Session, receipt_id: str, ack_id: int) -> Ack | None:
    """One acknowledgement of a receipt, superseded ones included."""
    return session.scalar(select(Ack).where(Ack.receipt_id == receipt_id, Ack.id == ack_id))


# --- the operators' audit log ---------------------------------------------------------------


def add_audit_entries(
    session: Session, *, operator: str, action: str, receipt_ids: Sequence[str | None], detail: str
) -> None:
    session.add_all(
        AuditEntry(operator=operator, action=action, receipt_id=rid, detail=detail)
        for rid in receipt_ids
    )


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which entries the audit log shows: every field optional; `until` is exclusive."""

    action: str | None = None
    operator: str | None = None
    partner_id: int | None = None
    partner: str | None = None  # its name: entries about no file name it ("… of NAME")
    since: dt.datetime | None = None
    until: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An entry with the file it is about, named as operators know it."""

    entry: AuditEntry
    filename: str | None
    partner: str | None


def audit_entries(
    session: Session, f: AuditFilter | None = None, *, offset: int = 0, limit: int = 100
) -> list[AuditRow]:
    """The newest first, with each file's name and partner (an entry about no file has none)."""
    f = f or AuditFilter()
    query = (
        select(AuditEntry, Receipt.filename, Partner.name)
        .outerjoin(Receipt, Receipt.id == AuditEntry.receipt_id)
        .outerjoin(Partner, Partner.id == Receipt.partner_id)
    )
    if f.action:
        query = query.where(AuditEntry.action == f.action)
    if f.operator:
        query = query.where(AuditEntry.operator == f.operator)
    if f.partner_id is not None:
        about = Receipt.partner_id == f.partner_id
        if f.partner:
            # A view of a member's ledger page (`view_member`) and the command line's ledger
            # reads (`cli_ledger_*`) are about no file: they name the partner at the end of
            # their detail ("ledger member 12 of va"), and the filter missed them.
            name = like_literal(f.partner)
            ledger_reads = or_(
                AuditEntry.action == "view_member",
                AuditEntry.action.like("cli\\_ledger\\_%", escape="\\"),
            )
            names_it = or_(
                AuditEntry.detail.like(f"% of {name}", escape="\\"),
                AuditEntry.detail.like(f"% of {name} with names", escape="\\"),
            )
            about = or_(about, and_(AuditEntry.receipt_id.is_(None), ledger_reads, names_it))
        query = query.where(about)
    if f.since:
        query = query.where(AuditEntry.at >= f.since)
    if f.until:
        query = query.where(AuditEntry.at < f.until)
    rows = session.execute(
        query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).offset(offset).limit(limit)
    ).all()
    # An entry about no file that the partner filter matched is that partner's (see above).
    return [
        AuditRow(entry, filename, partner or (f.partner if f.partner_id is not None else None))
        for entry, filename, partner in rows
    ]


def audit_actions(session: Session) -> list[str]:
    """The actions the log holds, for its filter."""
    return list(session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))
