"""End to end over SFTP against a real `edi834 serve`: asyncssh's client and OpenSSH's `sftp`
upload files and fetch their TA1/999 from outbound/, the same acks the API serves."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import asyncssh
import paramiko
import pytest
from sqlalchemy import create_engine, text

from gateway.settings import Settings
from tests.conftest import SAMPLES
from tests.gateway.harness import wait_final

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
DEFECTIVE = (SAMPLES / "bad_ik403_8_dmg02_date.834").read_bytes()
OPENSSH = (
    "-F",
    "/dev/null",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
)


@pytest.fixture
def partner(gateway, tmp_path):
    key = asyncssh.generate_private_key("ssh-ed25519")
    private = tmp_path / "id_va"
    key.write_private_key(private)
    private.chmod(0o600)
    public = tmp_path / "id_va.pub"
    key.write_public_key(public)
    api_key = gateway.add_partner("va", "VA0FFM", sftp_key=public)
    gateway.start()
    return key, private, api_key


def _connect(gateway, key):
    return asyncssh.connect(
        "127.0.0.1", gateway.sftp_port, username="va", client_keys=[key], known_hosts=None
    )


def _receipts(gateway, api_key) -> list[dict]:
    with gateway.client(api_key) as c:
        return c.get("/v1/interchanges", params={"limit": 200}).json()["items"]


async def _wait_outbound(sftp, suffix: str, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [n for n in await sftp.listdir("outbound") if n.endswith(suffix)]
        if names:
            return names
        await asyncio.sleep(0.1)
    raise AssertionError(f"no *{suffix} in outbound/")


class TestSftpIntake:
    def test_asyncssh_upload_is_a_receipt_when_close_returns_and_acks_come_back(
        self, gateway, partner
    ):
        key, _, api_key = partner

        async def run():
            async with _connect(gateway, key) as conn, conn.start_sftp_client() as sftp:
                async with sftp.open("inbound/enroll-0601.834", "wb") as f:
                    await f.write(GOOD)
                # CLOSE answered: the receipt is already committed.
                items = _receipts(gateway, api_key)
                assert [i["filename"] for i in items] == ["enroll-0601.834"]
                assert items[0]["channel"] == "sftp"
                rid = items[0]["id"]
                with gateway.client(api_key) as c:
                    body = wait_final(c, rid)
                    assert body["outcome"] == "accepted"
                    api_999 = c.get(f"/v1/interchanges/{rid}/acks/999").content
                names = await _wait_outbound(sftp, ".999")
                assert len(names) == 1 and "enroll-0601" in names[0] and rid[:12] in names[0]
                async with sftp.open(f"outbound/{names[0]}", "rb") as f:
                    assert await f.read() == api_999
                assert await _wait_outbound(sftp, ".ta1")
                await sftp.remove(f"outbound/{names[0]}")
                assert names[0] not in await sftp.listdir("outbound")
                # the finished upload is still listed, read-only, for a while after processing
                listed = [n for n in await sftp.listdir("inbound") if n not in (".", "..")]
                assert listed == ["enroll-0601.834"]
                attrs = await sftp.stat("inbound/enroll-0601.834")
                assert (attrs.size, attrs.permissions & 0o777) == (len(GOOD), 0o444)

                # Written under a temporary name: counts only when renamed.
                async with sftp.open("inbound/second.834.part", "wb") as f:
                    await f.write(DEFECTIVE)
                assert len(_receipts(gateway, api_key)) == 1
                await sftp.rename("inbound/second.834.part", "inbound/second.834")
                items = _receipts(gateway, api_key)
                assert len(items) == 2 and items[0]["filename"] == "second.834"
                with gateway.client(api_key) as c:
                    assert wait_final(c, items[0]["id"])["outcome"] == "rejected"

        asyncio.run(run())

    def test_openssh_sftp_put_then_get_the_999(self, gateway, partner, tmp_path):
        _, private, api_key = partner
        local = tmp_path / "defective.834"
        local.write_bytes(DEFECTIVE)
        target = ["-i", str(private), "-P", str(gateway.sftp_port), *OPENSSH, "va@127.0.0.1"]

        def sftp(batch: str) -> subprocess.CompletedProcess[str]:
            (tmp_path / "batch").write_text(batch)
            return subprocess.run(
                ["sftp", "-b", str(tmp_path / "batch"), *target],
                capture_output=True,
                text=True,
                timeout=60,
            )

        put = sftp(f"put {local} inbound/defective.834\n")
        assert put.returncode == 0, put.stderr
        items = _receipts(gateway, api_key)
        assert len(items) == 1
        with gateway.client(api_key) as c:
            assert wait_final(c, items[0]["id"])["outcome"] == "rejected"
            api_999 = c.get(f"/v1/interchanges/{items[0]['id']}/acks/999").content
        deadline = time.monotonic() + 30
        while True:
            listing = sftp("ls -1 outbound\n")
            names = [n.split("/")[-1] for n in listing.stdout.split() if n.endswith(".999")]
            if names or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert names, listing.stdout
        got = sftp(f"get outbound/{names[0]} {tmp_path}/ack.999\n")
        assert got.returncode == 0, got.stderr
        assert (tmp_path / "ack.999").read_bytes() == api_999
        assert b"IK5*R*5~" in api_999
        # The partner's view is its own root: no path leads elsewhere.
        escape = sftp("get ../../edi834.sqlite3 /dev/null\n")
        assert escape.returncode != 0
        assert sftp("put /etc/hostname outbound/x\n").returncode != 0

    def test_dropped_session_leaves_a_visible_partial_upload_never_processed(
        self, gateway, partner
    ):
        key, _, api_key = partner

        async def run():
            conn = await _connect(gateway, key)
            sftp = await conn.start_sftp_client()
            f = await sftp.open("inbound/cut.834", "wb")
            await f.write(GOOD[: len(GOOD) // 2])
            conn.abort()
            deadline = time.monotonic() + 10
            while not _receipts(gateway, api_key):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)

        asyncio.run(run())
        items = _receipts(gateway, api_key)
        assert len(items) == 1
        assert items[0]["status"] == "partial" and items[0]["size"] == len(GOOD) // 2
        time.sleep(1.0)  # the worker has had its chance: a partial upload is never processed
        assert _receipts(gateway, api_key)[0]["status"] == "partial"
        assert items[0]["outcome"] is None
        # Said so: in the API, and in outbound/ for a sender who reads nothing else.
        with gateway.client(api_key) as c:
            error = c.get(f"/v1/interchanges/{items[0]['id']}").json()["error"]
        assert "send the whole file again" in error

        async def notice() -> dict:
            async with _connect(gateway, key) as conn, conn.start_sftp_client() as sftp:
                (name,) = await _wait_outbound(sftp, ".partial.json")
                assert "_cut." in name
                async with sftp.open(f"outbound/{name}", "rb") as f:
                    return json.loads(await f.read())

        body = asyncio.run(notice())
        assert (body["file"], body["outcome"], body["receipt_id"], body["size"]) == (
            "cut.834",
            "partial",
            items[0]["id"],
            len(GOOD) // 2,
        )


def test_an_ack_removed_unread_is_not_left_waiting_for_pick_up(gateway, partner):
    """A sender that removes an ack (read over the API, or not needed) has dealt with it: no
    pick-up alert is raised for it (gateway.watch), and the other ack still waits."""
    key = partner[0]

    async def run() -> tuple[str, str]:
        async with _connect(gateway, key) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("inbound/rm.834", "wb") as f:
                await f.write(GOOD)
            (ta1,) = await _wait_outbound(sftp, ".ta1")
            (x999,) = await _wait_outbound(sftp, ".999")
            await sftp.remove(f"outbound/{ta1}")
            return ta1, x999

    ta1, x999 = asyncio.run(run())
    settings = Settings(data_dir=gateway.data_dir, database_url=gateway.database_url)
    engine = create_engine(settings.sqlalchemy_url)
    with engine.connect() as conn:
        via = dict(conn.execute(text("SELECT filename, picked_up_via FROM acks")).all())
    engine.dispose()
    assert via == {ta1: "sftp-rm", x999: None}


class TestFinishedUploadsStayVisible:
    """What paramiko's put(confirm=True), rclone and MFT tools check after CLOSE, against the
    real receipts: the file is listed read-only until processed (issue 18)."""

    @staticmethod
    def _paramiko_put(port: int, private: Path, local: Path, remote: str) -> int:
        transport = paramiko.Transport(("127.0.0.1", port))
        try:
            transport.connect(
                username="va", pkey=paramiko.Ed25519Key.from_private_key_file(str(private))
            )
            with paramiko.SFTPClient.from_transport(transport) as sftp:
                size = sftp.put(str(local), remote, confirm=True).st_size
                sftp.utime(remote, (1, 1))  # a no-op the client sees succeed
                names = sftp.listdir("inbound")
                assert remote.split("/")[-1] in names
                return int(size or 0)
        finally:
            transport.close()

    def test_visible_while_waiting_then_gone_once_processed(self, gateway, tmp_path):
        key = asyncssh.generate_private_key("ssh-ed25519")
        private = tmp_path / "id_va"
        key.write_private_key(private)
        private.chmod(0o600)
        key.write_public_key(tmp_path / "id_va.pub")
        api_key = gateway.add_partner("va", "VA0FFM", sftp_key=tmp_path / "id_va.pub")
        local = tmp_path / "good.834"
        local.write_bytes(GOOD)
        # No worker: the file waits, and stays listed however long it waits.
        gateway.start(EDI834_WORKER_ENABLED="false", EDI834_SFTP_RECEIVED_VISIBLE_SECONDS="0")
        size = self._paramiko_put(gateway.sftp_port, private, local, "inbound/good.834")
        assert size == len(GOOD)
        (item,) = _receipts(gateway, api_key)
        assert item["status"] == "received"

        async def stat_size(name: str) -> int | None:
            async with _connect(gateway, key) as conn, conn.start_sftp_client() as sftp:
                try:
                    return (await sftp.stat(f"inbound/{name}")).size
                except asyncssh.SFTPNoSuchFile:
                    return None

        assert asyncio.run(stat_size("good.834")) == len(GOOD)
        gateway.stop()
        gateway.start(EDI834_SFTP_RECEIVED_VISIBLE_SECONDS="0")
        with gateway.client(api_key) as c:
            wait_final(c, item["id"])
        assert asyncio.run(stat_size("good.834")) is None

    def test_a_duplicate_under_a_new_name_is_listed_under_that_name(
        self, gateway, partner, tmp_path
    ):
        _, private, api_key = partner
        local = tmp_path / "good.834"
        local.write_bytes(GOOD)
        self._paramiko_put(gateway.sftp_port, private, local, "inbound/first.834")
        # the same bytes again: one receipt (named first.834), yet the client sees its own name
        size = self._paramiko_put(gateway.sftp_port, private, local, "inbound/again.834")
        assert size == len(GOOD)
        assert [i["filename"] for i in _receipts(gateway, api_key)] == ["first.834"]

    def test_a_duplicate_gets_a_notice_naming_the_original_and_its_acks(
        self, gateway, partner, tmp_path
    ):
        """The same bytes again under another name: not processed again, and an SFTP sender
        is told so in outbound/ (it saw nothing before: no ack ever carried the new name)."""
        key, private, api_key = partner
        local = tmp_path / "good.834"
        local.write_bytes(GOOD)
        self._paramiko_put(gateway.sftp_port, private, local, "inbound/first.834")
        (item,) = _receipts(gateway, api_key)
        with gateway.client(api_key) as c:
            wait_final(c, item["id"])
            original_acks = sorted(
                a["filename"] for a in c.get(f"/v1/interchanges/{item['id']}/acks").json()
            )
        self._paramiko_put(gateway.sftp_port, private, local, "inbound/again.834")

        async def notice() -> tuple[str, dict]:
            async with _connect(gateway, key) as conn, conn.start_sftp_client() as sftp:
                (name,) = await _wait_outbound(sftp, ".duplicate.json")
                async with sftp.open(f"outbound/{name}", "rb") as f:
                    return name, json.loads(await f.read())

        name, body = asyncio.run(notice())
        assert "_again." in name and item["id"][:12] in name
        assert (body["file"], body["outcome"]) == ("again.834", "duplicate")
        assert body["original"]["receipt_id"] == item["id"]
        assert body["original"]["file"] == "first.834"
        assert sorted(body["acks"]) == original_acks and original_acks
        assert len(_receipts(gateway, api_key)) == 1
        # Twice more within a second, under names that are one once made safe: a notice each.
        for again in ("again.edi", "again.txt"):
            self._paramiko_put(gateway.sftp_port, private, local, f"inbound/{again}")

        async def notices() -> list[str]:
            async with _connect(gateway, key) as conn, conn.start_sftp_client() as sftp:
                return [n for n in await sftp.listdir("outbound") if n.endswith(".duplicate.json")]

        assert len(asyncio.run(notices())) == 3
        # On the original's timeline (the dashboard's interchange page) for the operators.
        settings = Settings(data_dir=gateway.data_dir, database_url=gateway.database_url)
        engine = create_engine(settings.sqlalchemy_url)
        with engine.connect() as conn:
            events = conn.execute(
                text("SELECT event, detail FROM receipt_events WHERE receipt_id = :r"),
                {"r": item["id"]},
            ).all()
        engine.dispose()
        assert [d for e, d in events if e == "received_again"] == [
            f"sftp {len(GOOD)} bytes again ({name}): not processed again"
            for name in ("again.834", "again.edi", "again.txt")
        ]


def test_unknown_user_and_wrong_key_are_refused(gateway, partner):
    async def run():
        other = asyncssh.generate_private_key("ssh-ed25519")
        for user, k in (("va", other), ("nobody", partner[0])):
            with pytest.raises(asyncssh.PermissionDenied):
                async with asyncssh.connect(
                    "127.0.0.1",
                    gateway.sftp_port,
                    username=user,
                    client_keys=[k],
                    known_hosts=None,
                ):
                    pass

    asyncio.run(run())
    assert Path(gateway.data_dir / "sftp").is_dir()


SHA1_MAC = ["Ciphers=aes128-ctr", "MACs=hmac-sha1"]
# A 64-bit MAC tag, either mode: offered by asyncssh's defaults, not by the gateway.
WEAK = [["Ciphers=aes128-ctr", f"MACs=umac-64{etm}@openssh.com"] for etm in ("", "-etm")]


def test_an_upload_refused_for_a_disabled_partner_leaves_nothing_behind(gateway, partner):
    """A session opened before `partner disable`: its upload is refused at CLOSE, and nothing
    of it stays in inbound/ for a later sweep to record as a partial upload (and tell the
    partner to send it again)."""
    key = partner[0]

    async def run() -> None:
        async with _connect(gateway, key) as conn, conn.start_sftp_client() as sftp:
            gateway.cli("partner", "disable", "va")
            f = await sftp.open("inbound/late.834", "wb")
            await f.write(GOOD)
            with pytest.raises(asyncssh.SFTPError):
                await f.close()

    asyncio.run(run())
    inbound = gateway.data_dir / "sftp" / "va" / "inbound"
    assert [p.name for p in inbound.iterdir()] == []


class TestNoSha1NoDsa:
    """OpenSSH 8.8's defaults for a PHI feed: no SHA-1 (RSA user signatures, key exchange,
    MAC) unless EDI834_SFTP_ALLOW_SHA1, and no DSA key at all (found by a run with clients
    nobody on the team configured: -o PubkeyAcceptedAlgorithms=+ssh-dss logged in)."""

    @staticmethod
    def _rsa_partner(gateway, tmp_path: Path) -> Path:
        key = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
        private = tmp_path / "id_rsa"
        key.write_private_key(private)
        private.chmod(0o600)
        key.write_public_key(tmp_path / "id_rsa.pub")
        gateway.add_partner("va", "VA0FFM", sftp_key=tmp_path / "id_rsa.pub")
        return private

    @staticmethod
    def _ls(gateway, private: Path, *options: str) -> subprocess.CompletedProcess[str]:
        extra = [x for o in options for x in ("-o", o)]
        return subprocess.run(
            ["sftp", "-b", "-", "-i", str(private), "-P", str(gateway.sftp_port), *OPENSSH,
             *extra, "va@127.0.0.1"],
            input="ls inbound\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def test_sha1_is_refused_by_default_and_sha2_logs_in(self, gateway, tmp_path):
        private = self._rsa_partner(gateway, tmp_path)
        gateway.start(EDI834_WORKER_ENABLED="false")
        assert self._ls(gateway, private).returncode == 0  # rsa-sha2-512: fine
        # (hmac-sha1 with a cipher that takes a MAC: an AEAD cipher has none to negotiate)
        for options in (["KexAlgorithms=diffie-hellman-group14-sha1"], SHA1_MAC, *WEAK):
            done = self._ls(gateway, private, *options)
            assert done.returncode != 0, options
        # Encrypt-and-MAC SHA-2 stays (SSH.NET before 2024 has no EtM MAC).
        done = self._ls(gateway, private, "Ciphers=aes128-ctr", "MACs=hmac-sha2-256")
        assert done.returncode == 0, done.stderr
        # A SHA-1 signature of the user's RSA key (an old JSch's): asyncssh signs with the
        # one algorithm it is given.
        assert asyncio.run(self._sha1_login(gateway, private)) is False

    @staticmethod
    async def _sha1_login(gateway, private: Path) -> bool:
        try:
            async with asyncssh.connect(
                "127.0.0.1", gateway.sftp_port, username="va", known_hosts=None,
                client_keys=[asyncssh.read_private_key(private)], signature_algs=["ssh-rsa"],
            ):  # fmt: skip
                return True
        except asyncssh.PermissionDenied:
            return False

    def test_sha1_when_the_setting_allows_it(self, gateway, tmp_path):
        private = self._rsa_partner(gateway, tmp_path)
        gateway.start(EDI834_WORKER_ENABLED="false", EDI834_SFTP_ALLOW_SHA1="true")
        done = self._ls(gateway, private, *SHA1_MAC)
        assert done.returncode == 0, done.stderr
        assert asyncio.run(self._sha1_login(gateway, private)) is True

    def test_a_dsa_key_is_refused_when_registered_and_when_stored(self, gateway, tmp_path):
        from gateway.intake.sftp import client_key

        key = asyncssh.generate_private_key("ssh-dss")
        key.write_public_key(tmp_path / "id_dsa.pub")
        done = gateway.cli("partner", "add", "--name", "md", "--isa-qualifier", "ZZ",
                           "--isa-id", "MD0SBE", "--sftp-key", str(tmp_path / "id_dsa.pub"),
                           check=False)  # fmt: skip
        assert done.returncode != 0 and "ssh-dss key is not accepted" in done.stderr
        # One stored by an older version is not taken either, and `partner list` says so.
        public = asyncssh.import_public_key(key.export_public_key())
        assert client_key(public, allow_sha1=True) is None
        from gateway.context import Gateway
        from gateway.db.session import unit_of_work
        from gateway.partners import set_sftp_keys

        gateway.cli("partner", "add", "--name", "md", "--isa-qualifier", "ZZ", "--isa-id",
                    "MD0SBE")  # fmt: skip
        gw = Gateway.open(Settings(data_dir=gateway.data_dir, database_url=gateway.database_url))
        try:
            with unit_of_work(gw.sessions) as session:
                set_sftp_keys(session, "md", public.export_public_key().decode().strip())
        finally:
            gw.close()
        listed = {p["name"]: p for p in json.loads(gateway.cli("partner", "list", "--json").stdout)}
        assert (listed["md"]["sftp_keys"], listed["md"]["sftp_keys_refused"]) == (1, 1)
        assert "1 refused: DSA" in gateway.cli("partner", "list").stdout
