"""SFTP intake server. Invariant: a partner sees only root/<partner>/ (as "/"), no link on disk is
ever followed or created, and an upload is handed to `upload_complete` only after the client has
closed it (final name) or renamed it to a final name, with its bytes fsynced; a session that drops
hands every file it left open to `upload_partial`, once.

The rest of the gateway plugs in through `SftpHooks`. Partners are untrusted: every path is
normalised here, every disk access goes through directory descriptors opened with O_NOFOLLOW, and
no error sent to a client or written to the log carries a host path or file contents.

Memory does not follow what a client sends: writes go to disk as they come (pwrite), a write
beyond the upload limit or far past the end of the data written so far is refused, so a client
cannot make a file (sparse or not) the gateway will not read.

An inbound file being written is locked (flock) by the process writing it, until its hook has
taken it. A file in inbound/ that no live process holds was left by a server that died (kill -9):
`recover_orphan_uploads`, run before a server listens, hands each to `upload_partial`, as a
dropped session does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import fnmatch
import inspect
import os
import re
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import asyncssh
import structlog
from asyncssh.channel import SSHChannel
from asyncssh.constants import FILEXFER_TYPE_DIRECTORY, FILEXFER_TYPE_REGULAR, FXP_WRITE
from asyncssh.kex import get_default_kex_algs
from asyncssh.mac import get_default_mac_algs
from asyncssh.packet import SSHPacket
from asyncssh.sftp import SFTPServerHandler
from asyncssh.stream import SSHReader, SSHServerStreamSession, SSHWriter
from typing_extensions import override

from gateway.metrics import SFTP_SESSIONS, SFTP_UPLOADS
from gateway.storage import make_private_dirs

log = structlog.get_logger(__name__)

INBOUND = "inbound"
OUTBOUND = "outbound"
# A file written under a name matching one of these (shell patterns, case-insensitive) is
# complete only when renamed to a final name: WinSCP's NAME.filepart, lftp's .in.NAME
# (xfer:use-temp-file), rclone's NAME.<hex>.partial, and the usual .part / .tmp. The gateway
# passes its own list (EDI834_SFTP_TEMPORARY_PATTERNS).
TEMPORARY_PATTERNS = ("*.part", "*.tmp", "*.filepart", "*.partial", ".in.*")
# Files one partner may have in inbound/ unfinished at once (EDI834_SFTP_MAX_PENDING_UPLOADS).
MAX_PENDING_UPLOADS = 20
# An upload to a temporary name that a dropped session left stays resumable this long (stat
# shows its size; writing from there continues it); then it is recorded as partial.
RESUMABLE_SECONDS = 24 * 3600.0
# Untrusted clients choose write offsets; refuse files no 834 exchange reaches. The gateway
# passes its own limit (EDI834_MAX_BODY_BYTES).
MAX_UPLOAD_BYTES = 4 << 30
# A write may start at most this far past the end of the data written so far: clients write in
# order, with at most a window of requests in flight (OpenSSH: 64 x 32 KiB); a write far
# beyond is a hole no client needs.
MAX_WRITE_GAP = 16 << 20
# An empty inbound file younger than this may be one being created right now (between its
# open and its lock): left for a later start, not taken as an orphan.
_JUST_CREATED_SECONDS = 5.0
# The client chooses the read length; answer with at most this much (SFTP allows short reads).
MAX_READ_BYTES = 256 << 10

_SFTP_VERSION = 3  # open56 (v5/v6) is refused; OpenSSH and the usual MFT clients speak v3
_PARTNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted on disk must not stall the event loop (it is refused after fstat).
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT
_WRITE_FLAGS |= asyncssh.FXF_TRUNC | asyncssh.FXF_EXCL

# The permissions a partner sees describe what it may do, not the real mode bits.
_ROOT_MODE = stat.S_IFDIR | 0o555
_AREA_MODE = {INBOUND: stat.S_IFDIR | 0o755, OUTBOUND: stat.S_IFDIR | 0o555}
_FILE_MODE = {INBOUND: stat.S_IFREG | 0o200, OUTBOUND: stat.S_IFREG | 0o444}
_RECEIVED_MODE = stat.S_IFREG | 0o444  # a finished upload, shown until processed: read-only


@dataclass(frozen=True, slots=True)
class ReceivedFile:
    """A finished upload that inbound/ still shows, read-only, though its bytes have moved to
    the gateway: clients stat, list and SETSTAT what they just sent (paramiko's put confirms
    the size, rclone sets the time, MFT tools verify the remote size)."""

    name: str
    size: int
    mtime: float


class UploadHeld(Exception):
    """Raised by a hook: the upload could not be recorded now (the database did not answer)
    but its bytes are kept and will be recorded; sending it again is safe (a duplicate is
    recognised)."""


class SftpHooks(Protocol):
    async def authorized_keys(self, username: str) -> list[asyncssh.SSHKey] | None:
        """The partner's public keys; None or empty for an unknown or disabled partner."""
        ...

    async def upload_complete(self, username: str, staged: Path, filename: str) -> None:
        """Take ownership of a finished upload: `staged` is root/<username>/inbound/<filename>,
        or the temporary name a RENAME to <filename> completes. Raising makes the client's CLOSE
        or RENAME fail; the file then stays on disk under that name."""
        ...

    async def upload_partial(self, username: str, staged: Path, filename: str) -> None:
        """Take note of a file left open for writing when its session dropped."""
        ...

    async def received_files(self, username: str) -> list[ReceivedFile]:
        """The partner's finished uploads that inbound/ still shows: those not yet processed
        (and those finished a moment ago)."""
        ...

    async def ack_downloaded(self, username: str, filename: str) -> None:
        """The partner read outbound/<filename> to its end (ack pick-up, gateway.watch)."""
        ...

    async def ack_removed(self, username: str, filename: str) -> None:
        """The partner removed outbound/<filename>: it has dealt with the ack (read it over
        the API, or needs it no more), so no pick-up alert is raised for it."""
        ...


def partner_root(root: Path, username: str) -> Path:
    """root/<username>, with inbound/ and outbound/ created."""
    if not is_partner_name(username):
        raise ValueError("a partner name is one path component of [A-Za-z0-9._-]")
    home = root / username
    for area in (INBOUND, OUTBOUND):
        make_private_dirs(home / area)
    return home


def is_partner_name(username: str) -> bool:
    return _PARTNER_NAME.fullmatch(username) is not None


