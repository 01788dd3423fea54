"""The content-addressed blob store. A blob is durable before anyone is told it exists:
write to a temporary file → fsync → rename to blobs/ab/cd/<sha256> → fsync the directory.

A temporary file is locked (flock) by the process writing it; one that no live process holds was
cut off by a kill and promised nothing: `clean_tmp` removes it at start."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gateway.faults import crashpoint

CHUNK = 1 << 20
# Member data: whatever the umask, only the gateway's user reads the data directory.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private_dirs(path: Path, mode: int = PRIVATE_DIR) -> None:
    """mkdir -p with mode 0700 (or `mode`) for every directory it creates (os.makedirs gives
    the parents the umask's mode); an existing directory keeps its mode."""
    if path.is_dir():
        return
    make_private_dirs(path.parent, mode)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode)
        os.chmod(path, mode)  # whatever the umask


def _create_private(path: str, flags: int) -> int:
    """An `opener` for open(): the file it creates is 0600 whatever the umask."""
    return os.open(path, flags, PRIVATE_FILE)


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_EXCL) -> int:
    """os.open creating with mode 0600: a umask only narrows it, so never group/other."""
    return os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)


class StorageError(Exception):
    """The blob could not be stored durably (disk full, I/O error)."""


class TooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size: int
    rel_path: str


