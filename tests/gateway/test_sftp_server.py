"""The SFTP intake server over real SSH connections on 127.0.0.1: asyncssh as the client, and
OpenSSH's /usr/bin/sftp for the end-to-end check."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncssh
import pytest

from gateway.intake import sftp as sftp_module
from gateway.intake.sftp import (
    MAX_UPLOAD_BYTES,
    MAX_WRITE_GAP,
    TEMPORARY_PATTERNS,
    ReceivedFile,
    host_key_paths,
    load_host_keys,
    partner_root,
    recover_orphan_uploads,
    start_sftp_server,
)

T = TypeVar("T")

REFUSED = (asyncssh.SFTPPermissionDenied, asyncssh.SFTPNoSuchFile)
OPENSSH_OPTIONS = [
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
]  # fmt: skip


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one scenario on a fresh event loop; a hang fails the test instead of stalling it."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout=30)

    return asyncio.run(bounded())


async def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def sftp_packet(kind: int, *fields: bytes) -> bytes:
    """A raw SFTP v3 packet, for the cases no client library will produce."""
    body = bytes([kind]) + b"".join(fields)
    return struct.pack(">I", len(body)) + body


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def sftp_string(data: bytes) -> bytes:
    return u32(len(data)) + data


class RawSftp:
    """Speaks SFTP by hand over an SSH "sftp" subsystem channel."""

    INIT, OPEN, CLOSE, WRITE = 1, 3, 4, 6
    VERSION, STATUS, HANDLE = 2, 101, 102

    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self.process = process

    async def start(self) -> None:
        self.process.stdin.write(sftp_packet(self.INIT, u32(3)))
        kind, _ = await self.reply()
        assert kind == self.VERSION

    def send(self, kind: int, request_id: int, *fields: bytes) -> None:
        self.process.stdin.write(sftp_packet(kind, u32(request_id), *fields))

    async def reply(self) -> tuple[int, bytes]:
        header = await self.process.stdout.readexactly(4)
        body = await self.process.stdout.readexactly(int.from_bytes(header, "big"))
        return body[0], body[1:]

    async def replies_until_eof(self) -> list[tuple[int, bytes]]:
        replies = []
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                replies.append(await self.reply())
        return replies

    async def open_for_write(self, path: bytes, data: bytes) -> bytes:
        pflags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC
        self.send(self.OPEN, 1, sftp_string(path), u32(pflags), u32(0))
        kind, payload = await self.reply()
        assert kind == self.HANDLE, payload
        handle = payload[8:]  # request id, string length
        self.send(self.WRITE, 2, sftp_string(handle), struct.pack(">Q", 0), sftp_string(data))
        kind, payload = await self.reply()
        assert (kind, payload[4:8]) == (self.STATUS, u32(0)), payload
        return handle


class FakeHooks:
    """Records every call. upload_complete moves the file to blobs/, as the blob store does;
    a completed file is "received" (shown in inbound/) until its name is in `processed`."""

    def __init__(self, blobs: Path, keys: dict[str, list[asyncssh.SSHKey]]) -> None:
        self.blobs = blobs
        self.keys = keys
        self.complete: list[tuple[str, str, bytes]] = []
        self.partial: list[tuple[str, str, bytes]] = []
        self.staged: list[Path] = []
        self.fail_complete = False
        self.processed: set[str] = set()
        self.received_at: dict[str, float] = {}

    async def authorized_keys(self, username: str) -> list[asyncssh.SSHKey] | None:
        return self.keys.get(username)

    async def upload_complete(self, username: str, staged: Path, filename: str) -> None:
        if self.fail_complete:
            raise RuntimeError("blob store unavailable")
        data = staged.read_bytes()
        self.blobs.mkdir(exist_ok=True)
        staged.rename(self.blobs / f"{len(self.complete)}.blob")
        self.staged.append(staged)
        self.complete.append((username, filename, data))
        self.received_at[f"{username}/{filename}"] = time.time()

    async def upload_partial(self, username: str, staged: Path, filename: str) -> None:
        self.staged.append(staged)
        self.partial.append((username, filename, staged.read_bytes()))

    async def received_files(self, username: str) -> list[ReceivedFile]:
        latest = {name: data for user, name, data in self.complete if user == username}
        return [
            ReceivedFile(name, len(data), self.received_at[f"{username}/{name}"])
            for name, data in latest.items()
            if name not in self.processed
        ]


@dataclass
class Intake:
    tmp: Path
    root: Path
    port: int
    hooks: FakeHooks
    keys: dict[str, asyncssh.SSHKey]

    def inbound(self, partner: str = "A") -> Path:
        return self.root / partner / "inbound"

    def outbound(self, partner: str = "A") -> Path:
        return self.root / partner / "outbound"

    def connect(
        self, username: str = "A", key: asyncssh.SSHKey | None = None, **options: Any
    ) -> Any:  # asyncssh's connect() result: awaitable and an async context manager
        options.setdefault("client_keys", [key or self.keys[username]])
        return asyncssh.connect(
            "127.0.0.1",
            self.port,
            username=username,
            known_hosts=None,
            agent_path=None,
            config=[],
            **options,
        )

    @contextlib.asynccontextmanager
    async def sftp(
        self, username: str = "A"
    ) -> AsyncIterator[tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]]:
        async with self.connect(username) as conn, conn.start_sftp_client() as client:
            yield conn, client

    def keyfile(self, username: str = "A") -> Path:
        path = self.tmp / f"id_{username}"
        self.keys[username].write_private_key(path)  # OpenSSH format
        path.chmod(0o600)
        return path

    async def openssh(self, program: str, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            program,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def openssh_sftp(self, batch: str, username: str = "A") -> tuple[int, str, str]:
        batchfile = self.tmp / "batch"
        batchfile.write_text(batch)
        return await self.openssh(
            "/usr/bin/sftp",
            "-b", str(batchfile),
            "-i", str(self.keyfile(username)),
            "-P", str(self.port),
            *OPENSSH_OPTIONS,
            f"{username}@127.0.0.1",
        )  # fmt: skip


@contextlib.asynccontextmanager
async def intake_server(
    tmp_path: Path,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    temporary_patterns: tuple[str, ...] = TEMPORARY_PATTERNS,
    max_pending_uploads: int = 20,
) -> AsyncIterator[Intake]:
    keys = {name: asyncssh.generate_private_key("ssh-ed25519") for name in ("A", "B")}
    hooks = FakeHooks(tmp_path / "blobs", {name: [key] for name, key in keys.items()})
    root = tmp_path / "sftp"
    for name in keys:
        partner_root(root, name)
    acceptor = await start_sftp_server(
        host="127.0.0.1",
        port=0,
        root=root,
        host_key_path=tmp_path / "host_key",
        hooks=hooks,
        max_upload_bytes=max_upload_bytes,
        temporary_patterns=temporary_patterns,
        max_pending_uploads=max_pending_uploads,
    )
    try:
        yield Intake(tmp_path, root, acceptor.get_port(), hooks, keys)
    finally:
        acceptor.close()
        await acceptor.wait_closed()


async def upload(client: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    async with client.open(path, "wb") as remote:
        await remote.write(data)


class TestPendingUploads:
    def test_a_partner_has_at_most_so_many_unfinished_uploads(self, tmp_path: Path) -> None:
        """Abandoned temporary uploads are kept to be resumed, each up to the upload limit: a
        new one past the cap is refused, so one partner cannot fill the shared disk. Resuming
        one is not a new one; a finished upload does not count; removing one frees a place;
        another partner has its own."""

        async def scenario() -> None:
            async with intake_server(tmp_path, max_pending_uploads=3) as gw:
                async with gw.sftp() as (_, client):
                    # Uploads being written are not left: 6 at once are fine (5 x 3 are not).
                    handles = [await client.open(f"inbound/busy{n}.834", "wb") for n in range(6)]
                    for n, handle in enumerate(handles):
                        await handle.write(b"ISA*%d" % n)
                        await handle.close()
                    assert len(gw.hooks.complete) == 6
                    for n in range(3):
                        await upload(client, f"inbound/junk{n}.part", b"x" * 10)
                    with pytest.raises(asyncssh.SFTPFailure, match="too many unfinished"):
                        await upload(client, "inbound/junk3.part", b"x")
                    with pytest.raises(asyncssh.SFTPFailure, match="too many unfinished"):
                        await upload(client, "inbound/real.834", b"ISA")
                    async with client.open("inbound/junk0.part", "ab") as remote:
                        await remote.write(b"more")  # resumed: allowed
                    await client.remove("inbound/junk1.part")
                    await upload(client, "inbound/real.834", b"ISA*00")  # finished: leaves
                    await upload(client, "inbound/again.834", b"ISA*01")
                assert [name for _, name, _ in gw.hooks.complete][6:] == ["real.834", "again.834"]
                assert sorted(p.name for p in gw.inbound().iterdir()) == [
                    "junk0.part",
                    "junk2.part",
                ]
                async with gw.sftp("B") as (_, other):
                    for n in range(3):
                        await upload(other, f"inbound/b{n}.part", b"y")

        asyncio.run(scenario())


class TestUploadCompletion:
    def test_final_name_is_complete_on_close_with_the_exact_bytes(self, tmp_path: Path) -> None:
        data = os.urandom(300_000)  # several SFTP writes, sent in parallel by put()
        local = tmp_path / "local.834"
        local.write_bytes(data)

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                await client.put(str(local), "/inbound/acme.834")
                # the hook is awaited before the CLOSE is answered
                assert gw.hooks.complete == [("A", "acme.834", data)]
                assert gw.hooks.staged == [gw.inbound() / "acme.834"]
                assert gw.hooks.partial == []
                assert (gw.tmp / "blobs" / "0.blob").read_bytes() == data

        run(scenario())

    @pytest.mark.parametrize("how", ["rename", "posix_rename"])
    def test_temporary_name_is_complete_on_rename_not_on_close(
        self, tmp_path: Path, how: str
    ) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                await upload(client, "inbound/x.834.part", b"ISA*00~")
                assert gw.hooks.complete == []
                assert (gw.inbound() / "x.834.part").read_bytes() == b"ISA*00~"
                await getattr(client, how)("inbound/x.834.part", "inbound/x.834")
                assert gw.hooks.complete == [("A", "x.834", b"ISA*00~")]
                assert gw.hooks.staged == [gw.inbound() / "x.834.part"]  # taken as it was

        run(scenario())

    @pytest.mark.parametrize("name", ["a.834.PART", "b.tmp", "c.834.FilePart"])
    def test_temporary_suffixes_are_case_insensitive(self, tmp_path: Path, name: str) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                await upload(client, f"inbound/{name}", b"ISA~")
                assert gw.hooks.complete == []
                await client.rename(f"inbound/{name}", "inbound/final.834")
                assert [c[1] for c in gw.hooks.complete] == ["final.834"]

        run(scenario())

    def test_hook_failure_fails_the_close_and_keeps_the_file(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                gw.hooks.fail_complete = True
                remote = await client.open("inbound/acme.834", "wb")
                await remote.write(b"ISA*00~")
                with pytest.raises(asyncssh.SFTPFailure) as refused:
                    await remote.close()
                assert "blob store" not in refused.value.reason  # the hook's message stays here
                assert (gw.inbound() / "acme.834").read_bytes() == b"ISA*00~"
                assert gw.hooks.complete == [] and gw.hooks.partial == []
                # the partner sends it again and this time it is recorded
                gw.hooks.fail_complete = False
                await upload(client, "inbound/acme.834", b"ISA*00~")
                assert gw.hooks.complete == [("A", "acme.834", b"ISA*00~")]

        run(scenario())

    def test_hook_failure_fails_the_rename_and_restores_the_name(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                await upload(client, "inbound/x.834.part", b"ISA~")
                gw.hooks.fail_complete = True
                with pytest.raises(asyncssh.SFTPFailure):
                    await client.rename("inbound/x.834.part", "inbound/x.834")
                assert sorted(os.listdir(gw.inbound())) == ["x.834.part"]
                gw.hooks.fail_complete = False
                await client.rename("inbound/x.834.part", "inbound/x.834")
                assert gw.hooks.complete == [("A", "x.834", b"ISA~")]

        run(scenario())

    @pytest.mark.parametrize("how", ["rename", "posix_rename"])
    def test_rename_onto_an_existing_name_is_refused(self, tmp_path: Path, how: str) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                (gw.inbound() / "taken.834").write_bytes(b"first")
                await upload(client, "inbound/new.834.part", b"second")
                with pytest.raises(asyncssh.SFTPFailure):
                    await getattr(client, how)("inbound/new.834.part", "inbound/taken.834")
                assert (gw.inbound() / "taken.834").read_bytes() == b"first"
                assert (gw.inbound() / "new.834.part").read_bytes() == b"second"
                assert gw.hooks.complete == []

        run(scenario())

    def test_a_file_being_written_cannot_be_opened_renamed_or_removed(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with (
                intake_server(tmp_path) as gw,
                gw.sftp() as (_, first),
                gw.sftp() as (_, second),
            ):
                remote = await first.open("inbound/x.834.part", "wb")
                await remote.write(b"ISA~")
                with pytest.raises(asyncssh.SFTPFailure):
                    await second.open("inbound/x.834.part", "wb")
                with pytest.raises(asyncssh.SFTPFailure):
                    await second.rename("inbound/x.834.part", "inbound/x.834")
                with pytest.raises(asyncssh.SFTPFailure):
                    await second.remove("inbound/x.834.part")
                await remote.close()
                await second.rename("inbound/x.834.part", "inbound/x.834")
                assert gw.hooks.complete == [("A", "x.834", b"ISA~")]

        run(scenario())


class TestSessionDrop:
    def test_dropped_session_reports_each_open_file_partial_once(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                conn = await gw.connect()
                client = await conn.start_sftp_client()
                final = await client.open("inbound/big.834", "wb")
                other = await client.open("inbound/other.834", "wb")
                await final.write(b"ISA*00*first half")  # answered: the server has the bytes
                await other.write(b"ISA*00*")
                conn.abort()
                await wait_until(lambda: len(gw.hooks.partial) >= 2)
                await asyncio.sleep(0.2)  # nothing more arrives
                assert sorted(gw.hooks.partial) == [
                    ("A", "big.834", b"ISA*00*first half"),
                    ("A", "other.834", b"ISA*00*"),
                ]
                assert gw.hooks.complete == []

        run(scenario())

    def test_a_dropped_upload_to_a_temporary_name_is_resumed_then_renamed(
        self, tmp_path: Path
    ) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                conn = await gw.connect()
                client = await conn.start_sftp_client()
                remote = await client.open("inbound/x.834.part", "wb")
                await remote.write(b"ISA*00*first half")
                conn.abort()
                await wait_until(lambda: gw.inbound().joinpath("x.834.part").exists())
                await asyncio.sleep(0.2)
                assert gw.hooks.partial == [] and gw.hooks.complete == []
                async with gw.sftp() as (_, again):
                    # what OpenSSH's reput, curl -C - and lftp put -c do: stat, then append
                    size = (await again.stat("inbound/x.834.part")).size
                    assert size == len(b"ISA*00*first half")
                    async with again.open("inbound/x.834.part", "ab") as rest:
                        await rest.write(b"+second half~", size)
                    await again.rename("inbound/x.834.part", "inbound/x.834")
                assert gw.hooks.complete == [("A", "x.834", b"ISA*00*first half+second half~")]
                assert gw.hooks.partial == []

        run(scenario())

    def test_clean_exit_with_a_file_left_open_is_partial(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                async with gw.connect() as conn:
                    client = await conn.start_sftp_client()
                    remote = await client.open("inbound/left.834", "wb")
                    await remote.write(b"ISA~")
                    client.exit()  # closes the SFTP channel without a CLOSE for the file
                    await client.wait_closed()
                    await wait_until(lambda: gw.hooks.partial)
                assert gw.hooks.partial == [("A", "left.834", b"ISA~")]
                assert gw.hooks.complete == []

        run(scenario())

    def test_half_closed_channel_with_a_file_left_open_is_partial(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.connect() as conn:
                raw = RawSftp(await conn.create_process(subsystem="sftp", encoding=None))
                await raw.start()
                await raw.open_for_write(b"inbound/half.834", b"ISA*00*")
                raw.process.stdin.write_eof()  # EOF only: the channel itself stays open
                await wait_until(lambda: gw.hooks.partial)
                assert gw.hooks.partial == [("A", "half.834", b"ISA*00*")]
                assert gw.hooks.complete == []

        run(scenario())

    def test_close_queued_behind_eof_is_never_answered_ok_unless_recorded(
        self, tmp_path: Path
    ) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.connect() as conn:
                raw = RawSftp(await conn.create_process(subsystem="sftp", encoding=None))
                await raw.start()
                handle = await raw.open_for_write(b"inbound/x.834", b"ISA~")
                raw.send(RawSftp.CLOSE, 3, sftp_string(handle))
                raw.process.stdin.write_eof()
                replies = await raw.replies_until_eof()
                await wait_until(lambda: gw.hooks.partial or gw.hooks.complete)
                await asyncio.sleep(0.1)
                close_ok = (RawSftp.STATUS, u32(3) + u32(0)) in [(k, p[:8]) for k, p in replies]
                recorded = gw.hooks.complete == [("A", "x.834", b"ISA~")]
                assert close_ok == recorded
                assert len(gw.hooks.partial) + len(gw.hooks.complete) == 1

        run(scenario())


class TestWriteLimits:
    """What a client writes goes to disk as it comes; a write the gateway would never read is
    refused with a failure status that says why, and the session goes on."""

    def test_a_write_far_past_the_end_is_refused_and_makes_no_sparse_file(
        self, tmp_path: Path
    ) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                remote = await client.open("inbound/sparse.834", "wb")
                with pytest.raises(asyncssh.SFTPFailure) as refused:
                    await remote.write(b"\0", 1 << 30)
                assert "past the end of the data written so far" in refused.value.reason
                assert os.stat(gw.inbound() / "sparse.834").st_size == 0
                await remote.write(b"ISA*00*", 0)
                with pytest.raises(asyncssh.SFTPFailure):  # the refused byte never came
                    await remote.close()
                assert [(c[1], c[2]) for c in gw.hooks.partial] == [("sparse.834", b"ISA*00*")]
                # in order, within the window a pipelining client keeps in flight: accepted
                remote = await client.open("inbound/window.834", "wb")
                await remote.write(b"ISA*00*", 0)
                await remote.write(b"~", MAX_WRITE_GAP + 7)
                await remote.close()
                ((_, name, data),) = gw.hooks.complete
                assert name == "window.834" and len(data) == MAX_WRITE_GAP + 8

        run(scenario())

    def test_a_write_beyond_the_upload_limit_is_refused(self, tmp_path: Path) -> None:
        """The file is then incomplete: its CLOSE fails and it is recorded partial (shown,
        never processed), not received cut short."""

        async def scenario() -> None:
            async with intake_server(tmp_path, max_upload_bytes=1000) as gw:
                async with gw.sftp() as (_, client):
                    remote = await client.open("inbound/big.834", "wb")
                    await remote.write(b"x" * 1000, 0)  # exactly the limit
                    with pytest.raises(asyncssh.SFTPFailure) as refused:
                        await remote.write(b"x", 1000)
                    assert "at most 1000 bytes" in refused.value.reason
                    with pytest.raises(asyncssh.SFTPFailure) as closed:
                        await remote.close()
                    assert "incomplete" in closed.value.reason
                    await upload(client, "inbound/ok.834", b"ISA~")
                assert [(c[1], len(c[2])) for c in gw.hooks.complete] == [("ok.834", 4)]
                assert [(c[1], len(c[2])) for c in gw.hooks.partial] == [("big.834", 1000)]

        run(scenario())

    def test_openssh_put_of_a_file_over_the_limit_fails(self, tmp_path: Path) -> None:
        local = tmp_path / "big.834"
        local.write_bytes(b"ISA~" * 50_000)

        async def scenario() -> None:
            async with intake_server(tmp_path, max_upload_bytes=100_000) as gw:
                code, _, _ = await gw.openssh_sftp(f"put {local} inbound/big.834\n")
                assert code != 0
                assert gw.hooks.complete == []
                assert [c[1] for c in gw.hooks.partial] == ["big.834"]

        run(scenario())

    def test_a_write_that_fails_on_a_full_disk_leaves_the_file_partial(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ENOSPC in the middle: OpenSSH's put fails, and what reached the disk is partial, not
        a received file cut short; written again on the same handle, the file is whole."""
        local = tmp_path / "f.834"
        local.write_bytes(b"ISA*00*~" * 1_000_000)  # 8 MB: more than one WRITE
        real_pwrite = os.pwrite
        full = {"on": True, "calls": 0}

        def pwrite(fd: int, data: Any, offset: int) -> int:
            full["calls"] += 1
            if full["on"] and full["calls"] > 1:  # the disk fills after the first write
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(sftp_module.os, "pwrite", pwrite)

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                code, out, err = await gw.openssh_sftp(f"put {local} inbound/f.834\n")
                assert code != 0, (out, err, gw.hooks.complete, gw.hooks.partial)
                assert gw.hooks.complete == []
                assert [c[1] for c in gw.hooks.partial] == ["f.834"]
                assert len(gw.hooks.partial[0][2]) < 8_000_000
                # A client that writes the refused range again on the same handle: whole.
                async with gw.sftp() as (_, client):
                    remote = await client.open("inbound/g.834", "wb")
                    full["calls"] = 0
                    await remote.write(b"a" * 65_536, 0)
                    with pytest.raises(asyncssh.SFTPFailure):
                        await remote.write(b"b" * 100, 65_536)
                    full["on"] = False
                    await remote.write(b"b" * 100, 65_536)
                    await remote.close()
                assert [(c[1], len(c[2])) for c in gw.hooks.complete] == [("g.834", 65_636)]

        run(scenario())

    def test_a_temporary_name_with_refused_writes_is_not_renamed_until_resumed(
        self, tmp_path: Path
    ) -> None:
        far = MAX_WRITE_GAP + 100

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                async with gw.sftp() as (_, client):
                    remote = await client.open("inbound/t.834.part", "wb")
                    await remote.write(b"x" * 10, 0)
                    with pytest.raises(asyncssh.SFTPFailure):
                        await remote.write(b"y" * 10, far)  # past the end: refused
                    await remote.close()  # resumable: the CLOSE itself is fine
                    with pytest.raises(asyncssh.SFTPFailure) as refused:
                        await client.rename("inbound/t.834.part", "inbound/t.834")
                    assert "incomplete" in refused.value.reason
                    # Resumed on a new handle, in order, up to and over the refused bytes.
                    remote = await client.open(
                        "inbound/t.834.part", asyncssh.FXF_WRITE, encoding=None
                    )
                    await remote.write(b"x" * (far - 10), 10)
                    await remote.write(b"y" * 10, far)
                    await remote.close()
                    await client.rename("inbound/t.834.part", "inbound/t.834")
                assert [(c[1], len(c[2])) for c in gw.hooks.complete] == [("t.834", far + 10)]

        run(scenario())