def is_temporary_name(name: str, patterns: Sequence[str] = TEMPORARY_PATTERNS) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def parse_temporary_patterns(text: str) -> tuple[str, ...]:
    """The comma-separated setting as a tuple; a pattern matching every name is refused (no
    upload could ever complete on CLOSE)."""
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    if any(fnmatch.fnmatchcase("x.834", p.lower()) for p in patterns):
        raise ValueError("a temporary-name pattern must not match final names such as x.834")
    return patterns


def _weak_algorithm(name: bytes) -> bool:
    """Offered by asyncssh's defaults, left out of a PHI feed's (ssh-audit's and OpenSSH's own
    choices): SHA-1 key exchanges and MACs; a 64-bit MAC tag (umac-64); the secp256k1 curve
    (1.3.132.0.10) and RSA key exchange (rsa2048-sha256, no forward secrecy); ssh.com's
    nonstandard MACs. Encrypt-and-MAC hmac-sha2-256/512 stay: SSH.NET before 2024 has no
    EtM MAC, and the AEAD ciphers (chacha20-poly1305, AES-GCM) come first."""
    return (
        b"sha1" in name
        or name.startswith(b"umac-64")
        or b"1.3.132.0.10" in name
        or name.startswith(b"rsa")
        or name.endswith(b"@ssh.com")
    )


async def start_sftp_server(
    *,
    host: str,
    port: int,
    root: Path,
    host_key_path: Path,
    hooks: SftpHooks,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    temporary_patterns: Sequence[str] = TEMPORARY_PATTERNS,
    allow_sha1: bool = False,
    max_pending_uploads: int = MAX_PENDING_UPLOADS,
) -> asyncssh.SSHAcceptor:
    """Listen for partners on host:port (port 0 picks a free port: `acceptor.get_port()`).
    Without `allow_sha1`, no SHA-1 key exchange or MAC is offered (a client's SHA-1 user
    signature is refused by `client_key`), nor the weak rest of asyncssh's defaults
    (`_weak_algorithm`)."""
    host_keys = load_host_keys(host_key_path)
    busy: set[tuple[str, str]] = set()
    patterns = tuple(temporary_patterns)
    algorithms: dict[str, list[str]] = {}
    if not allow_sha1:
        algorithms = {
            "kex_algs": [a.decode() for a in get_default_kex_algs() if not _weak_algorithm(a)],
            "mac_algs": [a.decode() for a in get_default_mac_algs() if not _weak_algorithm(a)],
        }
    return await asyncssh.listen(
        host,
        port,
        server_factory=lambda: _PartnerSSHServer(
            root, hooks, busy, max_upload_bytes, patterns, allow_sha1, max_pending_uploads
        ),
        server_host_keys=host_keys,
        server_version="EDI834Gateway",
        public_key_auth=True,
        password_auth=False,
        kbdint_auth=False,
        host_based_auth=False,
        gss_host=None,
        allow_pty=False,
        x11_forwarding=False,
        agent_forwarding=False,
        allow_scp=False,
        encoding=None,
        login_timeout=60,
        **algorithms,
    )


# A partner's key type and the signatures taken from it: DSA never (1024-bit, SHA-1), RSA by
# SHA-2 (rsa-sha2-256/512, RFC 8332) unless SHA-1 is allowed.
REFUSED_KEY_TYPES = frozenset({b"ssh-dss"})
_RSA_SHA2 = frozenset({b"rsa-sha2-256", b"rsa-sha2-512"})


def client_key(key: asyncssh.SSHKey, *, allow_sha1: bool) -> asyncssh.SSHKey | None:
    """A partner's key as the server takes it: None for a refused type; an RSA key made to
    verify SHA-2 signatures alone (asyncssh's server verifies any algorithm the key has)."""
    if key.algorithm in REFUSED_KEY_TYPES:
        return None
    if key.algorithm == b"ssh-rsa" and not allow_sha1:
        key.all_sig_algorithms = set(_RSA_SHA2)
    return key


# The host keys, in the order offered: ed25519 at the configured path, ECDSA P-256 and RSA
# beside it (JSch and older SSH.NET, common in Java and .NET MFT tools, know no ed25519). RSA
# signs with SHA-2 only (rsa-sha2-256/512, RFC 8332): ssh-rsa (SHA-1) is not offered.
HOST_KEY_ALGORITHMS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa")
_RSA_HOST_KEY_ALGORITHMS = (b"rsa-sha2-512", b"rsa-sha2-256")
_RSA_KEY_BITS = 3072  # OpenSSH's ssh-keygen default


def host_key_paths(path: Path) -> dict[str, Path]:
    """Where each host key lives: `path` for ed25519; for the others `path` with "ed25519"
    replaced by "ecdsa" / "rsa" (sftp_host_ed25519_key -> sftp_host_ecdsa_key, as OpenSSH
    names them), or with "_ecdsa" / "_rsa" appended when the name has no "ed25519"."""
    paths = {"ssh-ed25519": path}
    for alg, word in (("ecdsa-sha2-nistp256", "ecdsa"), ("ssh-rsa", "rsa")):
        name = path.name.replace("ed25519", word)
        paths[alg] = path.with_name(name if name != path.name else f"{path.name}_{word}")
    return paths


def load_host_keys(path: Path) -> list[asyncssh.SSHKeyPair]:
    """The server's host key pairs: each read from its file, or generated there once. A key
    that cannot be created (a read-only mount holding only the ed25519 key) is left out with a
    warning rather than keeping the server down; the ed25519 key is required."""
    pairs: list[asyncssh.SSHKeyPair] = []
    for alg, key_path in host_key_paths(path).items():
        try:
            key = load_or_create_host_key(key_path, alg)
        except OSError as exc:
            if alg == "ssh-ed25519":
                raise
            log.warning("sftp_host_key_unavailable", algorithm=alg, error=type(exc).__name__)
            continue
        (pair,) = asyncssh.load_keypairs([key])
        if alg == "ssh-rsa":
            pair.host_key_algorithms = _RSA_HOST_KEY_ALGORITHMS
        pairs.append(pair)
    return pairs


