"""The SFTP intake against the clients partners run (issue 18), on 127.0.0.1: OpenSSH's sftp and
scp, paramiko (what pysftp and Airflow use), and the upload patterns of WinSCP, rclone and lftp
replayed with asyncssh. What each client checks after an upload must succeed for a file that
did arrive."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import asyncssh
import paramiko
import pytest

from gateway.intake.sftp import (
    TEMPORARY_PATTERNS,
    parse_temporary_patterns,
)
from tests.gateway.test_sftp_server import (
    OPENSSH_OPTIONS,
    Intake,
    RawSftp,
    intake_server,
    run,
    sftp_string,
    u32,
    upload,
)

ISA = b"ISA*00*" + b"X" * 200_000 + b"~"  # several SFTP writes


def local_file(tmp_path: Path, data: bytes = ISA, name: str = "local.834") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


class TestReceivedFilesStayVisible:
    """A finished upload is shown read-only in inbound/ until it is processed."""

    def test_stat_list_and_setstat_after_close(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                await upload(client, "inbound/x.834", b"ISA~")
                assert os.listdir(gw.inbound()) == []  # the bytes are the gateway's now
                attrs = await client.stat("inbound/x.834")
                assert attrs.size == 4
                assert attrs.permissions == stat.S_IFREG | 0o444
                assert "x.834" in await client.listdir("inbound")
                await client.utime("inbound/x.834", (1, 1))  # rclone's set-modtime: a no-op
                await client.chmod("inbound/x.834", 0o644)
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await client.remove("inbound/x.834")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await client.open("inbound/x.834", "ab")  # a resume of a received file
                gw.hooks.processed.add("x.834")
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    await client.stat("inbound/x.834")
                assert "x.834" not in await client.listdir("inbound")

        run(scenario())

    def test_the_same_name_can_be_sent_again(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                await upload(client, "inbound/x.834", b"ISA~")
                await upload(client, "inbound/x.834", b"ISA*01~")  # "wb": a whole new upload
                assert [c[2] for c in gw.hooks.complete] == [b"ISA~", b"ISA*01~"]
                assert (await client.stat("inbound/x.834")).size == 7

        run(scenario())

    def test_missing_names_answer_no_such_file(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                for path in ("inbound/none.834", "inbound/none.834.part", "outbound/none.999"):
                    with pytest.raises(asyncssh.SFTPNoSuchFile):
                        await client.remove(path)
                    with pytest.raises(asyncssh.SFTPNoSuchFile):
                        await client.utime(path, (1, 1))
                assert gw.hooks.complete == []

        run(scenario())

    def test_a_failing_hook_hides_nothing_on_disk(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                await upload(client, "inbound/x.834.part", b"ISA~")

                async def broken(username: str) -> list[object]:
                    raise RuntimeError("database down")

                gw.hooks.received_files = broken
                assert (await client.stat("inbound/x.834.part")).size == 4
                assert "x.834.part" in await client.listdir("inbound")

        run(scenario())


class TestTemporaryNames:
    @pytest.mark.parametrize(
        ("client", "temporary"),
        [
            ("WinSCP", "x.834.filepart"),
            ("rclone 1.63+", "x.834.8f2e1a3b.partial"),
            ("lftp xfer:use-temp-file", ".in.x.834"),
            ("generic", "x.834.tmp"),
        ],
    )
    def test_upload_setstat_rename(self, tmp_path: Path, client: str, temporary: str) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, sftp):
                await upload(sftp, f"inbound/{temporary}", ISA)
                assert gw.hooks.complete == [], client
                await sftp.utime(f"inbound/{temporary}", (1, 1))  # WinSCP: times, then rename
                await sftp.posix_rename(f"inbound/{temporary}", "inbound/x.834")
                assert gw.hooks.complete == [("A", "x.834", ISA)]
                assert (await sftp.stat("inbound/x.834")).size == len(ISA)  # rclone checks

        run(scenario())

    def test_patterns_are_a_setting(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with (
                intake_server(tmp_path, temporary_patterns=("*.upload",)) as gw,
                gw.sftp() as (_, client),
            ):
                await upload(client, "inbound/a.834.upload", b"ISA~")
                assert gw.hooks.complete == []
                await upload(client, "inbound/b.834.part", b"ISA~")  # not in this list
                assert [c[1] for c in gw.hooks.complete] == ["b.834.part"]

        run(scenario())

    def test_the_default_setting_is_the_default_list(self) -> None:
        from gateway.settings import Settings

        parsed = parse_temporary_patterns(Settings().sftp_temporary_patterns)
        assert parsed == TEMPORARY_PATTERNS
        with pytest.raises(ValueError, match="final names"):
            parse_temporary_patterns("*.part,*")


class TestLenientWrites:
    def test_write_with_trailing_bytes_is_accepted_and_the_extra_ignored(
        self, tmp_path: Path
    ) -> None:
        """Go's pkg/sftp before 1.13.6 (rclone in Debian 12) sends bytes after a WRITE's data."""

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.connect() as conn:
                raw = RawSftp(await conn.create_process(subsystem="sftp", encoding=None))
                await raw.start()
                pflags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC
                raw.send(RawSftp.OPEN, 1, sftp_string(b"inbound/go.834"), u32(pflags), u32(0))
                kind, payload = await raw.reply()
                assert kind == RawSftp.HANDLE
                handle = payload[8:]
                chunk = 32_768
                for n, offset in enumerate(range(0, len(ISA), chunk)):
                    data = ISA[offset : offset + chunk]
                    raw.send(
                        RawSftp.WRITE,
                        10 + n,
                        sftp_string(handle),
                        struct.pack(">Q", offset),
                        sftp_string(data),
                        b"\0" * 8,  # the trailing bytes
                    )
                    kind, payload = await raw.reply()
                    assert (kind, payload[4:8]) == (RawSftp.STATUS, u32(0)), payload
                raw.send(RawSftp.CLOSE, 99, sftp_string(handle))
                kind, payload = await raw.reply()
                assert (kind, payload[4:8]) == (RawSftp.STATUS, u32(0)), payload
                assert gw.hooks.complete == [("A", "go.834", ISA)]

        run(scenario())

    def test_a_failed_handle_does_not_keep_its_name_busy(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                failed = await client.open("inbound/x.834", "wb")
                with pytest.raises(asyncssh.SFTPFailure):
                    await failed.write(b"\0", 1 << 30)  # refused: far past the end
                # the client gives that handle up without closing it and starts again
                await upload(client, "inbound/x.834", b"ISA~")
                assert gw.hooks.complete == [("A", "x.834", b"ISA~")]
                with pytest.raises(asyncssh.SFTPFailure):
                    await failed.write(b"late", 0)
                with pytest.raises(asyncssh.SFTPFailure):
                    await failed.close()
                assert gw.hooks.complete == [("A", "x.834", b"ISA~")]
                assert gw.hooks.partial == []

        run(scenario())

    def test_another_session_still_finds_a_name_in_use(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, first):
                failed = await first.open("inbound/x.834", "wb")
                with pytest.raises(asyncssh.SFTPFailure):
                    await failed.write(b"\0", 1 << 30)
                async with gw.sftp() as (_, second):
                    with pytest.raises(asyncssh.SFTPFailure, match="in use"):
                        await second.open("inbound/x.834", "wb")
                with pytest.raises(asyncssh.SFTPFailure, match="incomplete"):
                    await failed.close()  # its refused write never came: not received
                assert gw.hooks.complete == []
                assert gw.hooks.partial == [("A", "x.834", b"")]

        run(scenario())


class TestOpenSsh:
    def test_put_ls_and_put_p(self, tmp_path: Path) -> None:
        local = local_file(tmp_path)

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                code, out, err = await gw.openssh_sftp(
                    f"put {local} inbound/a.834\n"
                    "ls -l inbound\n"
                    f"put -p {local} inbound/b.834\n"  # SETSTAT on the final name after CLOSE
                    "ls -l inbound/b.834\n"
                )
                assert code == 0, err
                assert "a.834" in out and f"{len(ISA)}" in out
                assert [(c[1], c[2]) for c in gw.hooks.complete] == [
                    ("a.834", ISA),
                    ("b.834", ISA),
                ]
                code, _, err = await gw.openssh_sftp("rm inbound/none.834\n")
                assert code != 0 and "No such file" in err

        run(scenario())

    def test_reput_after_an_interruption(self, tmp_path: Path) -> None:
        local = local_file(tmp_path)

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                conn = await gw.connect()
                client = await conn.start_sftp_client()
                remote = await client.open("inbound/x.834.part", "wb")
                await remote.write(ISA[:70_000])
                conn.abort()  # the session drops mid-upload
                await asyncio.sleep(0.3)
                assert gw.hooks.partial == []
                code, _, err = await gw.openssh_sftp(
                    f"reput {local} inbound/x.834.part\nrename inbound/x.834.part inbound/x.834\n"
                )
                assert code == 0, err
                assert gw.hooks.complete == [("A", "x.834", ISA)]

        run(scenario())

    def test_scp_exits_0(self, tmp_path: Path) -> None:
        local = local_file(tmp_path)

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                code, _, err = await gw.openssh(
                    "/usr/bin/scp",
                    "-i", str(gw.keyfile()),
                    "-P", str(gw.port),
                    *OPENSSH_OPTIONS,
                    str(local),
                    "A@127.0.0.1:inbound/scp.834",
                )  # fmt: skip
                assert code == 0, err
                assert gw.hooks.complete == [("A", "scp.834", ISA)]

        run(scenario())

    def test_legacy_scp_is_told_to_use_sftp(self, tmp_path: Path) -> None:
        local = local_file(tmp_path)

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                code, _, err = await gw.openssh(
                    "/usr/bin/scp", "-O",
                    "-i", str(gw.keyfile()),
                    "-P", str(gw.port),
                    *OPENSSH_OPTIONS,
                    str(local),
                    "A@127.0.0.1:inbound/scp.834",
                )  # fmt: skip
                assert code == 1
                assert "this server speaks SFTP only: use scp without -O" in err
                assert gw.hooks.complete == []

        run(scenario())

    @pytest.mark.parametrize(
        "algorithms", ["ecdsa-sha2-nistp256", "rsa-sha2-512,rsa-sha2-256", "rsa-sha2-256"]
    )
    def test_a_client_without_ed25519_host_keys(self, tmp_path: Path, algorithms: str) -> None:
        """JSch and older SSH.NET know ECDSA and RSA host keys only."""
        local = local_file(tmp_path)

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                batch = tmp_path / "batch"
                batch.write_text(f"put {local} inbound/x.834\n")
                code, _, err = await gw.openssh(
                    "/usr/bin/sftp",
                    "-b", str(batch),
                    "-i", str(gw.keyfile()),
                    "-P", str(gw.port),
                    *OPENSSH_OPTIONS,
                    "-o", f"HostKeyAlgorithms={algorithms}",
                    "A@127.0.0.1",
                )  # fmt: skip
                assert code == 0, err
                assert gw.hooks.complete == [("A", "x.834", ISA)]

        run(scenario())


class TestParamiko:
    """paramiko's SFTPClient.put (pysftp, Airflow's SFTPHook) stats the file after CLOSE."""

    @staticmethod
    def _put(
        port: int, key: Path, local: Path, remote: str, disabled: dict[str, list[str]] | None = None
    ) -> int:
        transport = paramiko.Transport(("127.0.0.1", port), disabled_algorithms=disabled)
        try:
            transport.connect(
                username="A", pkey=paramiko.Ed25519Key.from_private_key_file(str(key))
            )
            with paramiko.SFTPClient.from_transport(transport) as sftp:
                attrs = sftp.put(str(local), remote, confirm=True)
                sftp.utime(remote, (1, 1))
                assert attrs.st_size is not None
                return attrs.st_size
        finally:
            transport.close()

    def test_put_with_confirm(self, tmp_path: Path) -> None:
        local = local_file(tmp_path)

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                key = gw.keyfile()
                size = await asyncio.to_thread(self._put, gw.port, key, local, "inbound/p.834")
                assert size == len(ISA)
                assert gw.hooks.complete == [("A", "p.834", ISA)]

        run(scenario())

    @pytest.mark.parametrize("host_key", ["ecdsa-sha2-nistp256", "rsa-sha2-256"])
    def test_put_with_an_ecdsa_or_rsa_host_key(self, tmp_path: Path, host_key: str) -> None:
        local = local_file(tmp_path)
        others = ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                key = gw.keyfile()
                disabled = {"keys": [alg for alg in others if alg != host_key]}
                size = await asyncio.to_thread(
                    self._put, gw.port, key, local, "inbound/p.834", disabled
                )
                assert size == len(ISA)

        run(scenario())


def _curl_speaks_sftp() -> bool:
    curl = shutil.which("curl")
    if curl is None:
        return False
    version = subprocess.run([curl, "-V"], capture_output=True, text=True, check=False).stdout
    return " sftp" in version


@pytest.mark.skipif(not _curl_speaks_sftp(), reason="no curl with SFTP (libssh2) on this machine")
class TestCurl:
    """curl (libssh2): an upload, and -C - resuming a dropped upload to a temporary name."""

    @staticmethod
    async def _curl(gw: Intake, local: Path, remote: str, *extra: str) -> tuple[int, str]:
        key = gw.keyfile()
        public = key.with_suffix(".pub")
        gw.keys["A"].write_public_key(public)
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--insecure",  # no known_hosts on this throwaway server
            "--key", str(key), "--pubkey", str(public),
            "-T", str(local), *extra,
            f"sftp://A@127.0.0.1:{gw.port}/{remote}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, err.decode()

    def test_upload_then_resume_of_a_temporary_name(self, tmp_path: Path) -> None:
        local = local_file(tmp_path)

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                code, err = await self._curl(gw, local, "inbound/c.834")
                assert code == 0, err
                assert gw.hooks.complete == [("A", "c.834", ISA)]
                # a resume of a received file is refused, not glued onto an empty one
                code, _ = await self._curl(gw, local, "inbound/c.834", "-C", "-")
                assert code != 0
                conn = await gw.connect()
                client = await conn.start_sftp_client()
                remote = await client.open("inbound/r.834.part", "wb")
                await remote.write(ISA[:50_000])
                conn.abort()
                await asyncio.sleep(0.3)
                code, err = await self._curl(gw, local, "inbound/r.834.part", "-C", "-")
                assert code == 0, err
                async with gw.sftp() as (_, sftp):
                    await sftp.rename("inbound/r.834.part", "inbound/r.834")
                assert gw.hooks.complete[1:] == [("A", "r.834", ISA)]

        run(scenario())
