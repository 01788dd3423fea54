"""Applied member events to the insurer's core system: in ledger order, at least once, never
given up.

Rows of `core_outbox` leave in id order (the order the ledger applied them). A row is marked
delivered only after the core system has it: a 2xx for its POST (or for the batch's, with
`core_post=batch`), a 409 for its Idempotency-Key (the core already committed that key), or its
JSON Lines file renamed into place. A crash in between sends it again under the same key, which
is why the key exists: the receiver de-duplicates by key. A row that fails holds back every
later row (nothing overtakes it) and is retried with capped backoff forever; the backlog shows
as `edi834_core_pending_events` and `edi834_core_lag_seconds`. Logs carry ids, counts and
error types, never payloads (PHI)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from gateway.context import Gateway
from gateway.db.base import utcnow
from gateway.db.locks import sole
from gateway.db.models import CoreDelivery
from gateway.db.session import run_in_transaction
from gateway.enrollment.queries import core_pending
from gateway.faults import crashpoint
from gateway.logging import get_logger
from gateway.metrics import CORE_FAILURES, set_core_backlog
from gateway.outbound import answer_head, sign, sign_timestamped, write_atomically

log = get_logger(__name__)

BACKOFF_CAP_SECONDS = 300
POST_ATTEMPTS = 3  # quick retries inside one round; then the row waits for its backoff
QUICK_RETRY_AFTER_SECONDS = 2.0  # a Retry-After up to this is waited out within the round
RETRY_AFTER_CAP_SECONDS = 3600  # a longer Retry-After is taken as an hour
ADVISORY_LOCK_KEY = 834_000_001  # PostgreSQL: one core deliverer per database
EXPORT_STAGING = ".staging"  # inside the export dir: same filesystem, so the rename is atomic
GAUGE_SECONDS = 1.0  # while draining, the backlog gauges are refreshed at most this often
# One POST an event: the events the core has are marked delivered together, every this many or
# this often (a transaction per event cost as much as its POST); a crash re-sends at most these.
MARK_EVERY_EVENTS = 50
MARK_EVERY_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    idempotency_key: str
    payload: str  # JSON (PHI)


class CoreRefused(Exception):
    """The core system answered with a status that is neither success nor 'already have it';
    `retry_after`: the seconds its Retry-After asked for, if any."""

    def __init__(self, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.retry_after = retry_after


def backoff_seconds(attempts: int) -> int:
    """2, 4, 8, … seconds after the 1st, 2nd, 3rd failed round, capped at 5 minutes."""
    return min(BACKOFF_CAP_SECONDS, 1 << min(attempts, 16))


def batch_size(gw: Gateway) -> int:
    return max(1, gw.settings.core_batch_size)


def deliver_core(
    gw: Gateway, client: httpx.Client | None, *, now: dt.datetime | None = None
) -> int:
    """One round: deliver up to `core_batch_size` due rows in id order, stopping at the first
    failure; returns how many were delivered. POSTs to `core_url` when set, else writes one
    JSON Lines file to `core_export_dir` (with both set, the URL wins: a row has one
    `delivered_at`); with neither, rows wait. `now` is the clock for what is due.

    A full round (`batch_size` delivered) means more is probably due: the caller goes again at
    once and sleeps only after a round that was not full (see `Worker._outbox_loop`)."""
    settings = gw.settings
    delivered = 0
    if settings.core_configured:
        with _sole_deliverer(gw) as sole:
            if sole:  # else another process is delivering: it keeps the order
                batch = _due(gw, now or utcnow())
                if batch and settings.core_url:
                    post = _post_batch if settings.core_post == "batch" else _post_all
                    if client is None:
                        with httpx.Client() as own:
                            delivered = post(gw, own, batch)
                    else:
                        delivered = post(gw, client, batch)
                elif batch and settings.core_export_dir is not None:
                    delivered = _export(gw, settings.core_export_dir, batch)
    _refresh_gauges(gw, force=delivered < batch_size(gw))
    return delivered


_gauges_at = 0.0  # time.monotonic() of the last backlog count, in this process


def _refresh_gauges(gw: Gateway, *, force: bool) -> None:
    """The backlog gauges: counted after every round that was not full, and at most once a
    second while draining (a count of a long backlog per batch would slow the drain)."""
    global _gauges_at
    if not force and time.monotonic() - _gauges_at < GAUGE_SECONDS:
        return
    count, oldest = run_in_transaction(gw.reads, core_pending)
    set_core_backlog(
        pending=count, oldest=oldest, configured=gw.settings.core_configured, now=utcnow()
    )
    _gauges_at = time.monotonic()


# --- one deliverer, in order -----------------------------------------------------------------


def _sole_deliverer(gw: Gateway) -> AbstractContextManager[bool]:
    """True when this caller is the only deliverer; two at once could let a later row overtake
    an earlier one that the other is still retrying."""
    return sole(gw, ADVISORY_LOCK_KEY, "core-delivery.lock")


def _due(gw: Gateway, now: dt.datetime) -> list[Pending]:
    """The oldest undelivered rows, up to the first that is not due yet: a row waiting out its
    backoff holds back everything after it."""

    def read(session: Session) -> list[Pending]:
        rows = session.execute(
            select(
                CoreDelivery.id,
                CoreDelivery.idempotency_key,
                CoreDelivery.payload,
                CoreDelivery.next_attempt_at,
            )
            .where(CoreDelivery.delivered_at.is_(None))
            .order_by(CoreDelivery.id)
            .limit(batch_size(gw))
        ).all()
        batch = []
        for row_id, key, payload, next_attempt_at in rows:
            if next_attempt_at > now:
                break
            batch.append(Pending(row_id, key, payload))
        return batch

    return run_in_transaction(gw.reads, read)


def _mark_delivered(gw: Gateway, ids: Sequence[int]) -> None:
    def txn(session: Session) -> None:
        session.execute(
            update(CoreDelivery)
            .where(CoreDelivery.id.in_(ids), CoreDelivery.delivered_at.is_(None))
            .values(delivered_at=utcnow(), attempts=CoreDelivery.attempts + 1)
        )

    run_in_transaction(gw.sessions, txn)


def _record_failure(gw: Gateway, row_id: int, exc: Exception) -> None:
    """The row keeps its place at the head of the queue; only its next try moves out."""
    error = f"{type(exc).__name__}: {exc}"[:500]  # status or transport error, never a body

    def txn(session: Session) -> int:
        row = session.get(CoreDelivery, row_id)
        if row is None or row.delivered_at is not None:
            return 0
        row.attempts += 1
        row.last_error = error
        wait = max(backoff_seconds(row.attempts), _asked_to_wait(exc) or 0)
        row.next_attempt_at = utcnow() + dt.timedelta(seconds=wait)
        return row.attempts

    attempts = run_in_transaction(gw.sessions, txn)
    CORE_FAILURES.inc()
    log.warning(
        "core_delivery_failed",
        outbox_id=row_id,
        attempts=attempts,
        error_type=type(exc).__name__,
        status_code=getattr(exc, "status_code", None),
    )


# --- HTTP ------------------------------------------------------------------------------------


def _asked_to_wait(exc: BaseException) -> float | None:
    """The seconds the core's Retry-After asked for (at most an hour), or None."""
    asked = exc.retry_after if isinstance(exc, CoreRefused) else None
    return None if asked is None else min(asked, RETRY_AFTER_CAP_SECONDS)