def load_or_create_host_key(path: Path, algorithm: str = "ssh-ed25519") -> asyncssh.SSHKey:
    """Read the host key, or generate one there (mode 0600) on first start."""
    if path.exists():
        return asyncssh.read_private_key(path)
    if algorithm == "ssh-rsa":
        key = asyncssh.generate_private_key(algorithm, key_size=_RSA_KEY_BITS)
    else:
        key = asyncssh.generate_private_key(algorithm)
    make_private_dirs(path.parent)
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(scratch, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # whatever the umask
            out.write(key.export_private_key())
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(scratch, path)  # never overwrites a key another process just wrote
        except FileExistsError:
            return asyncssh.read_private_key(path)
    finally:
        scratch.unlink(missing_ok=True)
    return key


# ---------------------------------------------------------------------------------------------
# Paths


@dataclass(frozen=True, slots=True)
class _Target:
    """A normalised virtual path: "/" (area None), "/<area>" (name None) or "/<area>/<name>"."""

    area: str | None
    name: str | None


def _normalize(path: bytes) -> list[str]:
    """The components of a client path, relative paths taken from "/"; refuses to climb above it."""
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise asyncssh.SFTPNoSuchFile("no such file") from None
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise asyncssh.SFTPPermissionDenied("permission denied")
            parts.pop()
        else:
            parts.append(part)
    return parts


def _resolve(path: bytes) -> _Target:
    parts = _normalize(path)
    if not parts:
        return _Target(None, None)
    if parts[0] not in (INBOUND, OUTBOUND) or len(parts) > 2:
        raise asyncssh.SFTPNoSuchFile("no such file")
    if len(parts) == 1:
        return _Target(parts[0], None)
    if not _is_file_name(parts[1]):
        raise asyncssh.SFTPFailure("invalid file name")
    return _Target(parts[0], parts[1])


def _is_file_name(name: str) -> bool:
    return len(name.encode("utf-8", "surrogateescape")) <= 255 and not any(
        ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name
    )


def _sftp_error(exc: OSError) -> asyncssh.SFTPError:
    """The status for an OS error, without the host path the OSError carries."""
    if exc.errno == errno.ENOENT:
        return asyncssh.SFTPNoSuchFile("no such file")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
        return asyncssh.SFTPPermissionDenied("permission denied")
    if exc.errno == errno.EEXIST:
        return asyncssh.SFTPFailure("a file with that name already exists")
    return asyncssh.SFTPFailure("operation failed")


@contextlib.contextmanager
def _os_errors() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _sftp_error(exc) from None


def _received_attrs(received: ReceivedFile) -> asyncssh.SFTPAttrs:
    mtime = int(received.mtime)
    return asyncssh.SFTPAttrs(
        type=FILEXFER_TYPE_REGULAR,
        size=received.size,
        permissions=_RECEIVED_MODE,
        atime=mtime,
        mtime=mtime,
    )


def _attrs(st: os.stat_result, permissions: int) -> asyncssh.SFTPAttrs:
    """Size and times from disk; no uid, gid or real mode."""
    kind = FILEXFER_TYPE_DIRECTORY if stat.S_ISDIR(permissions) else FILEXFER_TYPE_REGULAR
    return asyncssh.SFTPAttrs(
        type=kind,
        size=st.st_size,
        permissions=permissions,
        atime=int(st.st_atime),
        mtime=int(st.st_mtime),
    )


# ---------------------------------------------------------------------------------------------
# Sessions


@dataclass(eq=False, slots=True)
class _Session:
    """One authenticated SFTP channel of one partner."""

    username: str
    home: Path
    hooks: SftpHooks
    busy: set[tuple[str, str]]  # (partner, inbound name) being written or handed to a hook
    session_id: str
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    temporary_patterns: tuple[str, ...] = TEMPORARY_PATTERNS
    max_pending_uploads: int = MAX_PENDING_UPLOADS


@dataclass(eq=False, slots=True)
class _Upload:
    fd: int  # flock'ed until its hook has taken the file
    name: str
    upload_id: str
    open: bool = True
    end: int = 0  # the end of the data written so far
    failed: bool = False  # a WRITE on it was refused or failed
    abandoned: bool = False  # its name was opened again after a failure: closed, never complete
    # Byte ranges whose WRITE was refused or failed (disk full, over the size limit, past the
    # end) and not written since: while any is left the file is not what the client sent.
    refused: list[tuple[int, int]] = field(default_factory=list)

    def refuse(self, start: int, end: int) -> None:
        self.refused.append((start, end))

    def written(self, start: int, end: int) -> None:
        """A WRITE of [start, end) succeeded: what it covers of the refused ranges is no more."""
        if self.refused:
            self.refused = [
                piece
                for a, b in self.refused
                for piece in ((a, min(b, start)), (max(a, end), b))
                if piece[0] < piece[1]
            ]


@dataclass(eq=False, slots=True)
class _Download:
    fd: int
    name: str = ""
    size: int = 0  # when opened
    end: int = 0  # the end of the data read so far: at `size` or beyond, picked up


class _PartnerSftpServer(asyncssh.SFTPServer):
    """The partner's virtual tree: / (list), /inbound (write-only drop box), /outbound (read)."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], session: _Session) -> None:
        super().__init__(chan)
        self._s = session
        # Uploads of this session whose WRITE failed, by name: a client that gives up on such a
        # handle without closing it and opens the name again must not find it "in use".
        self._failed: dict[str, _Upload] = {}
        # Temporary names closed with refused writes not written since, by name: a resume on a
        # new handle may still write them; renamed as they are, the file would be cut short.
        self._incomplete: dict[str, list[tuple[int, int]]] = {}

    # -- helpers ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _open_dir(self, area: str | None) -> Iterator[int]:
        """A descriptor for the partner home or one of its areas; no component may be a link."""
        with _os_errors():
            home = os.open(self._s.home, _DIR_FLAGS)
        try:
            if area is None:
                yield home
                return
            with _os_errors():
                fd = os.open(area, _DIR_FLAGS, dir_fd=home)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            os.close(home)

    def _staged(self, name: str) -> Path:
        return self._s.home / INBOUND / name

    def _busy_key(self, name: str) -> tuple[str, str]:
        return (self._s.username, name)

    def _is_temporary(self, name: str) -> bool:
        return is_temporary_name(name, self._s.temporary_patterns)

    def _inbound_stat(self, name: str) -> os.stat_result | None:
        """The inbound file's stat, or None when no such name is on disk."""
        with self._open_dir(INBOUND) as dir_fd, _os_errors():
            try:
                return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return None

    async def _received(self) -> dict[str, ReceivedFile]:
        """The finished uploads inbound/ still shows; none when the hook fails (logged)."""
        try:
            files = await self._s.hooks.received_files(self._s.username)
        except Exception as exc:
            log.error(
                "sftp_received_files_unavailable",
                partner=self._s.username,
                session_id=self._s.session_id,
                error=type(exc).__name__,
            )
            return {}
        return {f.name: f for f in files if _is_file_name(f.name)}

    def _log(self, event: str, **ids: object) -> None:
        log.info(event, partner=self._s.username, session_id=self._s.session_id, **ids)

    async def _report_complete(self, name: str, upload_id: str, staged: str | None = None) -> None:
        try:
            await self._s.hooks.upload_complete(
                self._s.username, self._staged(staged or name), name
            )
        except UploadHeld:
            # Not OK: the client must not take it as received. The file is out of inbound/,
            # so a client's confirming stat fails too (paramiko's put drops a CLOSE error).
            self._log("sftp_upload_held", upload_id=upload_id)
            raise asyncssh.SFTPFailure(
                "upload kept but not recorded yet (database unavailable): it will be "
                "processed; sending it again is safe"
            ) from None
        except Exception as exc:
            log.error(
                "sftp_upload_not_recorded",
                partner=self._s.username,
                session_id=self._s.session_id,
                upload_id=upload_id,
                error=type(exc).__name__,
            )
            SFTP_UPLOADS.labels(result="not_recorded").inc()
            raise asyncssh.SFTPFailure("upload not recorded; send it again") from None
        SFTP_UPLOADS.labels(result="complete").inc()
        self._log("sftp_upload_complete", upload_id=upload_id)

    async def _report_download(self, download: _Download) -> None:
        """A whole file of outbound/ read: the partner picked its ack up."""
        await self._report(
            "ack_downloaded", download.name, "sftp_download_not_recorded", "sftp_ack_downloaded"
        )

    async def _report(self, hook_name: str, name: str, failed: str, done: str) -> None:
        """Tell the hooks what the partner did with an ack. Never fails the client's request
        (what it asked is done); a hook without it is fine (tests)."""
        hook = getattr(self._s.hooks, hook_name, None)
        if hook is None:
            return
        try:
            await hook(self._s.username, name)
        except Exception as exc:
            log.error(
                failed,
                partner=self._s.username,
                session_id=self._s.session_id,
                error=type(exc).__name__,
            )
            return
        self._log(done)

    async def _report_partial(self, upload: _Upload) -> None:
        try:
            await self._s.hooks.upload_partial(
                self._s.username, self._staged(upload.name), upload.name
            )
        except UploadHeld:
            return  # kept, recorded partial once the database answers
        except Exception as exc:
            log.error(
                "sftp_partial_upload_not_recorded",
                partner=self._s.username,
                session_id=self._s.session_id,
                upload_id=upload.upload_id,
                error=type(exc).__name__,
            )
            SFTP_UPLOADS.labels(result="not_recorded").inc()
            return
        SFTP_UPLOADS.labels(result="partial").inc()
        self._log("sftp_upload_partial", upload_id=upload.upload_id)

    # -- files ----------------------------------------------------------------------------------

    @override
    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        target = _resolve(path)
        if target.area is None or target.name is None:
            raise asyncssh.SFTPPermissionDenied("permission denied")
        if target.area == OUTBOUND:
            if pflags & _WRITE_FLAGS:
                raise asyncssh.SFTPPermissionDenied("outbound is read-only")
            fd = self._open_regular(OUTBOUND, target.name, os.O_RDONLY)
            return _Download(fd, name=target.name, size=os.fstat(fd).st_size)
        if pflags & asyncssh.FXF_READ or not pflags & asyncssh.FXF_WRITE:
            raise asyncssh.SFTPPermissionDenied("inbound is write-only")
        key = self._busy_key(target.name)
        if key in self._s.busy:
            failed = self._failed.pop(target.name, None)
            if failed is None or not failed.open:
                raise asyncssh.SFTPFailure("file is in use")
            self._abandon(failed)  # the same client starts this name again
        if (
            not pflags & asyncssh.FXF_TRUNC
            and self._inbound_stat(target.name) is None
            and target.name in await self._received()
        ):
            # Resuming (reput, put -a, curl -C -) a file already received would write its tail
            # into an empty new file: only a whole new upload may reuse the name.
            raise asyncssh.SFTPPermissionDenied(
                "this file was already received; to send it again, send the whole file"
            )
        if self._inbound_stat(target.name) is None:
            self._check_pending()  # a new name: one more unfinished upload
        flags = os.O_WRONLY
        for sftp_flag, os_flag in (
            (asyncssh.FXF_CREAT, os.O_CREAT),
            (asyncssh.FXF_EXCL, os.O_EXCL),
            (asyncssh.FXF_APPEND, os.O_APPEND),
        ):
            if pflags & sftp_flag:
                flags |= os_flag
        fd = self._open_regular(INBOUND, target.name, flags)
        # Locked before it is truncated: another process may be writing it, or taking it as an
        # orphan (then, once we have the lock, the name is no longer this file).
        if not _try_lock(fd) or not self._still_named(fd, target.name):
            os.close(fd)
            raise asyncssh.SFTPFailure("file is in use")
        try:
            if pflags & asyncssh.FXF_TRUNC:
                os.ftruncate(fd, 0)
            end = os.fstat(fd).st_size
        except OSError as exc:
            os.close(fd)
            raise _sftp_error(exc) from None
        self._s.busy.add(key)
        upload = _Upload(fd=fd, name=target.name, upload_id=uuid.uuid4().hex, end=end)
        refused = self._incomplete.pop(target.name, [])
        if not pflags & asyncssh.FXF_TRUNC:
            upload.refused = refused
        self._log("sftp_upload_started", upload_id=upload.upload_id)
        return upload

    def _check_pending(self) -> None:
        """At most `max_pending_uploads` unfinished files of this partner left in inbound/
        (temporary names kept to be resumed, files a dropped session left), and five times as
        many at once with those being written: without a cap one partner's abandoned `.part`
        files (each up to the upload limit, kept EDI834_SFTP_RESUME_HOURS) could fill the disk
        every partner's files go to. A file being written is locked by its writer (any server
        process); a finished upload leaves inbound/ for the blob store."""
        idle = active = 0
        with self._open_dir(INBOUND) as dir_fd, _os_errors():
            with os.scandir(dir_fd) as entries:
                names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
            for name in names:
                try:
                    fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue  # gone meanwhile
                try:
                    if _try_lock(fd):
                        idle += 1
                    else:
                        active += 1
                finally:
                    os.close(fd)
        limit = self._s.max_pending_uploads
        if idle >= limit or idle + active >= 5 * limit:
            SFTP_UPLOADS.labels(result="refused_pending").inc()
            self._log("sftp_upload_refused_pending", left=idle, writing=active)
            raise asyncssh.SFTPFailure(
                f"too many unfinished uploads in inbound/ ({idle} left, {active} being "
                "written): finish, resume or remove them first"
            )

    def _abandon(self, upload: _Upload) -> None:
        """Close an upload whose WRITE failed and whose name the client opens again: its handle
        answers failure from now on, and the new open takes the file as it is on disk."""
        upload.open, upload.abandoned = False, True
        os.close(upload.fd)
        self._s.busy.discard(self._busy_key(upload.name))
        self._log("sftp_upload_abandoned", upload_id=upload.upload_id)

    def _still_named(self, fd: int, name: str) -> bool:
        """The inbound name still refers to the file open on `fd`."""
        try:
            with self._open_dir(INBOUND) as dir_fd:
                named = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except (OSError, asyncssh.SFTPError):
            return False
        return (named.st_dev, named.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)

    def _open_regular(self, area: str, name: str, flags: int) -> int:
        with self._open_dir(area) as dir_fd, _os_errors():
            fd = os.open(name, flags | _FILE_FLAGS, 0o600, dir_fd=dir_fd)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise asyncssh.SFTPPermissionDenied("permission denied")
            return fd

    @override
    async def close(self, file_obj: object) -> None:
        if isinstance(file_obj, _Download):
            os.close(file_obj.fd)
            if file_obj.end >= file_obj.size:
                await self._report_download(file_obj)
        elif isinstance(file_obj, _Upload):
            await self._close_upload(file_obj)

    async def _close_upload(self, upload: _Upload) -> None:
        """A client CLOSE, or asyncssh's cleanup of a handle the client left open. Only the
        former can complete an upload; the latter must not raise. asyncssh calls this same method
        for both; the cleanup only runs once the channel is closing (connection lost, channel
        closed, or the EOF that _SftpChannelSession answers by half-closing)."""
        dropped = self.channel.is_closing()
        if not upload.open:
            if upload.abandoned and not dropped:
                raise asyncssh.SFTPFailure("this upload was given up: its name was opened again")
            return
        upload.open = False
        if self._failed.get(upload.name) is upload:
            del self._failed[upload.name]
        try:
            try:
                await asyncio.to_thread(os.fsync, upload.fd)
                synced = True
            except OSError:
                synced = False
            if dropped:
                if self._is_temporary(upload.name):
                    # Resumable: stat shows its size and a write from there continues it, until
                    # renamed; recover_orphan_uploads records it partial once it is stale.
                    SFTP_UPLOADS.labels(result="resumable").inc()
                    self._log("sftp_upload_resumable", upload_id=upload.upload_id)
                else:
                    await self._report_partial(upload)
                return
            if not synced:
                raise asyncssh.SFTPFailure("could not store the file")
            if upload.refused:
                await self._close_incomplete(upload)
            elif not self._is_temporary(upload.name):
                await self._report_complete(upload.name, upload.upload_id)
        finally:
            # Closed (and unlocked) only once the hook has the file: until then a server
            # starting beside this one must not take it for an orphan.
            os.close(upload.fd)
            self._s.busy.discard(self._busy_key(upload.name))

    async def _close_incomplete(self, upload: _Upload) -> None:
        """A CLOSE after WRITEs that were refused and never written again: the file on disk is
        not what the client sent (disk full, over the size limit). A final name is recorded
        partial — shown, with its notice, never processed — and the CLOSE fails; a temporary
        name stays to be resumed, and renaming it to its final name is refused until the
        refused bytes are written."""
        self._log("sftp_upload_incomplete", upload_id=upload.upload_id)
        if self._is_temporary(upload.name):
            self._incomplete[upload.name] = upload.refused
            return
        await self._report_partial(upload)
        raise asyncssh.SFTPFailure(
            "not received: writes to this file were refused, so it is incomplete and will not "
            "be processed; send the whole file again"
        )

    @override
    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        if not isinstance(file_obj, _Download):
            raise asyncssh.SFTPPermissionDenied("permission denied")
        with _os_errors():
            data = os.pread(file_obj.fd, min(size, MAX_READ_BYTES), offset)
        file_obj.end = max(file_obj.end, offset + len(data))
        return data

    @override
    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if not isinstance(file_obj, _Upload):
            raise asyncssh.SFTPPermissionDenied("permission denied")
        if not file_obj.open:
            raise asyncssh.SFTPFailure("this upload was given up: its name was opened again")
        try:
            written = self._write(file_obj, offset, data)
        except asyncssh.SFTPError:
            file_obj.failed = True
            file_obj.refuse(offset, offset + len(data))
            self._failed[file_obj.name] = file_obj
            raise
        file_obj.written(offset, offset + written)
        if file_obj.failed:  # the client goes on with this handle: it is in use again
            file_obj.failed = False
            self._failed.pop(file_obj.name, None)
        return written

    def _write(self, file_obj: _Upload, offset: int, data: bytes) -> int:
        limit = self._s.max_upload_bytes
        if offset + len(data) > limit:
            self._log("sftp_write_refused", upload_id=file_obj.upload_id, reason="too_large")
            raise asyncssh.SFTPFailure(f"file too large: an upload may hold at most {limit} bytes")
        if offset > file_obj.end + MAX_WRITE_GAP:
            self._log("sftp_write_refused", upload_id=file_obj.upload_id, reason="past_end")
            raise asyncssh.SFTPFailure(
                f"write at offset {offset} is past the end of the data written so far "
                f"({file_obj.end} bytes): write the file in order"
            )
        view = memoryview(data)
        with _os_errors():
            while view:
                written = os.pwrite(file_obj.fd, view, offset)
                view, offset = view[written:], offset + written
        file_obj.end = max(file_obj.end, offset)
        return len(data)

    @override
    async def fsync(self, file_obj: object) -> None:
        if isinstance(file_obj, _Upload):
            with _os_errors():
                await asyncio.to_thread(os.fsync, file_obj.fd)

    @override
    def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        if isinstance(file_obj, _Upload):
            fd, area = file_obj.fd, INBOUND
        elif isinstance(file_obj, _Download):
            fd, area = file_obj.fd, OUTBOUND
        else:
            raise asyncssh.SFTPPermissionDenied("permission denied")
        with _os_errors():
            return _attrs(os.fstat(fd), _FILE_MODE[area])

    # -- names ----------------------------------------------------------------------------------

    @override
    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        target = _resolve(path)
        with self._open_dir(target.area) as dir_fd, _os_errors():
            if target.area is None:
                return _attrs(os.fstat(dir_fd), _ROOT_MODE)
            if target.name is None:
                return _attrs(os.fstat(dir_fd), _AREA_MODE[target.area])
            try:
                st = os.stat(target.name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
        if st is not None:
            if not stat.S_ISREG(st.st_mode):
                raise asyncssh.SFTPNoSuchFile("no such file")
            return _attrs(st, _FILE_MODE[target.area])
        if target.area == INBOUND:
            received = (await self._received()).get(target.name)
            if received is not None:
                return _received_attrs(received)
        raise asyncssh.SFTPNoSuchFile("no such file")

    @override
    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return await self.lstat(path)  # links are never followed

    @override
    def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        # Not a generator itself: errors must answer OPENDIR, not the first READDIR.
        target = _resolve(path)
        if target.name is not None:
            raise asyncssh.SFTPNoSuchFile("not a directory")
        names = self._list(target.area)
        if target.area != INBOUND:
            return _iterate(names)
        return self._with_received(names)

    async def _with_received(
        self, names: list[asyncssh.SFTPName]
    ) -> AsyncIterator[asyncssh.SFTPName]:
        """inbound/ as listed on disk, then the received files not on disk (read-only)."""
        for name in names:
            yield name
        on_disk = {name.filename for name in names}
        received = await self._received()
        for filename in sorted(received):
            if os.fsencode(filename) not in on_disk:
                yield asyncssh.SFTPName(
                    os.fsencode(filename), attrs=_received_attrs(received[filename])
                )

    def _list(self, area: str | None) -> list[asyncssh.SFTPName]:
        mode = _ROOT_MODE if area is None else _AREA_MODE[area]
        with self._open_dir(area) as dir_fd, _os_errors():
            here = _attrs(os.fstat(dir_fd), mode)
            names = [
                asyncssh.SFTPName(b".", attrs=here),
                asyncssh.SFTPName(b"..", attrs=here),
            ]
            if area is None:
                for child in (INBOUND, OUTBOUND):
                    st = os.stat(child, dir_fd=dir_fd, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        names.append(
                            asyncssh.SFTPName(child.encode(), attrs=_attrs(st, _AREA_MODE[child]))
                        )
                return names
            with os.scandir(dir_fd) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.is_file(follow_symlinks=False) and _is_file_name(entry.name):
                        st = entry.stat(follow_symlinks=False)
                        names.append(
                            asyncssh.SFTPName(
                                os.fsencode(entry.name), attrs=_attrs(st, _FILE_MODE[area])
                            )
                        )
        return names

    @override
    def realpath(self, path: bytes) -> bytes:
        # The virtual path, from the path alone: nothing on disk is consulted.
        return ("/" + "/".join(_normalize(path))).encode("utf-8")

    @override
    def readlink(self, path: bytes) -> bytes:
        _resolve(path)
        raise asyncssh.SFTPNoSuchFile("no such link")

    @override
    async def remove(self, path: bytes) -> None:
        target = _resolve(path)
        if target.area is None or target.name is None:
            raise asyncssh.SFTPPermissionDenied("permission denied")
        if target.area == INBOUND:
            if self._inbound_stat(target.name) is None:
                if target.name in await self._received():
                    raise asyncssh.SFTPPermissionDenied("a received file cannot be removed")
                raise asyncssh.SFTPNoSuchFile("no such file")
            if not self._is_temporary(target.name):
                raise asyncssh.SFTPPermissionDenied("only temporary files may be removed")
            if self._busy_key(target.name) in self._s.busy:
                raise asyncssh.SFTPFailure("file is in use")
        with self._open_dir(target.area) as dir_fd, _os_errors():
            st = os.stat(target.name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise asyncssh.SFTPNoSuchFile("no such file")
            os.unlink(target.name, dir_fd=dir_fd)
        if target.area == OUTBOUND:
            await self._report(
                "ack_removed", target.name, "sftp_removal_not_recorded", "sftp_ack_removed"
            )

    @override
    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = _resolve(oldpath), _resolve(newpath)
        if old.area != INBOUND or new.area != INBOUND or old.name is None or new.name is None:
            raise asyncssh.SFTPPermissionDenied("renames stay inside inbound")
        if {self._busy_key(old.name), self._busy_key(new.name)} & self._s.busy:
            raise asyncssh.SFTPFailure("file is in use")
        completes = self._is_temporary(old.name) and not self._is_temporary(new.name)
        if completes and old.name in self._incomplete:
            raise asyncssh.SFTPFailure(
                f"{old.name} is incomplete: writes to it were refused and not sent again; "
                "resume it, or send the whole file again"
            )
        with self._open_dir(INBOUND) as dir_fd:
            if not completes:
                _rename_no_replace(dir_fd, old.name, new.name)
                return
            _check_rename(dir_fd, old.name, new.name)
        # Handed over under its temporary name: if the process dies before the hook has taken it,
        # NAME.part is left, which the client's retry overwrites; a NAME left there would refuse
        # the retry's rename for ever. A failed hook likewise leaves NAME.part to retry.
        keys = {self._busy_key(old.name), self._busy_key(new.name)}
        with self._open_dir(INBOUND) as dir_fd, _os_errors():
            lock = os.open(old.name, os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)
        try:
            if not _try_lock(lock):
                raise asyncssh.SFTPFailure("file is in use")
            self._s.busy.update(keys)
            try:
                await self._report_complete(new.name, uuid.uuid4().hex, staged=old.name)
            finally:
                self._s.busy.difference_update(keys)
        finally:
            os.close(lock)

    @override
    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self.rename(oldpath, newpath)  # never replaces, unlike POSIX rename(2)

    # -- refused or ignored ----------------------------------------------------------------------

    @override
    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        # Clients set times and modes after uploads (rclone's modtime, WinSCP, put -p): accepted
        # on any name that exists, received files included, and nothing changes.
        await self.lstat(path)

    @override
    async def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await self.lstat(path)

    @override
    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        return None

    @override
    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        raise asyncssh.SFTPPermissionDenied("permission denied")

    @override
    def rmdir(self, path: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("permission denied")

    @override
    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links are not allowed")

    @override
    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links are not allowed")

    @override
    def open56(
        self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs
    ) -> object:
        raise asyncssh.SFTPOpUnsupported("SFTP v3 only")

    @override
    def statvfs(self, path: bytes) -> os.statvfs_result:
        raise asyncssh.SFTPOpUnsupported("not supported")

    @override
    def fstatvfs(self, file_obj: object) -> os.statvfs_result:
        raise asyncssh.SFTPOpUnsupported("not supported")

    @override
    def map_path(self, path: bytes) -> bytes:
        # Every operation is overridden above; an asyncssh default that maps a path is refused.
        raise asyncssh.SFTPPermissionDenied("permission denied")

    @override
    def reverse_map_path(self, path: bytes) -> bytes:
        raise asyncssh.SFTPPermissionDenied("permission denied")

    @override
    def exit(self) -> None:
        SFTP_SESSIONS.dec()
        self._log("sftp_session_ended")


def _try_lock(fd: int) -> bool:
    """An exclusive flock on the file, if no one else holds one. Released when the descriptor
    closes, or when its process dies however it dies."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


async def recover_orphan_uploads(
    root: Path,
    hooks: SftpHooks,
    *,
    temporary_patterns: Sequence[str] = TEMPORARY_PATTERNS,
    resumable_seconds: float = RESUMABLE_SECONDS,
) -> int:
    """Hand every file left in a partner's inbound/ by a server that died mid-upload to
    `upload_partial`: shown as a partial receipt, never processed, as a dropped session's.

    Run before this process listens, and from time to time while it runs. Files another live
    server holds (open for writing, or being handed to its hooks) are locked and skipped; so is
    an empty file created a moment ago (it may be between its open and its lock), and an upload
    to a temporary name modified within `resumable_seconds` (the client may resume it). A hook
    that fails leaves the file for the next sweep. Returns how many files were recorded."""
    recorded = 0
    try:
        homes = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return 0
    for home in homes:
        if not (is_partner_name(home.name) and home.is_dir(follow_symlinks=False)):
            continue
        for name in _inbound_names(Path(home.path)):
            keep_for = resumable_seconds if is_temporary_name(name, temporary_patterns) else 0.0
            recorded += await _recover_one(Path(home.path), home.name, name, hooks, keep_for)
    return recorded


def _inbound_names(home: Path) -> list[str]:
    try:
        home_fd = os.open(home, _DIR_FLAGS)
    except OSError:
        return []
    try:
        fd = os.open(INBOUND, _DIR_FLAGS, dir_fd=home_fd)
    except OSError:
        return []
    finally:
        os.close(home_fd)
    try:
        with os.scandir(fd) as entries:
            return sorted(
                e.name
                for e in entries
                if e.is_file(follow_symlinks=False) and _is_file_name(e.name)
            )
    finally:
        os.close(fd)


async def _recover_one(
    home: Path, username: str, name: str, hooks: SftpHooks, keep_for: float
) -> int:
    try:
        dir_fd = os.open(home / INBOUND, _DIR_FLAGS)
        try:
            fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        return 0  # gone meanwhile, or a link: nothing of ours
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _try_lock(fd):
            return 0
        age = time.time() - st.st_mtime
        if age < keep_for or (st.st_size == 0 and age < _JUST_CREATED_SECONDS):
            return 0
        try:
            await hooks.upload_partial(username, home / INBOUND / name, name)
        except Exception as exc:
            log.error("sftp_orphan_not_recorded", partner=username, error=type(exc).__name__)
            return 0
        SFTP_UPLOADS.labels(result="partial").inc()
        log.info("sftp_orphan_recorded_partial", partner=username, size=st.st_size)
        return 1
    finally:
        os.close(fd)


async def _iterate(names: list[asyncssh.SFTPName]) -> AsyncIterator[asyncssh.SFTPName]:
    for name in names:
        yield name


def _check_rename(dir_fd: int, old: str, new: str) -> None:
    """What `_rename_no_replace` refuses, without moving anything."""
    with _os_errors():
        if not stat.S_ISREG(os.stat(old, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise asyncssh.SFTPNoSuchFile("no such file")
        try:
            os.stat(new, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
    raise asyncssh.SFTPFailure("a file with that name already exists")


def _rename_no_replace(dir_fd: int, old: str, new: str) -> None:
    """link + unlink: atomically refuses an existing target, where rename(2) would replace it."""
    with _os_errors():
        st = os.stat(old, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise asyncssh.SFTPNoSuchFile("no such file")
        os.link(old, new, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        os.unlink(old, dir_fd=dir_fd)


class _LenientSftpHandler(SFTPServerHandler):
    """asyncssh's SFTP server protocol with two changes for real clients.

    - A WRITE with bytes after its data is accepted and the extra bytes ignored, as OpenSSH's
      sftp-server does; asyncssh 2.24 answers it SSH_FX_BAD_MESSAGE, and Go's pkg/sftp before
      1.13.6 (rclone in Debian 12) sends such packets for every write over ~32 KiB. Proposed
      upstream: skip `check_end()` in `SFTPServerHandler._process_write`.
    - When the client ends the session (EOF), it is told `exit-status 0` before the channel
      closes, as sshd reports sftp-server's exit: OpenSSH's scp (SFTP mode) exits 1 without it.
    """

    _trailing_logged = False

    async def _process_write_lenient(self, packet: SSHPacket) -> object:
        handle = packet.get_string()
        offset = packet.get_uint64()
        data = packet.get_string()
        if packet and not self._trailing_logged:  # bytes left: ignored, logged once a session
            self._trailing_logged = True
            log.info("sftp_write_trailing_bytes_ignored")
        file_obj = self._file_handles.get(handle)
        if not file_obj:
            raise asyncssh.SFTPInvalidHandle("Invalid file handle")
        result = self._server.write(file_obj, offset, data)
        if inspect.isawaitable(result):
            result = await result
        return result

    # asyncssh's own dispatch table, copied with the WRITE entry replaced.
    _packet_handlers = {  # noqa: RUF012
        **SFTPServerHandler._packet_handlers,
        FXP_WRITE: cast(Any, _process_write_lenient),
    }

    @override
    async def _cleanup(self, exc: Exception | None) -> None:
        if exc is None and self._writer is not None:
            # Sent before the open handles are closed: the channel is already half-closed
            # (EOF), so they are dropped uploads either way, and the client need not wait.
            cast(asyncssh.SSHServerChannel[bytes], self._writer.channel).exit(0)
        await super()._cleanup(exc)


# `scp -O` (the legacy protocol) runs "scp -t|-f PATH" on the server. The reply line is the
# protocol's own error message (\x02 = fatal), which scp prints before it exits 1.
_SCP_REFUSAL = b"\x02scp: this server speaks SFTP only: use scp without -O, or sftp\n"


class _SftpChannelSession(SSHServerStreamSession[bytes]):
    """asyncssh's stream session for the "sftp" subsystem only, half-closing on the client's EOF.

    asyncssh closes the handles a client left open through the same `SFTPServer.close` that
    answers a CLOSE request, and a client may send EOF while keeping the channel open, so the
    channel state alone would not tell the two apart. Answering EOF with EOF (eof_received
    returns False, where asyncssh's default keeps the channel half-open) makes the channel
    "closing" from then on: every close after it is a dropped upload, and no answer can reach
    the client any more, so a CLOSE queued behind the EOF is reported partial, never answered OK.

    An "scp ..." command (scp -O) is accepted only to say, in scp's protocol, that only SFTP is
    served; any other command, a shell or another subsystem is refused.
    """

    def __init__(self, session: _Session) -> None:
        super().__init__(None, self._start_sftp, _SFTP_VERSION, False)
        self._intake = session

    def _start_sftp(self, chan: SSHChannel[bytes]) -> asyncssh.SFTPServer:
        SFTP_SESSIONS.inc()  # until the server's exit()
        log.info(
            "sftp_session_started",
            partner=self._intake.username,
            session_id=self._intake.session_id,
        )
        return _PartnerSftpServer(cast(asyncssh.SSHServerChannel[bytes], chan), self._intake)

    @override
    def shell_requested(self) -> bool:
        return False

    @override
    def exec_requested(self, command: str) -> bool:
        return command.startswith("scp ")

    @override
    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "sftp"

    @override
    def session_started(self) -> None:
        chan = cast(asyncssh.SSHServerChannel[bytes], self._chan)
        if chan.get_subsystem() != "sftp":  # "scp ...": exec_requested allows nothing else
            log.info(
                "sftp_legacy_scp_refused",
                partner=self._intake.username,
                session_id=self._intake.session_id,
            )
            chan.write(_SCP_REFUSAL)
            chan.exit(1)
            return
        reader = SSHReader[bytes](self, chan)
        writer = SSHWriter[bytes](self, chan)
        server = self._start_sftp(chan)
        handler = _LenientSftpHandler(server, reader, writer, _SFTP_VERSION)
        chan.get_connection().create_task(handler.run(), reader.logger)

    @override
    def eof_received(self) -> bool:
        super().eof_received()  # wakes the SFTP reader, which then cleans up
        return False


class _PartnerSSHServer(asyncssh.SSHServer):
    """One SSH connection: public-key authentication against the hooks, then SFTP only."""

    def __init__(
        self,
        root: Path,
        hooks: SftpHooks,
        busy: set[tuple[str, str]],
        max_upload_bytes: int,
        temporary_patterns: tuple[str, ...],
        allow_sha1: bool = False,
        max_pending_uploads: int = MAX_PENDING_UPLOADS,
    ) -> None:
        self._max_pending_uploads = max_pending_uploads
        self._root = root
        self._hooks = hooks
        self._allow_sha1 = allow_sha1
        self._busy = busy
        self._max_upload_bytes = max_upload_bytes
        self._temporary_patterns = temporary_patterns
        self._session_id = uuid.uuid4().hex
        self._conn: asyncssh.SSHServerConnection | None = None
        self._key_owner: str | None = None
        self._keys: frozenset[bytes] = frozenset()

    @override
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        log.info("sftp_connection_opened", session_id=self._session_id)

    @override
    def connection_lost(self, exc: Exception | None) -> None:
        log.info(
            "sftp_connection_closed",
            session_id=self._session_id,
            error=type(exc).__name__ if exc else None,
        )

    @override
    async def begin_auth(self, username: str) -> bool:
        self._key_owner, self._keys = None, frozenset()
        keys: list[asyncssh.SSHKey] | None = None
        if is_partner_name(username):
            try:
                keys = await self._hooks.authorized_keys(username)
            except Exception as exc:
                log.error(
                    "sftp_key_lookup_failed",
                    session_id=self._session_id,
                    error=type(exc).__name__,
                )
                # Not "Permission denied (publickey)": the partner's key is fine, we cannot
                # check it now (the database is down). Its client shows this reason.
                raise asyncssh.DisconnectError(
                    asyncssh.DISC_SERVICE_NOT_AVAILABLE,
                    "the gateway cannot check keys right now; try again in a few minutes",
                ) from exc
        if keys:
            self._key_owner = username
            self._keys = frozenset(key.public_data for key in keys)
        else:
            # Only a well-formed name is an id worth logging; anything else is client noise.
            log.info(
                "sftp_unknown_partner",
                session_id=self._session_id,
                partner=username if is_partner_name(username) else None,
            )
        return True  # always authenticate; an unknown partner simply has no key that matches

    @override
    def public_key_auth_supported(self) -> bool:
        return True

    @override
    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # `key` is the one asyncssh then verifies the client's signature with.
        return (
            username == self._key_owner
            and key.public_data in self._keys
            and client_key(key, allow_sha1=self._allow_sha1) is not None
        )

    @override
    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False

    @override
    def password_auth_supported(self) -> bool:
        return False

    @override
    def kbdint_auth_supported(self) -> bool:
        return False

    @override
    def host_based_auth_supported(self) -> bool:
        return False

    @override
    def auth_completed(self) -> None:
        log.info("sftp_partner_authenticated", partner=self._key_owner, session_id=self._session_id)

    @override
    def session_requested(self) -> _SftpChannelSession:
        username: str | None = self._conn.get_extra_info("username") if self._conn else None
        if username is None or username != self._key_owner:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "refused")
        session = _Session(
            username=username,
            home=partner_root(self._root, username),
            hooks=self._hooks,
            busy=self._busy,
            session_id=self._session_id,
            max_upload_bytes=self._max_upload_bytes,
            temporary_patterns=self._temporary_patterns,
            max_pending_uploads=self._max_pending_uploads,
        )
        return _SftpChannelSession(session)

    @override
    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        return False

    @override
    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False

    @override
    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    @override
    def unix_server_requested(self, listen_path: str) -> bool:
        return False

    @override
    def tun_requested(self, unit: int | None) -> bool:
        return False

    @override
    def tap_requested(self, unit: int | None) -> bool:
        return False
