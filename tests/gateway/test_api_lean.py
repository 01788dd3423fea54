"""The status API's answers built from Core rows and encoded once (issue 19) are the answers the
response models give: for files of every shape (several interchanges, groups and sets, 999
rejections, a TA1 rejection, an unusable file, a failed one), on SQLite and PostgreSQL, each
body a real `edi834 serve` sends is byte for byte what pydantic makes of the same data read
through the ORM (the mapping these routes used before); and the list's pages from its fast path
(a remembered key, gateway.api.lean) are those same answers."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from starlette.requests import Request

from gateway.api.app import create_app
from gateway.api.deps import base_url_of
from gateway.api.interchanges import FAILED, FILE_REMEDY
from gateway.api.schemas import (
    Counts,
    EnvelopeOut,
    FindingOut,
    GroupOut,
    InterchangeDetail,
    InterchangePage,
    InterchangeSummary,
    TransactionSetOut,
    from_row,
)
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.models import Finding, Interchange, Receipt, Status
from gateway.gate import interchange_acknowledged
from gateway.settings import Settings
from tests.benchmarks.generate_834 import write_834
from tests.conftest import SAMPLES
from tests.gateway.harness import GatewayProcess, submit, wait_ledger
from validators.issues import meaning, remedy
from validators.setlist import SETS_LISTED

SEEDS = (
    "good_exchange_new_enrollment.834",
    "good_multi_interchange.834",
    "good_multi_group.834",
    "good_multi_set_one_group.834",
    "bad_ak901_p_one_of_three.834",
    "bad_ik403_8_dmg02_date.834",
    "bad_ik502_4_se01_count.834",
    "bad_ta1_005_sender_qualifier.834",
    "many_sets.834",  # generated: more sets than a status read lists, one in error past them
    "unusable_csv_roster.834",
)


def many_sets() -> bytes:
    count = SETS_LISTED + 5
    out = io.BytesIO()
    write_834(out, count, seed=5, sets=count)
    last = out.getvalue().rsplit(b"INS*Y*18*", 1)
    return last[0] + b"INS*Y*99*" + last[1]  # an INS02 the 834 does not allow, in the last set


def seed_bytes(name: str) -> bytes:
    return many_sets() if name == "many_sets.834" else (SAMPLES / name).read_bytes()


@dataclass
class Seeded:
    gateway: GatewayProcess
    db: Gateway
    api_key: str
    partner_id: int
    ids: list[str]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Seeded]:
    data_dir = tmp_path_factory.mktemp("lean") / "var"
    gw = GatewayProcess(data_dir=data_dir, database_url=module_database_url)
    key = gw.add_partner("va", "VA0FFM")
    gw.start(EDI834_API_KEY_CACHE_SECONDS="0")
    db = Gateway.open(Settings(data_dir=data_dir, database_url=module_database_url))
    try:
        ids = []
        with gw.client(key) as c:
            for name in SEEDS:
                r = submit(c, seed_bytes(name), name)
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            for rid in ids:
                wait_ledger(c, rid)  # and the ledger stage, which updates the receipt too
        with db.sessions.begin() as s:  # one failed file: its answer carries the general error
            s.execute(update(Receipt).where(Receipt.id == ids[0]).values(status=Status.FAILED))
            partner_id = s.scalars(select(Receipt.partner_id).where(Receipt.id == ids[0])).one()
        yield Seeded(gw, db, key, partner_id, ids)
    finally:
        db.close()
        gw.kill()


def expected_detail(db: Gateway, receipt_id: str, base_url: str) -> InterchangeDetail:
    """What the response models say for this receipt, from its ORM rows."""
    with db.reads() as s:
        r = s.get(Receipt, receipt_id)
        assert r is not None
        findings = s.scalars(
            select(Finding).where(Finding.receipt_id == receipt_id).order_by(Finding.seq)
        ).all()
        root = f"{base_url}/v1/interchanges/{r.id}"
        return InterchangeDetail(
            **expected_summary(r).model_dump(),
            interchanges=[expected_envelope(e) for e in r.envelopes],
            findings=expected_findings(r.envelopes, findings),
            findings_total=len(findings),
            error=FAILED if r.status == Status.FAILED else None,
            ledger_status=r.ledger_status,
            members_applied=r.members_applied,
            members_business_rejected=r.members_business_rejected,
            links={
                "self": root,
                "acks": f"{root}/acks",
                "members": f"{root}/members",
                **(
                    {"reconciliation": f"{root}/reconciliation"}
                    if r.ledger_status == "reconciled"
                    else {}
                ),
            },
        )


def expected_summary(r: Receipt) -> InterchangeSummary:
    return from_row(
        InterchangeSummary, r, isa13=[e.isa13 for e in r.envelopes], counts=from_row(Counts, r)
    )


def expected_envelope(e: Interchange) -> EnvelopeOut:
    answered = interchange_acknowledged(e.ta1_code)
    return from_row(
        EnvelopeOut,
        e,
        sender=f"{e.sender_qualifier}:{e.sender_id}",
        receiver=f"{e.receiver_qualifier}:{e.receiver_id}",
        groups=[
            from_row(
                GroupOut,
                g,
                ack=g.ack_code if answered else None,
                sets_accepted=g.sets_accepted if answered else 0,
                transaction_sets=[
                    from_row(
                        TransactionSetOut,
                        t,
                        ack=t.ack_code if answered else None,
                        error_codes=[c for c in t.error_codes.split(",") if c],
                        members=t.member_count,
                        segments=t.segment_count,
                    )
                    for t in g.transaction_sets[:SETS_LISTED]
                ],
                transaction_sets_omitted=max(0, len(g.transaction_sets) - SETS_LISTED),
            )
            for g in e.groups
        ],
    )


def expected_findings(
    envelopes: list[Interchange], findings: Sequence[Finding]
) -> list[FindingOut]:
    isa13_of = {e.id: e.isa13 for e in envelopes}
    gs06_of = {g.id: g.gs06 for e in envelopes for g in e.groups}
    st02_of = {t.id: t.st02 for e in envelopes for g in e.groups for t in g.transaction_sets}
    return [
        from_row(
            FindingOut,
            f,
            meaning=meaning(f.family, f.code) if f.family != "FILE" else f.message,
            remedy=remedy(f.family, f.code) if f.family != "FILE" else FILE_REMEDY,
            isa13=isa13_of.get(f.envelope_id) if f.envelope_id else None,
            gs06=gs06_of.get(f.group_id) if f.group_id else None,
            st02=st02_of.get(f.set_id) if f.set_id else None,
        )
        for f in findings
    ]


class TestStatusRead:
    def test_every_answer_is_the_response_models_own(self, seeded: Seeded) -> None:
        shapes = {
            "findings": 0,
            "envelopes": 0,
            "groups": 0,
            "sets": 0,
            "unanswered": 0,
            "omitted": 0,
        }
        with seeded.gateway.client(seeded.api_key) as c:
            for rid in seeded.ids:
                r = c.get(f"/v1/interchanges/{rid}")
                assert r.status_code == 200
                assert r.headers["content-type"] == "application/json"
                expected = expected_detail(seeded.db, rid, seeded.gateway.url)
                assert r.content == expected.model_dump_json().encode(), rid
                shapes["findings"] = max(shapes["findings"], len(expected.findings))
                shapes["envelopes"] = max(shapes["envelopes"], len(expected.interchanges))
                for e in expected.interchanges:
                    shapes["groups"] = max(shapes["groups"], len(e.groups))
                    for g in e.groups:
                        shapes["sets"] = max(shapes["sets"], len(g.transaction_sets))
                        shapes["unanswered"] += g.ack is None
                        shapes["omitted"] = max(shapes["omitted"], g.transaction_sets_omitted)
        # The seeds did reach every branch: several of each level, findings, a TA1 rejection.
        assert shapes["envelopes"] > 1 and shapes["groups"] > 1 and shapes["sets"] > 1
        assert shapes["findings"] > 0 and shapes["unanswered"] > 0
        assert shapes["sets"] == SETS_LISTED and shapes["omitted"] == 5

    def test_the_failed_and_the_unusable_files(self, seeded: Seeded) -> None:
        with seeded.gateway.client(seeded.api_key) as c:
            failed = c.get(f"/v1/interchanges/{seeded.ids[0]}").json()
            unusable = c.get(f"/v1/interchanges/{seeded.ids[-1]}").json()
        assert failed["status"] == "failed" and failed["error"] == FAILED
        assert unusable["interchanges"] == [] and unusable["findings"][0]["family"] == "FILE"

    def test_links_start_with_the_requests_own_host(self, seeded: Seeded) -> None:
        with httpx.Client(base_url=seeded.gateway.url, headers=_auth(seeded)) as c:
            r = c.get(f"/v1/interchanges/{seeded.ids[1]}", headers={"Host": "other.test:81"})
        assert r.json()["links"]["self"] == f"http://other.test:81/v1/interchanges/{seeded.ids[1]}"

    def test_a_count_past_the_first_findings(self, seeded: Seeded) -> None:
        with_findings = seeded.ids[5]  # bad_ik403_8_dmg02_date
        with seeded.db.read_engine.connect() as conn:
            every = repo.receipt_status(conn, with_findings, seeded.partner_id)
            first = repo.receipt_status(conn, with_findings, seeded.partner_id, max_findings=1)
            other = repo.receipt_status(conn, with_findings, seeded.partner_id + 1)
        assert every is not None and first is not None
        assert len(every.findings) >= 1 and len(first.findings) == 1
        assert first.findings_total == every.findings_total == len(every.findings)
        assert other is None  # another partner's id: nothing, as for an id that does not exist

    def test_the_driver_rows_are_cores(self, seeded: Seeded) -> None:
        # PostgreSQL: the status read's selects run on the driver's cursor (repo._rows); each
        # value is Core's, of the same type, times in UTC as UTCDateTime gives them.
        def typed(rows: Sequence[Sequence[object]]) -> list[list[tuple[object, type, object]]]:
            return [
                [(v, type(v), v.utcoffset() if hasattr(v, "utcoffset") else None) for v in row]
                for row in rows
            ]

        seen = 0
        with seeded.db.read_engine.connect() as conn:
            for rid in seeded.ids:
                for stmt, params in [
                    (repo._RECEIPT_TREE, {"receipt_id": rid, "partner_id": seeded.partner_id}),
                    (repo._FINDINGS_PAGE, {"receipt_id": rid, "limit": 1000}),
                ]:
                    core = conn.execute(stmt, params).all()
                    assert typed(repo._rows(conn, stmt, params)) == typed(core)
                    seen += len(core)
        assert seen > 2 * len(seeded.ids)  # trees and findings


@pytest.fixture(scope="module")
def remembering(seeded: Seeded) -> Iterator[TestClient]:
    """An API app in this process on the same database, whose keys are remembered (the real
    server's are not): its list pages come from the list's fast path (gateway.api.lean)."""
    with TestClient(create_app(seeded.db), headers=_auth(seeded)) as c:
        assert c.get("/v1/interchanges/" + "0" * 32).status_code == 404  # key now remembered
        yield c


class TestList:
    @pytest.mark.parametrize(
        "params",
        [{"limit": "4"}, {"limit": "4", "status": "processed"}, {}, {"status": "failed"}],
        ids=["limit", "status", "defaults", "failed"],
    )
    @pytest.mark.parametrize("path", ["declared", "fast"])
    def test_pages_are_the_response_models_own(
        self,
        seeded: Seeded,
        remembering: TestClient,
        solved: list[object],
        path: str,
        params: dict[str, str],
    ) -> None:
        seen: list[str] = []
        cursor = None
        with seeded.gateway.client(seeded.api_key) as server:
            client = server if path == "declared" else remembering
            while True:
                r = client.get(
                    "/v1/interchanges", params={**params, **({"cursor": cursor} if cursor else {})}
                )
                assert r.status_code == 200
                assert r.headers["content-type"] == "application/json"
                page = InterchangePage.model_validate_json(r.content)
                assert r.content == page.model_dump_json().encode()
                with seeded.db.reads() as s:
                    for item in page.items:
                        row = s.get(Receipt, item.id)
                        assert row is not None
                        assert item == expected_summary(row)
                seen += [item.id for item in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
        assert not solved  # the real server's FastAPI is another process; this one solved none
        status = params.get("status")
        with seeded.db.reads() as s:
            expected = s.scalars(
                select(Receipt.id)
                .where(Receipt.partner_id == seeded.partner_id)
                .where(*([Receipt.status == status] if status else []))
                .order_by(Receipt.received_at.desc(), Receipt.id.desc())
            ).all()
        assert seen == list(expected)
        if params == {"limit": "4"}:
            assert len(seen) > 8  # three pages

    def test_the_fast_pages_are_the_declared_ones_byte_for_byte(
        self, seeded: Seeded, remembering: TestClient
    ) -> None:
        with seeded.gateway.client(seeded.api_key) as server:
            for query in [
                "",
                "?limit=1",
                "?limit=200",
                "?status=failed&limit=3",
                "?status=partial",
            ]:
                assert remembering.get(f"/v1/interchanges{query}").content == (
                    server.get(f"/v1/interchanges{query}").content
                ), query

    def test_filters_still_apply(self, seeded: Seeded, remembering: TestClient) -> None:
        with seeded.gateway.client(seeded.api_key) as server:
            for c in (server, remembering):
                failed = c.get("/v1/interchanges", params={"status": "failed"}).json()["items"]
                isa13 = failed[0]["isa13"][0]
                by_isa13 = c.get("/v1/interchanges", params={"isa13": isa13}).json()["items"]
                assert [i["id"] for i in failed] == [seeded.ids[0]]
                assert seeded.ids[0] in [i["id"] for i in by_isa13]


def _auth(seeded: Seeded) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.api_key}"}


class TestBaseUrl:
    """base_url_of remembers Starlette's own base URL per scheme, Host, server and root path."""

    @pytest.mark.parametrize(
        ("scheme", "host", "server", "root_path"),
        [
            ("http", b"edi.example.test", ("10.0.0.1", 8834), ""),
            ("https", b"edi.example.test:8443", ("10.0.0.1", 8834), "/api"),
            ("http", None, ("10.0.0.1", 80), ""),
            ("http", None, ("10.0.0.1", 8834), "/api/"),
            ("https", None, ("::1", 443), ""),
            ("http", b"bad host:x", ("127.0.0.1", 8834), ""),
        ],
    )
    def test_the_same_as_starlettes(
        self,
        scheme: str,
        host: bytes | None,
        server: tuple[str, int],
        root_path: str,
        tmp_path: Path,
    ) -> None:
        scope = {
            "type": "http",
            "scheme": scheme,
            "server": server,
            "path": f"{root_path.rstrip('/')}/v1/interchanges/x",
            "root_path": root_path,
            "query_string": b"",
            "headers": [(b"host", host)] if host is not None else [],
        }
        gw = Gateway.open(Settings(data_dir=tmp_path))
        try:
            assert base_url_of(Request(scope), gw) == str(Request(scope).base_url).rstrip("/")
        finally:
            gw.close()

    def test_the_public_url_when_set(self, tmp_path: Path) -> None:
        gw = Gateway.open(Settings(data_dir=tmp_path, public_url="https://edi.example.test/"))
        scope = {"type": "http", "scheme": "http", "server": ("10.0.0.1", 80), "path": "/",
                 "headers": [(b"host", b"internal:8834")]}  # fmt: skip
        try:
            assert base_url_of(Request(scope), gw) == "https://edi.example.test"
        finally:
            gw.close()