def _fsync_dir(path: Path, fsync: Callable[[int], None]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


class Swept(FileNotFoundError):
    """A new temporary file was removed, before it was locked, by a process starting beside
    this one (`BlobStore.clean_tmp`)."""


class PendingBlob:
    """A blob being written: feed chunks, then `commit()` (durable) or `discard()`."""

    def __init__(self, store: BlobStore, limit: int | None) -> None:
        self._store = store
        self._limit = limit
        self.path = store.tmp_dir / f"{uuid.uuid4().hex}.tmp"
        self._file: IO[bytes] | None = open(  # noqa: SIM115 - closed in commit
            self.path, "xb", opener=_create_private
        )
        try:
            # Locked until committed or discarded: a process starting beside this one removes
            # only the temporaries no one holds. One that starts between this open and this lock
            # may remove the file: nothing is written yet, so BlobStore.begin takes a new one.
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            try:
                same = os.stat(self.path).st_ino == os.fstat(self._file.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                raise Swept(errno.ENOENT, "temporary file removed")
        except OSError:
            self._file.close()
            raise
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise StorageError("blob already closed")
        self.size += len(chunk)
        if self._limit is not None and self.size > self._limit:
            raise TooLarge
        self._hash.update(chunk)
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise StorageError(exc.strerror or "write failed") from exc

    @property
    def sha256(self) -> str:
        """The SHA-256 of what was written so far (all of it, once the body has been read)."""
        return self._hash.hexdigest()

    def commit(self) -> StoredBlob:
        if self._file is None:
            raise StorageError("blob already closed")
        try:
            self._file.flush()
            self._store.fsync(self._file.fileno())
            crashpoint("blob_fsynced")
        except OSError as exc:
            self.discard()
            raise StorageError(exc.strerror or "fsync failed") from exc
        # Renamed while still open, so still locked: closed first, a process starting beside
        # this one could sweep it (BlobStore.clean_tmp) between the close and the rename — the
        # sender had a 507 "No such file or directory" (seen with workers starting beside the
        # API under load, issue 19).
        blob = self._store.place(self.path, self._hash.hexdigest(), self.size)
        with contextlib.suppress(OSError):
            self._file.close()
        self._file = None
        return blob

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)


SWEPT_RETRIES = 5


def _content_address(sha256: str) -> str:
    """A blob's path in the store, from its SHA-256."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


ASIDE = ".aside"  # a blob being deleted by retention's sweep (BlobStore.remove_stale)
# Uploads kept while the database was away (EDI834_DATA_DIR/sftp-held/<uuid>.json, each naming
# its blob): recorded by `GatewaySftpHooks.record_held` (gateway.intake.bridge).
HELD_DIR = "sftp-held"


class BlobStore:
    def __init__(self, root: Path, fsync: Callable[[int], None] = os.fsync) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.fsync = fsync
        make_private_dirs(self.tmp_dir)

    def writable(self) -> bool:
        """Whether a file can be stored now: the store's folder is writable (a read-only mount
        is not, for root either). A probe's question, not a promise: `begin` still says."""
        try:
            make_private_dirs(self.tmp_dir)  # swept by another process: made again, 0700
        except OSError:
            return False
        if not self.tmp_dir.is_dir():
            return False
        return os.access(self.tmp_dir, os.W_OK) and os.access(self.root, os.W_OK)

    def begin(self, limit: int | None = None) -> PendingBlob:
        for _ in range(SWEPT_RETRIES):
            try:
                return PendingBlob(self, limit)
            except Swept:
                # A worker or API starting beside this one swept it: the sender would have had
                # a 507 for a race of ours (seen in bench_api.py with workers starting).
                continue
            except OSError as exc:
                raise StorageError(exc.strerror or "cannot create a temporary file") from exc
        raise StorageError("temporary files kept being removed by another process")

    def place(self, tmp: Path, sha256: str, size: int) -> StoredBlob:
        """Rename an fsynced file into its content address and fsync the directory. Bytes
        already stored are replaced by this copy (the same bytes): its time says they were
        received now, which retention's `remove_stale` reads — a copy it keeps."""
        rel = _content_address(sha256)
        final = self.root / rel
        try:
            make_private_dirs(final.parent)
            os.replace(tmp, final)
            _fsync_dir(final.parent, self.fsync)
        except OSError as exc:
            raise StorageError(exc.strerror or "rename failed") from exc
        return StoredBlob(sha256=sha256, size=size, rel_path=rel)

    def adopt(self, path: Path) -> StoredBlob:
        """Take a finished upload (SFTP) into the store: hash, fsync, rename (same filesystem).
        The caller holds the upload's lock (an flock on the file), which follows it into tmp/."""
        digest = hashlib.sha256()
        size = 0
        try:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                self.fsync(f.fileno())
            tmp = self.tmp_dir / f"{uuid.uuid4().hex}.tmp"
            os.replace(path, tmp)
            _fsync_dir(path.parent, self.fsync)
        except OSError as exc:
            raise StorageError(exc.strerror or "cannot read the upload") from exc
        return self.place(tmp, digest.hexdigest(), size)

    def path(self, rel_path: str) -> Path:
        return self.root / rel_path

    def chunks(self, rel_path: str, size: int = 1 << 16) -> Iterator[bytes]:
        with open(self.root / rel_path, "rb") as f:
            while chunk := f.read(size):
                yield chunk

    def sha256_of(self, rel_path: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks(rel_path, CHUNK):
            digest.update(chunk)
        return digest.hexdigest()

    def remove_stale(self, rel_path: str, written_before: float) -> bool:
        """Delete a blob that no kept receipt names (retention's sweep), unless it was written
        at or after `written_before` (epoch seconds): the same bytes received again, on their
        way to a receipt. Moved aside first and its time read there, so an upload replacing it
        in between is seen and put back; a crash in between leaves it aside, and
        `restore_aside` puts it back. True when deleted."""
        final = self.root / rel_path
        try:
            if os.stat(final).st_mtime >= written_before:
                return False
            aside = self.tmp_dir / f"{final.name}{ASIDE}"
            os.replace(final, aside)
            if os.stat(aside).st_mtime >= written_before:  # replaced in between: keep it
                self._put_back(aside, final)
                return False
            aside.unlink()
        except FileNotFoundError:  # gone already, or put back by another process's start
            return False
        return True

    def restore_aside(self) -> int:
        """Put back blobs a crash left aside in `remove_stale` (a sweep removes them again if
        they are still stale); how many."""
        count = 0
        for aside in self.tmp_dir.glob(f"*{ASIDE}"):
            sha = aside.name.removesuffix(ASIDE)
            with contextlib.suppress(FileNotFoundError):
                self._put_back(aside, self.root / _content_address(sha))
                count += 1
        return count

    @staticmethod
    def _put_back(aside: Path, final: Path) -> None:
        with contextlib.suppress(FileExistsError):  # a newer copy is there: the same bytes
            os.link(aside, final)
        aside.unlink()

    def clean_tmp(self) -> int:
        """Remove temporaries left by a kill (never answered, so never promised): every one no
        live process holds (other processes sharing the store hold theirs locked)."""
        count = 0
        for p in self.tmp_dir.glob("*.tmp"):
            with contextlib.suppress(OSError):
                fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: in use
                    p.unlink()
                    count += 1
                finally:
                    os.close(fd)
        return count
