"""The ledger stage's bulk writes (issue 15): PostgreSQL's COPY writes what an ORM insert of the
same values writes (bind processing, Python-side defaults), ids allocated before the rows are
written are the ids the rows get, and `_one_of` (= ANY(array) on PostgreSQL) selects what IN
does."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from gateway.context import Gateway
from gateway.db.models import LedgerCoverage, LedgerMember, Partner
from gateway.db.session import unit_of_work
from gateway.enrollment import repository as ledger_repo
from gateway.enrollment.identity import Person
from gateway.partners import add_partner
from tests.gateway.harness import add_va, in_process_gateway

COLUMNS = (
    "member_key",
    "subscriber_number",
    "subscriber",
    "relationship_code",
    "last_name",
    "middle_name",
    "birth_date",
    "residence",
    "status",
)


@pytest.fixture
def gw(tmp_path: Path, database_url: str) -> Iterator[Gateway]:
    yield from in_process_gateway(tmp_path / "var", database_url)


@pytest.fixture
def partner(gw: Gateway) -> int:
    return add_va(gw)


def _member(partner: int, n: int, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "partner_id": partner,
        "member_key": f"M{n:05d}",
        "subscriber": n % 3 == 0,
        "relationship_code": "18" if n % 3 == 0 else "19",
        "status": "active",
        "subscriber_number": f"S{n // 3:05d}",
        "last_name": "O'Brien\tTab\\Backslash\nNewline Ñ" if n == 1 else f"LAST{n}",
        "birth_date": dt.date(1980, 1, 1) + dt.timedelta(days=n) if n % 4 else None,
        "residence": '{"city": "Richmond", "null": "\\\\N"}',
    }
    row.update(values)
    return row


def test_bulk_rows_read_back_as_an_orm_insert_of_the_same_values(gw: Gateway, partner: int) -> None:
    before = dt.datetime.now(dt.UTC)
    bulk = [_member(partner, n) for n in range(1, 40)]
    orm = [_member(partner, n, member_key=f"O{n:05d}") for n in range(1, 40)]
    with unit_of_work(gw.sessions) as s:
        ids = ledger_repo.allocate_ids(s, LedgerMember, len(bulk))
        ledger_repo.insert_with_ids(s, LedgerMember, bulk, ids)
        s.add_all(LedgerMember(**row) for row in orm)
    with gw.reads() as s:
        got = {m.member_key: m for m in s.scalars(select(LedgerMember))}
    assert [got[str(r["member_key"])].id for r in bulk] == ids
    for b, o in zip(bulk, orm, strict=True):
        mine, theirs = got[str(b["member_key"])], got[str(o["member_key"])]
        assert [getattr(mine, c) for c in COLUMNS[1:]] == [getattr(theirs, c) for c in COLUMNS[1:]]
        # Python-side defaults filled in (middle_name "", updated_at now, in UTC).
        assert mine.middle_name == "" and mine.last_event_id is None
        assert mine.updated_at is not None and mine.updated_at.tzinfo is not None
        assert before - dt.timedelta(seconds=1) <= mine.updated_at <= dt.datetime.now(dt.UTC)
    assert got["M00001"].last_name == "O'Brien\tTab\\Backslash\nNewline Ñ"
    assert got["M00004"].birth_date is None


def test_allocated_ids_follow_the_ids_already_taken(gw: Gateway, partner: int) -> None:
    with unit_of_work(gw.sessions) as s:
        first = ledger_repo.insert_returning_ids(
            s, LedgerMember, [_member(partner, n) for n in range(5)]
        )
    with unit_of_work(gw.sessions) as s:
        second = ledger_repo.allocate_ids(s, LedgerMember, 3)
        assert ledger_repo.allocate_ids(s, LedgerMember, 0) == []
        ledger_repo.insert_with_ids(
            s, LedgerMember, [_member(partner, n) for n in range(5, 8)], second
        )
        with pytest.raises(ValueError, match="1 rows, 0 ids"):
            ledger_repo.insert_with_ids(s, LedgerMember, [_member(partner, 9)], [])
    assert first == sorted(first) and len(set(first)) == 5
    assert second == list(range(second[0], second[0] + 3)) and second[0] > max(first)


def test_a_loaded_member_has_the_values_written(gw: Gateway, partner: int) -> None:
    """`_load` builds MemberRec positionally: its fields must be id, then MEMBER_COLUMNS."""
    names = [f.name for f in dataclasses.fields(ledger_repo.MemberRec)]
    assert names[: 1 + len(ledger_repo.MEMBER_COLUMNS)] == ["id", *ledger_repo.MEMBER_COLUMNS]
    row = _member(partner, 1, first_name="ADA", id_value="934100001", gender="F")
    with unit_of_work(gw.sessions) as s:
        (member_id,) = ledger_repo.insert_returning_ids(s, LedgerMember, [row])
    with gw.reads() as s:
        (loaded,) = ledger_repo.load_members(s, partner, ["M00001"])
    assert loaded.id == member_id
    assert {k: getattr(loaded, k) for k in row} == row


def test_one_of_selects_what_in_selects(gw: Gateway, partner: int) -> None:
    with unit_of_work(gw.sessions) as s:
        other, _ = add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0FFM")
        ledger_repo.insert_returning_ids(
            s, LedgerMember, [_member(partner, n) for n in range(1, 30)]
        )
        ledger_repo.insert_returning_ids(
            s, LedgerMember, [_member(other.id, n) for n in range(1, 30)]
        )
    keys = {"M00001", "M00007", "M00028", "NOT-THERE"}
    with gw.reads() as s:
        loaded = ledger_repo.load_members(s, partner, keys)
        assert sorted(m.member_key for m in loaded) == ["M00001", "M00007", "M00028"]
        assert {m.partner_id for m in loaded} == {partner}
        assert ledger_repo.load_members(s, partner, []) == []
        assert s.scalar(select(Partner.id).where(Partner.id == partner)) == partner


def test_refresh_statistics_analyzes_the_ledger_tables_on_postgresql(
    gw: Gateway, partner: int
) -> None:
    with unit_of_work(gw.sessions) as s:
        ledger_repo.insert_returning_ids(
            s, LedgerMember, [_member(partner, n) for n in range(1, 50)]
        )
    with unit_of_work(gw.sessions) as s:
        ledger_repo.refresh_statistics(s)
    if gw.engine.dialect.name != "postgresql":
        return  # SQLite: nothing to do (and nothing done: no error)
    with gw.engine.connect() as conn:
        # pg_class.reltuples: -1 until a table is first analyzed (no statistics subsystem lag).
        tuples = dict(
            conn.execute(
                text(
                    "SELECT relname, reltuples FROM pg_class WHERE relname IN "
                    "('ledger_members', 'ledger_coverages', 'ledger_periods', 'member_events')"
                )
            ).all()
        )
        # Statistics for the columns the chunk's look-ups read, not for the rest (names,
        # addresses, payloads: the costly part of analyzing whole tables).
        analyzed = set(
            conn.execute(
                text("SELECT attname FROM pg_stats WHERE tablename = 'ledger_members'")
            ).scalars()
        )
    assert tuples == {
        "ledger_members": 49,
        "ledger_coverages": 0,
        "ledger_periods": 0,
        "member_events": 0,
    }
    assert {"partner_id", "member_key", "status", "birth_date", "id_value"} <= analyzed
    assert not {"first_name", "residence", "reporting"} & analyzed, analyzed


def test_holdings_finds_the_same_person_by_ssn_or_by_name_and_no_one_else(
    gw: Gateway, partner: int
) -> None:
    """The identity look-up (PostgreSQL: semi-joins on (birth, SSN) and (birth, last name)
    pairs; SQLite: IN lists) returns every enrollment in force that could be the same person."""
    born, other_day = dt.date(1985, 3, 4), dt.date(1985, 3, 5)
    stored = [  # (key, SSN qualifier, SSN, last, first, birth, status of the coverage)
        ("WITH-SSN", "34", "934100001", "DOE", "JANE", born, "effectuated"),
        ("NO-SSN", "", "", "ROE", "JO", born, "initial"),
        ("SAME-NAME-OTHER-SSN", "34", "934100099", "ROE", "JO", born, "active"),
        ("TERMINATED", "34", "934100002", "POE", "AL", born, "terminated"),
        ("OTHER-DAY", "34", "934100003", "DOE", "JANE", other_day, "active"),
    ]
    rows = [
        _member(
            partner,
            n,
            member_key=key,
            id_qualifier=qual,
            id_value=ssn,
            last_name=last,
            first_name=first,
            birth_date=birth,
        )
        for n, (key, qual, ssn, last, first, birth, _) in enumerate(stored)
    ]
    with unit_of_work(gw.sessions) as s:
        ids = ledger_repo.insert_returning_ids(s, LedgerMember, rows)
        ledger_repo.insert_rows(
            s,
            LedgerCoverage,
            [
                {"member_id": i, "insurance_line": "HLT", "policy_number": f"P{n}", "status": st}
                for n, (i, (*_, st)) in enumerate(zip(ids, stored, strict=True))
            ],
        )

    def found(*people: Person) -> set[str]:
        with gw.reads() as s:
            return {h.member_key for _, h in ledger_repo.holdings(s, people)}

    jane = Person("934100001", "DOE|JANE", born)
    assert found(jane) == {"WITH-SSN"}  # OTHER-DAY shares the name, not the birth date
    assert found(Person("934100001", "SMITH|JANE", born)) == {"WITH-SSN"}  # SSN, new name
    # Name-only people match by name; the SQL may return more (same last name), same_as decides.
    jo = Person("", "ROE|JO", born)
    assert {"NO-SSN", "SAME-NAME-OTHER-SSN"} <= found(jo)
    assert found(Person("934100002", "POE|AL", born)) == set()  # terminated: not in force
    assert found(jane, jo) >= {"WITH-SSN", "NO-SSN"}
    assert found(Person("934100077", "ZED|ZED", born)) == set()


def test_member_payloads_are_compressed_with_lz4_on_postgresql(gw: Gateway) -> None:
    """Migration 0012: the two payload columns written for every member use lz4 (the server
    here is Debian's, built with it); other text columns keep the default."""
    if gw.engine.dialect.name != "postgresql":
        return  # SQLite: nothing to do
    with gw.engine.connect() as conn:
        compression = dict(
            conn.execute(
                text(
                    "SELECT c.relname || '.' || a.attname, a.attcompression FROM pg_attribute a"
                    " JOIN pg_class c ON c.oid = a.attrelid WHERE a.attname = 'payload'"
                    " AND c.relname IN ('member_events', 'core_outbox', 'webhook_deliveries')"
                )
            ).all()
        )
    assert compression == {
        "member_events.payload": "l",
        "core_outbox.payload": "l",
        "webhook_deliveries.payload": "",
    }
