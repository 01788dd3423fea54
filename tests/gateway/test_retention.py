"""Retention (`edi834 purge`, gateway.services.retention): files received before a horizon and
finished with lose their bytes and the member data kept from them; the audit trail and the
ledger stay; files not finished with are left alone; a crash between marking and deleting
leaves nothing behind at the next run. On SQLite and PostgreSQL, then once through the real
server: the partner API, the dashboard and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import Base
from gateway.db.models import (
    Ack,
    AckKind,
    Finding,
    LedgerMember,
    MemberEventRow,
    Receipt,
    ReceiptEvent,
)
from gateway.db.session import unit_of_work
from gateway.enrollment.delivery import deliver_core
from gateway.services import retention
from gateway.worker import outbox
from gateway.worker.run import Worker
from tests.conftest import SAMPLES
from tests.gateway.harness import (
    OPERATOR_PASSWORD,
    add_va,
    in_process_gateway,
    login,
    submit,
    wait_final,
    wait_ledger,
)
from tests.gateway.test_worker import _receipt

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()  # applied to the ledger
BAD = (SAMPLES / "bad_ik403_8_dmg02_date.834").read_bytes()  # 999 R: IK4 quotes DMG02
# Member data of BAD (rejected: never in the ledger): its name, SSN and the bad birth date.
BAD_PHI = ("ODUYA", "915830264", "19801345")
TOMORROW = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


@pytest.fixture
def gw(tmp_path, database_url):
    yield from in_process_gateway(tmp_path / "var", database_url, core_export_dir=tmp_path / "core")


def _process(gw: Gateway, *, core: bool = True) -> None:
    worker = Worker(gw)
    while worker.run_once():
        pass
    while worker.apply_ledger_once():
        pass
    outbox.deliver_acks(gw)
    if core:
        while deliver_core(gw, None):
            pass


def _age(gw: Gateway, hours: float = 2) -> None:
    """Every stored blob written `hours` ago (a purge never deletes one written in the last
    hour: the same bytes may be on their way to a new receipt)."""
    then = time.time() - hours * 3600
    for path in gw.blobs.root.rglob("*"):
        if path.is_file() and path.parent != gw.blobs.tmp_dir:
            os.utime(path, (then, then))


def _all_text(gw: Gateway) -> str:
    """Every row of every table, as text: where member data could still be in the database."""
    out: list[str] = []
    with gw.reads() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)):
                out.append(repr(tuple(row)))
    return "\n".join(out)


def test_purge_removes_member_data_and_keeps_the_audit_trail(gw):
    pid = add_va(gw)
    good, bad = _receipt(gw, pid, GOOD), _receipt(gw, pid, BAD)
    _process(gw, core=False)
    outbound = gw.outbound_dir("va")
    assert len(list(outbound.glob("*.999"))) == 2
    assert any(p in _all_text(gw) for p in BAD_PHI)

    # Not yet finished with: GOOD's core events are not delivered. A dry run changes nothing.
    report = retention.purge(gw, TOMORROW, apply=False, operator="test")
    assert (report.files, report.unfinished) == (1, 1)
    # Nothing received before the horizon: nothing to do.
    early = retention.purge(gw, TOMORROW - dt.timedelta(days=2), apply=True, operator="test")
    assert (early.files, early.unfinished) == (0, 0)
    with gw.reads() as s:
        assert all(r.purged_at is None for r in s.scalars(select(Receipt)))
        assert all(gw.blobs.path(r.blob_path).exists() for r in s.scalars(select(Receipt)))

    while deliver_core(gw, None):
        pass
    _age(gw)
    with gw.reads() as s:
        members_before = s.scalar(select(LedgerMember.id).limit(1))
        blob_paths = {r.blob_path for r in s.scalars(select(Receipt))}
    report = retention.purge(gw, TOMORROW, apply=True, operator="alice")
    assert (report.files, report.unfinished) == (2, 0)
    assert report.bytes == len(GOOD) + len(BAD)
    assert report.member_events > 0
    assert report.blobs_removed == 2
    assert report.outbound_removed == 2
    for path in blob_paths:
        assert not gw.blobs.path(path).exists()
    assert not list(outbound.glob("*.999"))

    text = _all_text(gw)
    for phi in BAD_PHI:
        assert phi not in text, phi
    with gw.reads() as s:
        events = list(s.scalars(select(MemberEventRow)))
        # BAD's member never reached the ledger: its ids went; GOOD's stay with the ledger's.
        assert {e.member_key for e in events if e.receipt_id == bad} == {""}
        assert all(e.member_key and e.member_id for e in events if e.receipt_id == good)
        assert "0004931685" not in text  # BAD's subscriber number (REF*0F)
    with gw.reads() as s:
        receipts = {r.id: r for r in s.scalars(select(Receipt))}
        assert all(r.purged_at is not None for r in receipts.values())
        # The audit trail: outcome, counts, finding codes and positions, the TA1, the ledger.
        assert receipts[bad].outcome == "rejected" and receipts[good].members_applied > 0
        findings = list(s.scalars(select(Finding).where(Finding.receipt_id == bad)))
        assert [(f.family, f.code) for f in findings if f.family == "IK403"] == [("IK403", "8")]
        assert all(f.bad_value is None for f in findings)
        acks = {(a.receipt_id, a.kind): a for a in s.scalars(select(Ack))}
        assert acks[(bad, AckKind.X999)].content == b""
        assert acks[(bad, AckKind.TA1)].content.startswith(b"ISA")
        assert s.scalar(select(LedgerMember.id).limit(1)) == members_before
        assert {e.receipt_id for e in s.scalars(select(ReceiptEvent)) if e.event == "purged"} == {
            good,
            bad,
        }
        entries = repo.audit_entries(s, repo.AuditFilter(action="purge"))
        assert {(e.entry.operator, e.entry.receipt_id) for e in entries} == {
            ("alice", good),
            ("alice", bad),
        }
    # A purged file is not reprocessed (its bytes are gone).
    with unit_of_work(gw.sessions) as s:
        assert repo.reprocess(s, bad, "alice") is None
    # Again: nothing left to do.
    again = retention.purge(gw, TOMORROW, apply=True, operator="alice")
    assert (again.files, again.blobs_removed, again.outbound_removed) == (0, 0, 0)
    # The same bytes sent again later are a new file (the old receipt no longer claims them).
    assert _receipt(gw, pid, BAD) not in receipts


def test_a_blob_shared_with_a_file_kept_stays(gw):
    """Identical bytes from two partners are one blob: purging one partner's file keeps it."""
    pid = add_va(gw)
    with unit_of_work(gw.sessions) as s:
        from gateway.partners import add_partner

        other, _ = add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0SBE")
        other_id = other.id
    mine, theirs = _receipt(gw, pid, BAD), _receipt(gw, other_id, BAD)
    _process(gw)
    _age(gw)
    report = retention.purge(gw, TOMORROW, apply=True, operator="t", partner_id=pid)
    assert (report.files, report.blobs_removed) == (1, 0)
    with gw.reads() as s:
        kept = s.get(Receipt, theirs)
        assert kept is not None and kept.purged_at is None
        assert gw.blobs.path(kept.blob_path).exists()
        gone = s.get(Receipt, mine)
        assert gone is not None and gone.purged_at is not None
    report = retention.purge(gw, TOMORROW, apply=True, operator="t")
    assert (report.files, report.blobs_removed) == (1, 1)
    assert not gw.blobs.path(kept.blob_path).exists()


