"""Prometheus metrics, per process. Queue depth is read from the database at scrape time."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

# The core-system outbox (issue 5): set by each delivery round from the database.
CORE_PENDING = Gauge("edi834_core_pending_events", "Applied member events not yet delivered")
CORE_LAG = Gauge(
    "edi834_core_lag_seconds", "Age of the oldest undelivered member event (0 when none)"
)
CORE_FAILURES = Counter(
    "edi834_core_delivery_failures_total", "Core delivery rounds that stopped on a failure"
)

# The enrollment ledger (issue 5): files waiting / parked, read from the database at scrape time.
LEDGER_FILES = Gauge("edi834_ledger_files", "Files in the ledger stage, by status", ["status"])
BUSINESS_FINDINGS = Counter(
    "edi834_business_findings_total",
    "Business-rule findings, by rule and severity",
    ["rule", "severity"],
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
