"""The intake's receipt (issue 19): one statement on PostgreSQL, two on SQLite, in Core. On both,
a received file is a whole receipt row (every count at zero, status received) and one
'received' event; the same bytes again are the same receipt, also when sent concurrently; a
partial upload is never a duplicate; with an Idempotency-Key the unit of work records the key
beside the receipt."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.context import Gateway
from gateway.db.models import COUNT_COLUMNS, IdempotencyKey, Receipt, ReceiptEvent, Status
from gateway.errors import IdempotencyKeyReused
from gateway.intake.receive import record_receipt
from gateway.storage import StoredBlob
from tests.gateway.harness import add_va, in_process_gateway


@pytest.fixture
def gw(tmp_path: Path, database_url: str):
    yield from in_process_gateway(tmp_path / "var", database_url)


@pytest.fixture
def partner_id(gw: Gateway) -> int:
    return add_va(gw)


def stored(gw: Gateway, content: bytes) -> StoredBlob:
    pending = gw.blobs.begin()
    pending.write(content)
    return pending.commit()


def events_of(gw: Gateway, receipt_id: str) -> list[tuple[str, str | None]]:
    with gw.reads() as s:
        rows = s.execute(
            select(ReceiptEvent.event, ReceiptEvent.detail).where(
                ReceiptEvent.receipt_id == receipt_id
            )
        ).all()
    return [(e, d) for e, d in rows]


class TestRecordReceipt:
    def test_a_new_file_is_a_whole_receipt_and_one_event(
        self, gw: Gateway, partner_id: int
    ) -> None:
        blob = stored(gw, b"ISA*new file")
        ref, created = record_receipt(
            gw, partner_id=partner_id, blob=blob, channel="http", filename="a.834"
        )
        assert created and ref.status == Status.RECEIVED and ref.sha256 == blob.sha256
        with gw.reads() as s:
            row = s.get(Receipt, ref.id)
            assert row is not None
            assert (row.partner_id, row.channel, row.filename, row.size, row.blob_path) == (
                partner_id, "http", "a.834", blob.size, blob.rel_path
            )  # fmt: skip
            assert row.dedup_sha256 == blob.sha256 and row.status == Status.RECEIVED
            assert row.attempts == 0 and row.received_at.tzinfo is not None
            assert [getattr(row, c) for c in COUNT_COLUMNS] == [0] * len(COUNT_COLUMNS)
            assert (row.members_applied, row.ledger_attempts, row.ledger_progress) == (0, 0, 0)
        assert events_of(gw, ref.id) == [("received", f"http {blob.size} bytes")]

    def test_the_same_bytes_again_are_the_same_receipt(self, gw: Gateway, partner_id: int) -> None:
        first, created = record_receipt(
            gw, partner_id=partner_id, blob=stored(gw, b"ISA*twice"), channel="http", filename=None
        )
        again, created_again = record_receipt(
            gw, partner_id=partner_id, blob=stored(gw, b"ISA*twice"), channel="sftp", filename="b"
        )
        assert created and not created_again
        assert again == first
        # On the original's timeline, the sending again (the operators see it).
        assert events_of(gw, first.id) == [
            ("received", "http 9 bytes"),
            ("received_again", "sftp 9 bytes again (b): not processed again"),
        ]

    def test_concurrent_twins_make_one_receipt(self, gw: Gateway, partner_id: int) -> None:
        blob = stored(gw, b"ISA*concurrent twins")

        def send(_: int) -> tuple[str, bool]:
            ref, created = record_receipt(
                gw, partner_id=partner_id, blob=blob, channel="http", filename=None
            )
            return ref.id, created

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(16)))
        assert len({rid for rid, _ in answers}) == 1
        assert sum(created for _, created in answers) == 1
        with gw.reads() as s:
            assert s.scalar(select(func.count()).select_from(Receipt)) == 1
            events = s.scalars(select(ReceiptEvent.event)).all()
            assert sorted(events) == ["received"] + ["received_again"] * 15

    def test_a_partial_upload_is_never_a_duplicate(self, gw: Gateway, partner_id: int) -> None:
        blob = stored(gw, b"ISA*cut off")
        refs = [
            record_receipt(
                gw, partner_id=partner_id, blob=blob, channel="sftp", filename="c", partial=True
            )
            for _ in range(2)
        ]
        assert [created for _, created in refs] == [True, True]
        assert refs[0][0].id != refs[1][0].id and refs[0][0].status == Status.PARTIAL

    def test_an_idempotency_key_is_recorded_with_its_receipt(
        self, gw: Gateway, partner_id: int
    ) -> None:
        ref, created = record_receipt(
            gw,
            partner_id=partner_id,
            blob=stored(gw, b"ISA*keyed"),
            channel="http",
            filename=None,
            idempotency_key="k-1",
        )
        assert created and events_of(gw, ref.id) == [("received", "http 9 bytes")]
        with gw.reads() as s:
            key = s.get(IdempotencyKey, (partner_id, "k-1"))
            assert key is not None and key.receipt_id == ref.id
        with pytest.raises(IdempotencyKeyReused):
            record_receipt(
                gw,
                partner_id=partner_id,
                blob=stored(gw, b"ISA*other bytes"),
                channel="http",
                filename=None,
                idempotency_key="k-1",
            )
        with gw.reads() as s:
            assert s.scalar(select(func.count()).select_from(Receipt)) == 1
