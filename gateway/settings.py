"""The gateway's settings: environment variables `EDI834_*`, overridable by command-line flags."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDI834_", extra="ignore")

    data_dir: Path = Path("var")
    database_url: str = ""  # empty: SQLite at <data_dir>/edi834.sqlite3
    db_busy_timeout_ms: int = 30_000  # SQLite: how long a writer waits for the lock
    # Threads that run the API's and the dashboard's blocking routes and dependencies (anyio's
    # threadpool, one per process). The database pool keeps a connection for each of them and
    # for asyncio.to_thread's, so a busy API reuses its connections instead of opening one for
    # about every second request (issue 19); PostgreSQL's max_connections must cover the
    # processes' pools.
    api_threads: int = Field(default=40, ge=1)

    http_host: str = "127.0.0.1"
    http_port: int = 8834
    tls_cert: Path | None = None
    tls_key: Path | None = None

    sftp_enabled: bool = True
    sftp_host: str = "127.0.0.1"
    sftp_port: int = 2222
    # The ed25519 host key; the ECDSA P-256 and RSA host keys sit beside it
    # (sftp_host_ecdsa_key, sftp_host_rsa_key). Each is generated once if missing.
    sftp_max_pending_uploads: int = Field(default=20, ge=1)  # unfinished files per partner
    sftp_host_key: Path | None = None  # default <data_dir>/sftp_host_ed25519_key
    # Uploads to a name matching one of these (comma-separated shell patterns, any case) are
    # complete only when renamed to a final name.
    sftp_temporary_patterns: str = "*.part,*.tmp,*.filepart,*.partial,.in.*"
    # An upload to a temporary name left by a dropped session can be resumed this long; then
    # it is recorded as a partial receipt.
    sftp_resume_hours: float = Field(default=24.0, gt=0)
    # A finished upload stays visible (read-only) in inbound/ until it is processed, and at
    # least this long after its CLOSE or RENAME.
    sftp_received_visible_seconds: float = Field(default=120.0, ge=0)
    # How long an upload's CLOSE (or completing RENAME) waits for the database (a restart, a
    # failover) before the upload is held and recorded once it answers.
    sftp_close_patience_seconds: float = Field(default=15.0, gt=0)
    # While the database is unreachable, a partner logs in with the SFTP keys last read from it
    # (all partners' keys are read again every minute), if they were read this recently; its
    # uploads are then held and recorded once the database answers. 0: no login without it.
    sftp_key_cache_hours: float = Field(default=24.0, ge=0)
    # SHA-1 (ssh-rsa signatures, group14-sha1 key exchange, hmac-sha1), refused by default as
    # OpenSSH 8.8 does: true lets a legacy client in (an old JSch signs RSA keys with SHA-1).
    sftp_allow_sha1: bool = False

    # Our interchange identity: ISA07/ISA08 of every file sent to us, ISA05/ISA06 of our acks.
    isa_qualifier: str = "ZZ"
    isa_id: str = "EDI834GATEWAY"

    max_body_bytes: int = 512 * 1024 * 1024
    # /readyz says not ready while the blob store (and a SQLite database's folder) has less
    # free than this: every upload would be a 507 (or a 503) until space is made.
    ready_min_free_mb: int = Field(default=64, ge=0)
    rate_limit_per_minute: int = 600  # files per partner per minute over HTTP
    # How long an API process remembers which partner an API key belongs to: a rotated or
    # disabled key stops working at most this long after (0: looked up on every request).
    api_key_cache_seconds: float = Field(default=5.0, ge=0)
    max_segment_bytes: int = 65_536
    # How the inside of an 834 set is checked against 005010X220A1: "fast" (pyx12's map
    # compiled into tables; identical findings, held to it by the differential tests) or
    # "pyx12" (pyx12's own walker, the reference).
    validation_engine: Literal["fast", "pyx12"] = "fast"
    # Processes for one large 834 set (4 MB and more), checked in blocks of 2,000 members by
    # the fast engine, and read into the ledger in blocks of 1,000: 0 = one per CPU, 1 = none
    # (the worker's own thread only).
    validation_processes: int = Field(default=0, ge=0)

    # `edi834 sftp` / `edi834 worker`: /healthz, /readyz and /metrics on this port (0 = none).
    health_port: int = 0

    dashboard_enabled: bool = True
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8835
    # What a dashboard viewer (not an admin who reveals, audited) sees of a member's id, the
    # minimum necessary to brief the exchange: "last4" (…0003), "full", or "masked". Names,
    # SSNs, birth dates, addresses and compared values stay masked whatever this says.
    dashboard_member_id: Literal["last4", "full", "masked"] = "last4"
    session_idle_minutes: int = 30
    login_max_failures: int = 5  # then the account locks, doubling from 30 s up to 15 min

    worker_enabled: bool = True
    worker_poll_seconds: float = 0.5
    # `edi834 worker` alone lowers its CPU priority by this much (os.nice): on a shared host
    # the 202s of intake come first and validation catches up (issue 6), at the price of later
    # 999s under load; 0 (the default) keeps it equal.
    worker_nice: int = Field(default=0, ge=0, le=19)
    lease_seconds: int = 60  # renewed every third of it while a file is validated
    max_attempts: int = 3
    shutdown_grace_seconds: float = 30.0

    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 8
    # A webhook to a loopback, private, link-local or otherwise non-public address is refused
    # (a partner's URL must not reach the insurer's own network); true only for tests and labs.
    webhook_allow_private: bool = False

    # Applied member events for the insurer's core system (issue 5): POSTed as signed JSON to
    # core_url (HMAC-SHA256 with core_secret, Idempotency-Key header), or written as JSON Lines
    # files to core_export_dir (both set: the URL alone). Neither: the outbox keeps them (lag).
    core_url: str = ""
    # A validated file waits at most this long for its sender's other queued files to be
    # validated, so the ledger can apply them in the sender's order (BGN date, AR/RT/daily).
    ledger_order_window_seconds: float = 60.0
    core_secret: str = ""
    # The events carry names, SSNs, birth dates and addresses: an http:// core_url is refused
    # unless its host is loopback (a local agent or sidecar), or this says the path is
    # encrypted another way (a service mesh's mutual TLS, an IPsec tunnel).
    core_allow_http: bool = False
    core_export_dir: Path | None = None
    core_timeout_seconds: float = 10.0
    core_batch_size: int = 500
    # "event": one POST an event (its Idempotency-Key in the header); "batch": one POST a round,
    # up to core_batch_size events as JSON Lines, the lines of an export file (each with its key).
    core_post: Literal["event", "batch"] = "event"

    # Knowing what did not happen (gateway.watch): acks answered later than the SLA (CAQH
    # CORE's is one hour from receipt), acks left in outbound/ longer than pickup_hours, files
    # received and not processed after stuck_minutes; each incident posted once, opened and
    # closed, to alert_url (signed like the webhooks: X-EDI834-Signature with alert_secret).
    ack_sla_seconds: int = Field(default=3600, ge=1)
    ack_latency_hours: int = Field(default=24, ge=1)  # the window the p50/p95 alert judges
    pickup_hours: float = Field(default=24.0, gt=0)
    stuck_minutes: float = Field(default=30.0, gt=0)
    alert_url: str = ""
    alert_secret: str = ""
    alert_poll_seconds: float = Field(default=60.0, gt=0)

    log_level: str = "info"
    public_url: str = Field(default="", description="base URL used in status_url links")

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'edi834.sqlite3').resolve()}"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database's file, when the database is one (not in memory)."""
        url = make_url(self.sqlalchemy_url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database)

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def sftp_root(self) -> Path:
        return self.data_dir / "sftp"

    @property
    def host_key_path(self) -> Path:
        return self.sftp_host_key or self.data_dir / "sftp_host_ed25519_key"

    @property
    def core_configured(self) -> bool:
        """A core system receives the applied member events (else the outbox keeps them)."""
        return bool(self.core_url) or self.core_export_dir is not None

    @property
    def identity(self) -> tuple[str, str]:
        return self.isa_qualifier, self.isa_id


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
