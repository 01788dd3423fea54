"""End to end over HTTP against a real `edi834 serve` on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import ClassVar

import httpx

from gateway.api.webhooks import WebhookEvent
from tests.conftest import SAMPLES
from tests.gateway.harness import submit, wait_final, wait_for_file

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
DEFECTIVE = (SAMPLES / "bad_ik403_8_dmg02_date.834").read_bytes()
SPOOFED = (SAMPLES / "bad_ta1_006_spoofed_sender.834").read_bytes()
NOT_OURS = (SAMPLES / "bad_ta1_009_receiver_not_ours.834").read_bytes()


def _variant(content: bytes, n: int) -> bytes:
    """Same envelope, different bytes (a BGN02 reference), so not a resend."""
    return content.replace(b"BGN*00*", f"BGN*00*V{n}".encode(), 1)


def _with_isa13(content: bytes, isa13: int) -> bytes:
    """ISA13 and IEA02 both changed: a new, well-formed interchange."""
    old, new = content[90:99], f"{isa13:09d}".encode()
    content = content[:90] + new + content[99:]
    return content.replace(b"IEA*1*" + old, b"IEA*1*" + new)


class TestHttpIntake:
    def test_clean_and_defective_files_are_answered_over_http_and_in_outbound(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        gateway.start()
        with gateway.client(key) as c:
            r = submit(c, GOOD, "daily-0501.834")
            assert r.status_code == 202, r.text
            receipt = r.json()
            assert receipt["sha256"] == hashlib.sha256(GOOD).hexdigest()
            assert receipt["status_url"].endswith(f"/v1/interchanges/{receipt['id']}")
            good = wait_final(c, receipt["id"])
            assert good["status"] == "processed"
            assert good["outcome"] == "accepted"
            assert good["counts"]["sets_accepted"] == good["counts"]["sets_received"] == 1
            assert good["counts"]["members_accepted"] == good["counts"]["members_received"] > 0
            assert good["findings"] == []
            # A status is member data's neighbour: no cache keeps it; plain HTTP says no HSTS.
            status = c.get(f"/v1/interchanges/{receipt['id']}")
            assert status.headers["cache-control"] == "no-store"
            assert status.headers["x-content-type-options"] == "nosniff"
            assert "strict-transport-security" not in status.headers

            ack = c.get(f"/v1/interchanges/{receipt['id']}/acks/999")
            assert ack.status_code == 200
            assert ack.headers["cache-control"] == "private, no-cache"  # its own: ETag
            assert ack.content.startswith(b"ISA*00*")
            assert b"*ZZ*EDI834GATEWAY  *ZZ*VA0FFM         *" in ack.content
            assert b"AK9*A*1*1*1~" in ack.content
            kinds = {a["kind"]: a for a in c.get(f"/v1/interchanges/{receipt['id']}/acks").json()}
            assert set(kinds) == {"ta1", "999"}  # ISA14 = 1 asks for a TA1
            ta1 = c.get(f"/v1/interchanges/{receipt['id']}/acks/ta1").content
            assert b"TA1*" in ta1 and b"*A*000~" in ta1
            outbound = gateway.data_dir / "sftp" / "va" / "outbound"
            on_disk = wait_for_file(outbound / kinds["999"]["filename"])
            assert on_disk.read_bytes() == ack.content
            assert "daily-0501" in kinds["999"]["filename"]

            r = submit(c, DEFECTIVE, "bad.834")
            assert r.status_code == 202
            bad = wait_final(c, r.json()["id"])
            assert bad["outcome"] == "rejected"
            assert bad["counts"]["sets_rejected"] == 1
            dmg = [f for f in bad["findings"] if f["family"] == "IK403"]
            assert dmg and dmg[0]["code"] == "8"
            assert dmg[0]["segment_id"] == "DMG" and dmg[0]["element_position"] == 2
            assert dmg[0]["segment_position"] == 16
            assert dmg[0]["remedy"] and dmg[0]["meaning"]
            text = c.get(f"/v1/interchanges/{r.json()['id']}/acks/999").text
            assert "IK3*DMG*16*2100*8~" in text and "IK5*R*5~" in text and "AK9*R*1*1*0~" in text

            # A name in UTF-8 (outside X12's character set): the API shows the name, not its
            # bytes read as Latin-1 ("MARÃ\x8dA"); the 999 names the element and the invalid
            # character (IK403 6) without copying bytes a translator would refuse (IK404).
            utf8 = _with_isa13(GOOD, 777).replace(b"OKAFOR*DANIELLE", "OKAFOR*MARÍA".encode(), 1)
            r = c.post(  # and a file name in UTF-8, kept as sent (not "rÃ©sumÃ©")
                "/v1/interchanges",
                content=utf8,
                headers={
                    "Content-Type": "application/edi-x12",
                    "X-Filename": "résumé ñ.834".encode(),
                },
            )
            named = wait_final(c, r.json()["id"])
            assert named["filename"] == "résumé ñ.834"
            values = {f["bad_value"] for f in named["findings"] if f["segment_id"] == "NM1"}
            assert "MARÍA" in values, named["findings"]
            ack999 = c.get(f"/v1/interchanges/{r.json()['id']}/acks/999").content
            assert b"IK4*4*1036*6~" in ack999 and "MARÍA".encode() not in ack999

    def test_resend_identical_bytes_returns_the_original_receipt(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        gateway.start()
        with gateway.client(key) as c:
            first = submit(c, GOOD)
            again = submit(c, GOOD)
            assert (first.status_code, again.status_code) == (202, 200)
            assert again.json()["id"] == first.json()["id"] and again.json()["duplicate"]
            wait_final(c, first.json()["id"])
            assert len(c.get("/v1/interchanges").json()["items"]) == 1

    def test_envelope_identity_and_duplicate_control_numbers(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        gateway.start()
        with gateway.client(key) as c:
            spoof = wait_final(c, submit(c, SPOOFED).json()["id"])
            assert spoof["outcome"] == "rejected"
            assert spoof["interchanges"][0]["ta1_note"] == "006"
            assert b"*R*006~" in c.get(f"/v1/interchanges/{spoof['id']}/acks/ta1").content
            assert c.get(f"/v1/interchanges/{spoof['id']}/acks/999").status_code == 404

            not_ours = wait_final(c, submit(c, NOT_OURS).json()["id"])
            assert not_ours["interchanges"][0]["ta1_note"] in {"008", "009"}
            assert not_ours["outcome"] == "rejected"

            first = wait_final(c, submit(c, _with_isa13(GOOD, 777)).json()["id"])
            assert first["outcome"] == "accepted"
            second = wait_final(c, submit(c, _variant(_with_isa13(GOOD, 777), 1)).json()["id"])
            assert second["interchanges"][0]["ta1_note"] == "025"
            assert second["outcome"] == "rejected"

    def test_refusals_come_before_any_receipt(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        gateway.start(EDI834_MAX_BODY_BYTES="4096", EDI834_RATE_LIMIT_PER_MINUTE="5")
        with gateway.client(key) as c:
            big = GOOD * 10
            assert submit(c, big).status_code == 413

            def chunks():  # no Content-Length: the limit holds while streaming
                for i in range(0, len(big), 1000):
                    yield big[i : i + 1000]

            r = c.post(
                "/v1/interchanges",
                content=chunks(),
                headers={"Content-Type": "application/edi-x12"},
            )
            assert r.status_code == 413
            r = c.post(
                "/v1/interchanges", content=GOOD, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 415
            # A compressed body is refused before a receipt (it was received, then rejected as
            # binary data), with what to send instead.
            r = c.post(
                "/v1/interchanges",
                content=gzip.compress(GOOD),
                headers={"Content-Type": "application/edi-x12", "Content-Encoding": "gzip"},
            )
            assert (r.status_code, r.headers["accept-encoding"]) == (415, "identity")
            assert "uncompressed" in r.json()["detail"]
            assert submit(c, b"").status_code == 400
            statuses, limited = [], None
            for n in range(8):
                r = submit(c, _variant(GOOD, n))
                statuses.append(r.status_code)
                if r.status_code == 429:
                    limited = r
                    break
            assert limited is not None, statuses
            assert int(limited.headers["Retry-After"]) >= 1
            accepted = statuses.count(202)
            assert accepted >= 1 and set(statuses) == {202, 429}
            items = c.get("/v1/interchanges").json()["items"]
            assert len(items) == accepted  # refused uploads left no receipt
        tmp = list((gateway.data_dir / "blobs" / "tmp").iterdir())
        assert tmp == []  # and no temporary files

    def test_unusable_input_is_rejected_with_a_reason(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        gateway.start()
        with gateway.client(key) as c:
            r = submit(c, b"\x89PNG\r\n\x1a\n not an 834 at all", "photo.png")
            body = wait_final(c, r.json()["id"])
            assert body["outcome"] == "rejected"
            assert body["findings"][0]["family"] == "FILE"
            notice = c.get(f"/v1/interchanges/{body['id']}/acks/rejection")
            assert notice.status_code == 200 and json.loads(notice.text)["outcome"] == "rejected"

    def test_listing_filters_and_cursor_pagination(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        gateway.start()
        with gateway.client(key) as c:
            ids = []
            for n in range(5):
                ids.append(submit(c, _with_isa13(_variant(GOOD, n), 900 + n)).json()["id"])
            bad = submit(c, DEFECTIVE).json()["id"]
            for rid in [*ids, bad]:
                wait_final(c, rid)
            seen, cursor = [], None
            while True:
                params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
                page = c.get("/v1/interchanges", params=params).json()
                seen += [i["id"] for i in page["items"]]
                cursor = page["next_cursor"]
                if not cursor:
                    break
            assert sorted(seen) == sorted([*ids, bad]) and len(seen) == len(set(seen))
            rejected = c.get("/v1/interchanges", params={"outcome": "rejected"}).json()["items"]
            assert [i["id"] for i in rejected] == [bad]
            for typed in ("000000902", "902", "0902"):  # as stored, or as a person reads it
                by_isa13 = c.get("/v1/interchanges", params={"isa13": typed}).json()["items"]
                assert [i["id"] for i in by_isa13] == [ids[2]], typed
            gs06 = c.get(f"/v1/interchanges/{ids[0]}").json()["interchanges"][0]["groups"][0]
            by_gs06 = c.get("/v1/interchanges", params={"gs06": gs06["gs06"]}).json()["items"]
            assert ids[0] in [i["id"] for i in by_gs06]
            assert c.get("/v1/interchanges", params={"cursor": "garbage"}).status_code == 400
            future = c.get("/v1/interchanges", params={"since": "2999-01-01T00:00:00Z"})
            assert future.json()["items"] == []

    def test_health_ready_and_metrics(self, gateway):
        key = gateway.add_partner("va", "VA0FFM")
        gateway.start()
        with gateway.client(key) as c:
            wait_final(c, submit(c, GOOD).json()["id"])
        assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{gateway.url}/readyz").status_code == 200
        metrics = httpx.get(f"{gateway.url}/metrics").text
        assert 'edi834_files_received_total{channel="http"} 1.0' in metrics
        assert 'edi834_files_processed_total{outcome="accepted"} 1.0' in metrics
        assert "edi834_queue_depth" in metrics and "edi834_processing_seconds_bucket" in metrics


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[bytes, str]]] = []
    timestamped: ClassVar[list[str]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((body, self.headers.get("X-EDI834-Signature", "")))
        _Hook.timestamped.append(self.headers.get("X-EDI834-Signature-256", ""))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class _Trickle(BaseHTTPRequestHandler):
    """A receiver that answers 200 and then an endless gzip-declared body, a byte at a time:
    every read within the timeout, the answer never whole."""

    posts: ClassVar[int] = 0
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        _Trickle.posts += 1
        body = gzip.compress(b"\0" * (1 << 20))  # a valid stream: the decoder keeps reading
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.5)

    def log_message(self, *args):
        pass


class TestWebhook:
    def test_a_webhook_to_a_non_public_address_is_refused(self, gateway):
        """A partner's webhook URL must not reach the insurer's own network (SSRF): loopback,
        private, link-local (a cloud's metadata address) are refused at each delivery, said in
        its error, and nothing is posted. EDI834_WEBHOOK_ALLOW_PRIVATE is for tests and labs."""
        from gateway.outbound import non_public_destination

        for url in (
            "http://169.254.169.254/latest/api/token",
            "http://[::1]:18935/logout",
            "http://0x7f000001:18934/v1/interchanges",
            "http://10.1.2.3/",
            "https://no-such-host.invalid/hook",
        ):
            assert non_public_destination(url), url
        assert non_public_destination("https://93.184.216.34/hook") is None
        server = HTTPServer(("127.0.0.1", 0), _Hook)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _Hook.received = []
        try:
            va = gateway.add_partner("va", "VA0FFM")
            url = f"http://127.0.0.1:{server.server_port}/hook"
            gateway.cli("partner", "webhook", "va", "--url", url)
            gateway.start(EDI834_SFTP_ENABLED="false")
            with gateway.client(va) as c:
                wait_final(c, submit(c, GOOD).json()["id"])
            from sqlalchemy import select

            from gateway.db.models import WebhookDelivery
            from gateway.db.session import make_engine
            from gateway.settings import Settings

            engine = make_engine(
                Settings(
                    data_dir=gateway.data_dir, database_url=gateway.database_url
                ).sqlalchemy_url
            )
            deadline = time.monotonic() + 20
            while True:
                with engine.connect() as conn:
                    error = conn.execute(select(WebhookDelivery.last_error)).scalar()
                if error or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            engine.dispose()
            assert error and "non-public address (127.0.0.1)" in error, error
            assert _Hook.received == []
        finally:
            server.shutdown()

    def test_a_receivers_endless_answer_holds_back_no_one(self, gateway):
        """A webhook's answer is its status: the body is not read (a gzip bomb's 400 MiB, or a
        byte every few seconds forever), and webhooks have their own thread, so another
        partner's acks are delivered meanwhile. The trickle held every partner's acks back."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _Trickle.posts = 0
        try:
            va = gateway.add_partner("va", "VA0FFM")
            md = gateway.add_partner("md", "MD0SBE")
            gateway.cli(
                "partner", "webhook", "va", "--url",
                f"http://127.0.0.1:{server.server_port}/hook",
            )  # fmt: skip
            gateway.start(EDI834_SFTP_ENABLED="false", EDI834_WEBHOOK_ALLOW_PRIVATE="true")
            with gateway.client(va) as c:
                wait_final(c, submit(c, GOOD).json()["id"])
            deadline = time.monotonic() + 20
            while not _Trickle.posts:
                assert time.monotonic() < deadline, "the webhook was never posted"
                time.sleep(0.1)
            md_file = (SAMPLES / "good_change_of_address.834").read_bytes()
            with gateway.client(md) as c:
                rid = submit(c, md_file).json()["id"]
                wait_final(c, rid)
                deadline = time.monotonic() + 15
                outbound = gateway.data_dir / "sftp" / "md" / "outbound"
                while not list(outbound.glob("*.999")):
                    assert time.monotonic() < deadline, "md's 999 held back by va's webhook"
                    time.sleep(0.2)
            # The first answer was taken at its status line: the next file's webhook goes out
            # at once (reading the trickle would have held the thread for five minutes).
            again = _with_isa13(GOOD.replace(b"BGN*00*", b"BGN*00*AGAIN", 1), 31999)
            with gateway.client(va) as c:
                wait_final(c, submit(c, again).json()["id"])
            deadline = time.monotonic() + 20
            while _Trickle.posts < 2:
                assert time.monotonic() < deadline, "the second webhook was held back"
                time.sleep(0.1)
            assert gateway.proc is not None and gateway.proc.poll() is None
        finally:
            server.shutdown()

    def test_acknowledged_event_is_posted_with_an_hmac_signature(self, gateway):
        server = HTTPServer(("127.0.0.1", 0), _Hook)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _Hook.received, _Hook.timestamped = [], []
        try:
            out = gateway.cli(
                "partner",
                "add",
                "--name",
                "va",
                "--isa-qualifier",
                "ZZ",
                "--isa-id",
                "VA0FFM",
                "--webhook-url",
                f"http://127.0.0.1:{server.server_port}/hook",
                "--webhook-secret",
                "s3cret",
                "--json",
            )
            key = json.loads(out.stdout)["api_key"]
            gateway.start(EDI834_WEBHOOK_ALLOW_PRIVATE="true")  # the receiver: 127.0.0.1
            with gateway.client(key) as c:
                rid = submit(c, GOOD).json()["id"]
                wait_final(c, rid)
            deadline = time.monotonic() + 20
            while not _Hook.received and time.monotonic() < deadline:
                time.sleep(0.1)
            body, signature = _Hook.received[0]
            expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(signature, expected)
            # The timestamped one: t=<unix seconds>,v1=HMAC("<t>.<body>"), t the sending time,
            # so a receiver can refuse a replay.
            t, v1 = (part.split("=", 1)[1] for part in _Hook.timestamped[0].split(","))
            assert abs(int(t) - time.time()) < 120
            mac = hmac.new(b"s3cret", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(v1, mac)
            event = json.loads(body)
            assert (event["event"], event["id"], event["outcome"]) == (
                "acknowledged",
                rid,
                "accepted",
            )
            assert event["at"].endswith("Z")  # as the API writes times (issue 18)
            WebhookEvent.model_validate(event)  # what the OpenAPI document's webhooks say
        finally:
            server.shutdown()
