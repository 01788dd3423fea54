"""Files of many transaction sets in bounded memory: set results spilled to an unnamed file in
the blob store's tmp directory (gateway.spill), the 999 written as it is made, and the sets and
findings stored in batches — with the same rows and acknowledgements as a file kept whole."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import select

import validators.setlist as setlist
from gateway.context import Gateway
from gateway.db.migrate import upgrade
from gateway.db.models import Ack, Finding, TransactionSet
from gateway.settings import Settings
from gateway.spill import FileSpill, spill_to
from gateway.worker import acknowledge
from gateway.worker.run import Worker
from parsers.writer import segment
from tests.benchmarks.generate_834 import write_834
from tests.gateway.harness import add_va
from tests.gateway.test_worker import _receipt
from validators.acks.x999 import build_999
from validators.interchange import (
    InterchangeResult,
    TransactionSetResult,
    ValidationOptions,
    validate_stream,
)
from validators.setlist import SETS_LISTED

NOW = dt.datetime(2027, 1, 4, 9, 30, tzinfo=dt.UTC)


def _set(n: int) -> TransactionSetResult:
    r = TransactionSetResult(st=segment("ST", "834", f"{n:04d}", "005010X220A1"))
    r.member_count = n
    return r


class TestFileSpill:
    def test_reads_back_in_order_and_leaves_no_name_behind(self, tmp_path):
        spill = FileSpill(tmp_path)
        assert os.listdir(tmp_path) == []  # unnamed: nothing to clean up after a kill
        spill.write([_set(1), _set(2)])
        reader = spill.read()
        assert next(reader).st02 == "0001"
        spill.write([_set(3)])  # written while a reader is part way
        second = [r.st02 for r in spill.read()]  # a second reader from the start
        assert [r.st02 for r in reader] == ["0002", "0003"]
        assert second == ["0001", "0002", "0003"]
        spill.close()
        with pytest.raises(ValueError, match="closed"):
            list(spill.read())

    def test_the_file_is_private(self, tmp_path):
        spill = FileSpill(tmp_path)
        fd = spill._open().fileno()
        assert os.stat(fd).st_mode & 0o077 == 0
        spill.close()


def _many_sets(count: int, seed: int = 7) -> bytes:
    out = io.BytesIO()
    write_834(out, count, seed=seed, sets=count)
    return out.getvalue()


def test_memory_does_not_grow_with_the_number_of_sets(tmp_path, monkeypatch):
    """Validating and building the 999: tracemalloc's peak for 1,200 one-member sets is within
    150 KB of 300's once results spill; kept in memory, it grows by about 600 bytes a set (so
    the check can see growth). The 999's own bytes, which grow with the sets, are left out."""
    monkeypatch.setattr(setlist, "KEEP", 100)
    small, large = _many_sets(300), _many_sets(1_200)

    def peak(data: bytes, spill: setlist.SpillFactory | None) -> int:
        tracemalloc.start()
        try:
            chunks = (data[i : i + 65_536] for i in range(0, len(data), 65_536))
            (result,) = validate_stream(chunks, ValidationOptions(spill=spill))
            assert isinstance(result, InterchangeResult)
            ack = build_999(result, control_number=1, now=NOW)
            result.close()
            return tracemalloc.get_traced_memory()[1] - len(ack)
        finally:
            tracemalloc.stop()

    spill = spill_to(tmp_path)
    peak(_many_sets(3), None)  # the checkers' tables load once, on first use
    kept_growth = peak(large, None) - peak(small, None)
    spilled_growth = peak(large, spill) - peak(small, spill)
    assert kept_growth > 400_000, kept_growth
    assert spilled_growth < 150_000, spilled_growth
    assert os.listdir(tmp_path) == []


def _damaged(count: int) -> bytes:
    """Many sets, some with findings (a bad INS03, a reused ST02, a bad date) and some fine."""
    data = _many_sets(count, seed=3)
    data = data.replace(b"ST*834*0004*", b"ST*834*0003*")
    data = data.replace(b"INS*Y*18*021", b"INS*Y*18*0X1", 4)
    return re.sub(rb"(DMG\*D8\*)19(\d\d)", rb"\g<1>XX\2", data, count=5)


