"""deploy/README's backups, run as written, with its paths moved into a temporary directory: the
PostgreSQL block against a real PostgreSQL (its dump restored into another database), and the
SQLite copy against a database in WAL mode whose last commits are not checkpointed yet."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ROOT
from tests.pgserver import find_postgres_bin

README = ROOT / "deploy" / "README.md"


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)


def block_with(word: str) -> str:
    (block,) = [b for b in shell_blocks() if word in b]
    return block


def moved(block: str, tmp: Path) -> str:
    """The block with the single host's paths under `tmp`, and the release's python this one."""
    for path, there in (
        ("/opt/edi834/venv/bin/python", sys.executable),
        ("/etc/edi834/edi834.env", str(tmp / "edi834.env")),
        ("/var/lib/edi834", str(tmp / "data")),
        ("/backup", str(tmp / "backup")),
    ):
        block = block.replace(path, there)
    return block


def run_sh(script: str, tmp: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "EDI834_"))}
    env["PATH"] = path
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# A stand-in for rsync where the machine has none (the single host installs it): the copies
# the block asks of it, whole.
RSYNC_STAND_IN = """\
rsync() { local src="${@: -2:1}" dst="${@: -1}"; [ -d "$src" ] || return 23;
          mkdir -p "$dst" && cp -a "$src/." "$dst"; }
"""


def test_the_postgresql_backup_runs_as_written_and_restores(tmp_path: Path, postgres) -> None:
    """Found running it: `$PGURL` was named and never set, and the URL an operator has,
    `EDI834_DATABASE_URL`, is SQLAlchemy's (`postgresql+psycopg://…`), which pg_dump refuses."""
    url = postgres.create_database("backup_src")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE receipts (id text PRIMARY KEY)"))
        conn.execute(text("INSERT INTO receipts VALUES ('r1'), ('r2')"))
    engine.dispose()
    (tmp_path / "edi834.env").write_text(
        f"EDI834_DATA_DIR=/var/lib/edi834\nEDI834_DATABASE_URL={url}\n"
    )
    data = tmp_path / "data"
    (data / "blobs" / "ab").mkdir(parents=True)
    (data / "blobs" / "ab" / "ab12").write_bytes(b"ISA*...")
    for kind in ("ed25519", "ecdsa", "rsa"):
        (data / f"sftp_host_{kind}_key").write_text(kind)
    (tmp_path / "backup").mkdir()
    block = moved(block_with("pg_dump"), tmp_path)
    prelude = "" if shutil.which("rsync") else RSYNC_STAND_IN
    path = f"{find_postgres_bin()}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    done = run_sh(prelude + block, tmp_path, path)
    assert done.returncode == 0, done.stderr
    (dump,) = (tmp_path / "backup").glob("edi834-*.dump")
    assert (tmp_path / "backup" / "blobs" / "ab" / "ab12").read_bytes() == b"ISA*..."
    assert {p.name for p in (tmp_path / "backup").glob("sftp_host_*_key")} == {
        "sftp_host_ed25519_key",
        "sftp_host_ecdsa_key",
        "sftp_host_rsa_key",
    }
    restored = postgres.create_database("backup_dst")
    libpq = restored.replace("postgresql+psycopg:", "postgresql:")
    back = run_sh(f"pg_restore -d '{libpq}' '{dump}'", tmp_path, path)
    assert back.returncode == 0, back.stderr
    engine = create_engine(restored)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM receipts")).scalar_one() == 2
    engine.dispose()


def test_the_sqlite_backup_holds_what_is_still_in_the_wal(tmp_path: Path) -> None:
    """deploy/README listed `edi834.sqlite3` among what to back up and said no more: a copy of
    that file while `serve` ran had none of the last six files and their core events (they
    were in `edi834.sqlite3-wal`). Found backing up a SQLite gateway."""
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "backup").mkdir()
    live = sqlite3.connect(data / "edi834.sqlite3", isolation_level=None)
    try:
        live.execute("PRAGMA journal_mode=WAL")
        live.execute("PRAGMA wal_autocheckpoint=0")  # as between serve's checkpoints
        live.execute("CREATE TABLE receipts (id TEXT PRIMARY KEY)")
        live.executemany("INSERT INTO receipts VALUES (?)", [(f"r{i}",) for i in range(6)])
        assert (data / "edi834.sqlite3-wal").stat().st_size > 0
        block = moved(block_with("edi834.sqlite3"), tmp_path)
        done = run_sh(block, tmp_path, os.environ.get("PATH", "/usr/bin:/bin"))
        assert done.returncode == 0, done.stderr
        (copy,) = (tmp_path / "backup").glob("edi834-*.sqlite3")
        backup = sqlite3.connect(copy)
        try:
            assert backup.execute("SELECT count(*) FROM receipts").fetchone() == (6,)
            assert backup.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            backup.close()
    finally:
        live.close()


@pytest.mark.parametrize("word", ["pg_dump", "edi834.sqlite3"])
def test_each_backup_is_one_block(word: str) -> None:
    assert block_with(word)
