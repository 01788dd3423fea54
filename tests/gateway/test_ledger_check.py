"""`edi834 ledger check` on a database an older version wrote: members applied from a
TA1-rejected interchange and from a test interchange are found (and migration 0007 records the
gate's decision for those sets); a clean database prints nothing."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from typing import Any

import pytest
from alembic import command
from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    create_engine,
    insert,
    select,
    text,
)

from gateway.db.migrate import alembic_config
from tests.gateway.harness import EDI834

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _filler(column: Any) -> Any:
    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer):
        return 0
    if isinstance(kind, DateTime):
        return NOW.replace(tzinfo=None)
    if isinstance(kind, Date):
        return NOW.date()
    if isinstance(kind, LargeBinary):
        return b""
    if isinstance(kind, String | Text):
        return ""
    raise AssertionError(f"no filler for {column}")


def add(conn: Any, meta: MetaData, table: str, **values: Any) -> Any:
    t = meta.tables[table]
    row = {
        c.name: _filler(c)
        for c in t.columns
        if not c.nullable and c.server_default is None and not c.primary_key
    }
    row.update(values)
    pk = next(iter(t.primary_key.columns))
    result = conn.execute(insert(t).values(**row).returning(pk))
    return result.scalar_one()


def _old_file(conn, meta, partner: int, rid: str, *, ta1: str, usage: str, key: str) -> None:
    """What an older version stored for a one-set file it applied: receipt, envelope, group,
    set, one applied member event and its core outbox row."""
    add(conn, meta, "receipts", id=rid, partner_id=partner, channel="http", sha256=rid * 2,
        size=1, blob_path=f"x/{rid}", status="processed", outcome="accepted",
        ledger_status="applied")  # fmt: skip
    env = add(conn, meta, "envelopes", receipt_id=rid, seq=0, offset=0, isa13=f"9{rid[:8]}",
              sender_qualifier="ZZ", sender_id="VA0FFM", receiver_qualifier="ZZ",
              receiver_id="EDI834GATEWAY", isa09="261101", isa10="1200", usage=usage,
              ta1_code=ta1, ta1_note="006" if ta1 == "R" else "000",
              outcome="accepted")  # fmt: skip
    group = add(conn, meta, "groups", envelope_id=env, receipt_id=rid, seq=0, gs01="BE",
                gs06="1", gs08="005010X220A1", ack_code="A", sets_included=1, sets_received=1,
                sets_accepted=1)  # fmt: skip
    add(conn, meta, "transaction_sets", group_id=group, receipt_id=rid, seq=0, st01="834",
        st02="0001", st03="005010X220A1", ack_code="A", member_count=1, segment_count=10,
        accepted=True)  # fmt: skip
    event = add(conn, meta, "member_events", partner_id=partner, receipt_id=rid, seq=0,
                envelope_seq=0, group_seq=0, set_seq=0, isa13="9", gs06="1", st02="0001",
                segment_position=5, member_key=key, subscriber=True, relationship_code="18",
                maintenance_type="021", maintenance_reason="EC", outcome="applied",
                payload="{}")  # fmt: skip
    add(conn, meta, "core_outbox", event_id=event, partner_id=partner, idempotency_key=key * 4,
        payload="{}")  # fmt: skip


def _database_at(tmp_path: Any, database_url: str, revision: str) -> tuple[str, Any, MetaData]:
    """A database migrated up to `revision` (as an older version left it), and its tables."""
    url = database_url or f"sqlite:///{tmp_path / 'var' / 'edi834.sqlite3'}"
    (tmp_path / "var").mkdir()
    command.upgrade(alembic_config(url), revision)
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    return url, engine, meta


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_an_older_databases_leaks_are_listed_and_a_clean_one_prints_nothing(
    tmp_path, database_url
) -> None:
    url, engine, meta = _database_at(tmp_path, database_url, "0006")
    with engine.begin() as conn:
        partner = add(conn, meta, "partners", name="va", isa_qualifier="ZZ", isa_id="VA0FFM",
                      api_key_hash="h" * 64, enabled=True)  # fmt: skip
        _old_file(conn, meta, partner, "a" * 32, ta1="A", usage="P", key="GOOD1")
        _old_file(conn, meta, partner, "b" * 32, ta1="R", usage="P", key="LEAKTA1")
        _old_file(conn, meta, partner, "c" * 32, ta1="A", usage="T", key="LEAKTEST")
    command.upgrade(alembic_config(url), "head")
    env = {"EDI834_DATA_DIR": str(tmp_path / "var"), "EDI834_DATABASE_URL": database_url}

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(EDI834), "ledger", "check"], env=env, capture_output=True, text=True, timeout=60
        )

    found = check()
    assert found.returncode == 1, found.stderr
    lines = found.stdout.splitlines()
    assert len(lines) == 2, lines
    assert any("b" * 32 in line and "interchange rejected (TA1 006)" in line for line in lines)
    assert any("c" * 32 in line and "test interchange (ISA15 T)" in line for line in lines)
    assert all("1 members applied, 1 core events (0 delivered)" in line for line in lines)

    # Once an operator has reversed them, the check is silent.
    meta = MetaData()
    meta.reflect(engine)
    events = meta.tables["member_events"]
    with engine.begin() as conn:
        conn.execute(
            events.update()
            .where(events.c.receipt_id.in_(["b" * 32, "c" * 32]))
            .values(outcome="not_applied")
        )
    clean = check()
    assert (clean.returncode, clean.stdout) == (0, ""), clean.stderr

    # The migration recorded the gate's decision for every set it found.
    sets = meta.tables["transaction_sets"]
    with engine.connect() as conn:
        gates = dict(conn.execute(select(sets.c.receipt_id, sets.c.gate)).all())
    engine.dispose()
    assert gates == {"a" * 32: "apply", "b" * 32: "not_applied", "c" * 32: "not_applied"}


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migration_0016_rewrites_dependent_keys_that_held_member_data(tmp_path, database_url):
    """Keys an older version gave dependents without REF*17 (`SUB/34` + SSN, `SUB/LAST|FIRST|
    DOB`) become `dependent_key`'s, in members, events and reconciliation items alike, so the
    next file finds the same member; a subscriber's key and a sender's REF*17 with a `/` in
    it are left alone."""
    from gateway.enrollment.keys import dependent_key

    url, engine, meta = _database_at(tmp_path, database_url, "0015")
    old_keys = {  # stored key -> (subscriber?, subscriber number, the key it must become)
        "0001/34512849302": (False, "0001", dependent_key("0001", "34512849302")),
        "0001/KIM|ANA|20100101": (False, "0001", dependent_key("0001", "KIM|ANA|20100101")),
        "0001": (True, "0001", "0001"),
        "EX/123": (False, "0001", "EX/123"),  # REF*17 as the exchange sent it
    }
    with engine.begin() as conn:
        partner = add(conn, meta, "partners", name="va", isa_qualifier="ZZ", isa_id="VA0FFM",
                      api_key_hash="h" * 64, enabled=True)  # fmt: skip
        rid = "d" * 32
        add(conn, meta, "receipts", id=rid, partner_id=partner, channel="http", sha256=rid * 2,
            size=1, blob_path=f"x/{rid}", status="processed", outcome="accepted",
            ledger_status="applied")  # fmt: skip
        rec = add(conn, meta, "reconciliations", receipt_id=rid, partner_id=partner)
        for seq, (key, (sub, number, _)) in enumerate(old_keys.items()):
            add(conn, meta, "ledger_members", partner_id=partner, member_key=key,
                subscriber_number=number, subscriber=sub, relationship_code="19",
                status="active")  # fmt: skip
            add(conn, meta, "member_events", partner_id=partner, receipt_id=rid, seq=seq,
                segment_position=seq, member_key=key, subscriber=sub,
                subscriber_number=number, relationship_code="19", maintenance_type="021",
                outcome="applied",
                payload="{}")  # fmt: skip
            add(conn, meta, "reconciliation_items", reconciliation_id=rec, seq=seq,
                kind="mismatch", member_key=key)  # fmt: skip
    command.upgrade(alembic_config(url), "head")
    expected = sorted(new for _, _, new in old_keys.values())
    with engine.connect() as conn:
        for table in ("ledger_members", "member_events", "reconciliation_items"):
            keys = sorted(conn.execute(select(meta.tables[table].c.member_key)).scalars())
            assert keys == expected, table
    engine.dispose()


def _a_subscriber(conn: Any, meta: MetaData) -> Any:
    """Partner va and one active subscriber of it, 0001, as an older version stored them; the
    member's id."""
    partner = add(conn, meta, "partners", name="va", isa_qualifier="ZZ", isa_id="VA0FFM",
                  api_key_hash="h" * 64, enabled=True)  # fmt: skip
    return add(conn, meta, "ledger_members", partner_id=partner, member_key="0001",
               subscriber_number="0001", subscriber=True, relationship_code="18",
               status="active")  # fmt: skip


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migration_0018_keeps_the_end_of_enrollments_in_force(tmp_path, database_url):
    """An enrollment in force takes its end as the one a reinstatement restores; one already
    ended does not (what it had before is not known)."""
    url, engine, meta = _database_at(tmp_path, database_url, "0017")
    ends = {"initial": "2027-12-31", "effectuated": "2027-12-31", "terminated": "2027-03-31"}
    with engine.begin() as conn:
        member = _a_subscriber(conn, meta)
        for status, end in ends.items():
            add(conn, meta, "ledger_coverages", member_id=member, insurance_line="HLT",
                policy_number=status, plan_year=2027, status=status,
                benefit_end=dt.date.fromisoformat(end))  # fmt: skip
    command.upgrade(alembic_config(url), "head")
    engine.dispose()
    engine = create_engine(url)
    with engine.connect() as conn:
        got = dict(
            conn.execute(text("SELECT policy_number, scheduled_end FROM ledger_coverages")).all()
        )
    engine.dispose()
    assert {k: str(v) if v else None for k, v in got.items()} == {
        "initial": "2027-12-31",
        "effectuated": "2027-12-31",
        "terminated": None,
    }


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_an_identity_overlap_severity_set_before_the_split_covers_other_senders_too(
    tmp_path, database_url
) -> None:
    """Migration 0019: a partner that set identity-overlap (e.g. to reject) meant the same
    person through another sender too, which is now identity-overlap-elsewhere: it takes the
    same severity, so nothing rejected before the upgrade is applied after it. One that set
    neither, or both, is left as it is."""
    url, engine, meta = _database_at(tmp_path, database_url, "0018")
    stored = {
        "va": json.dumps({"identity-overlap": "reject", "premium-gap": "warn"}),
        "md": json.dumps({"identity-overlap": "ignore", "identity-overlap-elsewhere": "warn"}),
        "nj": "",
    }
    with engine.begin() as conn:
        for name, severities in stored.items():
            add(conn, meta, "partners", name=name, isa_qualifier="ZZ", isa_id=name.upper(),
                api_key_hash=name * 32, enabled=True, rule_severities=severities)  # fmt: skip
    command.upgrade(alembic_config(url), "head")
    with engine.connect() as conn:
        got = dict(conn.execute(text("SELECT name, rule_severities FROM partners")).all())
    engine.dispose()
    assert json.loads(got["va"]) == {
        "identity-overlap": "reject",
        "identity-overlap-elsewhere": "reject",
        "premium-gap": "warn",
    }
    assert json.loads(got["md"]) == json.loads(stored["md"])
    assert got["nj"] == ""


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migration_0020_numbers_stints_and_keeps_every_period(tmp_path, database_url) -> None:
    """Migration 0020 adds an enrollment's stint to its unique key. On SQLite that rebuilds
    `ledger_coverages`, whose periods (ON DELETE CASCADE) would go with the old table: every
    period is still there after it, and a second stint of the same plan year can be stored."""
    url, engine, meta = _database_at(tmp_path, database_url, "0019")
    with engine.begin() as conn:
        member = _a_subscriber(conn, meta)
        for year in (2027, 2028):
            cov = add(conn, meta, "ledger_coverages", member_id=member, insurance_line="HLT",
                      policy_number="P1", plan_year=year, status="terminated",
                      premium="300.00")  # fmt: skip
            for month in (1, 6):
                add(conn, meta, "ledger_periods", coverage_id=cov,
                    begin=dt.date(year, month, 1), plan_id="X", coverage_level="IND",
                    premium=f"{month}00.00", aptc="", csr_amount="", rating_area="",
                    created_at=dt.datetime(2026, 12, 7, tzinfo=dt.UTC))  # fmt: skip
    engine.dispose()
    command.upgrade(alembic_config(url), "head")
    engine = create_engine(url)
    with engine.begin() as conn:
        periods = conn.execute(
            text(
                "SELECT c.plan_year, c.stint, p.begin, p.premium FROM ledger_periods p "
                "JOIN ledger_coverages c ON c.id = p.coverage_id ORDER BY p.begin"
            )
        ).all()
        conn.execute(
            text(
                "INSERT INTO ledger_coverages (member_id, insurance_line, policy_number, "
                "plan_year, stint, plan_id, coverage_level, status, effectuated, premium, "
                "aptc, csr_amount, rating_area) VALUES (:m, 'HLT', 'P1', 2027, 1, '', '', "
                "'initial', false, '', '', '', '')"
            ),
            {"m": member},
        )
    engine.dispose()
    assert [(y, n, str(b), p) for y, n, b, p in periods] == [
        (2027, 0, "2027-01-01", "100.00"),
        (2027, 0, "2027-06-01", "600.00"),
        (2028, 0, "2028-01-01", "100.00"),
        (2028, 0, "2028-06-01", "600.00"),
    ]