def _stored(tmp: Path, data: bytes) -> tuple[list[tuple], list[tuple], list[bytes]]:
    """What the worker stores for `data`: its sets, its findings (with their set's ST02) and
    its 999's AK1..AK9 lines (the envelope carries the time)."""
    with contextlib.closing(Gateway.open(Settings(data_dir=tmp, validation_processes=1))) as gw:
        upgrade(gw.settings.sqlalchemy_url)
        _receipt(gw, add_va(gw), data)
        assert Worker(gw).run_once()
        with gw.reads() as s:
            sets = s.execute(
                select(
                    TransactionSet.seq,
                    TransactionSet.st02,
                    TransactionSet.ack_code,
                    TransactionSet.error_codes,
                    TransactionSet.member_count,
                    TransactionSet.accepted,
                    TransactionSet.gate,
                ).order_by(TransactionSet.seq)
            ).all()
            findings = s.execute(
                select(
                    Finding.seq,
                    TransactionSet.st02,
                    Finding.code,
                    Finding.segment_position,
                    Finding.business_unit,
                )
                .outerjoin(TransactionSet, TransactionSet.id == Finding.set_id)
                .order_by(Finding.seq)
            ).all()
            (content,) = s.scalars(select(Ack.content).where(Ack.kind == "999")).all()
        assert os.listdir(gw.blobs.tmp_dir) == []  # the spill is gone with the results
    body = [line for line in content.split(b"~") if line[:2] in (b"AK", b"IK", b"CT", b"SE")]
    return [tuple(r) for r in sets], [tuple(r) for r in findings], body


def test_a_file_of_many_sets_is_stored_as_if_kept_whole(tmp_path, monkeypatch):
    data = _damaged(23)
    whole = _stored(tmp_path / "whole", data)
    monkeypatch.setattr(setlist, "KEEP", 3)
    monkeypatch.setattr(acknowledge, "SET_BATCH", 4)
    monkeypatch.setattr(acknowledge, "FINDING_BATCH", 5)
    batched = _stored(tmp_path / "batched", data)
    sets, findings, _ = whole
    assert len(sets) == 23 and len({r[2] for r in sets}) == 2  # accepted and rejected sets
    assert len(findings) > 5 and [f[0] for f in findings] == list(range(len(findings)))
    assert {f[1] for f in findings} >= {"0003"}  # findings sit on their sets
    assert batched == whole


def test_the_dashboard_lists_a_groups_first_sets_and_places_every_finding(tmp_path):
    """A detail page reads a group's first sets, not a million: the rest are counted, and a
    finding on a set past them still names its ST02."""
    from gateway.db.session import unit_of_work
    from gateway.operators import add_operator
    from tests.gateway.test_dashboard_inprocess import PASSWORD, Site, process_all, send

    count = SETS_LISTED + 3
    head, tail = _many_sets(count, seed=11).rsplit(b"INS*Y*18*", 1)
    data = head + b"INS*Y*99*" + tail  # an INS02 the 834 does not allow, in the last set
    settings = Settings(data_dir=tmp_path / "var", worker_enabled=False, validation_processes=1)
    with contextlib.closing(Gateway.open(settings)) as gw:
        upgrade(settings.sqlalchemy_url)
        with unit_of_work(gw.sessions) as s:
            add_operator(s, "alice", PASSWORD, "admin")
        rid = send(gw, add_va(gw), data, "many.834")
        process_all(gw)
        page = Site(gw, {}).client().get(f"/dashboard/interchanges/{rid}")
    assert page.status_code == 200
    assert page.text.count("<br>ST02 ") == SETS_LISTED
    assert 'data-more-sets="3"' in page.text and "3 more sets not listed" in page.text
    last = f"{count:04d}"
    assert f"<br>ST02 {last}:" not in page.text  # not listed among the sets…
    assert f"<dt>ST02</dt><dd>{last}</dd>" in page.text  # …yet its finding says where it is


def test_edi834_validate_json_lists_a_groups_first_sets(tmp_path):
    """`edi834 validate --json` in bounded memory too: the first sets listed, the rest
    counted, every set answered in the 999 it writes."""
    from gateway.offline import ControlNumbers, validate_file

    count = SETS_LISTED + 2
    report = validate_file(
        io.BytesIO(_many_sets(count, seed=4)),
        "many.834",
        tmp_path,
        options=ValidationOptions(spill=spill_to(tmp_path)),
        numbers=ControlNumbers(1),
        now=NOW,
    )
    (group,) = report.interchanges[0]["groups"]
    assert len(group["transaction_sets"]) == SETS_LISTED
    assert group["transaction_sets_omitted"] == 2 and group["sets_received"] == count
    assert (tmp_path / "many.999").read_bytes().count(b"~AK2*") == count


def test_storing_a_group_judges_it_once_not_once_per_set(tmp_path, monkeypatch):
    """The group's AK901 (which reads its sets' totals) asked once per group, not per set: per
    set, a group of a million sets cost a million totals of up to a thousand kept results."""
    calls = 0
    totals = setlist.SetList.totals

    def counted(self: setlist.SetList) -> setlist.Totals:
        nonlocal calls
        calls += 1
        return totals(self)

    monkeypatch.setattr(setlist.SetList, "totals", counted)
    _stored(tmp_path, _many_sets(60, seed=2))
    assert 0 < calls < 20, calls
