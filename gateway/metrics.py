"""Prometheus metrics, per process. Queue depth is read from the database at scrape time.

Every labelled series whose label values are known in advance exists at zero from the start
(`rate()` and `absent()` alerts need the series before the first event); counters export no
`_created` samples (a second series per counter that alerts never use)."""

from __future__ import annotations

import datetime as dt
import platform
from importlib import metadata

from prometheus_client import Counter, Gauge, Histogram, Info, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]

FILES_RECEIVED = Counter("edi834_files_received_total", "Files durably received", ["channel"])
DUPLICATES = Counter("edi834_duplicate_submissions_total", "Identical files sent again")
OUTCOMES = Counter("edi834_files_processed_total", "Files processed, by outcome", ["outcome"])
INTERCHANGES = Counter(
    "edi834_interchanges_processed_total",
    "Interchanges validated, by ISA15 usage (P production, T test: never applied) and TA1 code",
    ["usage", "ta1"],
)
FAILURES = Counter("edi834_processing_failures_total", "Processing attempts that raised")
PARKED = Counter("edi834_files_failed_total", "Files parked as failed after repeated failures")
LATENCY = Histogram(
    "edi834_processing_seconds",
    "From receipt to stored acknowledgements",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
REJECTED_REQUESTS = Counter(
    "edi834_intake_refused_total", "Uploads refused before a receipt", ["reason"]
)

queue_gauge = Gauge("edi834_queue_depth", "Receipts waiting or in processing", ["status"])
DATABASE_UP = Gauge(
    "edi834_database_up",
    "1 when this scrape read the database; 0 when it could not (the gauges read from the "
    "database then keep their last values)",
)
QUEUE_OLDEST = Gauge(
    "edi834_queue_oldest_seconds", "Age of the oldest file waiting for a worker (0 when none)"
)

# The core-system outbox (issue 5): set by each delivery round from the database.
CORE_PENDING = Gauge("edi834_core_pending_events", "Applied member events not yet delivered")
CORE_LAG = Gauge(
    "edi834_core_lag_seconds", "Age of the oldest undelivered member event (0 when none)"
)
CORE_FAILURES = Counter(
    "edi834_core_delivery_failures_total", "Core delivery rounds that stopped on a failure"
)
CORE_CONFIGURED = Gauge(
    "edi834_core_delivery_configured",
    "1 when a core system is configured (EDI834_CORE_URL or EDI834_CORE_EXPORT_DIR); "
    "without one, edi834_core_lag_seconds stays 0",
)


def set_core_backlog(
    *, pending: int, oldest: dt.datetime | None, configured: bool, now: dt.datetime
) -> None:
    """The core outbox gauges. Without a core system the backlog only grows by design (the
    outbox keeps the events): it is counted, but reported as no lag, so no alert fires on
    every deployment without a core."""
    CORE_CONFIGURED.set(1 if configured else 0)
    CORE_PENDING.set(pending)
    lag = (now - oldest).total_seconds() if configured and oldest is not None else 0.0
    CORE_LAG.set(max(0.0, lag))


# The enrollment ledger (issue 5): files waiting / parked, read from the database at scrape time.
LEDGER_FILES = Gauge("edi834_ledger_files", "Files in the ledger stage, by status", ["status"])
BUSINESS_FINDINGS = Counter(
    "edi834_business_findings_total",
    "Business-rule findings, by rule and severity",
    ["rule", "severity"],
)
LEDGER_OUT_OF_ORDER = Counter(
    "edi834_ledger_out_of_order_total",
    "Files applied after one their sender's order puts after them",
)

# What did not happen (gateway.watch), read from the database at scrape time.
PARTNER_LAST_FILE = Gauge(
    "edi834_partner_last_file_timestamp_seconds",
    "When the partner's latest complete file was received (Unix time)",
    ["partner"],
)
PARTNER_FILE_MISSING = Gauge(
    "edi834_partner_file_missing",
    "1 when the partner's expected file did not come by its last deadline (its schedule)",
    ["partner"],
)
ACK_LATENCY = Gauge(
    "edi834_ack_latency_seconds",
    "Receipt to acks (TA1/999), over the last EDI834_ACK_LATENCY_HOURS, by quantile",
    ["partner", "quantile"],
)
ACK_SLA = Gauge("edi834_ack_sla_seconds", "The ack latency SLA (EDI834_ACK_SLA_SECONDS)")
ACKS_NOT_PICKED_UP = Gauge(
    "edi834_acks_not_picked_up",
    "Acks in the partner's outbound/ longer than EDI834_PICKUP_HOURS, never fetched",
    ["partner"],
)
STUCK_FILES = Gauge(
    "edi834_stuck_files", "Files received and not processed after EDI834_STUCK_MINUTES"
)
ALERTS_OPEN = Gauge("edi834_alerts_open", "Open watch incidents, by kind", ["kind"])

# The SFTP server (this process).
SFTP_SESSIONS = Gauge("edi834_sftp_sessions", "Open SFTP sessions")
SFTP_UPLOADS = Counter(
    "edi834_sftp_uploads_total",
    "SFTP uploads ended, by result: complete, partial (the session dropped), resumable (an "
    "upload to a temporary name that dropped, kept to be resumed), not_recorded (a hook failed), "
    "held (kept while the database was unavailable), recorded_late (a held upload recorded), "
    "refused_pending (a new upload refused: too many unfinished ones in inbound/)",
    ["result"],
)

# The HTTP faces (this process), by route template (never the ids in the path).
HTTP_REQUESTS = Counter(
    "edi834_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "edi834_http_request_seconds",
    "HTTP request handling time",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UNAUTHORIZED = Counter("edi834_http_unauthorized_total", "HTTP requests answered 401")

# Deliveries from the worker's outbox: acks written to outbound/, webhooks posted.
DELIVERY_FAILURES = Counter(
    "edi834_delivery_failures_total",
    "Ack writes, webhook posts and SFTP notices that failed",
    ["kind"],
)
DELIVERY_SECONDS = Histogram(
    "edi834_delivery_seconds",
    "Time to write one ack to outbound/ or post one webhook",
    ["kind"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


DB_CONNECTIONS_OPENED = Counter(
    "edi834_db_connections_opened_total",
    "Database connections this process opened: it grows with the threads that use the database "
    "at the same time, up to the pool's size, and then stays flat",
)
DB_CONNECTIONS_CLOSED = Counter(
    "edi834_db_connections_closed_total",
    "Database connections this process closed: flat under load (a pool smaller than the "
    "threadpool closed and reopened one for about every second request: issue 19)",
)
LEASE_TAKEOVERS = Counter(
    "edi834_lease_takeovers_total",
    "Files a worker took over because the lease of the worker holding them had expired (it "
    "died or stalled), by stage: validate (to the 999) or ledger",
    ["stage"],
)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # run from a source tree never installed
        return "unknown"


BUILD = Info("edi834_build", "The running gateway's version")
BUILD.info(
    {
        "version": _version("edi834-gateway"),
        "python": platform.python_version(),
        "asyncssh": _version("asyncssh"),
    }
)

# Known label values, at zero before any event.
for _channel in ("http", "sftp"):
    FILES_RECEIVED.labels(channel=_channel)
for _reason in ("media_type", "too_large", "rate_limited", "storage", "database", "empty"):
    REJECTED_REQUESTS.labels(reason=_reason)
for _outcome in ("accepted", "accepted_with_errors", "partially_accepted", "rejected", "none"):
    OUTCOMES.labels(outcome=_outcome)
for _status in ("received", "processing"):
    queue_gauge.labels(status=_status)
for _result in (
    "complete",
    "partial",
    "resumable",
    "not_recorded",
    "held",
    "recorded_late",
    "refused_pending",
):
    SFTP_UPLOADS.labels(result=_result)
for _stage in ("validate", "ledger"):
    LEASE_TAKEOVERS.labels(stage=_stage)
for _kind in ("ack", "webhook"):
    DELIVERY_FAILURES.labels(kind=_kind)
    DELIVERY_SECONDS.labels(kind=_kind)
DELIVERY_FAILURES.labels(kind="notice")  # an SFTP notice not written (never timed)
