"""PHI never reaches a log line. 834 files whose member fields (names, SSNs, member ids, birth
dates, address, phone, e-mail) hold unique canary values go through every path of a real
`edi834 serve` — HTTP and SFTP intake, a resend, the status API and ack downloads, a defective
file whose bad values become IK404 findings, a SIGKILL mid-file and the restart that finishes it,
and a processing bug whose exception message quotes the file — at info and at debug level. Then
the child's whole stdout+stderr must hold none of the canaries, while still being JSON lines
about those very receipts (so a logger that fell silent cannot pass)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import httpx
import pytest
import structlog
from sqlalchemy import select

from gateway.db.models import Receipt
from gateway.db.session import make_engine
from gateway.logging import configure_logging, get_logger, redact_target
from gateway.settings import Settings
from tests.conftest import SAMPLES
from tests.gateway.harness import (
    OPERATOR_PASSWORD,
    GatewayProcess,
    login,
    submit,
    wait_final,
    wait_for_file,
)

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()

# sample value -> canary of a valid length and character set, so the file still parses
MEMBER_DATA: dict[bytes, bytes] = {
    b"OKAFOR*DANIELLE*R": b"CANARYSURNAMEX*CANARYGIVENX*Q",  # NM103, NM104, NM105
    b"OKAFOR*MARCUS*T": b"CANARYDEPSURNAMEX*CANARYDEPGIVENX*Q",
    b"*34*914273856": b"*34*987612345",  # NM109: SSN
    b"*34*917482635": b"*34*987623456",
    b"REF*0F*0004718293": b"REF*0F*CANARYMEMBERIDX",  # subscriber identifier
    b"REF*17*0004718293": b"REF*17*CANARYSUBREFX",
    b"REF*17*0004718294": b"REF*17*CANARYDEPREFX",
    b"HP*7035550142": b"HP*5559876543",  # PER04: phone
    b"EM*d.okafor@example.com": b"EM*CANARYMAILX@EXAMPLE.COM",
    b"N3*4127 N PERSHING DR*APT 204": b"N3*CANARYSTREETX*CANARYAPTX",
    b"N4*ARLINGTON*VA*22203": b"N4*CANARYCITYX*VA*987654321",
    b"D8*19880314": b"D8*19230917",  # DMG02: birth date
    b"D8*19861102": b"D8*19240818",
}
# what the defective file puts in bad values (IK404): a non-date DMG02, an over-long REF02
BAD_VALUES: dict[bytes, bytes] = {
    b"D8*19230917": b"D8*CANARY01",
    b"REF*0F*CANARYMEMBERIDX": b"REF*0F*" + b"CANARYTOOLONGX" * 4,
}
CANARIES = [
    "CANARYSURNAMEX", "CANARYGIVENX", "CANARYDEPSURNAMEX", "CANARYDEPGIVENX",  # names
    "987612345", "987623456", "987-61-2345", "987-62-3456",  # SSNs, also as printed
    "CANARYMEMBERIDX", "CANARYSUBREFX", "CANARYDEPREFX",  # member identifiers
    "5559876543", "555-987-6543", "CANARYMAILX",  # phone, e-mail
    "CANARYSTREETX", "CANARYAPTX", "CANARYCITYX", "987654321",  # address
    "19230917", "19240818", "1923-09-17", "1924-08-18",  # birth dates, also as ISO dates
    "CANARY01", "CANARYTOOLONGX",  # the defective file's bad values
]  # fmt: skip
RAW_SEGMENTS = ["NM1*IL", "DMG*D8", "N3*", "N4*", "PER*IP", "INS*Y", "REF*0F"]
BANNER = (
    "edi834 gateway (",
    "  HTTP API ",
    "  SFTP ",
    "  data ",
    "  database ",
    "  dashboard ",
    "Add a ",
    "Send a ",
)


def with_canaries(isa13: int, extra: dict[bytes, bytes] | None = None) -> bytes:
    """The sample with every member value swapped for a canary, under its own ISA13."""
    content = GOOD
    for old, new in {**MEMBER_DATA, **(extra or {})}.items():
        assert old in content, old
        content = content.replace(old, new)
    old13, new13 = content[90:99], f"{isa13:09d}".encode()
    content = content[:90] + new13 + content[99:]
    return content.replace(b"IEA*1*" + old13, b"IEA*1*" + new13)


CLEAN = with_canaries(501)
DEFECTIVE = with_canaries(502, BAD_VALUES)
BY_SFTP = with_canaries(503)
CRASHED = with_canaries(504)
RAISED = with_canaries(505)


def upload_by_sftp(gateway: GatewayProcess, key: asyncssh.SSHKey, name: str, data: bytes) -> None:
    async def go() -> None:
        async with (
            asyncssh.connect(
                "127.0.0.1",
                gateway.sftp_port,
                username="va",
                client_keys=[key],
                known_hosts=None,
                agent_path=None,
                config=[],
            ) as conn,
            conn.start_sftp_client() as sftp,
            sftp.open(f"inbound/{name}", "wb") as remote,
        ):
            await remote.write(data)

    asyncio.run(asyncio.wait_for(go(), 30))


def receipt_with(c: httpx.Client, content: bytes, timeout: float = 30.0) -> str:
    """The id of the receipt holding these bytes (its submitter may not have seen the answer)."""
    sha = hashlib.sha256(content).hexdigest()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in c.get("/v1/interchanges", params={"limit": 200}).json()["items"]:
            if item["sha256"] == sha:
                return str(item["id"])
        time.sleep(0.1)
    raise AssertionError(f"no receipt for {sha}")


def read_everything(c: httpx.Client, receipt_id: str) -> dict:
    """Every status API read a partner makes about a file: detail, list, each ack."""
    detail = c.get(f"/v1/interchanges/{receipt_id}")
    assert detail.status_code == 200
    acks = c.get(f"/v1/interchanges/{receipt_id}/acks")
    assert acks.status_code == 200
    for ack in acks.json():
        assert c.get(f"/v1/interchanges/{receipt_id}/acks/{ack['kind']}").status_code == 200
    return dict(detail.json())


class TestPhiCanary:
    def test_member_data_never_reaches_a_log_line(self, gateway, tmp_path: Path):
        ssh_key = asyncssh.generate_private_key("ssh-ed25519")
        pub = tmp_path / "va.pub"
        ssh_key.write_public_key(pub)
        api_key = gateway.add_partner("va", "VA0FFM", sftp_key=pub)
        common = {"EDI834_LEASE_SECONDS": "2", "EDI834_MAX_ATTEMPTS": "2"}

        # 1. SIGKILL right after validating a file (info level).
        gateway.start(crashpoints=("validated",), **common)
        # The worker may kill the process before the answer goes out.
        with gateway.client(api_key) as c, contextlib.suppress(httpx.TransportError):
            submit(c, CRASHED, "crash.834")
        assert gateway.wait_exit() == -9

        # 2. Restart at debug level: the killed file is finished; then every other path.
        gateway.start(EDI834_LOG_LEVEL="debug", **common)
        with gateway.client(api_key) as c:
            crashed = receipt_with(c, CRASHED)
            r = submit(c, CLEAN, "clean.834")
            assert r.status_code == 202, r.text
            clean = r.json()["id"]
            again = submit(c, CLEAN, "clean.834")
            assert (again.status_code, again.json()["id"]) == (200, clean)
            r = submit(c, DEFECTIVE, "defective.834")
            assert r.status_code == 202, r.text
            defective = r.json()["id"]
            upload_by_sftp(gateway, ssh_key, "enrollment.834", BY_SFTP)
            by_sftp = receipt_with(c, BY_SFTP)

            for rid in (crashed, clean, by_sftp):
                assert wait_final(c, rid)["outcome"] == "accepted"
                read_everything(c, rid)
            assert wait_final(c, defective)["outcome"] == "rejected"
            detail = read_everything(c, defective)
            # The canaries really flowed: the partner is shown its bad values (IK404)...
            bad_values = {f["bad_value"] for f in detail["findings"]}
            assert {"CANARY01", "CANARYTOOLONGX" * 4} <= bad_values
            ack = c.get(f"/v1/interchanges/{defective}/acks/999").text
            assert "CANARY01" in ack
            # A partner's look-ups by member and by policy: the access log shows the route,
            # not the member key, policy number or query values (uvicorn.access, redacted).
            for path in (
                "/v1/members/CANARYSUBREFX",
                "/v1/policies/CANARYMEMBERIDX/months?from=2027-01&to=2027-03",
                f"/v1/interchanges/{clean}/members?member=CANARYDEPREFX",
                # No such route, or no such ack kind: a path a client made up (404).
                "/v1/CANARYSURNAMEX-987612345",
                f"/v1/interchanges/{clean}/acks/CANARYMEMBERIDX",
            ):
                assert c.get(path).status_code in (200, 404, 422)
            # ...and its acks reach outbound/ (through the outbox) before the logs are read.
            for rid in (crashed, clean, by_sftp, defective):
                for a in c.get(f"/v1/interchanges/{rid}/acks").json():
                    wait_for_file(gateway.data_dir / "sftp" / "va" / "outbound" / a["filename"])
        assert gateway.stop() == 0

        # 3. A processing bug whose exception message quotes the file (debug level).
        gateway.start(EDI834_LOG_LEVEL="debug", EDI834_RAISEPOINTS="validating", **common)
        with gateway.client(api_key) as c:
            r = submit(c, RAISED, "raised.834")
            assert r.status_code == 202, r.text
            raised = r.json()["id"]
            failed = wait_final(c, raised)
            assert failed["status"] == "failed" and failed["error"]
            assert "CANARY" not in json.dumps(failed)  # the partner gets a generic error
        gateway.add_operator("viewer1", OPERATOR_PASSWORD)
        # A member's name typed as a user name: no operator's, so never recorded as typed.
        stranger, refused = login(gateway, "CANARYSURNAMEX")
        stranger.close()
        assert refused.status_code == 401
        viewer, _ = login(gateway, "viewer1")
        try:  # a viewer sees the kind of failure, not the traceback quoting the file
            page = viewer.get(f"/dashboard/interchanges/{raised}")
            assert page.status_code == 200 and "InjectedFault" in page.text
            assert "CANARY" not in page.text and "987612345" not in page.text
            # An operator's searches by member (query values in the access log).
            for path in (
                "/dashboard/rejects?member=CANARYMEMBERIDX",
                "/dashboard/business?member=CANARYDEPREFX&subscriber=CANARYMEMBERIDX",
            ):
                assert viewer.get(path).status_code == 200
        finally:
            viewer.close()
        assert gateway.stop() == 0
        error = stored_error(gateway, raised)  # operators get the whole story, in the database
        assert "InjectedFault" in error and "CANARYSURNAMEX" in error and "987612345" in error

        receipts = {crashed, clean, defective, by_sftp, raised}
        assert_no_phi_in(gateway.logs(), receipts)


def stored_error(gateway: GatewayProcess, receipt_id: str) -> str:
    settings = Settings(data_dir=gateway.data_dir, database_url=gateway.database_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            error = conn.scalar(select(Receipt.error).where(Receipt.id == receipt_id))
    finally:
        engine.dispose()
    return str(error)


def assert_no_phi_in(logs: str, receipts: set[str]) -> None:
    """No canary, in any case; no raw segment; yet JSON lines that speak of every receipt."""
    folded = logs.casefold()
    leaks = {c: folded.count(c.casefold()) for c in CANARIES}
    assert {c: n for c, n in leaks.items() if n} == {}, "member data in the logs"
    assert [s for s in RAW_SEGMENTS if s.casefold() in folded] == [], "raw segments in the logs"

    events, levels, mentioned = [], set(), set()
    for line in logs.splitlines():
        if not line.strip() or line.startswith(BANNER):
            continue
        record = json.loads(line)  # anything else (a bare traceback, a print) fails here
        events.append(record["event"])
        levels.add(record["level"])
        mentioned |= {rid for rid in receipts if rid in line}
    assert mentioned == receipts
    assert {
        "file_received",
        "duplicate_file",
        "sftp_upload_complete",
        "processing_started",
        "interchange_processed",
        "processing_failed",
    } <= set(events)
    assert "debug" in levels  # the debug runs did log at debug level


# --- the redaction itself, on exceptions the end-to-end run does not raise ---------------------


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:
    """`configure_logging` into a buffer; the root logger and structlog restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, structlog.get_config())
    buf = io.StringIO()
    configure_logging("debug", buf)
    try:
        yield lambda: [json.loads(line) for line in buf.getvalue().splitlines()]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.configure(**saved[2])