def _transient(exc: BaseException) -> bool:
    """Worth another quick try: the network, a timeout, the core overloaded or failing — unless
    its Retry-After asks for longer than a quick retry waits (then the round ends, and the row
    waits at least that long)."""
    if isinstance(exc, httpx.TransportError):  # timeouts included
        return True
    if not (isinstance(exc, CoreRefused) and (exc.status_code >= 500 or exc.status_code == 429)):
        return False
    asked = _asked_to_wait(exc)
    return asked is None or asked <= QUICK_RETRY_AFTER_SECONDS


_quick_wait = wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2)


def _quick_retry_wait(state: RetryCallState) -> float:
    """What the core's Retry-After asked for, else a short exponential wait."""
    exc = state.outcome.exception() if state.outcome is not None else None
    asked = _asked_to_wait(exc) if exc is not None else None
    return asked if asked is not None else _quick_wait(state)


def _post(
    client: httpx.Client,
    gw: Gateway,
    body: bytes,
    key: str,
    content_type: str,
    events: int,
    first_id: int,
) -> None:
    """POST `body` under the Idempotency-Key `key`, with quick retries for what is transient;
    raises what the round must record as a failure. Each attempt is signed twice: the body
    (`X-EDI834-Signature`) and, as the webhooks are, the body at the attempt's time
    (`X-EDI834-Signature-256`), so a receiver can refuse a replay."""
    settings = gw.settings
    headers = {
        "Content-Type": content_type,
        "Idempotency-Key": key,
        "X-EDI834-Events": str(events),
        "X-EDI834-Signature": sign(settings.core_secret, body),
    }

    @retry(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(POST_ATTEMPTS),
        wait=_quick_retry_wait,
        reraise=True,
    )
    def attempt() -> None:
        headers["X-EDI834-Signature-256"] = sign_timestamped(
            settings.core_secret, body, int(time.time())
        )
        status, retry_after = answer_head(
            client, settings.core_url, body, headers, timeout=settings.core_timeout_seconds
        )
        if status == 409:
            # The core already committed this Idempotency-Key, e.g. the answer to our first
            # try was lost to a timeout or a crash: delivered, and said so.
            log.info("core_already_committed", outbox_id=first_id, events=events)
        elif not 200 <= status < 300:
            raise CoreRefused(status, retry_after)

    attempt()