class TestOrphanUploads:
    """At start, a file a killed server left in inbound/ is handed to upload_partial; what a
    live server holds is left alone."""

    def test_files_left_in_inbound_become_partial(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            hooks = FakeHooks(tmp_path / "blobs", {})
            root = tmp_path / "sftp"
            for name in ("A", "B"):
                partner_root(root, name)
            (root / "A" / "inbound" / "cut.834").write_bytes(b"ISA*00*half")
            (root / "B" / "inbound" / "cut.834.part").write_bytes(b"ISA")
            (root / "B" / "inbound" / "link.834").symlink_to(root / "A" / "inbound" / "cut.834")
            (root / "not a partner").mkdir()
            (root / "not a partner" / "inbound").mkdir()
            (root / "not a partner" / "inbound" / "x.834").write_bytes(b"x")
            assert await recover_orphan_uploads(root, hooks) == 1
            assert hooks.partial == [("A", "cut.834", b"ISA*00*half")]
            (root / "A" / "inbound" / "cut.834").unlink()  # taken (the fake hook only reads)
            # an upload to a temporary name stays resumable until it is stale
            assert await recover_orphan_uploads(root, hooks, resumable_seconds=0) == 1
            assert hooks.partial[1:] == [("B", "cut.834.part", b"ISA")]
            assert await recover_orphan_uploads(tmp_path / "nowhere", hooks) == 0

        run(scenario())

    def test_an_upload_a_live_server_holds_is_left_alone(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                remote = await client.open("inbound/live.834", "wb")
                await remote.write(b"ISA*00*")
                # another server starting beside this one
                assert await recover_orphan_uploads(gw.root, gw.hooks) == 0
                assert gw.hooks.partial == []
                await remote.write(b"rest~", 7)
                await remote.close()
                assert gw.hooks.complete == [("A", "live.834", b"ISA*00*rest~")]

        run(scenario())

    def test_an_empty_file_just_created_is_left_for_a_later_start(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            hooks = FakeHooks(tmp_path / "blobs", {})
            inbound = partner_root(tmp_path / "sftp", "A") / "inbound"
            (inbound / "new.834").write_bytes(b"")
            assert await recover_orphan_uploads(tmp_path / "sftp", hooks) == 0
            os.utime(inbound / "new.834", (0, 0))
            assert await recover_orphan_uploads(tmp_path / "sftp", hooks) == 1
            assert hooks.partial == [("A", "new.834", b"")]

        run(scenario())

    def test_a_failing_hook_leaves_the_file_for_the_next_start(self, tmp_path: Path) -> None:
        class Failing(FakeHooks):
            async def upload_partial(self, username: str, staged: Path, filename: str) -> None:
                raise RuntimeError("database unavailable")

        async def scenario() -> None:
            inbound = partner_root(tmp_path / "sftp", "A") / "inbound"
            (inbound / "cut.834").write_bytes(b"ISA")
            assert await recover_orphan_uploads(tmp_path / "sftp", Failing(tmp_path, {})) == 0
            assert (inbound / "cut.834").read_bytes() == b"ISA"

        run(scenario())


class TestOpenSshClient:
    def test_put_get_and_rm_with_openssh_sftp(self, tmp_path: Path) -> None:
        local = tmp_path / "enrollment.834"
        local.write_bytes(b"ISA*00*          *00*~" * 1000)
        fetched = tmp_path / "fetched.999"

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                (gw.outbound() / "ack.999").write_bytes(b"ISA*999~")
                code, out, err = await gw.openssh_sftp(
                    f"put {local} inbound/enrollment.834\n"
                    f"get outbound/ack.999 {fetched}\n"
                    "rm outbound/ack.999\n"
                    "ls /\n"
                )
                assert code == 0, err
                assert gw.hooks.complete == [("A", "enrollment.834", local.read_bytes())]
                assert fetched.read_bytes() == b"ISA*999~"
                assert not (gw.outbound() / "ack.999").exists()
                assert "inbound" in out and "outbound" in out

        run(scenario())

    def test_openssh_sftp_cannot_read_inbound_or_write_outbound(self, tmp_path: Path) -> None:
        local = tmp_path / "x.834"
        local.write_bytes(b"ISA~")

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                (gw.inbound() / "kept.834.part").write_bytes(b"ISA~")
                code, _, _ = await gw.openssh_sftp(f"get inbound/kept.834.part {tmp_path}/k\n")
                assert code != 0
                code, _, _ = await gw.openssh_sftp(f"put {local} outbound/x.834\n")
                assert code != 0
                assert not (gw.outbound() / "x.834").exists()
                assert not (tmp_path / "k").exists()

        run(scenario())


class TestAuthentication:
    def test_only_publickey_is_offered(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                code, _, err = await gw.openssh(
                    "/usr/bin/ssh",
                    "-p", str(gw.port),
                    *OPENSSH_OPTIONS,
                    "-o", "PubkeyAuthentication=no",
                    "A@127.0.0.1",
                    "true",
                )  # fmt: skip
                assert code == 255
                assert "Permission denied (publickey)." in err

        run(scenario())

    def test_password_auth_is_refused(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                with pytest.raises(asyncssh.PermissionDenied):
                    await gw.connect(
                        client_keys=None,
                        password="secret",  # noqa: S106
                        preferred_auth="password,keyboard-interactive",
                    )

        run(scenario())

    @pytest.mark.parametrize(
        ("username", "key_of", "hook_accepts"),
        [
            ("A", "B", False),  # B's key for A
            ("C", "A", False),  # unknown to the hook
            ("../B", "B", True),  # not one path component: refused before the hook is asked
            ("B/../A", "A", True),
        ],
    )
    def test_wrong_key_or_unknown_partner_is_refused(
        self, tmp_path: Path, username: str, key_of: str, hook_accepts: bool
    ) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                if hook_accepts:
                    gw.hooks.keys[username] = [gw.keys[key_of]]
                with pytest.raises(asyncssh.PermissionDenied):
                    await gw.connect(username, gw.keys[key_of])
                assert sorted(p.name for p in gw.root.iterdir()) == ["A", "B"]

        run(scenario())

    def test_a_failed_key_lookup_says_try_later_not_permission_denied(self, tmp_path: Path) -> None:
        """The database is down: the partner's client is told the service is unavailable
        (a disconnect with a reason), not that its key was refused — OpenSSH's sftp too."""

        async def lookup_fails(username: str) -> list[asyncssh.SSHKey] | None:
            raise RuntimeError("database unavailable")

        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                gw.hooks.authorized_keys = lookup_fails  # type: ignore[method-assign]
                with pytest.raises(asyncssh.DisconnectError) as refused:
                    await gw.connect("A")
                assert not isinstance(refused.value, asyncssh.PermissionDenied)
                assert refused.value.code == asyncssh.DISC_SERVICE_NOT_AVAILABLE
                assert "try again" in refused.value.reason
                code, _, err = await gw.openssh_sftp("ls\n")
                assert code != 0 and "try again" in err and "Permission denied" not in err, err

        run(scenario())

    def test_disabled_partner_is_refused(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                gw.hooks.keys["A"] = []
                with pytest.raises(asyncssh.PermissionDenied):
                    await gw.connect("A")
                async with gw.connect("B"):
                    pass  # B is unaffected

        run(scenario())

    def test_shell_exec_other_subsystems_and_forwarding_are_refused(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.connect() as conn:
                with pytest.raises(asyncssh.ChannelOpenError):
                    await conn.run("id")
                with pytest.raises(asyncssh.ChannelOpenError):
                    await conn.create_process()  # a shell
                with pytest.raises(asyncssh.ChannelOpenError):
                    await conn.create_process(subsystem="netconf")
                with pytest.raises(asyncssh.ChannelOpenError):
                    await conn.open_connection("127.0.0.1", gw.port)
                with pytest.raises(asyncssh.ChannelListenError):
                    await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", gw.port)
                async with conn.start_sftp_client() as client:
                    assert await client.realpath(".") == "/"

        run(scenario())


class TestConfinement:
    @pytest.mark.parametrize(
        "path",
        [
            "../B/outbound/x",
            "/../../etc/passwd",
            "inbound/../../B",
            "/../B/outbound/x",
            "/B/outbound/x",
            "outbound/../../B/outbound/x",
        ],
    )
    def test_path_traversal_is_refused(self, tmp_path: Path, path: str) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                (gw.outbound("B") / "x").write_bytes(b"B's ack")
                for attempt in (
                    client.open(path, "rb"),
                    client.stat(path),
                    client.lstat(path),
                    client.listdir(path),
                    client.remove(path),
                    client.open(path, "wb"),
                ):
                    with pytest.raises(REFUSED) as refused:
                        await attempt
                    assert str(tmp_path) not in refused.value.reason
                assert (gw.outbound("B") / "x").read_bytes() == b"B's ack"

        run(scenario())

    def test_partner_sees_only_its_own_tree(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                (gw.outbound("A") / "a.999").write_bytes(b"A's ack")
                (gw.outbound("B") / "b.999").write_bytes(b"B's ack")
                (gw.inbound("B") / "b.834.part").write_bytes(b"B's upload")
                assert sorted(await client.listdir("/")) == [".", "..", "inbound", "outbound"]
                assert sorted(await client.listdir("/outbound")) == [".", "..", "a.999"]
                assert sorted(await client.listdir("inbound")) == [".", ".."]
                for path in ("/B", "/B/outbound", "../B/outbound", "/sftp"):
                    with pytest.raises(REFUSED):
                        await client.listdir(path)
                with pytest.raises(REFUSED):
                    await client.open("/B/outbound/b.999", "rb")
                async with client.open("/outbound/a.999", "rb") as remote:
                    assert cast(bytes, await remote.read()) == b"A's ack"

        run(scenario())

    def test_realpath_and_getcwd_are_virtual(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                assert await client.realpath(".") == "/"
                assert await client.realpath("inbound/../outbound") == "/outbound"
                assert await client.realpath("//inbound///./x.834") == "/inbound/x.834"
                await client.chdir("inbound")
                assert await client.getcwd() == "/inbound"
                with pytest.raises(REFUSED):
                    await client.realpath("/..")

        run(scenario())

    def test_links_cannot_be_created(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                await upload(client, "inbound/mine.834.part", b"ISA~")
                attempts = [
                    client.symlink("/inbound/mine.834.part", "/inbound/sym.834.part"),
                    client.symlink("/etc/passwd", "/inbound/passwd.part"),
                    client.symlink("../B/outbound", "/inbound/b.part"),
                    client.link("/inbound/mine.834.part", "/inbound/hard.834.part"),
                ]
                for attempt in attempts:
                    with pytest.raises(asyncssh.SFTPPermissionDenied):
                        await attempt
                assert sorted(os.listdir(gw.inbound())) == ["mine.834.part"]

        run(scenario())

    def test_a_planted_file_symlink_is_not_followed(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                secret = gw.outbound("B") / "secret.999"
                secret.write_bytes(b"B's ack")
                (gw.outbound("A") / "ack.999").symlink_to(secret)
                (gw.inbound("A") / "in.834").symlink_to(secret)
                with pytest.raises(REFUSED):
                    await client.open("outbound/ack.999", "rb")
                with pytest.raises(REFUSED):
                    await client.stat("outbound/ack.999")
                with pytest.raises(REFUSED):
                    await client.readlink("outbound/ack.999")
                with pytest.raises(REFUSED):
                    await client.remove("outbound/ack.999")
                with pytest.raises(REFUSED):
                    await client.open("inbound/in.834", "wb")  # O_NOFOLLOW: not written through
                assert await client.listdir("outbound") == [".", ".."]
                assert secret.read_bytes() == b"B's ack"
                assert (gw.outbound("A") / "ack.999").is_symlink()

        run(scenario())

    def test_a_planted_directory_symlink_is_not_followed(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                (gw.outbound("B") / "secret.999").write_bytes(b"B's ack")
                gw.outbound("A").rmdir()
                gw.outbound("A").symlink_to(gw.outbound("B"))
                async with gw.sftp() as (_, client):
                    for attempt in (
                        client.listdir("outbound"),
                        client.open("outbound/secret.999", "rb"),
                        client.stat("outbound/secret.999"),
                    ):
                        with pytest.raises(REFUSED):
                            await attempt
                    assert sorted(await client.listdir("/")) == [".", "..", "inbound"]

        run(scenario())


class TestAreaRules:
    def test_inbound_cannot_be_read(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                await upload(client, "inbound/x.834.part", b"ISA~")
                (gw.inbound() / "placed.834").write_bytes(b"ISA~")
                for path, mode in (
                    ("inbound/x.834.part", "rb"),
                    ("inbound/x.834.part", "r+b"),
                    ("inbound/placed.834", "rb"),
                ):
                    with pytest.raises(asyncssh.SFTPPermissionDenied):
                        await client.open(path, mode)
                attrs = await client.stat("inbound/x.834.part")  # stat and list are allowed
                assert attrs.size == 4
                assert "x.834.part" in await client.listdir("inbound")

        run(scenario())

    def test_outbound_cannot_be_written(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                (gw.outbound() / "ack.999").write_bytes(b"ack")
                await upload(client, "inbound/x.834.part", b"ISA~")
                for path, mode in (("outbound/new.834", "wb"), ("outbound/ack.999", "r+b")):
                    with pytest.raises(asyncssh.SFTPPermissionDenied):
                        await client.open(path, mode)
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await client.open("outbound/ack.999", "ab")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await client.rename("inbound/x.834.part", "outbound/x.834")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await client.rename("outbound/ack.999", "outbound/ack2.999")
                with pytest.raises(REFUSED):
                    await client.open("/top.834", "wb")  # "/" has no files
                assert sorted(os.listdir(gw.outbound())) == ["ack.999"]
                assert (gw.outbound() / "ack.999").read_bytes() == b"ack"
                assert sorted(os.listdir(gw.root / "A")) == ["inbound", "outbound"]

        run(scenario())

    def test_directories_cannot_be_made_or_removed(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                for path in ("inbound/sub", "/new", "outbound/sub", "/inbound/../x"):
                    with pytest.raises(asyncssh.SFTPPermissionDenied):
                        await client.mkdir(path)
                for path in ("inbound", "/outbound"):
                    with pytest.raises(asyncssh.SFTPPermissionDenied):
                        await client.rmdir(path)
                assert sorted(os.listdir(gw.root / "A")) == ["inbound", "outbound"]
                assert os.listdir(gw.inbound()) == os.listdir(gw.outbound()) == []

        run(scenario())

    def test_only_temporary_inbound_files_can_be_removed(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                (gw.inbound() / "final.834").write_bytes(b"ISA~")
                await upload(client, "inbound/x.834.part", b"ISA~")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await client.remove("inbound/final.834")
                await client.remove("inbound/x.834.part")
                assert os.listdir(gw.inbound()) == ["final.834"]

        run(scenario())

    def test_setstat_is_accepted_and_changes_nothing(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw, gw.sftp() as (_, client):
                await upload(client, "inbound/x.834.part", b"ISA~")
                on_disk = gw.inbound() / "x.834.part"
                before = os.stat(on_disk)
                await client.chmod("inbound/x.834.part", 0o777)
                await client.utime("inbound/x.834.part", (1, 1))
                async with client.open("inbound/y.834.part", "wb") as remote:
                    await remote.chmod(0o4777)  # FSETSTAT
                after = os.stat(on_disk)
                assert stat.S_IMODE(after.st_mode) == stat.S_IMODE(before.st_mode) == 0o600
                assert after.st_mtime == before.st_mtime
                assert stat.S_IMODE(os.stat(gw.inbound() / "y.834.part").st_mode) == 0o600

        run(scenario())


HOST_KEY_FILES = {
    "ssh-ed25519": "host_key",
    "ecdsa-sha2-nistp256": "host_key_ecdsa",
    "rsa-sha2-512": "host_key_rsa",
    "rsa-sha2-256": "host_key_rsa",
}


class TestHostKey:
    def test_host_keys_are_generated_0600_once_and_reused(self, tmp_path: Path) -> None:
        async def fingerprints() -> dict[str, str]:
            found = {}
            async with intake_server(tmp_path) as gw:
                for alg in HOST_KEY_FILES:
                    key = await asyncssh.get_server_host_key(
                        "127.0.0.1", gw.port, server_host_key_algs=[alg]
                    )
                    assert key is not None
                    found[alg] = key.get_fingerprint()
            return found

        first = run(fingerprints())
        for alg, name in HOST_KEY_FILES.items():
            host_key = tmp_path / name
            assert stat.S_IMODE(host_key.stat().st_mode) == 0o600
            assert asyncssh.read_private_key(host_key).get_fingerprint() == first[alg]
        assert run(fingerprints()) == first
        assert sorted(p.name for p in tmp_path.iterdir() if "host_key" in p.name) == [
            "host_key",
            "host_key_ecdsa",
            "host_key_rsa",
        ]

    def test_rsa_signs_with_sha2_only(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with intake_server(tmp_path) as gw:
                with pytest.raises((asyncssh.KeyExchangeFailed, asyncssh.DisconnectError)):
                    await asyncssh.get_server_host_key(
                        "127.0.0.1", gw.port, server_host_key_algs=["ssh-rsa"]
                    )

        run(scenario())

    def test_default_names_follow_openssh(self, tmp_path: Path) -> None:
        paths = host_key_paths(tmp_path / "sftp_host_ed25519_key")
        assert [p.name for p in paths.values()] == [
            "sftp_host_ed25519_key",
            "sftp_host_ecdsa_key",
            "sftp_host_rsa_key",
        ]

    def test_a_key_that_cannot_be_created_is_left_out(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = sftp_module.load_or_create_host_key

        def read_only(path: Path, algorithm: str = "ssh-ed25519") -> asyncssh.SSHKey:
            if not path.exists():  # a read-only mount holding only the ed25519 key
                raise PermissionError(errno.EROFS, "read-only file system")
            return real(path, algorithm)

        monkeypatch.setattr(sftp_module, "load_or_create_host_key", read_only)
        real(tmp_path / "host_key", "ssh-ed25519")
        pairs = load_host_keys(tmp_path / "host_key")
        assert [p.algorithm for p in pairs] == [b"ssh-ed25519"]
        with pytest.raises(PermissionError):
            load_host_keys(tmp_path / "elsewhere")  # no ed25519 key: the server cannot start


class TestPartnerRoot:
    def test_creates_inbound_and_outbound(self, tmp_path: Path) -> None:
        home = partner_root(tmp_path, "ACME_01")
        assert home == tmp_path / "ACME_01"
        assert sorted(p.name for p in home.iterdir()) == ["inbound", "outbound"]

    @pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../etc", ".hidden", "a\nb"])
    def test_refuses_names_that_are_not_one_component(self, tmp_path: Path, name: str) -> None:
        with pytest.raises(ValueError, match="partner name"):
            partner_root(tmp_path, name)
        assert list(tmp_path.iterdir()) == []
