"""The queries of gateway.watch: when each partner last sent a file, how long its files waited
for their acks, which acks no one picked up, which files no worker took. Read-only except the
alerts' own rows; never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.db.models import (
    DELIVERED_KINDS,
    Ack,
    Alert,
    CoreDelivery,
    LedgerStatus,
    Partner,
    Receipt,
    Status,
)


@dataclass(frozen=True, slots=True)
class PartnerRow:
    id: int
    name: str
    schedule: str
    timezone: str
    created_at: dt.datetime
    uses_sftp: bool


@dataclass(frozen=True, slots=True)
class StuckFile:
    receipt_id: str
    filename: str | None
    partner: str
    status: str
    received_at: dt.datetime


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    # An aggregate (max, min) may skip the column's type and come back naive (SQLite).
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    if isinstance(moment, dt.datetime) and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment


def partners(session: Session) -> list[PartnerRow]:
    rows = session.execute(
        select(
            Partner.id,
            Partner.name,
            Partner.expected_schedule,
            Partner.timezone,
            Partner.created_at,
            Partner.sftp_keys,
        )
        .where(Partner.enabled.is_(True))
        .order_by(Partner.name)
    ).all()
    return [
        PartnerRow(pid, name, schedule or "", tz or "UTC", created, bool((keys or "").strip()))
        for pid, name, schedule, tz, created, keys in rows
    ]


def last_files(session: Session) -> dict[int, dt.datetime]:
    """Each partner's latest complete file (a partial upload is not a file received)."""
    # Per partner, newest first down its (partner_id, received_at) index until a file that is
    # not partial: a few rows each. A max() grouped over every receipt read them all — 100,000
    # receipts, ~130 ms of the dashboard overview and of each watch round.
    latest = (
        select(Receipt.received_at)
        .where(Receipt.partner_id == Partner.id, Receipt.status != Status.PARTIAL)
        .order_by(Receipt.received_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(select(Partner.id, latest)).all()
    return {pid: moment for pid, last in rows if (moment := _aware(last)) is not None}


def ack_delays(session: Session, since: dt.datetime, until: dt.datetime) -> dict[int, list[float]]:
    """Seconds from receipt to acks (TA1/999 stored) of the files acknowledged in the period."""
    # The seconds in SQL: two datetimes a file read back (on SQLite each parsed from its text)
    # were most of the dashboard overview's time — 7,800 files in 7 days, ~210 of its ~260 ms.
    processed, received = Receipt.processed_at, Receipt.received_at
    seconds = (
        (func.julianday(processed) - func.julianday(received)) * 86400.0
        if session.get_bind().dialect.name == "sqlite"
        else func.extract("epoch", processed - received)
    )
    rows = session.execute(
        select(Receipt.partner_id, seconds).where(
            Receipt.processed_at >= since,
            Receipt.processed_at < until,
            Receipt.status == Status.PROCESSED,
        )
    ).all()
    out: dict[int, list[float]] = {}
    for pid, delay in rows:
        if delay is None:
            continue
        out.setdefault(pid, []).append(max(0.0, round(float(delay), 3)))
    return out


def unpicked_acks(
    session: Session, delivered_before: dt.datetime
) -> dict[int, tuple[int, dt.datetime]]:
    """Per partner: acks written to outbound/ before the cutoff that it never fetched, and when
    the oldest of them was written."""
    rows = session.execute(
        select(Receipt.partner_id, func.count(), func.min(Ack.delivered_at))
        .select_from(Ack)
        .join(Receipt, Receipt.id == Ack.receipt_id)
        .where(
            Ack.picked_up_at.is_(None),
            Ack.delivered_at.is_not(None),
            Ack.delivered_at < delivered_before,
            Ack.superseded.is_(False),
            Ack.kind.in_([k.value for k in DELIVERED_KINDS]),
        )
        .group_by(Receipt.partner_id)
    ).all()
    out: dict[int, tuple[int, dt.datetime]] = {}
    for pid, n, oldest in rows:
        when = _aware(oldest)
        if when is not None:
            out[pid] = (int(n), when)
    return out


def stuck_files(
    session: Session, received_before: dt.datetime, limit: int = 50
) -> tuple[int, list[StuckFile]]:
    """Files received before the cutoff that no worker has finished: how many, the oldest."""
    where = (
        Receipt.status.in_([Status.RECEIVED, Status.PROCESSING]),
        Receipt.received_at < received_before,
    )
    count = int(session.scalar(select(func.count()).select_from(Receipt).where(*where)) or 0)
    rows = session.execute(
        select(Receipt.id, Receipt.filename, Partner.name, Receipt.status, Receipt.received_at)
        .join(Partner, Partner.id == Receipt.partner_id)
        .where(*where)
        .order_by(Receipt.received_at)
        .limit(limit)
    ).all()
    return count, [StuckFile(*row) for row in rows]


def failed_files(session: Session) -> tuple[int, dt.datetime | None]:
    """Files parked as failed — validation, or the ledger stage — that no operator resolved or
    reprocessed: how many, and when the oldest was received."""
    where = (
        or_(Receipt.status == Status.FAILED, Receipt.ledger_status == LedgerStatus.FAILED),
        Receipt.resolved_at.is_(None),
    )
    count, oldest = session.execute(
        select(func.count(), func.min(Receipt.received_at)).where(*where)
    ).one()
    return int(count or 0), _aware(oldest)


def core_backlog(session: Session, created_before: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Events for the core system written before the cutoff and not delivered yet: how many,
    and when the oldest was written."""
    count, oldest = session.execute(
        select(func.count(), func.min(CoreDelivery.created_at)).where(
            CoreDelivery.delivered_at.is_(None), CoreDelivery.created_at < created_before
        )
    ).one()
    return int(count or 0), _aware(oldest)


# --- alerts ------------------------------------------------------------------------------------


def open_alerts(session: Session) -> Sequence[Alert]:
    return session.scalars(select(Alert).where(Alert.closed_at.is_(None))).all()


def alert_by_key(session: Session, key: str) -> Alert | None:
    return session.scalar(select(Alert).where(Alert.key == key))


def insert_alert(session: Session, alert: Alert) -> bool:
    """False when another process opened the same incident first."""
    try:
        with session.begin_nested():
            session.add(alert)
    except IntegrityError:
        return False
    return True


def alerts_to_post(session: Session, now: dt.datetime, limit: int = 50) -> Sequence[Alert]:
    """Alerts whose state (opened, closed) has not been posted yet, and not being posted."""
    return session.scalars(
        select(Alert)
        .where(
            (Alert.posted_state == "")
            | ((Alert.posted_state == "opened") & Alert.closed_at.is_not(None)),
            (Alert.next_attempt_at.is_(None)) | (Alert.next_attempt_at <= now),
        )
        .order_by(Alert.id)
        .limit(limit)
    ).all()


def claim_alert_post(
    session: Session, alert_id: int, posted_state: str, until: dt.datetime, now: dt.datetime
) -> bool:
    """Hold the post of one alert for a while (another process skips it); False if taken."""
    result = session.execute(
        update(Alert)
        .where(
            Alert.id == alert_id,
            Alert.posted_state == posted_state,
            (Alert.next_attempt_at.is_(None)) | (Alert.next_attempt_at <= now),
        )
        .values(next_attempt_at=until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def recent_alerts(session: Session, limit: int = 20) -> Sequence[tuple[Alert, str | None]]:
    return session.execute(
        select(Alert, Partner.name)
        .outerjoin(Partner, Partner.id == Alert.partner_id)
        .order_by(Alert.closed_at.is_not(None), Alert.opened_at.desc())
        .limit(limit)
    ).all()


def partner_name(session: Session, partner_id: int | None) -> str | None:
    if partner_id is None:
        return None
    return session.scalar(select(Partner.name).where(Partner.id == partner_id))