def _chained() -> None:
    try:
        raise ValueError("CANARYSURNAMEX")
    except ValueError as exc:
        raise RuntimeError("bad NM1*IL*1*CANARYSURNAMEX") from exc


def _with_note() -> None:
    exc = ValueError("no data here")
    exc.add_note("segment NM1*IL*1*CANARYSURNAMEX")
    raise exc


def _group() -> None:
    inner = ExceptionGroup("CANARYGIVENX", [KeyError("CANARYSURNAMEX")])
    raise ExceptionGroup("batch of 2", [ValueError("DMG*D8*19230917"), inner])


def _syntax() -> None:
    compile("CANARYSURNAMEX = = 1", "<segment>", "exec")


class TestLogRedaction:
    @pytest.mark.parametrize("raiser", [_chained, _with_note, _group, _syntax])
    def test_exception_text_is_dropped_but_the_stack_kept(self, log_lines, capsys, raiser):
        try:
            raiser()
        except Exception:
            get_logger("test").exception("worker_loop_error", receipt_id="r-1")
        lines = log_lines()
        assert capsys.readouterr().err == ""  # no "--- Logging error ---" dump on stderr
        assert [line["event"] for line in lines] == ["worker_loop_error"]
        text = json.dumps(lines)
        assert "CANARY" not in text and "19230917" not in text
        assert lines[0]["exception"][0]["exc_type"] and "r-1" in text

    def test_foreign_loggers_exc_info_is_redacted_too(self, log_lines, capsys):
        """uvicorn and asyncssh log through the stdlib with exc_info."""
        try:
            _chained()
        except Exception:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        lines = log_lines()
        assert capsys.readouterr().err == ""
        assert "CANARY" not in json.dumps(lines)
        assert lines[0]["exception"][0]["exc_type"] == "RuntimeError"


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("/v1/members/0001", "/v1/members/<redacted>"),
        ("/v1/members/VA/77", "/v1/members/<redacted>"),  # a REF*17 with a slash, whole
        ("/v1/policies/P/1/months?from=2027-01", "/v1/policies/<redacted>/months?from=<redacted>"),
        ("/v1/policies/P1", "/v1/policies/<redacted>"),
        ("/v1/policies/PX/9/months.csv?to=1", "/v1/policies/<redacted>/months.csv?to=<redacted>"),
        ("/v1/interchanges/abc", "/v1/interchanges/abc"),
    ],
)
def test_access_log_targets_hide_member_keys_and_policy_numbers(target, shown):
    assert redact_target(target) == shown
