"""The processing worker: claims receipts under a lease, processes them, delivers acks and
webhooks. Threads, so `serve` can run it beside the HTTP and SFTP listeners in one process."""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable

import httpx
import structlog
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import utcnow
from gateway.db.models import Receipt, Status
from gateway.db.session import database_trouble, db_retry, is_transient, run_in_transaction
from gateway.enrollment import repository as ledger_repo
from gateway.enrollment.apply import LedgerAbandoned, apply_receipt
from gateway.enrollment.delivery import batch_size as core_batch_size
from gateway.enrollment.delivery import deliver_core
from gateway.faults import crashpoint
from gateway.logging import get_logger
from gateway.metrics import FAILURES, INTERCHANGES, LATENCY, OUTCOMES, PARKED
from gateway.watch.alerts import run_watch
from gateway.worker import outbox
from gateway.worker.acknowledge import park_failed, store_results
from gateway.worker.job import Abandoned, DuplicateRace, Job, LeaseLost, job_of
from gateway.worker.validate import validate_job
from gateway.worker.wakeup import WorkListener
from validators.interchange import InterchangeResult

log = get_logger(__name__)
LEDGER_IDLE_GAP = 0.25  # seconds: at most four ledger claims a second that find nothing
OUTBOX_GAP = 0.1  # seconds: at most ten outbox rounds a second, but for full batches


def new_worker_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def recover_orphans(gw: Gateway) -> int:
    """Single-process mode only: receipts left `processing` by a previous run of this process
    belong to no living worker, so they go back to the queue at once (not after the lease)."""

    def txn(session: Session) -> int:
        stuck = repo.stuck_receipts(session)
        for receipt in stuck:
            receipt.lease_expires_at = utcnow()
            repo.add_event(session, receipt.id, "recovered", "previous process ended mid-file")
        applying = ledger_repo.leased_ledger_work(session)
        for receipt in applying:  # resumes after its last committed chunk
            receipt.lease_owner = None
            receipt.lease_expires_at = None
            repo.add_event(session, receipt.id, "recovered", "previous process ended mid-ledger")
        return len(stuck) + len(applying)

    return run_in_transaction(gw.sessions, txn)


