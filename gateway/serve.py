"""`edi834 serve`: the HTTP API, the SFTP server and the worker in one process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator

import uvicorn

from gateway.api.app import create_app
from gateway.context import Gateway
from gateway.db.migrate import upgrade
from gateway.intake.bridge import GatewaySftpHooks
from gateway.logging import configure_logging, get_logger
from gateway.settings import Settings
from gateway.worker.run import Worker, recover_orphans

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


async def run_server(settings: Settings) -> None:
    gw = Gateway.open(settings)
    await asyncio.to_thread(upgrade, settings.sqlalchemy_url)
    if gw.engine.dialect.name == "sqlite":
        recovered = await asyncio.to_thread(recover_orphans, gw)
        if recovered:
            log.info("orphans_recovered", count=recovered)
    gw.blobs.clean_tmp()
    worker = Worker(gw)
    if settings.worker_enabled:
        worker.start()
    app = create_app(gw, on_receipt=worker.wake)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        log_config=None,
        lifespan="off",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    server = _Server(config)
    servers = [server]
    gw.extra["wake"] = worker.wake
    if settings.dashboard_enabled:
        from gateway.dashboard.app import create_dashboard

        servers.append(
            _Server(
                uvicorn.Config(
                    create_dashboard(gw),
                    host=settings.dashboard_host,
                    port=settings.dashboard_port,
                    ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
                    ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
                    log_config=None,
                    lifespan="off",
                    timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
                )
            )
        )
    acceptor = None
    if settings.sftp_enabled:
        from gateway.intake.sftp import start_sftp_server

        acceptor = await start_sftp_server(
            host=settings.sftp_host,
            port=settings.sftp_port,
            root=settings.sftp_root,
            host_key_path=settings.host_key_path,
            hooks=GatewaySftpHooks(gw, on_receipt=worker.wake),
        )
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        for srv in servers:
            srv.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    sys.stdout.write(banner(settings))
    sys.stdout.flush()
    log.info(
        "listening",
        http=f"{settings.http_host}:{settings.http_port}",
        sftp=f"{settings.sftp_host}:{settings.sftp_port}",
    )
    try:
        await asyncio.gather(*(srv.serve() for srv in servers))
    finally:
        if acceptor is not None:
            acceptor.close()
            with contextlib.suppress(Exception):
                await acceptor.wait_closed()
        await asyncio.to_thread(worker.stop, settings.shutdown_grace_seconds)
        gw.close()
        log.info("stopped")


def serve(settings: Settings) -> int:
    configure_logging(settings.log_level)
    asyncio.run(run_server(settings))
    return 0