def _post_all(gw: Gateway, client: httpx.Client, batch: Sequence[Pending]) -> int:
    """One POST per event (the key is the unit the core de-duplicates by, and a failure leaves
    no half-accepted batch). What the core has is marked delivered every `MARK_EVERY_EVENTS`
    events or `MARK_EVERY_SECONDS`, and before a failure is recorded: a crash re-sends at most
    those, each under its own key."""
    sent = 0
    unmarked: list[int] = []
    marked_at = time.monotonic()
    failed: tuple[int, Exception] | None = None
    for item in batch:
        try:
            body = item.payload.encode()
            _post(client, gw, body, item.idempotency_key, "application/json", 1, item.id)
        except (httpx.HTTPError, httpx.InvalidURL, CoreRefused) as exc:
            failed = (item.id, exc)
            break
        crashpoint("core_sent")
        unmarked.append(item.id)
        sent += 1
        if len(unmarked) >= MARK_EVERY_EVENTS or time.monotonic() - marked_at >= MARK_EVERY_SECONDS:
            crashpoint("core_marking")
            _mark_delivered(gw, unmarked)
            unmarked, marked_at = [], time.monotonic()
    if unmarked:
        crashpoint("core_marking")
        _mark_delivered(gw, unmarked)
    if failed is not None:
        _record_failure(gw, *failed)
    if sent:
        log.info("core_delivered", count=sent, first_id=batch[0].id, last_id=batch[sent - 1].id)
    return sent


def batch_key(batch: Sequence[Pending]) -> str:
    """A batch's Idempotency-Key: the same rows give the same key, so a receiver that only
    de-duplicates whole requests still takes a batch sent again after a lost answer or a crash
    once. A round after a failure can hold more rows than the one before (rows that became due
    since): a new key, and the receiver must de-duplicate those lines by their own keys."""
    return hashlib.sha256("\n".join(p.idempotency_key for p in batch).encode()).hexdigest()


