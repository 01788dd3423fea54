"""`edi834 serve`: the HTTP API, the dashboard, the SFTP server and the worker in one process;
`edi834 api | sftp | worker`: one role each, any number of them against one PostgreSQL and one
shared data directory (issue 6)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import anyio.to_thread
import uvicorn

from gateway.api.app import create_app
from gateway.context import Gateway
from gateway.db.migrate import upgrade
from gateway.errors import GatewayError
from gateway.http_protocol import CoalescingHttpToolsProtocol
from gateway.intake.bridge import GatewaySftpHooks
from gateway.logging import configure_logging, get_logger
from gateway.outbound import OUTBOX_STAGING, remove_stale_temporaries
from gateway.settings import Settings
from gateway.worker.run import Worker, recover_orphans, watch_loop

log = get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: we stop the SFTP server and the worker too."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def banner(settings: Settings) -> str:
    scheme = "https" if settings.tls_cert else "http"
    http = f"{scheme}://{settings.http_host}:{settings.http_port}"
    return (
        f"edi834 gateway ({settings.isa_qualifier}:{settings.isa_id})\n"
        f"  HTTP API  {http}  (OpenAPI: {http}/docs)\n"
        f"  SFTP      {settings.sftp_host}:{settings.sftp_port}  (public keys only)\n"
        f"  dashboard {scheme}://{settings.dashboard_host}:{settings.dashboard_port}/dashboard"
        "  (operators: edi834 operator add NAME --role admin)\n"
        f"  data      {settings.data_dir.resolve()}\n"
        f"  database  {settings.sqlalchemy_url.split('@')[-1]}\n"
        "Add a partner:  .venv/bin/edi834 partner add --name va --isa-qualifier ZZ "
        "--isa-id VA0FFM --sftp-key ~/.ssh/id_ed25519.pub\n"
        f"Send a file:    curl -H 'Authorization: Bearer KEY' -H 'Content-Type: "
        f"application/edi-x12' --data-binary @samples/good_exchange_new_enrollment.834 "
        f"{http}/v1/interchanges\n"
    )


# How often a running SFTP server records stale uploads left in inbound/ as partial.
_SFTP_SWEEP_SECONDS = 600.0
_SFTP_HELD_SECONDS = 5.0  # how often uploads held while the database was away are retried
_SFTP_KEYS_SECONDS = 60.0  # how often partners' SFTP keys are read again (for an outage)

ALL_ROLES = frozenset({"api", "dashboard", "sftp", "worker"})


def _uvicorn(settings: Settings, app: object, host: str, port: int) -> _Server:
    return _Server(
        uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=host,
            port=port,
            ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
            log_config=None,
            lifespan="off",
            http=CoalescingHttpToolsProtocol,  # an answer in one write, not two (issue 19)
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        )
    )


async def _wait_for_schema(gw: Gateway, stop: asyncio.Event) -> bool:
    """A role started before `edi834 db upgrade` finished waits (not ready) instead of failing."""
    from gateway.db.migrate import pending

    announced = False
    while not stop.is_set():
        try:
            if not await asyncio.to_thread(pending, gw.engine):
                return True
        except Exception:
            log.warning("database_unreachable")
        if not announced:
            log.info("waiting_for_migrations")
            announced = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)
    return False


async def run_server(
    settings: Settings,
    roles: frozenset[str] = ALL_ROLES,
    *,
    concurrency: int = 1,
    migrate: bool = True,
) -> None:
    """Run the given roles until SIGTERM/SIGINT. `serve` runs them all and migrates; a single
    role migrates only with --migrate (in production one job runs `edi834 db upgrade`)."""
    if roles == frozenset({"worker"}) and settings.worker_nice:
        os.nice(settings.worker_nice)  # validation yields the CPU to the API's intake
    # The threadpool of every server in this process (routes, dependencies); the pool is sized
    # to it (Gateway.open), so a request never waits for, nor opens, a connection of its own.
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
    gw = Gateway.open(settings)
    stop_event = asyncio.Event()
    if migrate:
        await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    single_process = roles == ALL_ROLES
    if single_process and gw.engine.dialect.name == "sqlite":
        recovered = await asyncio.to_thread(recover_orphans, gw)
        if recovered:
            log.info("orphans_recovered", count=recovered)
    removed = gw.blobs.clean_tmp()  # HTTP uploads a kill cut off
    if removed:
        log.info("upload_temporaries_removed", count=removed)
    restored = gw.blobs.restore_aside()  # blobs a purge killed mid-way had moved aside
    if restored:
        log.info("blobs_put_back", count=restored)
    stale = remove_stale_temporaries(settings.data_dir / OUTBOX_STAGING)  # acks a kill cut off
    if stale:
        log.info("ack_temporaries_removed", count=stale)
    worker = (
        Worker(gw, concurrency=concurrency)
        if "worker" in roles and settings.worker_enabled
        else None
    )
    wake = worker.wake if worker is not None else None
    # Alerts must not depend on the workers they may be about (files received and taken by
    # none): a process that takes files in and runs no worker watches too.
    watch_stop = threading.Event()
    watcher = (
        threading.Thread(
            target=watch_loop,
            args=(gw, watch_stop, "+".join(sorted(roles & {"api", "sftp"}))),
            name="watch",
            daemon=True,
        )
        if worker is None and roles & {"api", "sftp"}
        else None
    )
    servers: list[_Server] = []
    if "api" in roles:
        servers.append(
            _uvicorn(
                settings,
                create_app(gw, on_receipt=wake),
                settings.http_host,
                settings.http_port,
            )
        )
    elif settings.health_port:  # probes and /metrics for a role without the API
        from gateway.api.app import create_health_app

        servers.append(
            _uvicorn(settings, create_health_app(gw), settings.http_host, settings.health_port)
        )
    if wake is not None:
        gw.extra["wake"] = wake
    if "dashboard" in roles and settings.dashboard_enabled:
        from gateway.dashboard.app import create_dashboard

        servers.append(
            _uvicorn(
                settings, create_dashboard(gw), settings.dashboard_host, settings.dashboard_port
            )
        )
    acceptor = None
    sweep: asyncio.Task[None] | None = None
    if "sftp" in roles and settings.sftp_enabled:
        from gateway.intake.sftp import (
            parse_temporary_patterns,
            recover_orphan_uploads,
            start_sftp_server,
        )

        hooks = GatewaySftpHooks(gw, on_receipt=wake)
        patterns = parse_temporary_patterns(settings.sftp_temporary_patterns)

        async def record_orphans() -> None:
            orphans = await recover_orphan_uploads(
                settings.sftp_root,
                hooks,
                temporary_patterns=patterns,
                resumable_seconds=settings.sftp_resume_hours * 3600,
            )
            if orphans:
                log.info("sftp_orphans_recorded", count=orphans)

        async def sweep_orphans() -> None:
            # Temporary uploads not resumed in time become partial while the server runs too;
            # uploads held while the database was away are recorded once it answers.
            swept = keys_read = time.monotonic()
            if not keys_at_start:
                keys_read -= _SFTP_KEYS_SECONDS  # read them at the first sweep
            while True:
                await asyncio.sleep(_SFTP_HELD_SECONDS)
                try:
                    if time.monotonic() - keys_read >= _SFTP_KEYS_SECONDS:
                        keys_read = time.monotonic()
                        await asyncio.to_thread(hooks.read_keys)
                    await hooks.record_held()
                    if time.monotonic() - swept >= _SFTP_SWEEP_SECONDS:
                        swept = time.monotonic()
                        await record_orphans()
                except Exception as exc:  # the next sweep tries again
                    log.error("sftp_sweep_failed", error=type(exc).__name__)

        # The keys a login falls back on during an outage. A database not migrated yet (the
        # role started before `edi834 db upgrade`, which it is documented to wait for) or not
        # reachable must not stop the server: it crashed here, with a traceback, where it
        # used to start and wait; the sweep reads them again.
        try:
            await asyncio.to_thread(hooks.read_keys)
            keys_at_start = True
        except Exception as exc:
            keys_at_start = False
            log.warning("sftp_keys_not_read", error=type(exc).__name__)
        # Files a killed server left in inbound/: partial receipts, before anyone connects.
        await hooks.record_held()
        await record_orphans()
        acceptor = await start_sftp_server(
            host=settings.sftp_host,
            port=settings.sftp_port,
            root=settings.sftp_root,
            host_key_path=settings.host_key_path,
            hooks=hooks,
            max_upload_bytes=settings.max_body_bytes,
            temporary_patterns=patterns,
            allow_sha1=settings.sftp_allow_sha1,
            max_pending_uploads=settings.sftp_max_pending_uploads,
        )
        sweep = asyncio.create_task(sweep_orphans())
    loop = asyncio.get_running_loop()
    log.debug("event_loop", implementation=type(loop).__module__.partition(".")[0])

    def stop(signum: int) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop_event.set()
        for srv in servers:
            srv.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    if single_process:
        sys.stdout.write(banner(settings))
        sys.stdout.flush()
    dashboard = "dashboard" in roles and settings.dashboard_enabled
    running = {
        role
        for role in roles
        if (role != "dashboard" or dashboard)
        and (role != "sftp" or acceptor is not None)
        and (role != "worker" or worker is not None)
    }
    log.info(
        "listening",
        roles=",".join(sorted(running)),  # what runs, not what was asked for
        http=f"{settings.http_host}:{settings.http_port}" if "api" in roles else None,
        dashboard=f"{settings.dashboard_host}:{settings.dashboard_port}" if dashboard else None,
        sftp=f"{settings.sftp_host}:{settings.sftp_port}" if acceptor is not None else None,
    )

    async def run_worker() -> None:
        if worker is None:
            if watcher is not None and await _wait_for_schema(gw, stop_event):
                watcher.start()
            return
        if await _wait_for_schema(gw, stop_event):
            worker.start()
            log.info("worker_started", worker_id=worker.worker_id, concurrency=concurrency)

    # What is built by now (modules, the apps with their routes and models, the engine) lives
    # as long as the process: frozen out of the collector's sight, a full collection walks only
    # what requests made since. Unfrozen, a gen-2 collection in an API under load took 100-175
    # ms with the GIL held, every request in flight waiting: intake's p99 at 32 clients
    # (issue 19).
    gc.collect()
    gc.freeze()
    try:
        await asyncio.gather(*(srv.serve() for srv in servers), run_worker(), stop_event.wait())
    finally:
        if sweep is not None:
            sweep.cancel()
        if acceptor is not None:
            acceptor.close()
            with contextlib.suppress(Exception):
                await acceptor.wait_closed()
        if worker is not None:
            await asyncio.to_thread(worker.stop, settings.shutdown_grace_seconds)
        watch_stop.set()
        if watcher is not None and watcher.is_alive():
            await asyncio.to_thread(watcher.join, settings.shutdown_grace_seconds)
        gw.close()
        log.info("stopped")


def serve(
    settings: Settings,
    roles: frozenset[str] = ALL_ROLES,
    *,
    concurrency: int = 1,
    migrate: bool = True,
) -> int:
    _check_tls_files(settings)
    _check_secrets(settings)
    configure_logging(settings.log_level)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run_server(settings, roles, concurrency=concurrency, migrate=migrate))
    return 0


def _check_secrets(settings: Settings) -> None:
    """A destination of signed posts needs its secret: the core's events carry member data,
    and signed with an empty key anyone could forge them (found by a core integrator's run)."""
    for url_name, url, secret_name, secret in (
        ("EDI834_CORE_URL", settings.core_url, "EDI834_CORE_SECRET", settings.core_secret),
        ("EDI834_ALERT_URL", settings.alert_url, "EDI834_ALERT_SECRET", settings.alert_secret),
    ):
        if url and not secret:
            raise GatewayError(
                f"{url_name} is set without {secret_name}: its posts would be signed with an "
                f"empty key; set {secret_name} (the receiver checks X-EDI834-Signature with it)"
            )
    if (
        settings.core_url
        and not settings.core_allow_http
        and not _encrypted_or_local(settings.core_url)
    ):
        raise GatewayError(
            "EDI834_CORE_URL is http:// to a host that is not loopback: the core's events carry "
            "member data (names, SSNs, birth dates, addresses) and would cross the network in "
            "clear; use https://, or set EDI834_CORE_ALLOW_HTTP=true if the path is encrypted "
            "another way (a service mesh's mutual TLS)"
        )


def _encrypted_or_local(url: str) -> bool:
    """https://, or http:// to a loopback host (a local agent or sidecar)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return True  # https, or a URL the delivery itself refuses
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_tls_files(settings: Settings) -> None:
    """Name the file that cannot be read before anything starts (ssl's own error does not)."""
    for name, path in (
        ("EDI834_TLS_CERT", settings.tls_cert),
        ("EDI834_TLS_KEY", settings.tls_key),
    ):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise GatewayError(f"{name} {path}: {exc.strerror or exc}") from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (a dependency; issue 19: less CPU per request in the event
    loop), else asyncio's own loop. uvicorn's loop="auto" would choose the same, but only for a
    loop it starts itself, and every role here runs in a loop of ours."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without a wheel
        return None
    return uvloop.new_event_loop
