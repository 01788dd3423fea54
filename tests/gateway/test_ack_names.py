"""What outbound/ calls an ack: `<received>_<receipt>_<their file>.<ISA13>.<kind>`, with their
file's name made safe (found by a sender's run: `ünïcødé-名前.834` was `_n_c_d_-_`, `..834`
gave `..000300112.999`, and a file sent without a name repeated the receipt id)."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest

from gateway.outbound import STALE_TEMPORARY_SECONDS, ack_filename, remove_stale_temporaries

NOW = dt.datetime(2026, 12, 7, 1, 58, 3, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("sent", "stem"),
    [
        ("enroll-0601.834", "enroll-0601"),
        ("MARÍA PÉREZ.x12", "MARIA_PEREZ"),  # accents dropped, a space is one _
        ("ünïcødé-名前.834", "unicde-"),
        ("名前.834", "file"),  # nothing left
        ("..834", "file"),
        ("...834", "file"),
        (".hidden", "hidden"),
        ("a b;c$(x).834", "a_b_c_x"),
        ("dir/inner.834", "inner"),
        (None, "file"),  # no X-Filename: not the receipt id again
        ("x" * 300 + ".834", "x" * 80),
    ],
)
def test_their_file_name_is_made_safe(sent: str | None, stem: str) -> None:
    name = ack_filename(
        received_at=NOW, receipt_id="b91b15cc5e7d4b59", filename=sent, isa13="000041017", kind="999"
    )
    assert name == f"20261207T015803_b91b15cc5e7d_{stem}.000041017.999"


def test_a_write_that_fails_leaves_no_scrap(tmp_path) -> None:
    """An outbound/ that cannot take the file (here: a folder holds its name) fails the write,
    and the file it was staged in is gone (four were left in outbox-tmp by a sender's run)."""
    from gateway.outbound import write_atomically

    outbound = tmp_path / "outbound"
    (outbound / "x.999").mkdir(parents=True)  # a folder where the file should go
    (outbound / "x.999" / "keep").write_text("")
    staging = tmp_path / "outbox-tmp"
    with pytest.raises(IsADirectoryError):
        write_atomically(outbound, "x.999", b"ISA~", staging)
    assert list(staging.iterdir()) == []


def test_stale_temporaries_are_removed_fresh_ones_stay(tmp_path):
    """What a kill between writing and renaming left is removed; a write of another process
    sharing the data directory, in progress, is not."""
    staging = tmp_path / "outbox-tmp"
    staging.mkdir()
    now = time.time()
    old, fresh, other = staging / "a.tmp", staging / "b.tmp", staging / "c.json"
    for path in (old, fresh, other):
        path.write_bytes(b"x")
    os.utime(old, (now - STALE_TEMPORARY_SECONDS - 1, now - STALE_TEMPORARY_SECONDS - 1))
    os.utime(other, (now - 86400, now - 86400))
    assert remove_stale_temporaries(staging, now=now) == 1
    assert sorted(p.name for p in staging.iterdir()) == ["b.tmp", "c.json"]
    assert remove_stale_temporaries(tmp_path / "missing", now=now) == 0