def _post_batch(gw: Gateway, client: httpx.Client, batch: Sequence[Pending]) -> int:
    """One POST for the round (`core_post=batch`): the JSON Lines of an export file, each line
    `{"idempotency_key":…,"event":…}` in ledger order, `application/x-ndjson`, the number of
    lines in `X-EDI834-Events`. A 2xx means the core committed every line (de-duplicated by each
    line's key); a 409 that it already has this batch's key. Anything else fails the whole
    round: the head row waits out its backoff and the same rows, at least, go again. A crash
    between the answer and the commit sends the batch again, under the same keys."""
    body = b"".join(export_line(p) for p in batch)
    try:
        _post(client, gw, body, batch_key(batch), "application/x-ndjson", len(batch), batch[0].id)
    except (httpx.HTTPError, httpx.InvalidURL, CoreRefused) as exc:
        _record_failure(gw, batch[0].id, exc)
        return 0
    crashpoint("core_sent")
    _mark_delivered(gw, [p.id for p in batch])
    log.info("core_delivered", count=len(batch), first_id=batch[0].id, last_id=batch[-1].id)
    return len(batch)


# --- JSON Lines export -----------------------------------------------------------------------


def export_name(first_id: int, last_id: int) -> str:
    return f"events-{first_id:012d}-{last_id:012d}.jsonl"


def export_line(item: Pending) -> bytes:
    """One line of an export file: `{"idempotency_key":…,"event":<the stored payload>}`.

    The payload is spliced in as stored, not parsed and encoded again (~40 us an event, in the
    worker process the ledger shares): the ledger writes it as compact JSON, one line, from
    `json.dumps` and pydantic's serializer, both of which escape every control character."""
    key = json.dumps(item.idempotency_key)
    return b'{"idempotency_key":%s,"event":%s}\n' % (key.encode(), item.payload.encode())


def _export(gw: Gateway, directory: Path, batch: Sequence[Pending]) -> int:
    """One file per batch, named by its first and last ids, written whole then renamed (a
    temporary a killed deliverer left in staging is removed first). After a crash between the
    rename and the commit, the file for the head row is already there: its
    keys are the ones delivered (rewriting a larger batch would repeat them in a second file)."""
    first = batch[0].id
    try:
        # A deliverer killed mid-write left its temporary (member data); this one is the sole
        # deliverer, so whatever is in staging is no live writer's.
        for leftover in (directory / EXPORT_STAGING).glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        written = sorted(directory.glob(f"events-{first:012d}-*.jsonl"))
        if written:
            name = written[-1].name
            lines = written[-1].read_bytes().splitlines()
            keys = [json.loads(line)["idempotency_key"] for line in lines]
            if batch[0].idempotency_key not in keys:
                # Not our leftover (rows deleted, their ids reused): never overwrite it unread.
                raise FileExistsError(f"{name} does not hold outbox row {first}; move it away")
            ids = _ids_of_keys(gw, keys)
        else:
            content = b"".join(export_line(p) for p in batch)
            name = export_name(first, batch[-1].id)
            write_atomically(directory, name, content, directory / EXPORT_STAGING, private=False)
            ids = [p.id for p in batch]
    except (OSError, ValueError, KeyError) as exc:
        _record_failure(gw, first, exc)
        return 0
    crashpoint("core_sent")
    _mark_delivered(gw, ids)
    log.info("core_exported", count=len(ids), first_id=first, file=name)
    return len(ids)


def _ids_of_keys(gw: Gateway, keys: Sequence[str]) -> list[int]:
    def read(session: Session) -> list[int]:
        return list(
            session.scalars(
                select(CoreDelivery.id).where(
                    CoreDelivery.idempotency_key.in_(keys), CoreDelivery.delivered_at.is_(None)
                )
            ).all()
        )

    return run_in_transaction(gw.reads, read)