class Worker:
    def __init__(self, gw: Gateway, *, worker_id: str | None = None, concurrency: int = 1) -> None:
        self.gw = gw
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = concurrency
        self.stop_event = threading.Event()  # no new claims
        self.cancel_event = threading.Event()  # abandon the file in hand
        # Each loop has its own wake-up, so one loop's news does not set the others running: new
        # receipts (the intake, LISTEN/NOTIFY) wake the processing loops; a stored 999 wakes
        # the ledger and the outbox; an applied file wakes the outbox. Before, one shared event
        # did all three: under load the outbox, which waits without clearing it, went round
        # without pause, and the ledger tried a claim for every file received (issue 19).
        self.wake_event = threading.Event()
        self.ledger_wake = threading.Event()
        self.outbox_wake = threading.Event()
        self.webhook_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        # PostgreSQL: new receipts wake the loops at once (LISTEN/NOTIFY); polling stays.
        self.listener = (
            WorkListener(gw.engine, self.wake_event, self.stop_event)
            if gw.engine.dialect.name == "postgresql"
            else None
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self.concurrency):
            t = threading.Thread(target=self._process_loop, name=f"worker-{n}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._ledger_loop, name="worker-ledger", daemon=True)
        t.start()
        self._threads.append(t)
        t = threading.Thread(target=self._outbox_loop, name="outbox", daemon=True)
        t.start()
        self._threads.append(t)
        t = threading.Thread(target=self._webhook_loop, name="webhooks", daemon=True)
        t.start()
        self._threads.append(t)
        t = threading.Thread(target=self._watch_loop, name="watch", daemon=True)
        t.start()
        self._threads.append(t)
        if self.listener is not None:
            self.listener.start()

    def wake(self) -> None:
        """A file was received."""
        self.wake_event.set()

    def stop(self, grace_seconds: float) -> None:
        """Finish the file in hand within the grace period, else abandon it (lease released)."""
        self.stop_event.set()
        for event in (self.wake_event, self.ledger_wake, self.outbox_wake, self.webhook_wake):
            event.set()
        deadline = time.monotonic() + grace_seconds
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self.cancel_event.set()
            for t in self._threads:
                t.join(10)
        if self.listener is not None:
            self.listener.join(5)  # it looks at stop_event every second

    # --- loops -------------------------------------------------------------------------------

    def _sleep(self, event: threading.Event, *, apart: float = 0.0, since: float = 0.0) -> None:
        """Wait for `event` (or the poll) and clear it; with `apart`, also until min(apart,
        poll) after `since`, when the round that found nothing started (a stop cuts it short).
        A claim or an outbox round costs its few transactions whether it finds one file or
        fifty: under load, with a 999 stored every few milliseconds, each would otherwise start
        one."""
        poll = self.gw.settings.worker_poll_seconds
        event.wait(poll)
        event.clear()
        rest = min(apart, poll) - (time.monotonic() - since)
        if rest > 0:
            self.stop_event.wait(rest)

    def _process_loop(self) -> None:
        failures = _Failures("worker_loop_error", self.worker_id)
        while not self.stop_event.is_set():
            try:
                worked = self.run_once()
                failures.ok()
            except Exception as exc:  # the loop must survive anything; the job handled its own
                failures.failed(exc)
                worked = False
                self.stop_event.wait(max(1.0, failures.pause))
            if not worked:
                self._sleep(self.wake_event)

    def _ledger_loop(self) -> None:
        """The enrollment ledger stage: one receipt at a time, in each sender's order."""
        failures = _Failures("ledger_loop_error", self.worker_id)
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                worked = self.apply_ledger_once()
                failures.ok()
            except Exception as exc:
                failures.failed(exc)
                worked = False
                self.stop_event.wait(max(1.0, failures.pause))
            if not worked:  # a claim that finds nothing reads the sender's queue (its order)
                self._sleep(self.ledger_wake, apart=LEDGER_IDLE_GAP, since=started)

    def apply_ledger_once(self) -> bool:
        settings = self.gw.settings

        def claim(session: Session) -> str | None:
            return ledger_repo.claim_ledger_work(
                session,
                worker_id=self.worker_id,
                lease_seconds=settings.lease_seconds,
                order_window_seconds=settings.ledger_order_window_seconds,
            )

        receipt_id = run_in_transaction(self.gw.sessions, claim)
        if receipt_id is None:
            return False
        structlog.contextvars.bind_contextvars(receipt_id=receipt_id)
        error: str | None = None
        try:
            status = apply_receipt(self.gw, receipt_id, self.worker_id, cancel=self.cancel_event)
            log.info("ledger_done", status=status)
            self.outbox_wake.set()  # the core's events to deliver
            return True
        except LedgerAbandoned:
            log.info("ledger_abandoned")
        except Exception as exc:
            if is_transient(exc):
                # The database went away (a restart, a failover): not the file's fault, so not
                # an attempt. Taken again from the chunk it reached once the database answers.
                log.warning(
                    "ledger_interrupted",
                    error_type=type(exc).__name__,
                    reason=database_trouble(exc),
                )
            else:
                FAILURES.inc()
                error = "".join(traceback.format_exception(exc))[-8000:]
                log.error("ledger_failed", error_type=type(exc).__name__)
        finally:
            structlog.contextvars.unbind_contextvars("receipt_id")
        self._until_recorded(
            lambda s: ledger_repo.release_ledger(
                s, receipt_id, self.worker_id, error=error, max_attempts=settings.max_attempts
            ),
        )
        return True

    def _until_recorded(self, fn: Callable[[Session], object]) -> None:
        """`fn` in a transaction, tried again every few seconds while the database is away
        (until this worker stops): a lease given back late would expire instead, and the file's
        next claim would count as one more failed attempt."""
        while True:
            try:
                run_in_transaction(self.gw.sessions, fn)
                return
            except Exception as exc:
                if not is_transient(exc) or self.stop_event.wait(RECORD_RETRY_SECONDS):
                    raise

    def _outbox_loop(self) -> None:
        acks, core = (
            _Failures("outbox_error", self.worker_id),
            _Failures("core_outbox_error", self.worker_id),
        )
        with httpx.Client(timeout=self.gw.settings.webhook_timeout_seconds) as client:
            while True:
                started = time.monotonic()
                try:
                    outbox.deliver_acks(self.gw)
                    acks.ok()
                except Exception as exc:
                    acks.failed(exc)
                full = False
                try:  # apart, so a webhook failure never holds back the core (nor the reverse)
                    # its own per-request core_timeout_seconds
                    full = deliver_core(self.gw, client) >= core_batch_size(self.gw)
                    core.ok()
                except Exception as exc:
                    core.failed(exc)
                if self.stop_event.is_set() and not any(
                    t.is_alive() for t in self._threads if t.name.startswith("worker")
                ):
                    outbox.deliver_acks(self.gw)  # what the last job produced
                    return
                if not full:  # a full batch: more is due, so the next round starts at once
                    self._sleep(self.outbox_wake, apart=OUTBOX_GAP, since=started)
                self.stop_event.wait(max(acks.pause, core.pause))

    def _webhook_loop(self) -> None:
        """Partners' webhooks, in their own thread: a partner's endpoint that answers slowly
        (each read within the timeout, the whole answer never) held back every partner's acks
        and the core's events while they shared one."""
        failures = _Failures("webhook_error", self.worker_id)
        with httpx.Client(timeout=self.gw.settings.webhook_timeout_seconds) as client:
            while not self.stop_event.is_set():
                started = time.monotonic()
                try:
                    outbox.deliver_webhooks(self.gw, client)
                    failures.ok()
                except Exception as exc:
                    failures.failed(exc)
                self._sleep(self.webhook_wake, apart=OUTBOX_GAP, since=started)
                self.stop_event.wait(failures.pause)

    def _watch_loop(self) -> None:
        watch_loop(self.gw, self.stop_event, self.worker_id)

    # --- one job -----------------------------------------------------------------------------

    def run_once(self) -> bool:
        """Claim and process one receipt; False when the queue is empty."""
        settings = self.gw.settings

        def claim(session: Session) -> tuple[Job, int] | None:
            receipt = repo.claim_next(
                session, worker_id=self.worker_id, lease_seconds=settings.lease_seconds
            )
            if receipt is None:
                return None
            if receipt.attempts > settings.max_attempts:
                _park_worn_out(session, receipt, settings.max_attempts)
                return None
            return job_of(receipt), receipt.attempts

        if self.gw.autocommit_engine is not None:  # PostgreSQL: the claim is one statement
            claimed = self._claim_at_once()
        else:
            claimed = run_in_transaction(self.gw.sessions, claim)
        if claimed is None:
            return False
        job, attempt = claimed
        structlog.contextvars.bind_contextvars(receipt_id=job.receipt_id)
        try:
            self._process(job, attempt)
        finally:
            structlog.contextvars.unbind_contextvars("receipt_id")
        return True

    def _claim_at_once(self) -> tuple[Job, int] | None:
        """claim's work in one statement on a connection in autocommit (repo.claim_next_at_once,
        issue 19); a file whose attempts are used up is parked in a unit of work of its own, as
        claim parks it (a crash in between: its lease runs out and the next claim parks it)."""
        settings = self.gw.settings

        @db_retry
        def claim() -> repo.Claimed | None:
            with self.gw.single_write() as conn:
                return repo.claim_next_at_once(
                    conn, worker_id=self.worker_id, lease_seconds=settings.lease_seconds
                )

        claimed = claim()
        if claimed is None:
            return None
        if claimed.attempts > settings.max_attempts:

            def park(session: Session) -> None:
                receipt = session.get(Receipt, claimed.id)
                if receipt is None or receipt.lease_owner != self.worker_id:
                    return
                _park_worn_out(session, receipt, settings.max_attempts)

            run_in_transaction(self.gw.sessions, park)
            return None
        job = Job(
            receipt_id=claimed.id,
            partner_id=claimed.partner_id,
            partner_name=claimed.partner_name,
            expected_sender=(claimed.isa_qualifier, claimed.isa_id),
            blob_path=claimed.blob_path,
            filename=claimed.filename,
            received_at=claimed.received_at,
        )
        return job, claimed.attempts

    def _heartbeat(self, job: Job) -> None:
        def txn(session: Session) -> bool:
            return repo.extend_lease(
                session, job.receipt_id, self.worker_id, self.gw.settings.lease_seconds
            )

        if not run_in_transaction(self.gw.sessions, txn):
            raise LeaseLost(job.receipt_id)

    def _process(self, job: Job, attempt: int) -> None:
        settings = self.gw.settings
        log.info("processing_started", attempt=attempt, worker_id=self.worker_id)
        crashpoint("processing")
        for _ in range(3):
            try:
                validated = validate_job(
                    self.gw,
                    job,
                    cancel=self.cancel_event,
                    heartbeat=lambda: self._heartbeat(job),
                    heartbeat_seconds=max(1.0, settings.lease_seconds / 3),
                )
                now = utcnow()
                stored = run_in_transaction(
                    self.gw.sessions,
                    lambda s: store_results(s, self.gw, job, self.worker_id, validated, now),  # noqa: B023
                )
                break
            except DuplicateRace:
                continue  # validate again: the ISA13 is now a known duplicate (TA1 025)
            except Abandoned:
                self._release(job, None, retry_after=0)
                log.info("processing_abandoned", reason="shutdown")
                return
            except LeaseLost:
                log.warning("lease_lost", worker_id=self.worker_id)
                return
            except Exception as exc:
                self._fail(job, exc, attempt)
                return
        else:  # pragma: no cover - three races in a row
            self._release(job, "duplicate-ISA13 race did not settle", retry_after=1)
            return
        crashpoint("committed")
        OUTCOMES.labels(outcome=stored.outcome).inc()
        for result in validated.results:
            if isinstance(result, InterchangeResult):
                usage = result.isa.element(15)
                INTERCHANGES.labels(
                    usage=usage if usage in ("P", "T") else "other", ta1=result.ta1_code.value
                ).inc()
        validated.close()
        LATENCY.observe((now - job.received_at).total_seconds())
        log.info(
            "interchange_processed",
            outcome=stored.outcome,
            sets_received=stored.totals["sets_received"],
            sets_accepted=stored.totals["sets_accepted"],
            members_received=stored.totals["members_received"],
            members_accepted=stored.totals["members_accepted"],
        )
        self.outbox_wake.set()  # its acks
        self.webhook_wake.set()  # and its webhook
        self.ledger_wake.set()  # its sets, when it has 834s

    def _release(self, job: Job, error: str | None, *, retry_after: float) -> None:
        def txn(session: Session) -> None:
            receipt = repo.release(
                session, job.receipt_id, self.worker_id, retry_after=retry_after, error=error
            )
            if receipt is not None and error is None:
                receipt.attempts = max(0, receipt.attempts - 1)  # not a failed attempt

        self._until_recorded(txn)

    def _fail(self, job: Job, exc: Exception, attempt: int) -> None:
        """A bug, not bad data: retry with backoff; after max_attempts park it as failed. The
        error text goes to the database for operators (it may quote data); the log gets only
        the exception type. The database going away (a restart, a failover) is neither: the
        file is released to be taken again once it answers, and the attempt is not counted."""
        if is_transient(exc):
            log.warning(
                "processing_interrupted",
                attempt=attempt,
                error_type=type(exc).__name__,
                reason=database_trouble(exc),
            )
            self._release(job, None, retry_after=RECORD_RETRY_SECONDS)
            return
        FAILURES.inc()
        error = "".join(traceback.format_exception(exc))[-8000:]
        settings = self.gw.settings
        log.error("processing_failed", attempt=attempt, error_type=type(exc).__name__)

        def txn(session: Session) -> None:
            receipt = session.get(Receipt, job.receipt_id)
            if receipt is None or receipt.lease_owner != self.worker_id:
                return
            if attempt >= settings.max_attempts:
                park_failed(session, receipt, error)
                PARKED.inc()
            else:
                repo.release(
                    session,
                    job.receipt_id,
                    self.worker_id,
                    retry_after=min(60.0, 2.0**attempt),
                    error=error,
                )

        run_in_transaction(self.gw.sessions, txn)


__all__ = ["Status", "Worker", "new_worker_id", "recover_orphans"]


def watch_loop(gw: Gateway, stop: threading.Event, who: str) -> None:
    """gateway.watch every alert_poll_seconds until `stop`: missing files, late or unpicked
    acks, stuck or failed files and the core backlog opened or closed as alerts, each posted
    once whichever process sees it first. Workers run it, and so do the API and SFTP
    processes that have none: an alert about files no worker takes must not need a worker."""
    settings = gw.settings
    failures = _Failures("watch_error", who)
    with httpx.Client(timeout=settings.webhook_timeout_seconds) as client:
        while not stop.is_set():
            try:
                run_watch(gw, client)
                failures.ok()
            except Exception as exc:
                failures.failed(exc)
            stop.wait(max(settings.alert_poll_seconds, failures.pause))


class _Failures:
    """A background loop's failures. The database away (a restart, a failover) is logged once,
    without a traceback, and the loop backs off (0.5 s doubling to 30 s) until it answers again
    — an outage of a minute logged a traceback every half second from each loop (found by an
    on-call drill: 110 MB of logs an hour, enough for journald to drop what mattered). Anything
    else is logged with its traceback each time, as before."""

    def __init__(self, event: str, worker_id: str) -> None:
        self.event, self.worker_id = event, worker_id
        self.away = 0  # failed rounds in a row while the database is away
        self.pause = 0.0

    def failed(self, exc: Exception) -> None:
        if not is_transient(exc):
            self.ok()
            log.error(self.event, worker_id=self.worker_id, exc_info=exc)
            return
        self.away += 1
        if self.away == 1:
            log.warning(
                f"{self.event}_database_unavailable",
                worker_id=self.worker_id,
                error_type=type(exc).__name__,
                reason=database_trouble(exc),
            )
        self.pause = min(30.0, 0.5 * 2 ** (self.away - 1))

    def ok(self) -> None:
        if self.away:
            log.info(
                f"{self.event}_database_back", worker_id=self.worker_id, failed_rounds=self.away
            )
        self.away, self.pause = 0, 0.0


RECORD_RETRY_SECONDS = 5.0
"""While the database is away, how often a worker tries again to give a file back."""


def _park_worn_out(session: Session, receipt: Receipt, max_attempts: int) -> None:
    """Its workers died mid-file every time (a crash, not bad data): park it as failed."""
    park_failed(
        session,
        receipt,
        f"processing did not finish after {max_attempts} attempts "
        f"(the worker stopped mid-file each time); last error: {receipt.error}",
    )
    PARKED.inc()
