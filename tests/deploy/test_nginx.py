"""The single-host nginx layout, run for real on loopback: deploy/single-host/
nginx.test.conf.template (the partner server of nginx.conf, directive for directive) in front
of a recording upstream. Uploads stream through unbuffered, /metrics stays inside, oversized
uploads are refused by nginx, and the forwarded headers are nginx's own. Skipped without nginx
(`make test` installs it)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.settings import Settings
from tests.deploy.test_manifests import render_template
from tests.gateway.harness import self_signed_cert

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if Path(p).exists()), None
)
pytestmark = pytest.mark.skipif(NGINX is None, reason="make test installs nginx")

MIB = 1 << 20


class Upstream(ThreadingHTTPServer):
    """Stands in for the `edi834 api` processes: records what nginx sends."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.paths: list[str] = []
        self.body_started = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def do_GET(self) -> None:
        self._answer(0)

    def do_POST(self) -> None:
        remaining = int(self.headers.get("Content-Length", "0"))
        received = 0
        while remaining:
            chunk = self.rfile.read(min(remaining, 64 * 1024))
            if not chunk:
                break
            self.server.body_started.set()
            received += len(chunk)
            remaining -= len(chunk)
        self._answer(received)

    def _answer(self, received: int) -> None:
        self.server.paths.append(self.path)
        body = json.dumps({"received": received, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Proxy:
    url: str
    port: int
    tls: ssl.SSLContext
    upstream: Upstream
    prefix: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.tls, timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    assert NGINX is not None
    cert, key = self_signed_cert(tmp_path)
    upstream = Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        render_template(
            LISTEN_PORT=port,
            UPSTREAMS=f"server 127.0.0.1:{upstream.server_address[1]};",
            CERT=cert,
            KEY=key,
            PID=prefix / "nginx.pid",
            TMP=prefix,
        )
    )
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.05)
        yield Proxy(
            f"https://127.0.0.1:{port}",
            port,
            ssl.create_default_context(cafile=str(cert)),
            upstream,
            prefix,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        upstream.shutdown()
        upstream.server_close()


class TestNginxTemplate:
    def test_metrics_stay_inside(self, proxy: Proxy) -> None:
        with proxy.client() as c:
            assert c.get("/metrics").status_code == 404
            assert c.get("/%6detrics").status_code == 404  # matched after decoding
            assert c.get("/readyz").status_code == 200
        assert proxy.upstream.paths == ["/readyz"]

    def test_the_access_log_names_routes_not_member_keys_or_policies(self, proxy: Proxy) -> None:
        with proxy.client() as c:
            for path in (
                "/v1/members/0004718293?as_of=2027-06-01",
                "/v1/members/SUB77%3A4bd01dd6ca29050012d0",
                "/v1/policies/VA%2F31200457/months.csv?from=2027-01",
                "/v1/policies/31200458/months",
                "/v1/interchanges?member=0004718293",
            ):
                assert c.get(path).status_code == 200
        proxy_log = proxy.prefix / "access.log"
        deadline = time.monotonic() + 5
        while proxy_log.read_text().count("\n") < 5 and time.monotonic() < deadline:
            time.sleep(0.05)  # nginx writes the line after the response
        text = proxy_log.read_text()
        for secret in ("0004718293", "4bd01dd6", "31200457", "31200458", "2027-06"):
            assert secret not in text, text
        assert text.count("GET /v1/members/{member_key} HTTP/1.1") == 2, text
        assert "GET /v1/policies/{policy}/months.csv " in text
        assert "GET /v1/policies/{policy}/months " in text
        assert "GET /v1/interchanges HTTP/1.1" in text

    def test_forwarded_headers_are_nginx_own(self, proxy: Proxy) -> None:
        spoofed = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http"}
        with proxy.client() as c:
            seen = c.get("/v1/interchanges", headers=spoofed).json()["headers"]
        assert seen["X-Forwarded-For"] == "127.0.0.1"
        assert seen["X-Forwarded-Proto"] == "https"
        assert seen["Host"] == f"127.0.0.1:{proxy.port}"

    def test_uploads_stream_through_unbuffered(self, proxy: Proxy) -> None:
        # The gateway must see the first bytes while the client is still sending: with
        # request buffering on, nginx would hold them until the last byte had arrived.
        total = 3 * MIB  # above nginx's default 1m limit, too

        def body() -> Iterator[bytes]:
            yield b"x" * MIB
            assert proxy.upstream.body_started.wait(10), "nginx buffered the upload"
            yield b"y" * (total - MIB)

        with proxy.client() as c:
            r = c.post(
                "/v1/interchanges",
                content=body(),
                headers={"Content-Length": str(total), "Content-Type": "application/edi-x12"},
            )
        assert r.status_code == 200
        assert r.json()["received"] == total

    def test_an_upload_over_the_gateway_limit_is_refused_by_nginx(self, proxy: Proxy) -> None:
        too_big = Settings.model_fields["max_body_bytes"].default + 1
        with (
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw,
            proxy.tls.wrap_socket(raw, server_hostname="127.0.0.1") as s,
        ):
            s.sendall(
                b"POST /v1/interchanges HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + f"Content-Length: {too_big}\r\n\r\n".encode()
            )
            status = s.recv(64).split(b"\r\n", 1)[0]
        assert status.split()[1] == b"413"
        assert proxy.upstream.paths == []
