"""Delivering what was committed: acks into the partner's SFTP outbound/ (written whole, then
renamed, so a partner never reads half an ack), and webhooks with an HMAC signature. Both are
outboxes in the database: a crash between commit and delivery only delays the delivery."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import select

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import utcnow
from gateway.db.locks import sole
from gateway.db.models import Partner, WebhookDelivery
from gateway.db.session import unit_of_work
from gateway.faults import crashpoint
from gateway.logging import get_logger
from gateway.metrics import DELIVERY_FAILURES, DELIVERY_SECONDS
from gateway.outbound import (
    OUTBOX_STAGING,
    fsync_directory,
    non_public_destination,
    post_signed,
    sign,
    write_atomically,
)

log = get_logger(__name__)


ACK_LOCK_KEY = 834_000_002  # PostgreSQL: one ack deliverer at a time per database


def deliver_acks(gw: Gateway, limit: int = 100) -> int:
    """Write undelivered acks to outbound/; returns how many were delivered. One outbox at a
    time: with two workers, both read the same undelivered acks and wrote every one of them
    (a new file, its fsync and its rename, twice), then one of the marks won (issue 19); the
    others now skip their turn (gateway.db.locks)."""
    with sole(gw, ACK_LOCK_KEY, "ack-delivery.lock") as mine:
        return _deliver_acks(gw, limit) if mine else 0


@dataclass
class _Held:
    """A partner whose outbound/ could not be written: its acks wait until `until` (monotonic),
    the wait doubling from `BLOCKED_FIRST_SECONDS` to `BLOCKED_MAX_SECONDS` while it fails."""

    until: float
    wait: float


BLOCKED_FIRST_SECONDS = 5.0
BLOCKED_MAX_SECONDS = 300.0
_held: dict[str, _Held] = {}  # partner name -> its outbound/'s back-off, in this process
_held_lock = threading.Lock()


def _hold(partner: str) -> float:
    with _held_lock:
        before = _held.get(partner)
        wait = min(BLOCKED_MAX_SECONDS, before.wait * 2) if before else BLOCKED_FIRST_SECONDS
        _held[partner] = _Held(time.monotonic() + wait, wait)
        return wait


def _held_partners() -> set[str]:
    now = time.monotonic()
    with _held_lock:
        return {name for name, h in _held.items() if h.until > now}


def _deliver_acks(gw: Gateway, limit: int) -> int:
    """Each file is durable (written, fsynced, renamed; each directory fsynced once for the
    round) before it is marked delivered; the marks of the files one call wrote are one
    transaction after them. A crash between a file and its mark writes that file again,
    whole, on the next round: an ack is delivered at least once, and a failed write leaves
    the earlier files marked.

    One partner's outbound/ that cannot be written (a full or read-only volume, a file where
    the folder should be) holds back that partner's acks only: they wait, with a back-off,
    while every other partner's are delivered — the first failure ended the round for all."""
    with unit_of_work(gw.sessions) as session:
        rows = repo.undelivered_acks(session, limit, skip_partners=_held_partners())
    written: list[tuple[int, str, str]] = []
    directories: set[Path] = set()
    failed: set[str] = set()
    try:
        for ack_id, receipt_id, filename, content, partner_name in rows:
            if partner_name in failed:
                continue
            started = time.monotonic()
            directory = gw.outbound_dir(partner_name)
            try:
                write_atomically(
                    directory,
                    filename,
                    content,
                    gw.settings.data_dir / OUTBOX_STAGING,
                    sync_directory=False,
                )
            except OSError as exc:
                DELIVERY_FAILURES.labels(kind="ack").inc()
                failed.add(partner_name)  # its acks stay undelivered; later rounds retry
                log.warning(
                    "ack_delivery_failed",
                    partner=partner_name,
                    receipt_id=receipt_id,
                    error=type(exc).__name__,
                    errno=exc.errno,
                    retry_seconds=_hold(partner_name),
                )
                continue
            with _held_lock:
                _held.pop(partner_name, None)
            directories.add(directory)
            DELIVERY_SECONDS.labels(kind="ack").observe(time.monotonic() - started)
            crashpoint("ack_written")
            written.append((ack_id, receipt_id, filename))
    finally:
        if written:
            for directory in directories:  # the renames durable before any mark
                fsync_directory(directory)
            with unit_of_work(gw.sessions) as session:
                fresh = repo.mark_acks_delivered(session, [w[0] for w in written], utcnow())
                repo.insert_events(
                    session,
                    [
                        (rid, "ack_delivered", name)
                        for ack_id, rid, name in written
                        if ack_id in fresh
                    ],
                )
    return len(written)


class WebhookError(Exception):
    pass


def deliver_webhooks(gw: Gateway, client: httpx.Client) -> int:
    now = utcnow()
    with unit_of_work(gw.sessions) as session:
        due = [(d.id, d.payload, d.partner_id) for d in repo.due_webhooks(session, now)]
        if not due:
            return 0
        partners = {
            p.id: (p.webhook_url, p.webhook_secret or "")
            for p in session.scalars(
                select(Partner).where(Partner.id.in_({pid for _, _, pid in due}))
            )
        }
    sent = 0
    for delivery_id, payload, partner_id in due:
        url, secret = partners.get(partner_id, (None, ""))
        error: str | None = None
        refused = (
            None if not url or gw.settings.webhook_allow_private else (non_public_destination(url))
        )
        if url and refused is not None:
            error = f"WebhookRefused: {refused} (EDI834_WEBHOOK_ALLOW_PRIVATE)"
            DELIVERY_FAILURES.labels(kind="webhook").inc()
        elif url:
            body = payload.encode()
            started = time.monotonic()
            try:
                post_signed(client, url, body, sign(secret, body), WebhookError, secret=secret)
            except (httpx.HTTPError, WebhookError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                DELIVERY_FAILURES.labels(kind="webhook").inc()
            DELIVERY_SECONDS.labels(kind="webhook").observe(time.monotonic() - started)
        else:
            error = "webhook no longer configured"
        with unit_of_work(gw.sessions) as session:
            d = session.get(WebhookDelivery, delivery_id)
            if d is None:
                continue
            d.attempts += 1
            if error is None:
                d.delivered_at = utcnow()
                sent += 1
            else:
                d.last_error = error
                if d.attempts >= gw.settings.webhook_max_attempts or not url:
                    d.gave_up = True
                d.next_attempt_at = utcnow() + dt.timedelta(seconds=min(3600, 2**d.attempts * 5))
                log.warning("webhook_failed", receipt_id=d.receipt_id, attempts=d.attempts)
    return sent
