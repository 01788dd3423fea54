"""Issue 13's failures, each through a running `edi834 serve` (SQLite, then PostgreSQL): what
used to reach the ledger and the core system, and the files that used to be never answered."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import asyncssh
import httpx
import pytest

from tests.gateway.harness import OPERATOR_PASSWORD, GatewayProcess, login, submit, wait_ledger
from tests.gateway.x834 import Member, dependent, interchange

A_ID, B_ID, C_ID = "VA0FFM", "MD0SBE", "DC0HBX"
_control = iter(range(700_000_001, 800_000_000))


def family(tag: str, **kw: object) -> list[Member]:
    return [
        Member(subscriber_id=f"S{tag}", member_id=f"M{tag}0", last="ROE", first="ANA",
               ssn="721004455", **kw),  # type: ignore[arg-type]
        dependent(f"S{tag}", f"M{tag}1", "LEO", "721004456"),
    ]  # fmt: skip


def a_file(tag: str, *, sender: str = A_ID, usage: str = "P", **kw: object) -> bytes:
    content = interchange(family(tag, **kw), control=next(_control), sender=sender)
    if usage != "P":
        content = content.replace(b"*0*P*:~", f"*0*{usage}*:~".encode(), 1)
    return content


@pytest.fixture(scope="module")
def gw(module_database_url, tmp_path_factory):
    url = module_database_url
    base = tmp_path_factory.mktemp("gate-reg-pg" if url else "gate-reg-sqlite")
    gateway = GatewayProcess(data_dir=base / "var", database_url=url)
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_public_key(base / "a.pub")
    gateway.keys = {  # type: ignore[attr-defined]
        "a": gateway.add_partner("a", A_ID, sftp_key=base / "a.pub"),
        "b": gateway.add_partner("b", B_ID),
        "c": gateway.add_partner("c", C_ID),
    }
    gateway.ssh_key = key  # type: ignore[attr-defined]
    gateway.cli("partner", "rules", "c", "--onboarding", "--send-824")
    gateway.start(EDI834_LEDGER_ORDER_WINDOW_SECONDS="0.5")
    yield gateway
    gateway.kill()


def send(gw: GatewayProcess, who: str, content: bytes, name: str = "f.834") -> tuple[str, dict]:
    with gw.client(gw.keys[who]) as c:  # type: ignore[attr-defined]
        r = submit(c, content, name)
        assert r.status_code == 202, r.text
        rid = r.json()["id"]
        return rid, wait_ledger(c, rid, timeout=180)


def get(gw: GatewayProcess, who: str, path: str):  # type: ignore[no-untyped-def]
    with gw.client(gw.keys[who]) as c:  # type: ignore[attr-defined]
        return c.get(path)


def ledger_members(gw: GatewayProcess, partner: str) -> list[dict]:
    return json.loads(gw.cli("ledger", "members", "--partner", partner, "--json").stdout)


def core_events(gw: GatewayProcess, rid: str) -> int:
    from sqlalchemy import create_engine, text

    url = gw.database_url or f"sqlite:///{gw.data_dir / 'edi834.sqlite3'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM core_outbox o JOIN member_events e "
                        "ON e.id = o.event_id WHERE e.receipt_id = :r"
                    ),
                    {"r": rid},
                ).scalar_one()
            )
    finally:
        engine.dispose()


class TestRejectedInterchangesStayOut:
    def test_another_partners_isa06_is_ta1_006_and_nothing_is_applied(self, gw) -> None:
        rid, body = send(gw, "b", a_file("B006", sender=A_ID))
        assert body["outcome"] == "rejected"
        (env,) = body["interchanges"]
        assert (env["ta1_code"], env["ta1_note"]) == ("R", "006")
        # No 999 answered the groups: the status does not invent an AK9 or IK5.
        (group,) = env["groups"]
        assert group["ack"] is None and group["sets_accepted"] == 0
        (tset,) = group["transaction_sets"]
        assert tset["ack"] is None and tset["gate"] == "not_applied"
        assert "TA1 006" in tset["gate_reason"]
        assert body["ledger_status"] == "not_applied" and body["members_applied"] == 0
        members = get(gw, "b", f"/v1/interchanges/{rid}/members").json()["items"]
        assert [m["outcome"] for m in members] == ["not_applied", "not_applied"]
        assert all("interchange rejected (TA1 006)" in m["reason"] for m in members)
        assert not [m for m in ledger_members(gw, "b") if m["member"].startswith("MB006")]
        assert core_events(gw, rid) == 0

    def test_a_reused_isa13_is_ta1_025_and_nothing_is_applied(self, gw) -> None:
        first = a_file("R025")
        rid1, body1 = send(gw, "a", first, "first.834")
        assert body1["ledger_status"] == "applied" and body1["members_applied"] == 2
        again = first.replace(b"REFR025", b"REFX025").replace(b"MR025", b"MX025")
        rid2, body2 = send(gw, "a", again, "again.834")
        assert body2["interchanges"][0]["ta1_note"] == "025"
        assert body2["ledger_status"] == "not_applied"
        assert not [m for m in ledger_members(gw, "a") if m["member"].startswith("MX025")]
        assert core_events(gw, rid1) == 2 and core_events(gw, rid2) == 0

    def test_a_group_rejected_by_ak905_19_is_not_applied(self, gw) -> None:
        content = a_file("G19").decode()
        head, rest = content.split("GS*", 1)
        group = "GS*" + rest.rsplit("IEA*", 1)[0]
        second = group.replace("MG19", "MH19").replace("SG19", "SH19")
        doubled = head + group + second + "IEA*2*" + content.rsplit("IEA*1*", 1)[1]
        rid, body = send(gw, "a", doubled.encode())
        groups = body["interchanges"][0]["groups"]
        assert [g["ack"] for g in groups] == ["A", "R"]
        members = get(gw, "a", f"/v1/interchanges/{rid}/members").json()["items"]
        outcomes = {m["member_key"][:4]: m["outcome"] for m in members}
        assert outcomes == {"MG19": "applied", "MH19": "not_applied"}
        assert core_events(gw, rid) == 2


class TestTestInterchanges:
    def test_isa15_t_is_validated_and_answered_but_never_applied(self, gw) -> None:
        rid, body = send(gw, "a", a_file("T01", usage="T"))
        assert body["outcome"] == "accepted"  # the 999 accepts it...
        assert body["ledger_status"] == "not_applied"  # ...and the gate keeps it out
        members = get(gw, "a", f"/v1/interchanges/{rid}/members").json()["items"]
        assert {m["reason"] for m in members} == {"test interchange (ISA15 T)"}
        assert core_events(gw, rid) == 0
        assert get(gw, "a", f"/v1/interchanges/{rid}/acks/999").status_code == 200

    def test_an_onboarding_partners_test_file_gets_a_dry_run_and_its_would_be_824(self, gw) -> None:
        # Two subscribers: one clean, one a duplicate of itself (member-twice-in-file).
        members = [*family("D01"), *family("D01")[:1]]
        content = interchange(members, control=next(_control), sender=C_ID)
        content = content.replace(b"*0*P*:~", b"*0*T*:~", 1)
        rid, body = send(gw, "c", content, "onboarding-test.834")
        assert body["ledger_status"] == "dry_run"
        assert body["members_applied"] == 0 and body["members_business_rejected"] == 0
        got = get(gw, "c", f"/v1/interchanges/{rid}/members").json()["items"]
        assert [m["outcome"] for m in got] == ["would_apply", "would_apply", "would_reject"]
        assert "member-twice-in-file" in {f["rule"] for f in got[2]["findings"]}
        advice = get(gw, "c", f"/v1/interchanges/{rid}/acks/824-dry-run")
        assert advice.status_code == 200 and "TED*" in advice.text
        assert "*T*:" in advice.text.split("~")[0]  # a test interchange answers as one
        assert get(gw, "c", f"/v1/interchanges/{rid}/acks/824").status_code == 404
        assert ledger_members(gw, "c") == [] and core_events(gw, rid) == 0
        time.sleep(1.0)  # the ack outbox runs every poll: the 999 goes out, the dry run never
        outbound = sorted(p.name for p in (gw.data_dir / "sftp" / "c" / "outbound").iterdir())
        kinds = {n.rsplit(".", 1)[-1] for n in outbound}  # (a receipt id can hold "824")
        assert "999" in kinds
        assert not any("824" in kind for kind in kinds), outbound
        # Onboarding partners' production files apply as usual.
        _rid2, body2 = send(gw, "c", interchange(family("D02"), control=next(_control),
                                               sender=C_ID))  # fmt: skip
        assert body2["ledger_status"] == "applied" and body2["members_applied"] == 2


def _big_set(body_segments: list[str], control: int) -> bytes:
    """One subscriber, then `body_segments` inside its loop, before SE (SE01 counted)."""
    segs = interchange(family(f"BIG{control}")[:1], control=control).decode().split("~\n")
    se = next(i for i, s in enumerate(segs) if s.startswith("SE*"))
    st = next(i for i, s in enumerate(segs) if s.startswith("ST*"))
    segs[se:se] = body_segments
    se += len(body_segments)
    segs[se] = f"SE*{se - st + 1}*{segs[se].split('*')[2]}"
    return "~\n".join(segs).encode()


class TestEveryFileIsAnswered:
    @pytest.mark.parametrize(
        ("segment", "count"),
        [("ZZZ*UNKNOWN*SEGMENT", 100_001), ("HD*021**HLT**IND", 100_000)],
    )
    def test_a_set_with_a_huge_number_of_findings_gets_its_999(self, gw, segment, count) -> None:
        rid, body = send(gw, "a", _big_set([segment] * count, next(_control)))
        assert body["status"] == "processed" and body["outcome"] == "rejected"
        (tset,) = body["interchanges"][0]["groups"][0]["transaction_sets"]
        assert tset["ack"] == "R" and tset["findings_omitted"] > 0
        x999 = get(gw, "a", f"/v1/interchanges/{rid}/acks/999")
        assert x999.status_code == 200 and "IK5*R" in x999.text

    def test_a_20_digit_ge01_is_ak905_5_and_ak902_stays_within_n0_6(self, gw) -> None:
        content = a_file("GE20").decode()
        ge = next(s for s in content.split("~\n") if s.startswith("GE*"))
        content = content.replace(ge, "GE*12345678901234567890*" + ge.split("*")[2])
        rid, body = send(gw, "a", content.encode())
        assert body["status"] == "processed"
        x999 = get(gw, "a", f"/v1/interchanges/{rid}/acks/999").text
        (ak9,) = [s for s in x999.split("~") if s.strip().startswith("AK9")]
        assert ak9.strip().split("*")[2] == "1" and ak9.strip().endswith("*5")
        assert body["ledger_status"] == "not_applied"

    def test_an_absurd_premium_is_a_business_reject_not_a_failed_ledger(self, gw) -> None:
        categories = {"PRE AMT 1": ("9X", "9E+999999999"), "PRE AMT TOT": ("9X", "12.00")}
        rid, body = send(gw, "a", a_file("AMT", categories=categories))
        assert body["ledger_status"] == "applied", body  # not failed
        got = get(gw, "a", f"/v1/interchanges/{rid}/members").json()["items"]
        subscriber = got[0]
        assert subscriber["outcome"] == "rejected"
        assert "unreadable-amount" in {f["rule"] for f in subscriber["findings"]}
        # Its dependent follows the business rules as usual: no subscriber, no dependent.
        assert got[1]["outcome"] == "rejected"
        rejecting = {f["rule"] for f in got[1]["findings"] if f["severity"] == "reject"}
        assert rejecting == {"dependent-without-subscriber"}  # (an identity-overlap may warn:
        # the module's earlier files enrolled the same person under other member ids)

    def test_over_sftp_too(self, gw) -> None:
        content = _big_set(["HD*021**HLT**IND"] * 100_000, next(_control))

        async def upload() -> str:
            async with (
                asyncssh.connect(
                    "127.0.0.1",
                    gw.sftp_port,
                    username="a",
                    client_keys=[gw.ssh_key],  # type: ignore[attr-defined]
                    known_hosts=None,
                ) as conn,
                conn.start_sftp_client() as sftp,
            ):
                async with sftp.open("inbound/many-hd.834", "wb") as f:
                    await f.write(content)
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    names = [n for n in await sftp.listdir("outbound") if "many-hd" in n]
                    if any(n.endswith(".999") for n in names):
                        return next(n for n in names if n.endswith(".999"))
                    await asyncio.sleep(0.2)
                raise AssertionError("no 999 in outbound/")

        name = asyncio.run(upload())
        ack = (gw.data_dir / "sftp" / "a" / "outbound" / name).read_text()
        assert "IK5*R" in ack


def test_helpers_build_what_they_say(tmp_path: Path) -> None:
    big = _big_set(["ZZZ*X"] * 3, 123).decode()
    segs = [s for s in big.split("~\n") if s]
    st = next(i for i, s in enumerate(segs) if s.startswith("ST*"))
    se = next(i for i, s in enumerate(segs) if s.startswith("SE*"))
    assert int(segs[se].split("*")[1]) == se - st + 1
    assert sum(s == "ZZZ*X" for s in segs) == 3
    assert b"*0*T*:~" in a_file("H", usage="T")


class TestOperatorsSeeIt:
    """Each test sends what it counts, so it holds alone or after the others."""

    def test_dashboard_counts_test_files_apart_and_says_why_a_set_was_not_applied(self, gw) -> None:
        send(gw, "a", a_file("VIEW1", usage="T"))
        rid, _ = send(gw, "a", a_file("VIEW2", usage="T"))
        gw.add_operator("ops", OPERATOR_PASSWORD)
        dash, r = login(gw, "ops")
        try:
            assert r.status_code in (200, 303)
            overview = dash.get("/dashboard").text
            row = re.search(r'<tr data-partner="a">(.*?)</tr>', overview, re.S)
            assert row is not None
            test_files = re.search(r'data-k="test">(\d+)<', row.group(1))
            assert test_files is not None and int(test_files.group(1)) >= 2
            detail = dash.get(f"/dashboard/interchanges/{rid}").text
            assert 'data-gate="not_applied"' in detail
            assert "not applied: test interchange (ISA15 T)" in detail
        finally:
            dash.close()

    def test_metrics_count_test_interchanges_and_files_kept_from_the_ledger(self, gw) -> None:
        for tag in ("MET1", "MET2"):
            send(gw, "a", a_file(tag, usage="T"))
        send(gw, "b", a_file("MET3", sender=A_ID))  # TA1 006: not applied
        dry = interchange(family("MET4"), control=next(_control), sender=C_ID)
        send(gw, "c", dry.replace(b"*0*P*:~", b"*0*T*:~", 1))  # onboarding: a dry run
        text = httpx.get(f"{gw.url}/metrics", timeout=10).text
        usage_t = re.search(r'edi834_interchanges_processed_total\{ta1="A",usage="T"\} (\S+)', text)
        assert usage_t is not None and float(usage_t.group(1)) >= 2
        not_applied = re.search(r'edi834_ledger_files\{status="not_applied"\} (\S+)', text)
        assert not_applied is not None and float(not_applied.group(1)) >= 3
        dry = re.search(r'edi834_ledger_files\{status="dry_run"\} (\S+)', text)
        assert dry is not None and float(dry.group(1)) >= 1
