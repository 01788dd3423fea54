"""A family's plan year through the real intake path (`edi834 serve` over HTTP, SQLite then
PostgreSQL), file by file, with what the sender then reads through the API: the enrollment's
lifecycle state, its coverage periods, the terms in force on a date, the monthly view (prorated
where coverage ends mid-month) and the 824 for every refusal — and none of it for another sender.

The series: an open-enrollment add of a family; the premium paid (DTP*543, the policy is
effectuated, dependents with it); a financial change from 2027-05-01 (CSR variant 04, new APTC)
that splits the year into two periods instead of rewriting it; the child terminated mid-June;
a termination that would move the child's end later (refused: reinstate first); a
reinstatement of an enrollment in force (refused); next year's auto re-enrollment (an I834AR
file, 021/41, a new policy) beside this year's; and another family's subscriber-only
cancellation, which cancels the dependent too, followed by a later termination (refused)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter

from tests.gateway.harness import GatewayProcess, members_of, submit, wait_ledger
from tests.gateway.x834 import Cov, Member, dependent, interchange

ROS, MILO = "0005200001", "0005200002"
COR, TEO = "0005200010", "0005200011"
POLICY, POLICY_2028, POLICY_B = "51200457", "61200457", "51200460"
PLAN_01, PLAN_04 = "48213VA004000701", "48213VA004000704"


def ros(**kw: object) -> Member:
    base: dict[str, object] = {
        "subscriber_id": ROS,
        "member_id": ROS,
        "last": "QUINTERO-HALE",
        "first": "ROSALIND",
        "ssn": "934618270",
        "coverages": [Cov(policy=POLICY)],
    }
    base.update(kw)
    return Member(**base)  # type: ignore[arg-type]


def milo(**kw: object) -> Member:
    kw.setdefault("coverages", [Cov(policy=POLICY)])
    return dependent(ROS, MILO, "MILO", "941837260", last="QUINTERO-HALE", **kw)


def cordelia(**kw: object) -> Member:
    base: dict[str, object] = {
        "subscriber_id": COR,
        "member_id": COR,
        "last": "ASHGROVE-NUNEZ",
        "first": "CORDELIA",
        "ssn": "984263175",
        "coverages": [Cov(policy=POLICY_B, begin="20270301")],
    }
    base.update(kw)
    return Member(**base)  # type: ignore[arg-type]


def money(aptc: str, pre: str, tot: str, res: str, csr: str | None = None) -> dict:
    out = {
        "APTC AMT": ("9V", aptc),
        "PRE AMT 1": ("9X", pre),
        "PRE AMT TOT": ("9X", tot),
        "TOT RES AMT": ("9V", res),
    }
    if csr is not None:
        out["CSR AMT"] = ("9X", csr)
    return out


# (file name, members, BGN date, expected: member -> (outcome, business rules rejecting it))
STEPS: list[tuple[str, list[Member], str, dict[str, tuple[str, list[str]]]]] = [
    (
        "VA0FFM.EDI834GATEWAY.I834.D261115.T120000000.P",
        [
            ros(categories=money("400.00", "500.00", "800.00", "400.00")),
            milo(categories={"PRE AMT 1": ("9X", "300.00")}),
        ],
        "20261115",
        {ROS: ("applied", []), MILO: ("applied", [])},
    ),
    (
        "VA0FFM.EDI834GATEWAY.I834.D261220.T120000000.P",
        [
            ros(
                maintenance="001",
                reason="AI",
                coverages=[Cov(maintenance="001", policy=POLICY, paid_through="20270131")],
            )
        ],
        "20261220",
        {ROS: ("applied", [])},
    ),
    (
        "VA0FFM.EDI834GATEWAY.I834.D270420.T120000000.P",
        [
            ros(
                maintenance="001",
                reason="AI",
                effective="20270501",
                coverages=[Cov(maintenance="001", policy=POLICY, plan=PLAN_04)],
                categories=money("450.00", "500.00", "800.00", "350.00", csr="50.00"),
                category_period="20270501-20271231",
            ),
            milo(
                maintenance="001",
                reason="AI",
                effective="20270501",
                coverages=[Cov(maintenance="001", policy=POLICY, plan=PLAN_04)],
                categories={"PRE AMT 1": ("9X", "300.00")},
                category_period="20270501-20271231",
            ),
        ],
        "20270420",
        {ROS: ("applied", []), MILO: ("applied", [])},
    ),
    (
        "VA0FFM.EDI834GATEWAY.I834.D270610.T120000000.P",
        [
            milo(
                maintenance="024",
                reason="07",
                eligibility_end="20270615",
                coverages=[Cov(maintenance="024", policy=POLICY, end="20270615")],
            )
        ],
        "20270610",
        {MILO: ("applied", [])},
    ),
    (
        "VA0FFM.EDI834GATEWAY.I834.D270701.T120000000.P",
        [
            milo(
                maintenance="024",
                reason="07",
                eligibility_end="20270731",
                coverages=[Cov(maintenance="024", policy=POLICY, end="20270731")],
            )
        ],
        "20270701",
        {MILO: ("rejected", ["term-extends-coverage"])},
    ),
    (
        "VA0FFM.EDI834GATEWAY.I834.D270702.T120000000.P",
        [ros(maintenance="025", reason="41", coverages=[Cov(maintenance="025", policy=POLICY)])],
        "20270702",
        {ROS: ("rejected", ["reinstate-in-force"])},
    ),
    (
        "VA0FFM.EDI834GATEWAY.I834AR.D271101.T120000000.P",
        [
            ros(
                reason="41",
                coverages=[Cov(policy=POLICY_2028, begin="20280101", end="20281231", level="IND")],
                categories=money("420.00", "520.00", "520.00", "100.00"),
                category_period="20280101-20281231",
            )
        ],
        "20271101",
        {ROS: ("applied", [])},
    ),
    (
        "VA0FFM.EDI834GATEWAY.I834.D270215.T120000000.P",
        [
            cordelia(categories=money("300.00", "455.20", "721.55", "421.55")),
            dependent(
                COR,
                TEO,
                "TEODORO",
                "986312740",
                last="ASHGROVE-NUNEZ",
                coverages=[Cov(policy=POLICY_B, begin="20270301")],
                categories={"PRE AMT 1": ("9X", "266.35")},
            ),
        ],
        "20270215",
        {COR: ("applied", []), TEO: ("applied", [])},
    ),
    (
        "VA0FFM.EDI834GATEWAY.I834.D270220.T120000000.P",
        [
            cordelia(
                maintenance="024",
                reason="14",
                coverages=[
                    Cov(maintenance="024", policy=POLICY_B, begin="20270301", end="20270301")
                ],
            )
        ],
        "20270220",
        {COR: ("applied", [])},
    ),
    (
        "VA0FFM.EDI834GATEWAY.I834.D270225.T120000000.P",
        [
            cordelia(
                maintenance="024",
                reason="07",
                coverages=[
                    Cov(maintenance="024", policy=POLICY_B, begin="20270301", end="20270630")
                ],
            )
        ],
        "20270225",
        {COR: ("rejected", ["term-extends-coverage"])},
    ),
]


def enrollment(client, key: str, policy: str, as_of: str | None = None) -> dict:
    params = {"as_of": as_of} if as_of else {}
    r = client.get(f"/v1/members/{key}", params=params)
    assert r.status_code == 200, r.text
    (found,) = [e for e in r.json()["enrollments"] if e["policy"] == policy]
    return found


def periods(item: dict) -> list[tuple]:
    return [
        (p["begin"], p["end"], p["plan_id"], p["premium"], p["aptc"], p["csr_amount"])
        for p in item["periods"]
        if p["in_force"]
    ]


def month(client, policy: str, first: str, last: str | None = None) -> dict:
    params = {"from": first, **({"to": last} if last else {})}
    r = client.get(f"/v1/policies/{policy}/months", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_family_year_as_periods_a_lifecycle_and_a_monthly_view(running) -> None:
    gw, va_key, other_key = running
    ids: list[str] = []
    with gw.client(va_key) as c, gw.client(other_key) as other:
        for control, (name, members, bgn, expected) in enumerate(STEPS, 61001):
            r = submit(c, interchange(members, control=control, bgn_date=bgn), name)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
            detail = wait_ledger(c, ids[-1])
            assert (detail["outcome"], detail["ledger_status"]) == ("accepted", "applied"), name
            got = {
                m["member_key"]: (
                    m["outcome"],
                    sorted(f["rule"] for f in m["findings"] if f["severity"] == "reject"),
                )
                for m in members_of(c, ids[-1])
            }
            assert got == expected, name
            acks = {a["kind"] for a in c.get(f"/v1/interchanges/{ids[-1]}/acks").json()}
            refused = [rule for _, rules in expected.values() for rule in rules]
            if refused:  # one TED per refusal, with the rule's X186 code
                advice = c.get(f"/v1/interchanges/{ids[-1]}/acks/824").text
                teds = [s for s in advice.split("~") if s.strip().startswith("TED*")]
                assert len(teds) == len(refused) and all("TED*012" in t for t in teds), advice
            else:
                assert "824" not in acks, name

            if control == 61001:  # the add: awaiting effectuation, one period each
                item = enrollment(c, ROS, POLICY)
                assert (item["state"], item["begin"], item["end"]) == (
                    "initial",
                    "2027-01-01",
                    "2027-12-31",
                )
                assert periods(item) == [
                    ("2027-01-01", "2027-12-31", PLAN_01, "500.00", "400.00", "")
                ]
            elif control == 61002:  # paid through January: the policy is effectuated
                for key in (ROS, MILO):
                    item = enrollment(c, key, POLICY)
                    assert (item["state"], item["paid_through"]) == ("effectuated", "2027-01-31")
            elif control == 61003:  # the change from May splits the year; January stays
                assert periods(enrollment(c, ROS, POLICY)) == [
                    ("2027-01-01", "2027-04-30", PLAN_01, "500.00", "400.00", ""),
                    ("2027-05-01", "2027-12-31", PLAN_04, "500.00", "450.00", "50.00"),
                ]
                assert periods(enrollment(c, MILO, POLICY)) == [
                    ("2027-01-01", "2027-04-30", PLAN_01, "300.00", "", ""),
                    ("2027-05-01", "2027-12-31", PLAN_04, "300.00", "", ""),
                ]
                april = enrollment(c, ROS, POLICY, as_of="2027-04-30")["as_of"]
                may = enrollment(c, ROS, POLICY, as_of="2027-05-01")["as_of"]
                assert (april["plan_id"], april["csr_variant"], april["aptc"]) == (
                    PLAN_01,
                    "01",
                    "400.00",
                )
                assert (may["plan_id"], may["csr_variant"], may["aptc"]) == (
                    PLAN_04,
                    "04",
                    "450.00",
                )
                view = month(c, POLICY, "2027-04", "2027-05")
                assert view["totals"] == [
                    {
                        "month": "2027-04",
                        "premium": "800.00",
                        "aptc": "400.00",
                        "csr_amount": "0.00",
                        "responsible": "400.00",
                        "aptc_excess": "0.00",
                    },
                    {
                        "month": "2027-05",
                        "premium": "800.00",
                        "aptc": "450.00",
                        "csr_amount": "50.00",
                        "responsible": "350.00",
                        "aptc_excess": "0.00",
                    },
                ]
            elif control == 61004:  # the child ends mid-June: June is prorated
                item = enrollment(c, MILO, POLICY)
                assert (item["state"], item["end"]) == ("terminated", "2027-06-15")
                june = month(c, POLICY, "2027-06")
                child = [m for m in june["months"] if m["member_key"] == MILO]
                assert [(m["days"], m["days_in_month"], m["premium"]) for m in child] == [
                    (15, 30, "150.00")
                ]
                assert june["totals"][0]["premium"] == "650.00"
                assert month(c, POLICY, "2027-07")["totals"][0]["premium"] == "500.00"
                download = c.get(june["csv_url"].replace(gw.url, ""))
                assert download.headers["content-type"].startswith("text/csv")
                rows = list(csv.DictReader(io.StringIO(download.text)))
                assert {(r["member_key"], r["premium"]) for r in rows} == {
                    (ROS, "500.00"),
                    (MILO, "150.00"),
                }
            elif control == 61005:  # refused: the child's end stays
                assert enrollment(c, MILO, POLICY)["end"] == "2027-06-15"
            elif control == 61007:  # next year beside this one
                body = c.get(f"/v1/members/{ROS}").json()
                years = {(e["policy"], e["plan_year"], e["state"]) for e in body["enrollments"]}
                assert years == {(POLICY, 2027, "effectuated"), (POLICY_2028, 2028, "initial")}
                assert enrollment(c, ROS, POLICY)["end"] == "2027-12-31"
                assert enrollment(c, ROS, POLICY_2028, as_of="2028-02-01")["as_of"]["aptc"] == (
                    "420.00"
                )
                assert enrollment(c, ROS, POLICY, as_of="2028-02-01")["as_of"] is None
            elif control == 61009:  # the subscriber's cancel cancels the policy
                for key in (COR, TEO):
                    item = enrollment(c, key, POLICY_B)
                    assert (item["state"], item["end"]) == ("cancelled", "2027-03-01"), key
                assert month(c, POLICY_B, "2027-03")["months"] == []  # never in force
            elif control == 61010:
                assert enrollment(c, COR, POLICY_B)["state"] == "cancelled"

        # Another sender sees none of it: not the members, not the policies.
        assert other.get(f"/v1/members/{ROS}").status_code == 404
        assert other.get(f"/v1/policies/{POLICY}/months?from=2027-01").status_code == 404
        assert c.get(f"/v1/policies/{POLICY}/months?from=2027-01&to=2030-12").status_code == 400
        assert c.get("/v1/members/0009999999").status_code == 404

    # The operator's terminal: the same periods, and the monthly view.
    history = gw.cli("ledger", "history", "--partner", "va", ROS).stdout
    assert "HLT policy 51200457 2027: effectuated" in history
    assert "2027-05-01 .. 2027-12-31 plan 48213VA004000704" in history
    months = gw.cli(
        "ledger", "months", "--partner", "va", "--policy", POLICY, "--from", "2027-06"
    ).stdout
    assert "15/30" in months and "total premium 650.00" in months
    members = gw.cli("ledger", "members", "--partner", "va", "--as-of", "2027-04-01").stdout
    assert PLAN_01 in members and "Quintero" not in members.title()

    def on(day: str) -> dict[str, tuple[str, list[str]]]:
        rows = json.loads(
            gw.cli("ledger", "members", "--partner", "va", "--as-of", day, "--json").stdout
        )
        return {r["member"]: (r["status"], [c["state"] for c in r["coverages"]]) for r in rows}

    # The child, terminated June 15, was covered in April: the state of that day, not today's.
    assert on("2027-04-01")[MILO] == ("covered", ["covered"])
    assert on("2027-07-01")[MILO] == ("not covered", ["not covered"])


def test_killed_mid_period_split_and_mid_cascade_applies_each_change_once(tmp_path) -> None:
    """SIGKILL inside the chunk that splits a period, then inside the one that cascades a
    cancellation: after a restart each change is applied exactly once — two periods, not three
    or one; the dependent cancelled; one member event and one core event per member."""
    export = tmp_path / "core"
    gw = GatewayProcess(
        data_dir=tmp_path / "var", extra_env={"EDI834_CORE_EXPORT_DIR": str(export)}
    )
    key = gw.add_partner("va", "VA0FFM")
    by_control = dict(enumerate(STEPS, 61001))

    def send(control: int) -> str:
        name, members, bgn, _ = by_control[control]
        with gw.client(key) as c:
            r = submit(c, interchange(members, control=control, bgn_date=bgn), name)
            assert r.status_code == 202, r.text
            return str(r.json()["id"])

    try:
        gw.start(EDI834_LEDGER_ORDER_WINDOW_SECONDS="1")
        for control in (61001, 61008):  # the two families
            with gw.client(key) as c:
                assert wait_ledger(c, send(control))["ledger_status"] == "applied"
        gw.stop()
        for control, point in ((61003, "ledger_period_split"), (61009, "ledger_cascade")):
            gw.start(crashpoints=(point,), EDI834_LEDGER_ORDER_WINDOW_SECONDS="1")
            receipt = send(control)
            gw.wait_exit(timeout=60)  # killed inside the ledger's transaction
            gw.start(EDI834_LEDGER_ORDER_WINDOW_SECONDS="1")
            with gw.client(key) as c:
                detail = wait_ledger(c, receipt)
                assert detail["ledger_status"] == "applied"
                counts = c.get(f"/v1/interchanges/{receipt}/members").json()["counts"]
                assert counts == {"applied": len(by_control[control][1])}
                if control == 61003:
                    assert periods(enrollment(c, ROS, POLICY)) == [
                        ("2027-01-01", "2027-04-30", PLAN_01, "500.00", "400.00", ""),
                        ("2027-05-01", "2027-12-31", PLAN_04, "500.00", "450.00", "50.00"),
                    ]
                    assert len(periods(enrollment(c, MILO, POLICY))) == 2
                else:
                    for member in (COR, TEO):
                        assert enrollment(c, member, POLICY_B)["state"] == "cancelled"
            gw.stop()
        history = json.loads(gw.cli("ledger", "history", "--partner", "va", "--json", TEO).stdout)
        assert [e["outcome"] for e in history["events"]] == ["applied"]  # cascaded, not sent
        assert history["enrollments"][0]["state"] == "cancelled"
        gw.start()  # the core export: one event per applied member event, each once
        deadline = time.monotonic() + 30
        events: list[dict] = []
        while len(events) < 7 and time.monotonic() < deadline:
            time.sleep(0.2)
            lines = [ln for f in export.glob("*.jsonl") for ln in f.read_text().splitlines()]
            events = [json.loads(ln) for ln in lines]
        keys = Counter(e["idempotency_key"] for e in events)
        assert len(keys) == 7 and set(keys.values()) == {1}  # 2 + 2 adds, 2 changes, 1 cancel
        (cancel,) = [e["event"] for e in events if e["event"]["maintenance_type"] == "024"]
        assert [(x["member_key"], x["state"]) for x in cancel["cascade"]] == [(TEO, "cancelled")]
    finally:
        gw.kill()


def test_audit_identity_and_maintenance_codes_over_http(running) -> None:
    """The rest of the series, through the same front door: an audit after the family's year
    reports a planted name and coverage-level difference and nothing for the child terminated
    with the same end date; the same person sent by another exchange is flagged to it without
    naming this sender's member; a maintenance combination CMS does not send is a warning."""
    gw, va_key, other_key = running
    with gw.client(va_key) as c:
        for control, (name, members, bgn, _) in list(enumerate(STEPS, 61001))[:4]:
            rid = submit(c, interchange(members, control=control, bgn_date=bgn), name).json()
            assert wait_ledger(c, rid["id"])["ledger_status"] == "applied"

        def audited(m: Member) -> Member:
            m.maintenance, m.reason = "030", "XN"
            for cov in m.coverages:
                cov.maintenance = "030"
            return m

        sub = audited(ros(last="QUINTERO", coverages=[Cov(policy=POLICY, plan=PLAN_04,
                                                          level="IND")]))  # fmt: skip
        child = audited(milo(coverages=[Cov(policy=POLICY, plan=PLAN_04, end="20270615")]))
        audit = interchange([sub, child], control=61101, bgn_date="20270701", action="4")
        rid = submit(c, audit, "VA0FFM.EDI834GATEWAY.I834.D270701.T130000000.P").json()["id"]
        assert wait_ledger(c, rid)["ledger_status"] == "reconciled"
        report = c.get(f"/v1/interchanges/{rid}/reconciliation").json()
        got = {(i["member_key"], i["field"], i["file_value"], i["ledger_value"])
               for i in report["items"]}  # fmt: skip
        assert got == {
            (ROS, "last name", "QUINTERO", "QUINTERO-HALE"),
            (ROS, "HLT coverage_level", "IND", "FAM"),
        }
        odd = ros(maintenance="001", reason="07", coverages=[], categories={})
        rid = submit(c, interchange([odd], control=61102, bgn_date="20270702"), "odd.834").json()
        wait_ledger(c, rid["id"])
        (member,) = members_of(c, rid["id"])
        assert member["outcome"] == "applied"
        assert [(f["rule"], f["severity"]) for f in member["findings"]] == [
            ("maintenance-combination", "warn")
        ]

    with gw.client(other_key) as md:
        # By default (warn) the other sender is not told the person is insured here: any
        # sender could ask so of any SSN and birth date. The operators see it (test_ledger).
        # January only: it overlaps this sender's enrollment, not the next member's (March).
        quiet = Member(subscriber_id="MD0000", member_id="MD0000", last="QUINTERO-HALE",
                       first="ROSALIND", ssn="934618270",
                       coverages=[Cov(policy="MD7000", begin="20270101",
                                      end="20270131")])  # fmt: skip
        body = interchange([quiet], control=71000, bgn_date="20261215", sender="MD0SBE")
        rid = submit(md, body, "md-quiet.834").json()["id"]
        wait_ledger(md, rid)
        (member,) = members_of(md, rid)
        assert (member["outcome"], member["findings"]) == ("applied", [])
        assert "another sender" not in md.get(f"/v1/interchanges/{rid}/members").text
    # The insurer's operators have it, naming the other enrollment.
    from sqlalchemy import select

    from gateway.db.models import BusinessFinding
    from gateway.db.session import make_engine
    from gateway.settings import Settings

    engine = make_engine(
        Settings(data_dir=gw.data_dir, database_url=gw.database_url).sqlalchemy_url
    )
    with engine.connect() as conn:
        found = conn.execute(
            select(
                BusinessFinding.rule, BusinessFinding.severity, BusinessFinding.operator_note
            ).where(BusinessFinding.receipt_id == rid)
        ).all()
    engine.dispose()
    assert [(r, sev) for r, sev, _ in found] == [("identity-overlap-elsewhere", "warn")]
    assert f"partner va member {ROS}" in found[0][2]
    gw.cli("partner", "rules", "md", "--set", "identity-overlap-elsewhere=reject", "--send-824")
    with gw.client(other_key) as md:
        same_person = Member(subscriber_id="MD0001", member_id="MD0001", last="QUINTERO-HALE",
                             first="ROSALIND", ssn="934618270",
                             coverages=[Cov(policy="MD7001", begin="20270301")])  # fmt: skip
        body = interchange([same_person], control=71001, bgn_date="20270215", sender="MD0SBE")
        rid = submit(md, body, "md.834").json()["id"]
        wait_ledger(md, rid)
        (member,) = members_of(md, rid)
        assert member["outcome"] == "rejected"
        (finding,) = member["findings"]
        assert finding["rule"] == "identity-overlap-elsewhere"
        assert "another sender" in finding["message"]
        assert ROS not in md.get(f"/v1/interchanges/{rid}/members").text
        advice = md.get(f"/v1/interchanges/{rid}/acks/824").text
        assert "TED*006*" in advice and ROS not in advice and "operator" not in advice