def test_a_crash_after_marking_leaves_nothing_behind_at_the_next_run(gw, monkeypatch):
    pid = add_va(gw)
    rid = _receipt(gw, pid, BAD)
    _process(gw)
    _age(gw)

    def crash(*_: object) -> tuple[int, int, int]:
        raise SystemExit("killed between the commit and the deletes")

    real_sweep = retention.sweep
    monkeypatch.setattr(retention, "sweep", crash)
    with pytest.raises(SystemExit):
        retention.purge(gw, TOMORROW, apply=True, operator="t")
    with gw.reads() as s:
        r = s.get(Receipt, rid)
        assert r is not None and r.purged_at is not None  # recorded first
        blob = gw.blobs.path(r.blob_path)
    assert blob.exists() and list(gw.outbound_dir("va").glob("*.999"))
    monkeypatch.setattr(retention, "sweep", real_sweep)
    report = retention.purge(gw, TOMORROW, apply=True, operator="t")
    assert (report.files, report.blobs_removed, report.outbound_removed) == (0, 1, 1)
    assert not blob.exists() and not list(gw.outbound_dir("va").glob("*.999"))


def test_a_blob_written_recently_or_held_stays_until_it_is_stale(gw):
    """The same bytes received again after the horizon or in the last hour, or held by an SFTP
    upload while the database was away, are not deleted with the purged file that had them."""
    pid = add_va(gw)
    rid = _receipt(gw, pid, BAD)
    _process(gw)
    with gw.reads() as s:
        r = s.get(Receipt, rid)
        assert r is not None
        blob = gw.blobs.path(r.blob_path)
    report = retention.purge(gw, TOMORROW, apply=True, operator="t")
    assert (report.files, report.blobs_removed, report.blobs_left) == (1, 0, 1)  # just written
    assert blob.exists()
    _age(gw)
    held = gw.settings.data_dir / "sftp-held"
    held.mkdir(parents=True, exist_ok=True)
    (held / "n.json").write_text(json.dumps({"rel_path": r.blob_path}))
    assert retention.sweep(gw, TOMORROW)[:2] == (0, 1)
    assert blob.exists()
    (held / "n.json").unlink()
    assert retention.sweep(gw, TOMORROW)[:2] == (1, 0)
    assert not blob.exists()


