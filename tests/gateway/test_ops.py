"""Running the gateway: the partner CLI, TLS on the API listener, readiness and migrations."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import ssl
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import VARCHAR, String, text

from gateway.api.app import create_app
from gateway.context import Gateway
from gateway.db.migrate import upgrade
from gateway.db.models import Base
from gateway.errors import GatewayError
from gateway.serve import _check_secrets
from gateway.settings import Settings
from tests.conftest import SAMPLES
from tests.gateway.harness import (
    EDI834,
    free_port,
    self_signed_cert,
    submit,
    wait_final,
    wait_for_file,
)
from tests.gateway.launcher import launcher


class TestPartnerCli:
    def test_sftp_keys_and_the_webhook_can_be_replaced_and_removed(self, gateway, tmp_path):
        """A leaked SSH key is replaced (or every key removed) without cutting the partner's
        HTTP access; a webhook moves or stops. What the SFTP server asks at each login (the
        hooks) follows at once."""
        import asyncio

        import asyncssh

        from gateway.context import Gateway
        from gateway.intake.bridge import GatewaySftpHooks
        from gateway.settings import Settings

        def pub(name: str) -> Path:
            key = asyncssh.generate_private_key("ssh-ed25519")
            path = tmp_path / f"{name}.pub"
            key.write_public_key(path)
            return path

        old, new = pub("old"), pub("new")
        gateway.cli(
            "partner", "add", "--name", "va", "--isa-qualifier", "ZZ", "--isa-id", "VA0FFM",
            "--sftp-key", str(old),
        )  # fmt: skip
        gw = Gateway.open(Settings(data_dir=gateway.data_dir, database_url=gateway.database_url))
        try:

            def allowed() -> list[str]:
                keys = asyncio.run(GatewaySftpHooks(gw).authorized_keys("va")) or []
                return [k.export_public_key().decode().split()[1] for k in keys]

            assert allowed() == [old.read_text().split()[1]]
            out = gateway.cli("partner", "sftp-keys", "va", "--key", str(new), "--json")
            assert json.loads(out.stdout) == {"name": "va", "sftp_keys": 1}
            assert allowed() == [new.read_text().split()[1]]
            gateway.cli("partner", "sftp-keys", "va")  # no key: none from now on
            assert allowed() == []
        finally:
            gw.close()
        [listed] = json.loads(gateway.cli("partner", "list", "--json").stdout)
        assert (listed["enabled"], listed["sftp_keys"], listed["webhook"]) == (True, 0, False)

        hook = json.loads(
            gateway.cli(
                "partner", "webhook", "va", "--url", "https://hooks.example/edi", "--json"
            ).stdout
        )
        assert hook["webhook_url"] == "https://hooks.example/edi"
        assert len(hook["webhook_secret"]) >= 32  # generated, shown once
        bad = gateway.cli("partner", "webhook", "va", "--url", "ftp://x", check=False)
        assert bad.returncode == 1 and "http" in bad.stderr
        gateway.cli("partner", "webhook", "va", "--remove")
        [listed] = json.loads(gateway.cli("partner", "list", "--json").stdout)
        assert listed["webhook"] is False

    def test_a_partners_interchange_identity_can_be_corrected(self, gateway):
        """A typo in ISA06 at `partner add` (or a sender's new id) is mended in place: same
        name, key and folders; its files must carry the new identity from then on."""
        from tests.conftest import SAMPLES
        from tests.gateway.harness import submit, wait_final

        key = gateway.add_partner("va", "VA0FFN")  # the typo
        gateway.add_partner("md", "MD0SBE")
        taken = gateway.cli("partner", "identity", "va", "--isa-qualifier", "ZZ",
                            "--isa-id", "MD0SBE", check=False)  # fmt: skip
        assert taken.returncode == 1 and "'md' already sends as ZZ:MD0SBE" in taken.stderr
        out = gateway.cli("partner", "identity", "va", "--isa-qualifier", "ZZ", "--isa-id",
                          "VA0FFM", "--json")  # fmt: skip
        assert json.loads(out.stdout) == {"name": "va", "isa_qualifier": "ZZ", "isa_id": "VA0FFM"}
        good = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
        assert b"*ZZ*VA0FFM         *" in good
        gateway.start(EDI834_SFTP_ENABLED="false")
        with gateway.client(key) as c:  # the same API key
            r = submit(c, good)
            assert r.status_code == 202, r.text
            assert wait_final(c, r.json()["id"])["outcome"] == "accepted"

    def test_a_file_is_reprocessed_resolved_and_reopened_from_the_command_line(self, gateway):
        """What the dashboard's admins do to a file, from a host without a browser: each
        audited under the name given (or cli:<OS user>); a file the action does not apply to
        is named and the exit status says so."""
        from tests.conftest import SAMPLES

        key = gateway.add_partner("va", "VA0FFM")
        gateway.start(EDI834_SFTP_ENABLED="false")
        with gateway.client(key) as c:
            rid = submit(c, (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()).json()
            rid = rid["id"]
            assert wait_final(c, rid)["outcome"] == "accepted"
            out = gateway.cli("file", "reprocess", rid, "--by", "olga")
            assert out.stdout == f"{rid} queued again\n"
            done = wait_final(c, rid)  # the running worker takes it again
            assert (done["status"], done["outcome"]) == ("processed", "accepted")
            acks = c.get(f"/v1/interchanges/{rid}/acks").json()
            assert len([a for a in acks if a["kind"] == "999"]) >= 1
        out = gateway.cli("file", "resolve", rid, "--note", "sender fixed its ISA06")
        assert out.stdout == f"{rid} resolved\n"
        out = gateway.cli("file", "reopen", rid, "nosuchfile", check=False)
        assert out.returncode == 1
        assert out.stdout == f"{rid} reopened\n"
        assert "nosuchfile left as it is: not resolved, or no such file" in out.stderr
        from gateway.db.session import make_engine

        url = Settings(data_dir=gateway.data_dir, database_url=gateway.database_url).sqlalchemy_url
        engine = make_engine(url)
        with engine.connect() as db:
            audited = db.execute(
                text("SELECT operator, action FROM audit_log WHERE receipt_id = :r ORDER BY id"),
                {"r": rid},
            ).all()
        engine.dispose()
        assert audited[0] == ("olga", "reprocess")
        assert [a for _, a in audited[1:]] == ["resolve", "reopen"]
        assert all(who.startswith("cli:") for who, _ in audited[1:])

    def test_a_closed_pipe_does_not_undo_the_change(self, gateway):
        """`partner rules NAME --set ... | head -1`: what is printed waits for the commit, so a
        reader gone before the end (EPIPE) does not roll the change back, as it did."""
        import subprocess

        gateway.add_partner("va", "VA0FFM")
        proc = subprocess.Popen(
            [str(EDI834), "partner", "rules", "va", "--set", "repeating-digits=ignore"],
            env=gateway.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        proc.stdout.close()  # the reader is gone before anything is written
        proc.wait(timeout=60)
        shown = gateway.cli("partner", "rules", "va", "--json")
        assert json.loads(shown.stdout)["rules"]["repeating-digits"]["severity"] == "ignore"

    def test_add_list_rotate_disable(self, gateway, tmp_path):
        out = gateway.cli(
            "partner",
            "add",
            "--name",
            "va",
            "--isa-qualifier",
            "ZZ",
            "--isa-id",
            "VA0FFM",
            "--json",
        )
        created = json.loads(out.stdout)
        assert set(created) == {"name", "api_key"} and created["name"] == "va"
        assert created["api_key"].startswith("edi834_") and len(created["api_key"]) > 40
        human = gateway.cli(
            "partner", "add", "--name", "md", "--isa-qualifier", "ZZ", "--isa-id", "MD0SBE"
        )
        assert "shown once" in human.stdout
        listed = json.loads(gateway.cli("partner", "list", "--json").stdout)
        assert [(p["name"], p["isa"], p["enabled"]) for p in listed] == [
            ("md", "ZZ:MD0SBE", True),
            ("va", "ZZ:VA0FFM", True),
        ]
        dup = gateway.cli(
            "partner",
            "add",
            "--name",
            "va",
            "--isa-qualifier",
            "ZZ",
            "--isa-id",
            "OTHER",
            check=False,
        )
        assert dup.returncode == 1 and "exists" in dup.stderr
        # Another name with va's ISA identity: refused in a sentence, not a driver traceback
        # (which printed the statement's parameters, an API key hash among them).
        same_isa = gateway.cli(
            "partner", "add", "--name", "va2", "--isa-qualifier", "ZZ", "--isa-id", "VA0FFM",
            check=False,
        )  # fmt: skip
        assert same_isa.returncode == 1
        assert same_isa.stderr.strip() == (
            "edi834 partner add: partner 'va' already sends as ZZ:VA0FFM"
        ), same_isa.stderr
        bad = gateway.cli(
            "partner",
            "add",
            "--name",
            "../x",
            "--isa-qualifier",
            "ZZ",
            "--isa-id",
            "X",
            check=False,
        )
        assert bad.returncode == 1
        notkey = tmp_path / "not.pub"
        notkey.write_text("hello\n")
        badkey = gateway.cli(
            "partner",
            "add",
            "--name",
            "k",
            "--isa-qualifier",
            "ZZ",
            "--isa-id",
            "K",
            "--sftp-key",
            str(notkey),
            check=False,
        )
        assert badkey.returncode == 1 and "public key" in badkey.stderr
        rotated = json.loads(gateway.cli("partner", "rotate-key", "va", "--json").stdout)
        assert rotated["api_key"] != created["api_key"]
        gateway.cli("partner", "disable", "md")
        listed = {p["name"]: p for p in json.loads(gateway.cli("partner", "list", "--json").stdout)}
        assert listed["md"]["enabled"] is False
        if not gateway.database_url:  # only a hash of the key is stored
            db = sqlite3.connect(gateway.data_dir / "edi834.sqlite3")
            dump = "\n".join(db.iterdump())
            assert rotated["api_key"] not in dump and created["api_key"] not in dump


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
class TestCliErrors:
    """Every CLI error is one line on stderr and a non-zero exit, never a traceback."""

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["--sftp-key", "/no/such/file.pub"], "/no/such/file.pub: cannot read it"),
            (["--sftp-key", "/"], "/: cannot read it (Is a directory)"),
            (["--sftp-key", "{binary}"], "{binary}: not an OpenSSH public key (not text)"),
        ],
    )
    def test_partner_add_unreadable_key(self, gateway, tmp_path, args, expected):
        binary = tmp_path / "key.bin"
        binary.write_bytes(b"\xd0\xff\x00\x9f")
        args = [a.replace("{binary}", str(binary)) for a in args]
        add = ["partner", "add", "--name", "va", "--isa-qualifier", "ZZ", "--isa-id", "VA"]
        result = gateway.cli(*add, *args, check=False)
        expected = expected.replace("{binary}", str(binary))
        assert_one_line(result, f"edi834 partner add: {expected}")

    @pytest.mark.parametrize("flag", ["--plans", "--combinations"])
    def test_partner_rules_missing_file(self, gateway, tmp_path, flag):
        gateway.add_partner("va", "VA0FFM")
        missing = tmp_path / "missing.txt"
        result = gateway.cli("partner", "rules", "va", flag, str(missing), check=False)
        assert_one_line(
            result, f"edi834 partner rules: {flag} {missing}: No such file or directory"
        )

    def test_unusable_data_dir(self, gateway, tmp_path):
        (tmp_path / "file").write_text("")
        for command in (["partner", "list"], ["operator", "list"], ["db", "upgrade"]):
            result = gateway.cli(
                *command, "--data-dir", str(tmp_path / "file" / "var"), check=False
            )
            assert_one_line(result, f"edi834 {' '.join(command)}: ")
            assert "Not a directory" in result.stderr

    def test_bad_setting(self, gateway):
        gateway.extra_env["EDI834_HTTP_PORT"] = "eighty"
        result = gateway.cli("partner", "list", check=False)
        assert_one_line(result, "edi834 partner list: EDI834_HTTP_PORT: ")

    def test_unreachable_database(self, gateway):
        result = gateway.cli(
            "ledger",
            "members",
            "--partner",
            "va",
            "--database-url",
            f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x",
            check=False,
        )
        assert_one_line(result, "edi834 ledger members: database: ")

    def test_validate_cannot_write_its_acks(self, gateway, tmp_path):
        (tmp_path / "file").write_text("")
        sample = str(SAMPLES / "good_exchange_new_enrollment.834")
        result = gateway.cli("validate", sample, "--out", str(tmp_path / "file"), check=False)
        assert_one_line(result, f"edi834 validate: {tmp_path / 'file'}: ")
        assert result.returncode == 3  # not 1, which means "accepted with errors"

    def test_ledger_history_of_no_such_member(self, gateway):
        gateway.add_partner("va", "VA0FFM")
        result = gateway.cli("ledger", "history", "--partner", "va", "NOSUCH", check=False)
        assert_one_line(result, "edi834 ledger history: no member 'NOSUCH' for partner va")

    def test_serve_with_a_missing_tls_certificate(self, gateway, tmp_path):
        cert = tmp_path / "no-such.pem"
        result = gateway.cli("serve", "--tls-cert", str(cert), check=False)
        assert_one_line(result, f"edi834 serve: EDI834_TLS_CERT {cert}: No such file or directory")

    @pytest.mark.parametrize("what", ["CORE", "ALERT"])
    def test_serve_with_a_destination_but_no_secret(self, gateway, what):
        gateway.extra_env[f"EDI834_{what}_URL"] = "https://receiver.example/hook"
        result = gateway.cli("serve", check=False)
        assert_one_line(
            result,
            f"edi834 serve: EDI834_{what}_URL is set without EDI834_{what}_SECRET: its posts "
            "would be signed with an empty key",
        )

    def test_serve_with_the_core_in_clear(self, gateway):
        gateway.extra_env["EDI834_CORE_URL"] = "http://core.example.internal/events"
        gateway.extra_env["EDI834_CORE_SECRET"] = CORE_SECRET
        result = gateway.cli("serve", check=False)
        assert_one_line(
            result, "edi834 serve: EDI834_CORE_URL is http:// to a host that is not loopback"
        )

    def test_empty_lists_say_so(self, gateway):
        partners = gateway.cli("partner", "list")
        assert partners.stdout.startswith("no partners yet; add one with: edi834 partner add")
        assert json.loads(gateway.cli("partner", "list", "--json").stdout) == []
        operators = gateway.cli("operator", "list")
        assert operators.stdout.startswith("no operators yet; add one with: edi834 operator add")


CORE_SECRET = "not-a-secret-only-a-test"  # noqa: S105 - a test key


@pytest.mark.parametrize(
    ("url", "allow", "refused"),
    [
        ("http://core.example.internal/events", False, True),
        ("http://10.1.2.3:8080/events", False, True),
        ("HTTP://core.example.internal/events", False, True),
        ("http://core.example.internal/events", True, False),  # a mesh's mutual TLS
        ("https://core.example.internal/events", False, False),
        ("http://127.0.0.1:9/events", False, False),  # a local agent
        ("http://localhost:9/events", False, False),
        ("http://[::1]:9/events", False, False),
    ],
)
def test_member_data_never_goes_to_the_core_in_clear(url, allow, refused):
    """The core's events carry names, SSNs and birth dates: not over plain HTTP to another
    host unless the insurer says the path is encrypted another way."""
    settings = Settings(core_url=url, core_secret=CORE_SECRET, core_allow_http=allow)
    if refused:
        with pytest.raises(GatewayError, match="EDI834_CORE_URL is http:// to a host"):
            _check_secrets(settings)
    else:
        _check_secrets(settings)


def assert_one_line(result, prefix: str) -> None:
    assert result.returncode != 0, result
    assert result.stderr.startswith(prefix), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_data_dir_is_private_whatever_the_umask(gateway):
    """Member data: the data directory's directories are 0700 and its files 0600 under
    umask 022 (root's usual), after a file is received, stored and acknowledged."""
    old = os.umask(0o022)
    try:
        key = gateway.add_partner("va", "VA0FFM")
        gateway.start()
    finally:
        os.umask(old)
    with gateway.client(key) as c:
        r = submit(c, (SAMPLES / "good_exchange_new_enrollment.834").read_bytes())
        assert wait_final(c, r.json()["id"])["outcome"] == "accepted"
    outbound = gateway.data_dir / "sftp" / "va" / "outbound"
    wait_for_file(outbound, timeout=30)
    deadline = time.monotonic() + 30
    while not any(p.suffix == ".999" for p in outbound.iterdir()):
        assert time.monotonic() < deadline, list(outbound.iterdir())
        time.sleep(0.1)
    found = [gateway.data_dir, *gateway.data_dir.rglob("*")]
    kinds = {p.suffix for p in found if p.is_file()}
    assert {".sqlite3", ".999"} <= kinds, kinds
    assert any("blobs" in p.parts and p.is_file() for p in found)
    wide = {
        str(p.relative_to(gateway.data_dir)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in found
        if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)
    }
    assert wide == {}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tls_listener(gateway, tmp_path):
    cert, key_file = self_signed_cert(tmp_path)
    key = gateway.add_partner("va", "VA0FFM")
    gateway.extra_env.update(EDI834_TLS_CERT=str(cert), EDI834_TLS_KEY=str(key_file))
    gateway.start(wait=False)
    url = f"https://127.0.0.1:{gateway.http_port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            r = httpx.get(f"{url}/readyz", verify=ssl.create_default_context(cafile=str(cert)))
            break
        except httpx.ConnectError:
            assert time.monotonic() < deadline, gateway.logs()[-2000:]
            time.sleep(0.1)
    assert r.status_code == 200
    with httpx.Client(
        base_url=url,
        verify=ssl.create_default_context(cafile=str(cert)),
        headers={"Authorization": f"Bearer {key}"},
    ) as c:
        r = submit(c, (SAMPLES / "good_exchange_new_enrollment.834").read_bytes())
        assert r.status_code == 202 and r.json()["status_url"].startswith("https://")
        assert wait_final(c, r.json()["id"])["outcome"] == "accepted"
        status = c.get(r.json()["status_url"])
        assert status.headers["strict-transport-security"] == "max-age=31536000"
        assert status.headers["cache-control"] == "no-store"
    # The dashboard, on its own port under the same certificate, says so too.
    login = httpx.get(
        f"https://127.0.0.1:{gateway.dashboard_port}/login",
        verify=ssl.create_default_context(cafile=str(cert)),
    )
    assert login.status_code == 200
    assert login.headers["strict-transport-security"] == "max-age=31536000"
    with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on that port
        httpx.get(f"http://127.0.0.1:{gateway.http_port}/healthz", timeout=3)


class TestReadiness:
    def test_readyz_is_false_until_migrations_are_applied(self, tmp_path, database_url):
        settings = Settings(data_dir=tmp_path / "var", database_url=database_url)
        gw = Gateway.open(settings)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(gw), host="127.0.0.1", port=port, log_config=None, lifespan="off"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port}"
            r = httpx.get(f"{url}/readyz")
            assert r.status_code == 503 and "migrations" in r.json()["detail"]
            assert r.json()["code"] == "not_ready"
            assert httpx.get(f"{url}/healthz").status_code == 200
            upgrade(settings.sqlalchemy_url)
            assert httpx.get(f"{url}/readyz").status_code == 200
        finally:
            server.should_exit = True
            thread.join(10)
            gw.close()

    def test_an_sftp_role_started_before_the_migrations_waits_for_them(self, gateway):
        """deploy/README: a role started before `edi834 db upgrade` waits, not ready. `edi834
        sftp` read the partners' keys at start and died of the missing table (a traceback,
        exit 1; a Kubernetes pod in CrashLoopBackOff until the Job ended). Found starting the
        roles against a new PostgreSQL database before the migrate job."""
        health = free_port()
        env = gateway.env(EDI834_HEALTH_PORT=str(health))
        gateway.proc = launcher("sftp").spawn([str(EDI834), "sftp"], env, gateway.log_path)

        def readyz() -> httpx.Response | None:
            assert gateway.proc is not None
            assert gateway.proc.poll() is None, f"sftp exited:\n{gateway.logs()[-3000:]}"
            try:
                return httpx.get(f"http://127.0.0.1:{health}/readyz", timeout=1)
            except httpx.HTTPError:
                return None

        deadline = time.monotonic() + 30
        while (r := readyz()) is None:
            assert time.monotonic() < deadline, gateway.logs()[-3000:]
            time.sleep(0.1)
        assert r.status_code == 503 and r.json()["code"] == "not_ready"
        assert "migrations" in r.json()["detail"]
        time.sleep(1)  # still up a moment later, listening for partners
        assert readyz() is not None
        with socket.create_connection(("127.0.0.1", gateway.sftp_port), timeout=5):
            pass  # its SFTP port is open
        assert "Traceback" not in gateway.logs()
        upgrade(gateway.settings.sqlalchemy_url)
        deadline = time.monotonic() + 30
        while (r := readyz()) is None or r.status_code != 200:
            assert time.monotonic() < deadline, gateway.logs()[-3000:]
            time.sleep(0.2)

    def test_a_command_that_migrates_a_database_in_use_says_so(self, gateway):
        """Every command that opens the database migrates it first: `edi834 partner list`
        from a new release's venv took a database of the old one (0023) to 0024 under its
        running roles and said nothing (found upgrading from 47acb51, as deploy/README's
        upgrade has the new venv in place before the migrate step). It now says so on stderr;
        `edi834 db upgrade` says whether it migrated."""
        from alembic import command

        from gateway.db.migrate import alembic_config, head_revision

        gateway.data_dir.mkdir(parents=True)
        head = head_revision()
        assert head is not None
        before = f"{int(head) - 1:04d}"
        command.upgrade(alembic_config(gateway.settings.sqlalchemy_url), before)
        first = gateway.cli("partner", "list")
        assert first.stdout.startswith("no partners yet")
        assert f"edi834: migrated the database from {before} to {head} first (" in first.stderr
        assert "must be restarted" in first.stderr
        again = gateway.cli("partner", "list")
        assert "migrated" not in again.stderr
        assert gateway.cli("db", "upgrade").stdout.startswith(
            f"database at head ({head}), nothing to migrate: "
        )

    @pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression")
    @pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
    def test_models_and_migrations_agree(self, tmp_path, database_url):
        settings = Settings(data_dir=tmp_path / "var", database_url=database_url)
        gw = Gateway.open(settings)
        upgrade(settings.sqlalchemy_url)
        sqlite = gw.engine.dialect.name == "sqlite"

        def compare_type(_ctx, _inspected_col, _metadata_col, inspected, metadata) -> bool | None:
            # SQLite does not enforce a varchar's length, and migration 0015 leaves it (a
            # rebuild there would cascade-delete); every other type difference counts.
            varchars = [t for t in (inspected, metadata) if type(t) in (String, VARCHAR)]
            if sqlite and len(varchars) == 2:
                return False
            return None  # alembic's own comparison

        with gw.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": compare_type})
            diff = compare_metadata(ctx, Base.metadata)
        gw.close()
        assert diff == [], diff

    def test_the_identity_check_has_an_index_by_birth_date_and_name(self, tmp_path, database_url):
        """An expression index (migration 0014), which the comparison above cannot see on
        SQLite: without it the look-up by name read every member born on each date."""
        settings = Settings(data_dir=tmp_path / "var", database_url=database_url)
        gw = Gateway.open(settings)
        upgrade(settings.sqlalchemy_url)
        postgres = gw.engine.dialect.name == "postgresql"
        sql = (
            "SELECT indexdef FROM pg_indexes WHERE indexname = :n"
            if postgres
            else "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"
        )
        with gw.engine.connect() as conn:
            found = conn.execute(text(sql), {"n": "ix_ledger_members_identity_name"}).scalar()
        gw.close()
        assert found is not None
        assert re.search(r"birth_date, upper\(\(?last_name", found, re.IGNORECASE), found


@pytest.mark.parametrize("command", ["serve", "validate", "partner"])
def test_a_command_loads_with_the_collector_off_and_runs_with_it_on(command):
    """`_preload` loads a command's modules without cyclic collections and freezes them, and
    the command then runs with the collector on: a `serve` that left it off would keep every
    reference cycle it ever made."""
    import subprocess
    import sys

    probe = (
        "import gc, sys\n"
        "from gateway.cli import _preload\n"
        f"_preload({command!r})\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 10000,\n"
        "      'gateway.serve' in sys.modules, 'gateway.context' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    enabled, frozen, server, database = out.stdout.split()
    assert (enabled, frozen) == ("True", "True"), out.stdout
    assert server == str(command == "serve")  # only what the command itself loads
    if command == "partner":
        assert database == "True"


def test_access_changes_are_audited(tmp_path, monkeypatch, capsys) -> None:
    """Who may send files or read member data changes only with an audit entry: who (--by,
    else cli:<OS user>), which command, whom, its options — a secret as "set", key files as a
    count, never their values. Lists and refused commands write nothing."""
    import io

    import asyncssh
    from sqlalchemy import select

    from gateway.cli import _run, build_parser
    from gateway.db.models import AuditEntry

    data = ["--data-dir", str(tmp_path / "var")]
    pub = tmp_path / "va.pub"
    asyncssh.generate_private_key("ssh-ed25519").write_public_key(pub)

    def run(*argv: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return _run(build_parser().parse_args([*argv, *data]))

    assert run("partner", "add", "--name", "va", "--isa-qualifier", "ZZ", "--isa-id", "VA0FFM",
               "--sftp-key", str(pub), "--webhook-url", "https://va.example/hook",
               "--webhook-secret", "s3cret-webhook-value", "--by", "alice") == 0  # fmt: skip
    assert run("partner", "list") == 0
    assert run("partner", "rotate-key", "va", "--keep-old", "30", "--by", "alice") == 0
    assert run("partner", "disable", "va") == 0
    assert run("partner", "enable", "nosuch", "--by", "alice") != 0  # refused: not audited
    assert run("operator", "add", "victor", "--role", "viewer", "--by", "alice",
               stdin="a long enough password\n") == 0  # fmt: skip
    assert run("operator", "role", "victor", "admin", "--by", "bob") == 0
    assert run("operator", "list") == 0
    assert "s3cret-webhook-value" in capsys.readouterr().out  # shown once, to the operator

    from gateway.context import Gateway
    from gateway.settings import Settings

    gw = Gateway.open(Settings(data_dir=tmp_path / "var", database_url=""))
    try:
        with gw.reads() as s:
            entries = [
                tuple(e)
                for e in s.execute(
                    select(AuditEntry.operator, AuditEntry.action, AuditEntry.detail).order_by(
                        AuditEntry.id
                    )
                )
            ]
    finally:
        gw.close()
    assert entries[0] == (
        "alice",
        "cli_partner_add",
        "partner va: partner_isa_id=VA0FFM, partner_qualifier=ZZ, sftp_key: 1, "
        "webhook_secret set, webhook_url=https://va.example/hook",
    )
    assert entries[1] == ("alice", "cli_partner_rotate_key", "partner va: keep_old=30")
    who, action, detail = entries[2]
    assert who.startswith("cli:") and (action, detail) == ("cli_partner_disable", "partner va")
    assert entries[3:] == [
        ("alice", "cli_operator_add", "operator victor: role=viewer"),
        ("bob", "cli_operator_role", "operator victor: role=admin"),
    ]
    assert not any("s3cret" in d or "password" in d or "AAAA" in d for _, _, d in entries)
