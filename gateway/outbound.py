"""What leaves the gateway, on the shared floor: the names of the files we write for a partner,
writing them whole (write, fsync, rename, fsync the directory — a reader never sees half a
file, a crash never leaves one), and the HMAC signature on what we POST. Used by the ack
delivery (worker) and the core-system delivery (enrollment) alike."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import ipaddress
import os
import re
import socket
import time
import unicodedata
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from gateway.storage import make_private_dirs, open_private

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def ack_filename(
    *,
    received_at: dt.datetime,
    receipt_id: str,
    filename: str | None,
    isa13: str,
    kind: str,
    round_: int = 1,
) -> str:
    """`<received>_<receipt>_<their file>.<ISA13>[.r<round>].<kind>`: which file, which ack;
    `.r2`, `.r3`… for the acks of a file processed again (reprocessed by an operator). Their
    file's name without its extension, in `[A-Za-z0-9._-]` (accents dropped, `MARÍA` is
    `MARIA`; anything else one `_`), without leading or trailing dots; `file` when there is
    none left (or no name was sent)."""
    stem = (filename or "").rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem[1:] else stem
    ascii_ = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    stem = _SAFE.sub("_", ascii_).strip("._")[:80].strip("._") or "file"
    stamp = received_at.strftime("%Y%m%dT%H%M%S")
    suffix = f".{_SAFE.sub('_', isa13.strip()) or 'noisa13'}" if isa13 else ""
    again = f".r{round_}" if round_ > 1 else ""
    return f"{stamp}_{receipt_id[:12]}_{stem}{suffix}{again}.{kind}"


SHARED_DIR = 0o750
SHARED_FILE = 0o640


OUTBOX_STAGING = "outbox-tmp"  # in the data dir: acks and notices written, then renamed
STALE_TEMPORARY_SECONDS = 3600  # a write takes milliseconds: a temporary this old is a kill's


def remove_stale_temporaries(staging: Path, now: float | None = None) -> int:
    """Remove the `*.tmp` in `staging` older than an hour: what a process killed between
    writing and renaming left (an ack, a notice). Processes sharing the data directory write
    there too, so a fresh one may be a live write and stays. Returns how many were removed."""
    cutoff = (time.time() if now is None else now) - STALE_TEMPORARY_SECONDS
    removed = 0
    try:
        found = list(staging.glob("*.tmp"))
    except OSError:
        return 0
    for path in found:
        try:
            if path.lstat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue  # gone already (another process's sweep), or not ours to remove
    return removed


def write_atomically(
    directory: Path,
    name: str,
    content: bytes,
    staging: Path,
    *,
    private: bool = True,
    sync_directory: bool = True,
) -> Path:
    """private: directories 0700 and the file 0600 whatever the umask — outbound/ acks, which
    partners read through our SFTP server, not as OS users. The core export (another system
    reads it, perhaps as another user) passes False: the directories it makes 0750 and the file
    0640 whatever the umask — readable by the gateway user's group (the core's reader joins
    it), never by everyone: its lines hold names, SSNs, birth dates and addresses. A directory
    that exists keeps its mode.
    sync_directory=False: the caller fsyncs the directory (fsync_directory) once for several
    files, before it records any of them as written."""
    if private:
        make_private_dirs(directory)
        make_private_dirs(staging)
    else:
        make_private_dirs(directory, SHARED_DIR)
        make_private_dirs(staging, SHARED_DIR)
    tmp = staging / f"{uuid.uuid4().hex}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    if private:
        fd = open_private(tmp)
    else:
        fd = os.open(tmp, flags, SHARED_FILE)
        os.fchmod(fd, SHARED_FILE)  # whatever the umask
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        final = directory / name
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk or an unwritable folder leaves no scrap
        raise
    if sync_directory:
        fsync_directory(directory)
    return final


def fsync_directory(directory: Path) -> None:
    """Make the renames into `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sign(secret: str, body: bytes) -> str:
    """`X-EDI834-Signature`: HMAC-SHA256 of the exact body, hex, prefixed `sha256=`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_timestamped(secret: str, body: bytes, at: int) -> str:
    """`X-EDI834-Signature-256`: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. The
    receiver recomputes it and refuses a `t` older than a few minutes: a captured call cannot be
    replayed later (the body-only `X-EDI834-Signature` stays for receivers that check it)."""
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def post_signed(
    client: httpx.Client,
    url: str,
    body: bytes,
    signature: str,
    refused: type[Exception],
    *,
    secret: str | None = None,
) -> None:
    """POST a signed JSON body (webhooks, alerts), retried briefly on transport errors and on
    an answer that is not 2xx (raised as `refused`, the caller's kind of failure). With the
    `secret`, each attempt also carries `X-EDI834-Signature-256` signed at its own time."""

    @retry(
        retry=retry_if_exception_type((httpx.TransportError, refused)),
        stop=stop_after_attempt(3),
        wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
        reraise=True,
    )
    def attempt() -> None:
        headers = {"Content-Type": "application/json", "X-EDI834-Signature": signature}
        if secret is not None:
            headers["X-EDI834-Signature-256"] = sign_timestamped(secret, body, int(time.time()))
        status = answer_status(client, url, body, headers)
        if status >= 300:
            raise refused(f"HTTP {status}")

    attempt()


def answer_status(
    client: httpx.Client,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float | None = None,
) -> int:
    """POST and keep the status only: the answer's body is never read (nor decompressed), so a
    receiver's huge or endless answer (a gzip bomb: 400 MiB from a 400 KB body) costs nothing."""
    return answer_head(client, url, body, headers, timeout)[0]


def answer_head(
    client: httpx.Client,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float | None = None,
) -> tuple[int, float | None]:
    """POST and keep the status and the seconds its `Retry-After` asks for (None without
    one, or one that is unreadable); the body is never read, as for `answer_status`."""
    if timeout is None:  # the client's own
        answer = client.stream("POST", url, content=body, headers=headers)
    else:
        answer = client.stream("POST", url, content=body, headers=headers, timeout=timeout)
    with answer as response:
        return response.status_code, retry_after_seconds(response.headers.get("retry-after"))


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """`Retry-After` (RFC 9110 10.2.3) as seconds from now: delta-seconds or an HTTP-date (a
    date past is 0); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def non_public_destination(url: str) -> str | None:
    """Why `url` must not be posted to, or None: its host resolves to (or is) an address that
    is not public — loopback, private, link-local (169.254.169.254, a cloud's metadata), shared,
    multicast or reserved — or does not resolve. Checked just before each post: an address the
    name later resolves to in between (DNS rebinding) is not caught."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return "its host does not resolve"
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not address.is_global:
            return f"its host is a non-public address ({address})"
    return None