def test_remove_stale_keeps_a_copy_placed_while_it_deletes(gw, monkeypatch):
    """An upload of the same bytes replacing the blob just before the sweep moves it aside:
    the copy is put back, not deleted. A crash with the blob aside: put back at the next start
    (or sweep), never over a newer copy."""
    import gateway.storage as storage

    pending = gw.blobs.begin()
    pending.write(BAD)
    blob = pending.commit()
    final = gw.blobs.path(blob.rel_path)
    _age(gw)
    real_replace = os.replace

    def upload_first(src, dst):  # the intake's os.replace lands just before the sweep's
        if Path(src) == final:
            again = gw.blobs.begin()
            again.write(BAD)
            again.commit()
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", upload_first)
    assert not gw.blobs.remove_stale(blob.rel_path, time.time() - 60)
    monkeypatch.setattr(storage.os, "replace", real_replace)
    assert final.read_bytes() == BAD
    assert not list(gw.blobs.tmp_dir.glob("*" + storage.ASIDE))
    # Stale: deleted.
    _age(gw)
    assert gw.blobs.remove_stale(blob.rel_path, time.time() - 60)
    assert not final.exists()
    # A crash left one aside: put back; one aside beside a newer copy is dropped.
    aside = gw.blobs.tmp_dir / (final.name + storage.ASIDE)
    aside.write_bytes(BAD)
    assert gw.blobs.restore_aside() == 1
    assert final.read_bytes() == BAD and not aside.exists()
    aside.write_bytes(b"older")
    assert gw.blobs.restore_aside() == 1
    assert final.read_bytes() == BAD and not aside.exists()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_purged_files_through_the_server_the_api_the_dashboard_and_the_cli(gateway, tmp_path):
    key = gateway.add_partner("va", "VA0FFM")
    gateway.add_operator("alice", OPERATOR_PASSWORD, "admin")
    gateway.start(EDI834_CORE_EXPORT_DIR=str(tmp_path / "core"))
    with gateway.client(key) as api:
        good = submit(api, GOOD, "good.834").json()["id"]
        bad = submit(api, BAD, "bad.834").json()["id"]
        wait_final(api, bad)
        wait_ledger(api, good)
        assert api.get(f"/v1/interchanges/{bad}/acks/999").status_code == 200
    before = dt.datetime.now(dt.UTC).isoformat()  # everything received so far
    dry = gateway.cli("purge", "--before", before)
    assert dry.stdout.startswith("would purge ")
    future = gateway.cli("purge", "--before", TOMORROW.date().isoformat(), check=False)
    assert future.returncode == 2 and "future" in future.stderr
    for _ in range(100):  # the core export and the acks' delivery run in the server
        report = json.loads(gateway.cli("purge", "--before", before, "--json").stdout)
        if report["files"] == 2:
            break
    assert report == {**report, "files": 2, "unfinished": 0, "applied": False}, report
    for path in (gateway.data_dir / "blobs").rglob("*"):  # received two hours ago
        if path.is_file():
            os.utime(path, (time.time() - 7200,) * 2)
    done = gateway.cli("purge", "--before", before, "--apply", "--by", "ops:alice")
    assert done.stdout.startswith("purged 2 files"), done.stdout
    assert "removed 2 stored files" in done.stdout

    with gateway.client(key) as api:
        r = api.get(f"/v1/interchanges/{bad}/acks/999")
        assert r.status_code == 410 and r.json()["code"] == "purged"
        assert "ODUYA" not in r.text
        assert api.get(f"/v1/interchanges/{bad}/acks/ta1").status_code == 200
        status = api.get(f"/v1/interchanges/{bad}").json()
        assert status["outcome"] == "rejected"
        codes = [(f["family"], f["code"], f["bad_value"]) for f in status["findings"]]
        assert ("IK403", "8", None) in codes
        assert all(bad_value is None for _, _, bad_value in codes)
    dash, r = login(gateway, "alice")
    page = dash.get(f"/dashboard/interchanges/{bad}")
    assert page.status_code == 200 and 'id="purged"' in page.text
    assert "ODUYA" not in page.text and "/raw" not in page.text
    assert dash.get(f"/dashboard/interchanges/{bad}/raw").status_code == 410
    refused = gateway.cli("file", "reprocess", bad, check=False)
    assert refused.returncode == 1 and "purged" in refused.stderr
