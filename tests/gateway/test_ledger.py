"""The enrollment ledger stage in-process (a real worker, real validation, real database): what
each maintenance type does to the ledger, each business rule with its per-partner severity,
sender order, resuming a half-applied file, and audit reconciliation."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gateway.api.schemas import BusinessFindingOut
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.models import (
    Ack,
    BusinessFinding,
    CoreDelivery,
    LedgerCoverage,
    LedgerMember,
    LedgerPeriod,
    MemberEventRow,
    Partner,
    Receipt,
    Reconciliation,
    ReconciliationItem,
)
from gateway.db.session import unit_of_work
from gateway.enrollment import apply as ledger
from gateway.enrollment import views
from gateway.enrollment.keys import order_key
from gateway.enrollment.rules import RULES
from gateway.partners import add_partner, configure_rules, rule_settings
from gateway.worker import outbox
from gateway.worker.run import Worker
from tests.gateway.harness import add_va, in_process_gateway
from tests.gateway.test_worker import _receipt
from tests.gateway.x834 import Cov, Member, dependent, interchange

SUB = "0005100001"


def rosalind(**kw: object) -> Member:
    base: dict[str, object] = {
        "subscriber_id": SUB,
        "member_id": SUB,
        "last": "QUINTERO-HALE",
        "first": "ROSALIND",
        "ssn": "512849301",
        "categories": {
            "APTC AMT": ("9V", "100.00"),
            "PRE AMT 1": ("9X", "300.00"),
            "PRE AMT TOT": ("9X", "500.00"),
            "TOT RES AMT": ("9V", "400.00"),
        },
    }
    base.update(kw)
    return Member(**base)  # type: ignore[arg-type]


def family() -> list[Member]:
    return [
        rosalind(),
        dependent(
            SUB,
            "0005100003",
            "MILO",
            "512849303",
            categories={"PRE AMT 1": ("9X", "200.00")},
        ),
    ]


@pytest.fixture
def gw(tmp_path):
    yield from in_process_gateway(tmp_path / "var")


@pytest.fixture
def partner(gw: Gateway) -> int:
    return add_va(gw)


def feed(gw: Gateway, partner: int, content: bytes, filename: str = "x.834") -> str:
    """Receive, validate and apply one file, as the worker does."""
    receipt_id = _receipt(gw, partner, content)
    worker = Worker(gw)
    assert worker.run_once()
    while worker.apply_ledger_once():
        pass
    with gw.reads() as s:
        r = s.get_one(Receipt, receipt_id)
        assert r.outcome == "accepted", r.outcome  # the 999 accepted it; the ledger decides
    return receipt_id


def recorded_events(s: Session, receipt_id: str) -> Sequence[MemberEventRow]:
    """A file's member events, in file order."""
    return s.scalars(
        select(MemberEventRow)
        .where(MemberEventRow.receipt_id == receipt_id)
        .order_by(MemberEventRow.seq)
    ).all()


def members(gw: Gateway) -> dict[str, LedgerMember]:
    with gw.reads() as s:
        rows = s.scalars(select(LedgerMember)).all()
        for m in rows:
            _ = m.coverages
        return {m.member_key: m for m in rows}


def outcomes(gw: Gateway, receipt_id: str) -> dict[str, tuple[str, list[str]]]:
    with gw.reads() as s:
        out = {}
        for e in s.scalars(select(MemberEventRow).where(MemberEventRow.receipt_id == receipt_id)):
            rules = s.scalars(
                select(BusinessFinding.rule).where(BusinessFinding.event_id == e.id)
            ).all()
            out[e.member_key] = (e.outcome, sorted(rules))
        return out


def test_an_employees_termination_ends_its_own_family_not_the_group(
    gw_on_both: Gateway,
) -> None:
    """An employer's file sends the group number as every employee's REF*1L: a subscriber's
    termination (with 2300, and without) ends its own family (its REF*0F), never the other
    employees of the group or their dependents. It ended the whole group."""
    gw = gw_on_both
    partner = add_va(gw)
    group = "GRP0045821"

    def employee(sub: str, first: str, ssn: str, **kw: object) -> list[Member]:
        cov = kw.pop("coverages", [Cov(policy=group, end=None)])
        return [
            Member(subscriber_id=sub, member_id="", last="BAKER", first=first, ssn=ssn,
                   coverages=cov, **kw),  # type: ignore[arg-type]
            dependent(sub, "", f"{first}-SPOUSE", ssn[:-1] + "9", relationship="01",
                      coverages=cov, last="BAKER", **kw),
        ]  # fmt: skip

    adds = employee("1001", "ANN", "512840001") + employee("1002", "BEN", "512840002")
    feed(gw, partner, interchange(adds, control=11))
    term = Member(subscriber_id="1001", member_id="", last="BAKER", first="ANN",
                  ssn="512840001", maintenance="024", reason="08",
                  coverages=[Cov(maintenance="024", policy=group, end="20270331")])  # fmt: skip
    feed(gw, partner, interchange([term], control=12, bgn_date="20270301"))
    # A member-level termination (no 2300, the group number in 2000 REF*1L) of the other one.
    quit_ = Member(subscriber_id="1002", member_id="", last="BAKER", first="BEN",
                   ssn="512840002", maintenance="024", reason="08", policy=group,
                   eligibility_end="20270430", coverages=[])  # fmt: skip
    feed(gw, partner, interchange([quit_], control=13, bgn_date="20270401"))

    def ends() -> dict[tuple[str, bool], str | None]:
        return {
            (m.subscriber_number, m.subscriber): (
                str(m.coverages[0].benefit_end) if m.coverages[0].benefit_end else None
            )
            for m in members(gw).values()
        }

    assert ends() == {
        ("1001", True): "2027-03-31",
        ("1001", False): "2027-03-31",  # Ann's spouse, with her
        ("1002", True): "2027-04-30",
        ("1002", False): "2027-04-30",  # Ben's spouse, with him: not Ann's end
    }


def test_a_groups_families_are_priced_and_kept_apart(gw_on_both: Gateway) -> None:
    """An employer's group number in every REF*1L: a family's PRE AMT TOT is its own members'
    PRE AMT 1, not the whole group's (every family after the first in a file was refused by
    premium-total); a dependent's change, or a newborn, while its employee is still covered
    until a termination sent ahead of its date applies (the termination made the subscriber
    absent at once: dependent-without-subscriber), and one dated after that end does not."""
    gw = gw_on_both
    partner = add_va(gw)
    with unit_of_work(gw.sessions) as s:  # as the README says an employer is set up
        configure_rules(s, "va", ref17="category",
                        severities={"maintenance-combination": "ignore"})  # fmt: skip
    group = "GRP0045821"

    def family(sub: str, first: str, ssn: str, dep_premium: str) -> list[Member]:
        total = f"{300 + int(dep_premium)}.00"
        prices = {"PRE AMT 1": ("9X", "300.00"), "PRE AMT TOT": ("9X", total),
                  "TOT RES AMT": ("9V", total)}  # fmt: skip
        return [
            Member(subscriber_id=sub, member_id="", last="BAKER", first=first, ssn=ssn,
                   categories=prices, coverages=[Cov(policy=group, end=None)]),
            dependent(sub, "", f"{first}-KID", ssn[:-2] + "9" + ssn[-1], last="BAKER",
                      categories={"PRE AMT 1": ("9X", f"{dep_premium}.00")},
                      coverages=[Cov(policy=group, end=None)]),
        ]  # fmt: skip

    rid = feed(gw, partner, interchange(
        family("1001", "ANN", "512840001", "200") + family("1002", "BEN", "512840002", "100"),
        control=31))  # fmt: skip
    assert all(got == ("applied", []) for got in outcomes(gw, rid).values()), outcomes(gw, rid)
    term = Member(subscriber_id="1001", member_id="", last="BAKER", first="ANN",
                  ssn="512840001", maintenance="024", reason="08",
                  coverages=[Cov(maintenance="024", policy=group, end="20270331")])  # fmt: skip
    feed(gw, partner, interchange([term], control=32, bgn_date="20270301"))
    moved = dependent("1001", "", "ANN-KID", "512840091", last="BAKER", maintenance="001",
                      reason="25", coverages=[], street="9 NEW RD")  # fmt: skip
    newborn = dependent(
        "1001",
        "",
        "ANN-BABY",
        "512840019",
        last="BAKER",
        reason="02",
        coverages=[Cov(policy=group, begin="20270315", end="20270331")],
    )
    late = dependent("1001", "", "ANN-LATE", "512840029", last="BAKER", reason="02",
                     coverages=[Cov(policy=group, begin="20270415", end=None)])  # fmt: skip
    rid = feed(gw, partner, interchange([moved, newborn, late], control=33, bgn_date="20270310"))
    got = sorted(outcomes(gw, rid).values())
    assert got == [
        ("applied", []),
        ("applied", []),
        ("rejected", ["dependent-without-subscriber"]),
    ], got


def test_an_addition_under_another_persons_member_id_is_refused(gw: Gateway) -> None:
    """Read as a member id (the default), an employer's REF*17 SALARIED named two employees:
    the second addition merged into the first member, silently. It is refused, saying why;
    the same person added again (a re-enrollment) is not."""
    partner = add_va(gw)
    people = [
        Member(subscriber_id=f"30{n}", member_id="HOURLY", last="ROE", first=f"EMP{n}",
               ssn=f"51284200{n}", birth=f"1980010{n + 1}", categories={},
               coverages=[Cov(policy=f"P{n}", end=None, line=line)])
        for n, line in ((0, "HLT"), (1, "DEN"))
    ]  # fmt: skip
    rid = feed(gw, partner, interchange(people, control=41))
    with gw.reads() as s:
        done = s.scalars(
            select(MemberEventRow.outcome)
            .where(MemberEventRow.receipt_id == rid)
            .order_by(MemberEventRow.seq)
        ).all()
    assert list(done) == ["applied", "rejected"]
    with gw.reads() as s:
        rows = s.scalars(
            select(BusinessFinding).where(
                BusinessFinding.receipt_id == rid, BusinessFinding.rule == "member-key-conflict"
            )
        ).all()
    assert len(rows) == 1 and "--ref17 category" in rows[0].message
    held = members(gw)["HOURLY"]
    assert (held.first_name, [c.insurance_line for c in held.coverages]) == ("EMP0", ["HLT"])


def test_an_employers_ref17_is_a_reporting_category_not_a_member(gw: Gateway) -> None:
    """An employer's 2000 REF*17 is the TR3's Client Reporting Category (SALARIED, HOURLY):
    set so (`partner rules --ref17 category`), employees are told apart by REF*0F and their
    dependents by who they are. Taken as the member's id, as an exchange's is, five employees
    became two members holding a mix of their elections."""
    partner = add_va(gw)
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", ref17="category")
    people = [
        Member(subscriber_id=f"20{n}", member_id="SALARIED", last="ROE", first=f"EMP{n}",
               ssn=f"51284100{n}", coverages=[Cov(policy="GRP77", end=None)])
        for n in range(3)
    ] + [
        dependent("200", "SALARIED", "KID", "512841009", coverages=[Cov(policy="GRP77",
                                                                        end=None)]),
    ]  # fmt: skip
    rid = feed(gw, partner, interchange(people, control=21))
    assert {o for o, _ in outcomes(gw, rid).values()} == {"applied"}
    held = members(gw)
    assert sorted(k for k in held if held[k].subscriber) == ["200", "201", "202"]
    (kid,) = [m for m in held.values() if not m.subscriber]
    assert kid.member_key.startswith("200:") and kid.subscriber_number == "200"
    with unit_of_work(gw.sessions) as s:
        assert rule_settings(configure_rules(s, "va"))["ref17"] == "category"  # kept
        configure_rules(s, "va", ref17="member-id")
        assert rule_settings(configure_rules(s, "va"))["ref17"] == "member-id"


def test_an_employers_july_plan_year_renews_without_losing_january_to_june(
    gw_on_both: Gateway,
) -> None:
    """An employer whose plan year starts in July (`partner rules --plan-year-start 7`),
    through the worker on SQLite and PostgreSQL: the July 2028 renewal of an open-ended
    enrollment ends the 2027 one on June 30, 2028 — billed January to June — and a February
    hire is renewed, not refused as a duplicate-add. On the calendar plan year (before the
    setting) the renewal ended it on December 31 and refused the February hire."""
    gw = gw_on_both
    partner = add_va(gw)
    with unit_of_work(gw.sessions) as s:
        assert rule_settings(configure_rules(s, "va", plan_year_start=7))["plan_year_start"] == 7
        assert rule_settings(configure_rules(s, "va", ref17="category"))["plan_year_start"] == 7

    def employee(n: int, begin: str, reason: str = "EC") -> Member:
        return Member(subscriber_id=f"30{n}", member_id="HOURLY", last="ROE", first=f"EMP{n}",
                      ssn=f"51284200{n}", reason=reason,
                      coverages=[Cov(policy="GRP88", begin=begin, end=None)],
                      categories={"PRE AMT 1": ("9X", "300.00")},
                      category_period=begin)  # fmt: skip

    first = feed(gw, partner, interchange([employee(0, "20270701")], control=31))
    hire = feed(gw, partner, interchange([employee(1, "20280201")], control=32))
    renewal = feed(
        gw,
        partner,
        interchange([employee(n, "20280701", reason="41") for n in (0, 1)], control=33),
    )
    for rid in (first, hire, renewal):
        assert {o for o, _ in outcomes(gw, rid).values()} == {"applied"}, outcomes(gw, rid)
    held = members(gw)
    years = {
        k: sorted((c.plan_year, str(c.benefit_begin), str(c.benefit_end)) for c in m.coverages)
        for k, m in held.items()
    }
    assert years == {
        "300": [(2027, "2027-07-01", "2028-06-30"), (2028, "2028-07-01", "None")],
        "301": [(2027, "2028-02-01", "2028-06-30"), (2028, "2028-07-01", "None")],
    }
    with unit_of_work(gw.sessions) as s:
        rows = views.policy_months(s, partner, "GRP88", [(2028, 3), (2028, 7)])
    billed = sorted((r.member_key, r.line.month, str(r.line.premium)) for r in rows)
    assert billed == [
        ("300", "2028-03", "300.00"),
        ("300", "2028-07", "300.00"),
        ("301", "2028-03", "300.00"),
        ("301", "2028-07", "300.00"),
    ]


def test_a_brokers_groups_keep_their_own_plan_years(gw: Gateway) -> None:
    """A TPA sends every employer group under one ISA ID: its plan years start in July
    (`--plan-year-start 7`) but group PDL7700's in January (`--group-plan-year PDL7700=1`,
    the set's REF*38; else its N1*P5 sponsor id). That group's January renewal ends the
    previous enrollment on December 31, not June 30 (July to December were lost), and the
    July groups are as before."""
    partner = add_va(gw)
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", ref17="category", plan_year_start=7,
                        group_plan_years={"PDL7700": 1, "261594837": 10},
                        severities={"maintenance-combination": "ignore"})  # fmt: skip
        configure_rules(s, "va", group_plan_years={"261594837": None})  # taken back
        assert rule_settings(configure_rules(s, "va"))["plan_year_start_by_group"] == {"PDL7700": 1}

    def employee(n: int, begin: str, reason: str = "EC") -> Member:
        return Member(subscriber_id=f"40{n}", member_id="", last="ROE", first=f"EMP{n}",
                      ssn=f"51284400{n}", reason=reason,
                      coverages=[Cov(policy=f"G{n}", begin=begin, end=None)])  # fmt: skip

    for control, people, group in (
        (71, [employee(0, "20270101")], "PDL7700"),
        (72, [employee(0, "20280101", "41")], "PDL7700"),
        (73, [employee(1, "20270701")], "HBV20418"),
        (74, [employee(1, "20280701", "41")], "HBV20418"),
    ):
        rid = feed(gw, partner, interchange(people, control=control, master_policy=group))
        assert {o for o, _ in outcomes(gw, rid).values()} == {"applied"}, outcomes(gw, rid)
    years = {
        k: sorted((c.plan_year, str(c.benefit_begin), str(c.benefit_end)) for c in m.coverages)
        for k, m in members(gw).items()
    }
    assert years == {
        "400": [(2027, "2027-01-01", "2027-12-31"), (2028, "2028-01-01", "None")],
        "401": [(2027, "2027-07-01", "2028-06-30"), (2028, "2028-07-01", "None")],
    }


def test_one_groups_audit_reconciles_that_group_only(gw_on_both: Gateway) -> None:
    """A TPA sends two employer groups under one ISA ID (REF*38 PDL7700 and HBV20418), then
    PDL7700's full-file audit listing one of its two employees: the other PDL7700 employee is
    missing from the file; HBV20418's employees are not (they were all listed as missing)."""
    gw = gw_on_both
    partner = add_va(gw)
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", ref17="category",
                        severities={"maintenance-combination": "ignore"})  # fmt: skip

    def employee(n: int, **kw: object) -> Member:
        kw.setdefault("coverages", [Cov(policy=f"G{n}", end=None)])
        return Member(subscriber_id=f"50{n}", member_id="", last="ROE", first=f"EMP{n}",
                      ssn=f"51284600{n}", **kw)  # type: ignore[arg-type]  # fmt: skip

    feed(gw, partner, interchange([employee(0), employee(1)], control=81, master_policy="PDL7700"))
    feed(gw, partner, interchange([employee(2), employee(3)], control=82, master_policy="HBV20418"))
    listed = employee(0, maintenance="030", reason="XN",
                      coverages=[Cov(maintenance="030", policy="G0", end=None)])  # fmt: skip
    feed(gw, partner, interchange([listed], control=83, master_policy="PDL7700", action="4",
                                  bgn_date="20270301"))  # fmt: skip
    with gw.reads() as s:
        missing = s.scalars(
            select(ReconciliationItem.member_key).where(
                ReconciliationItem.kind == "missing_in_file"
            )
        ).all()
    assert missing == ["501"]


def test_two_employers_staff_with_the_same_employee_id_are_two_members(gw: Gateway) -> None:
    """A TPA's two employer groups (REF*38 HBV20418 and PDL7700) each have an employee D100,
    two people (`--ref17 category`): with `--keys by-group` they are two members, GROUP/D100,
    each with its own family; partner-wide keys refuse the second as member-key-conflict."""
    partner = add_va(gw)
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", ref17="category",
                        severities={"maintenance-combination": "ignore"})  # fmt: skip

    def staff(first: str, ssn: str, wife: str) -> list[Member]:
        return [
            Member(subscriber_id="D100", member_id="", last="ROE", first=first, ssn=ssn,
                   coverages=[Cov(policy="", end=None)], policy="GRP"),
            dependent("D100", "", wife, ssn[:-1] + "9", relationship="01",
                      coverages=[Cov(policy="", end=None)]),
        ]  # fmt: skip

    first = feed(gw, partner, interchange(staff("ANN", "512847001", "BOB"), control=91,
                                          master_policy="HBV20418"))  # fmt: skip
    assert {o for o, _ in outcomes(gw, first).values()} == {"applied"}
    refused = feed(gw, partner, interchange(staff("CAL", "512847002", "DEE"), control=92,
                                            master_policy="PDL7700"))  # fmt: skip
    assert outcomes(gw, refused)["D100"] == ("rejected", ["duplicate-add", "member-key-conflict"])
    with unit_of_work(gw.sessions) as s:  # a TPA set up so before its first file
        tpa, _ = add_partner(s, name="tpa", isa_qualifier="ZZ", isa_id="TPA0001")
        tpa_id = tpa.id
        settings = configure_rules(s, "tpa", ref17="category", keys="by-group",
                                   severities={"maintenance-combination": "ignore"})  # fmt: skip
        assert rule_settings(settings)["keys"] == "by-group"
    for control, (person, ssn, wife), group in (
        (93, ("ANN", "512847001", "BOB"), "HBV20418"),
        (94, ("CAL", "512847002", "DEE"), "PDL7700"),
    ):
        rid = feed(gw, tpa_id, interchange(staff(person, ssn, wife), control=control,
                                           master_policy=group, sender="TPA0001"))  # fmt: skip
        assert {o for o, _ in outcomes(gw, rid).values()} == {"applied"}, outcomes(gw, rid)
    with gw.reads() as s:
        held = s.scalars(select(LedgerMember).where(LedgerMember.partner_id == tpa_id)).all()
        got = sorted((m.first_name, m.subscriber, m.subscriber_number) for m in held)
        keys = sorted(m.member_key for m in held if m.subscriber)
    assert got == [
        ("ANN", True, "HBV20418/D100"),
        ("BOB", False, "HBV20418/D100"),
        ("CAL", True, "PDL7700/D100"),
        ("DEE", False, "PDL7700/D100"),
    ]
    assert keys == ["HBV20418/D100", "PDL7700/D100"]
    # The core's events say which employer group each member's set was for.
    with gw.reads() as s:
        sent = [json.loads(d.payload) for d in s.scalars(
            select(CoreDelivery).where(CoreDelivery.partner_id == tpa_id))]  # fmt: skip
    assert sorted({(p["group"], p["sponsor"]) for p in sent}) == [
        ("HBV20418", "VIRGINIA HEALTH BENEFIT EXCHANGE"),
        ("PDL7700", "VIRGINIA HEALTH BENEFIT EXCHANGE"),
    ]


def test_an_employers_additions_are_effectuated_as_sent(gw: Gateway) -> None:
    """An employer's group has no binder payment (`partner rules --effectuation on-add`): its
    additions are effectuated at once, not left `initial` awaiting an effectuation that never
    comes (a core system may hold the claims of a member awaiting effectuation). An exchange's
    (the default) stay initial until 021/28 or a paid-through date."""
    partner = add_va(gw)
    with unit_of_work(gw.sessions) as s:
        assert rule_settings(configure_rules(s, "va"))["effectuation"] == "binder"
    feed(gw, partner, interchange(family(), control=51))
    assert {c.status for m in members(gw).values() for c in m.coverages} == {"initial"}
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", effectuation="on-add")
        assert rule_settings(configure_rules(s, "va", ref17="member-id"))["effectuation"] == (
            "on-add"
        )  # kept when other settings change
    ended = rosalind(maintenance="024", reason="07", categories={},
                     coverages=[Cov(maintenance="024", begin=None, end="20270331")])  # fmt: skip
    rehired = rosalind(reason="XN", categories={}, coverages=[Cov(begin="20270801")])
    for control, people in ((52, [ended]), (53, [rehired])):
        rid = feed(gw, partner, interchange(people, control=control))
        assert {o for o, _ in outcomes(gw, rid).values()} == {"applied"}, outcomes(gw, rid)
    held = {k: sorted((c.stint, c.status) for c in m.coverages) for k, m in members(gw).items()}
    assert held == {
        SUB: [(0, "terminated"), (1, "effectuated")],
        "0005100003": [(0, "terminated")],  # ended with the subscriber's policy in March
    }


def test_a_dependent_sent_without_ref_1l_is_on_its_subscribers_policy(
    gw_on_both: Gateway,
) -> None:
    """An employer sends the group's policy as the subscriber's 2000 REF*1L only (the TR3
    makes it situational): a spouse in the same file and a newborn sent alone later are on
    the subscriber's policy, and the subscriber's termination ends them. They were put on a
    policy named after the subscriber's REF*0F, which the termination did not reach: the
    dependents stayed covered, open-ended."""
    gw = gw_on_both
    partner = add_va(gw)
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", ref17="category", effectuation="on-add",
                        severities={"maintenance-combination": "ignore"})  # fmt: skip
    open_ended = [Cov(policy="", end=None)]
    employee = Member(subscriber_id="A100", member_id="", last="ROE", first="ANN",
                      ssn="512843001", policy="HBV20418", coverages=open_ended)  # fmt: skip
    spouse = dependent("A100", "", "BEN", "512843002", relationship="01", coverages=open_ended)
    newborn = dependent("A100", "", "CAL", "512843003", birth="20270301", coverages=[
        Cov(policy="", begin="20270301", end=None)])  # fmt: skip
    ended = Member(subscriber_id="A100", member_id="", last="ROE", first="ANN",
                   ssn="512843001", policy="HBV20418", maintenance="024", reason="07",
                   coverages=[Cov(maintenance="024", policy="", begin=None,
                                  end="20270930")])  # fmt: skip
    for control, people in ((61, [employee, spouse]), (62, [newborn]), (63, [ended])):
        rid = feed(gw, partner, interchange(people, control=control))
        assert {o for o, _ in outcomes(gw, rid).values()} == {"applied"}, outcomes(gw, rid)
    held = {
        m.first_name: [(c.policy_number, c.status, str(c.benefit_end)) for c in m.coverages]
        for m in members(gw).values()
    }
    assert held == {
        "ANN": [("HBV20418", "terminated", "2027-09-30")],
        "BEN": [("HBV20418", "terminated", "2027-09-30")],
        "CAL": [("HBV20418", "terminated", "2027-09-30")],
    }


def test_a_family_enrolled_again_after_its_termination_keeps_both_stints(
    gw_on_both: Gateway,
) -> None:
    """Terminated in March, enrolled again in August of the same plan year (a rehire; COBRA
    after a gap), through the worker on SQLite and PostgreSQL: each member holds two
    enrollments of plan year 2027 (stints 0 and 1), so February and September are both billed.
    Reusing the first enrollment moved its begin to August and dropped January to March."""
    gw = gw_on_both
    partner = add_va(gw)

    def family_from(begin: str, **kw: object) -> list[Member]:
        cov = [Cov(begin=begin, end="20271231")]
        sub = rosalind(coverages=cov, category_period=begin, **kw)
        dep = dependent(SUB, "0005100003", "MILO", "512849303", coverages=cov,
                        categories={"PRE AMT 1": ("9X", "200.00")}, category_period=begin,
                        **kw)  # fmt: skip
        return [sub, dep]

    first = feed(gw, partner, interchange(family_from("20270101"), control=41))
    ended = rosalind(maintenance="024", reason="07", categories={},
                     coverages=[Cov(maintenance="024", begin=None, end="20270331")])  # fmt: skip
    term = feed(gw, partner, interchange([ended], control=42))
    again = feed(gw, partner, interchange(family_from("20270801", reason="XN"), control=43))
    for rid in (first, term, again):
        assert {o for o, _ in outcomes(gw, rid).values()} == {"applied"}, outcomes(gw, rid)
    held = {
        k: sorted((c.plan_year, c.stint, c.status, str(c.benefit_begin), str(c.benefit_end))
                  for c in m.coverages)
        for k, m in members(gw).items()
    }  # fmt: skip
    both = [
        (2027, 0, "terminated", "2027-01-01", "2027-03-31"),
        (2027, 1, "initial", "2027-08-01", "2027-12-31"),
    ]
    assert held == {SUB: both, "0005100003": both}
    # The core and the API tell the stints apart by number, not only by their dates.
    with gw.reads() as s:
        sent = [json.loads(d.payload) for d in s.scalars(select(CoreDelivery))]
        rec = views.member_of(s, partner, SUB)
        assert rec is not None
        shown = [(e["plan_year"], e["stint"]) for e in views.member_json(rec)["enrollments"]]
    assert shown == [(2027, 0), (2027, 1)]
    rehired = [p for p in sent if p["member_key"] == SUB][-1]
    assert [(e["plan_year"], e["stint"]) for e in rehired["enrollments"]] == [(2027, 1)]
    with unit_of_work(gw.sessions) as s:
        rows = views.policy_months(s, partner, "31200457", [(2027, 2), (2027, 5), (2027, 9)])
    billed = sorted((r.line.month, r.member_key, str(r.line.premium)) for r in rows)
    assert billed == [
        ("2027-02", "0005100001", "300.00"),
        ("2027-02", "0005100003", "200.00"),
        ("2027-09", "0005100001", "300.00"),
        ("2027-09", "0005100003", "200.00"),
    ]


def test_lifecycle_add_change_term_reinstate(gw: Gateway, partner: int) -> None:
    first = feed(gw, partner, interchange(family(), control=1))
    assert outcomes(gw, first) == {SUB: ("applied", []), "0005100003": ("applied", [])}
    ledger_now = members(gw)
    assert ledger_now[SUB].status == "active" and ledger_now[SUB].subscriber
    cov = ledger_now["0005100003"].coverages[0]
    assert (cov.insurance_line, cov.plan_id, cov.policy_number, cov.premium) == (
        "HLT",
        "48213VA004000701",
        "31200457",
        "200.00",
    )
    assert str(cov.benefit_begin) == "2027-01-01" and cov.status == "initial"  # not yet paid
    assert [(str(p.begin), p.premium) for p in cov.periods] == [("2027-01-01", "200.00")]

    moved = rosalind(maintenance="001", reason="25", street="9 NEW RD", coverages=[], categories={})
    feed(gw, partner, interchange([moved], control=2, bgn_date="20270102"))
    assert json.loads(members(gw)[SUB].residence)["line1"] == "9 NEW RD"
    assert members(gw)[SUB].policy_key == "31200457"  # a change without 2300 keeps its policy
    with gw.reads() as s:  # the history keeps both addresses
        payloads = [
            json.loads(p)
            for p in s.scalars(
                select(MemberEventRow.payload)
                .where(MemberEventRow.member_key == SUB)
                .order_by(MemberEventRow.id)
            )
        ]
    assert [p["residence"]["line1"] for p in payloads] == ["100 MAIN ST", "9 NEW RD"]

    term = dependent(
        SUB,
        "0005100003",
        "MILO",
        "512849303",
        maintenance="024",
        reason="07",
        eligibility_end="20270331",
        coverages=[Cov(maintenance="024", end="20270331")],
    )
    feed(gw, partner, interchange([term], control=3, bgn_date="20270301"))
    milo = members(gw)["0005100003"]
    assert milo.status == "terminated"
    assert (milo.coverages[0].status, str(milo.coverages[0].benefit_end)) == (
        "terminated",
        "2027-03-31",
    )

    back = dependent(
        SUB, "0005100003", "MILO", "512849303", maintenance="025", reason="41",
        coverages=[Cov(maintenance="025")],
    )  # fmt: skip
    feed(gw, partner, interchange([back], control=4, bgn_date="20270401"))
    milo = members(gw)["0005100003"]
    assert milo.status == "active"
    assert (milo.coverages[0].status, str(milo.coverages[0].benefit_end)) == (
        "initial",
        "2027-12-31",
    )

    with gw.reads() as s:  # one outbox event per applied member event, each key once
        applied = s.scalar(select(func.count()).where(MemberEventRow.outcome == "applied"))
        keys = s.scalars(select(CoreDelivery.idempotency_key)).all()
    assert applied == 5 and len(keys) == 5 and len(set(keys)) == 5


def test_an_old_file_sent_again_does_not_reopen_a_termination(gw, partner) -> None:
    """Day 1 adds a family, day 2 terminates the dependent at March 31, then day 1's file comes
    again under a new ISA13 (exchanges resend). The subscriber's addition was refused as a
    duplicate, but the dependent's was applied: its enrollment went back to the whole year and
    the termination was gone, without a word (found by an exchange sender's run). Now refused
    as add-over-termination; the termination stands and nothing reaches the core system."""
    feed(gw, partner, interchange(family(), control=1))
    term = dependent(SUB, "0005100003", "MILO", "512849303", maintenance="024", reason="07",
                     eligibility_end="20270331",
                     coverages=[Cov(maintenance="024", end="20270331")])  # fmt: skip
    feed(gw, partner, interchange([term], control=2, bgn_date="20270301"))
    with gw.reads() as s:
        events_before = s.scalar(select(func.count()).select_from(CoreDelivery))
    again = feed(gw, partner, interchange(family(), control=3))
    assert outcomes(gw, again) == {
        SUB: ("rejected", ["duplicate-add"]),
        "0005100003": ("rejected", ["add-over-termination"]),
    }
    milo = members(gw)["0005100003"]
    assert milo.status == "terminated"
    assert [(c.status, str(c.benefit_begin), str(c.benefit_end)) for c in milo.coverages] == [
        ("terminated", "2027-01-01", "2027-03-31")
    ]
    with gw.reads() as s:
        assert s.scalar(select(func.count()).select_from(CoreDelivery)) == events_before
        finding = s.scalars(
            select(BusinessFinding).where(BusinessFinding.rule == "add-over-termination")
        ).one()
    assert "2027-03-31" in finding.message and finding.severity == "reject"


def test_an_old_reinstatement_sent_again_does_not_undo_a_later_termination(gw, partner) -> None:
    """The family terminated at March 31 and reinstated from April 1 (each member its own 025,
    no 2300, as a state exchange sends them); the child terminated at July 31 and the
    subscriber at September 30; then April's reinstatement file came again under a new ISA13.
    It was applied: both enrollments were back to December 31 and both later terminations were
    gone, without a word (found by the billing analyst's run). A reinstatement from a day the
    enrollment was in force is not of the termination held: refused (reinstate-covered-date),
    and nothing reaches the core system. April's own reinstatement, from the day after the
    end, applied."""
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", severities={"maintenance-combination": "ignore"})
    feed(gw, partner, interchange(family(), control=1))

    def each(maintenance: str, reason: str, **kw: object) -> list[Member]:
        return [
            rosalind(maintenance=maintenance, reason=reason, categories={}, coverages=[],
                     policy="31200457", **kw),
            dependent(SUB, "0005100003", "MILO", "512849303", maintenance=maintenance,
                      reason=reason, coverages=[], policy="31200457", **kw),
        ]  # fmt: skip

    feed(gw, partner, interchange(each("024", "07", eligibility_end="20270331"), control=2))
    back = interchange(each("025", "41", effective="20270401"), control=3, bgn_date="20270405")
    assert {o for o, _ in outcomes(gw, feed(gw, partner, back)).values()} == {"applied"}
    child_ends, sub_ends = (
        each("024", "07", eligibility_end="20270731")[1],
        each("024", "07", eligibility_end="20270930")[0],
    )
    feed(gw, partner, interchange([child_ends], control=4, bgn_date="20270701"))
    feed(gw, partner, interchange([sub_ends], control=5, bgn_date="20270901"))
    with gw.reads() as s:
        events_before = s.scalar(select(func.count()).select_from(CoreDelivery))
    again = feed(gw, partner, interchange(each("025", "41", effective="20270401"), control=6,
                                          bgn_date="20270405"))  # fmt: skip
    assert outcomes(gw, again) == {
        SUB: ("rejected", ["reinstate-covered-date"]),
        "0005100003": ("rejected", ["reinstate-covered-date"]),
    }
    held = {k: [(c.status, str(c.benefit_end)) for c in m.coverages]
            for k, m in members(gw).items()}  # fmt: skip
    assert held == {
        SUB: [("terminated", "2027-09-30")],
        "0005100003": [("terminated", "2027-07-31")],
    }
    with gw.reads() as s:
        assert s.scalar(select(func.count()).select_from(CoreDelivery)) == events_before
    # The subscriber's own reinstatement, from the day after its end, applies.
    resumes = each("025", "41", effective="20271001")[0]
    assert outcomes(gw, feed(gw, partner, interchange([resumes], control=7)))[SUB][0] == "applied"
    assert [(c.status, str(c.benefit_end)) for c in members(gw)[SUB].coverages] == [
        ("initial", "2027-12-31")
    ]


def test_each_partners_core_events_are_numbered_one_by_one_without_gaps(gw_on_both) -> None:
    """`partner_seq`: 1, 2, 3, … per partner in ledger order, whatever the other partners send
    between its files and whatever the ledger rejects (no event, no number)."""
    gw = gw_on_both
    va = add_va(gw)
    with unit_of_work(gw.sessions) as s:
        md = add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0FFM")[0].id
    feed(gw, va, interchange(family(), control=1))
    feed(gw, md, interchange(family(), control=2, sender="MD0FFM"))
    moved = rosalind(maintenance="001", reason="25", street="9 NEW RD", coverages=[], categories={})
    again = feed(gw, va, interchange([moved, rosalind()], control=3, bgn_date="20270102"))
    with gw.reads() as s:  # the change applies; the add again is refused (duplicate-add)
        assert [e.outcome for e in recorded_events(s, again)] == ["applied", "rejected"]
    feed(gw, md, interchange([moved], control=4, sender="MD0FFM", bgn_date="20270102"))
    with gw.reads() as s:
        rows = s.execute(
            select(
                CoreDelivery.partner_id, CoreDelivery.partner_seq, CoreDelivery.payload
            ).order_by(CoreDelivery.id)
        ).all()
    numbers: dict[int, list[int]] = {va: [], md: []}
    for partner_id, seq, payload in rows:
        assert json.loads(payload)["partner_seq"] == seq
        numbers[partner_id].append(seq)
    assert numbers == {va: [1, 2, 3], md: [1, 2, 3]}


def test_a_reprocessed_file_is_acknowledged_again_and_never_applied_twice(gw, partner) -> None:
    """An operator's reprocess of an applied file: a new 999, the old one superseded, the file's
    ledger status left as it was, so the ledger stage has nothing to claim."""
    receipt_id = feed(gw, partner, interchange(family(), control=1))
    with unit_of_work(gw.sessions) as s:
        assert repo.reprocess(s, receipt_id, "ops") is not None
    worker = Worker(gw)
    assert worker.run_once()
    assert not worker.apply_ledger_once()
    with gw.reads() as s:
        r = s.get_one(Receipt, receipt_id)
        assert (r.status, r.outcome, r.ledger_status) == ("processed", "accepted", "applied")
        acks = s.execute(select(Ack.kind, Ack.superseded).where(Ack.receipt_id == receipt_id))
        assert sorted(tuple(row) for row in acks) == [("999", False), ("999", True)]
        applied = s.scalar(select(func.count()).where(MemberEventRow.outcome == "applied"))
        deliveries = s.scalar(select(func.count()).select_from(CoreDelivery))
    assert applied == 2 and deliveries == 2


def test_reprocessing_a_failed_ledger_applies_it_again_under_the_same_acks(
    gw, partner, monkeypatch
) -> None:
    """A file whose ledger stage was parked as failed (a bug): reprocess runs that stage again,
    from where it stopped, and sends no new acks — the partner's 999 stands (found by an on-call
    drill: it validated the file again and sent .r2 acks)."""
    import gateway.worker.run as run

    def bug(*args: object, **kwargs: object) -> str:
        raise RuntimeError("simulated ledger bug")

    monkeypatch.setattr(run, "apply_receipt", bug)
    receipt_id = _receipt(gw, partner, interchange(family(), control=1))
    worker = Worker(gw)
    assert worker.run_once()
    for _ in range(gw.settings.max_attempts):
        with unit_of_work(gw.sessions) as s:
            s.get_one(Receipt, receipt_id).lease_expires_at = None  # skip the back-off
        assert worker.apply_ledger_once()
    assert outbox.deliver_acks(gw) == 1
    with gw.reads() as s:
        assert s.get_one(Receipt, receipt_id).ledger_status == "failed"
    monkeypatch.undo()
    with unit_of_work(gw.sessions) as s:
        assert repo.reprocess(s, receipt_id, "ops") is not None
    assert not worker.run_once()  # nothing to validate again
    assert worker.apply_ledger_once()
    assert outbox.deliver_acks(gw) == 0
    with gw.reads() as s:
        r = s.get_one(Receipt, receipt_id)
        assert (r.status, r.outcome, r.ledger_status) == ("processed", "accepted", "applied")
        acks = s.execute(select(Ack.kind, Ack.superseded).where(Ack.receipt_id == receipt_id))
        assert sorted(tuple(row) for row in acks) == [("999", False)]
        assert s.scalar(select(func.count()).select_from(CoreDelivery)) == 2


def test_each_reprocessing_writes_its_acks_beside_the_earlier_ones(gw, partner) -> None:
    """The acks of a file processed again are new files (.r2, .r3), never written over the
    ones a partner may have fetched already (found by a new-user run: same names, rewritten)."""
    receipt_id = feed(gw, partner, interchange(family(), control=1))
    assert outbox.deliver_acks(gw) == 1
    for _ in range(2):
        with unit_of_work(gw.sessions) as s:
            assert repo.reprocess(s, receipt_id, "ops") is not None
        assert Worker(gw).run_once()
        assert outbox.deliver_acks(gw) == 1
    with gw.reads() as s:
        names = s.scalars(
            select(Ack.filename).where(Ack.receipt_id == receipt_id).order_by(Ack.id)
        ).all()
    assert len(set(names)) == 3, names
    assert [n.rsplit(".", 2)[-2:] for n in names] == [
        ["000000001", "999"],
        ["r2", "999"],
        ["r3", "999"],
    ]
    written = gw.settings.data_dir / "sftp" / "va" / "outbound"
    assert sorted(p.name for p in written.iterdir()) == sorted(names)


def test_duplicate_add_rejected_and_the_rest_of_the_file_applies(gw, partner) -> None:
    feed(gw, partner, interchange(family(), control=1))
    newcomer = Member(
        subscriber_id="0005100010",
        member_id="0005100010",
        last="WAINWRIGHT-OSEI",
        first="TOBIAS",
        ssn="530194862",
        coverages=[Cov(policy="31200458", level="IND")],
    )
    second = feed(gw, partner, interchange([rosalind(categories={}), newcomer], control=2))
    assert outcomes(gw, second) == {
        SUB: ("rejected", ["duplicate-add"]),
        "0005100010": ("applied", []),
    }
    with gw.reads() as s:
        r = s.get_one(Receipt, second)
        assert (r.members_applied, r.members_business_rejected) == (1, 1)
        assert r.ledger_status == "applied"
        # the rejected member left the ledger alone: its last event is still the first file's
        rosalind_row = s.scalar(select(LedgerMember).where(LedgerMember.member_key == SUB))
        first_event = s.get_one(MemberEventRow, rosalind_row.last_event_id)
        assert first_event.receipt_id != second


def test_change_term_reinstate_for_unknown_member_rejected(gw, partner) -> None:
    with unit_of_work(gw.sessions) as s:  # the FFE sends no 025: not what this test is about
        configure_rules(s, "va", severities={"maintenance-combination": "ignore"})

    def ghost(maintenance: str, reason: str, coverages: list[Cov]) -> Member:
        return Member(
            subscriber_id="0005199999",
            member_id="0005199999",
            last="FERRO",
            first="IG",
            ssn="540183726",
            maintenance=maintenance,
            reason=reason,
            coverages=coverages,
        )

    files = [
        ghost("001", "25", []),
        ghost("024", "07", [Cov(maintenance="024", end="20270331")]),
        ghost("025", "41", [Cov(maintenance="025")]),
    ]
    for n, m in enumerate(files, 1):
        rid = feed(gw, partner, interchange([m], control=n))
        assert outcomes(gw, rid) == {"0005199999": ("rejected", ["unknown-member"])}
    assert members(gw) == {}


@pytest.mark.parametrize(
    ("members_in", "qty", "rule"),
    [
        (family(), {"TO": 3}, "qty-totals"),
        ([rosalind(relationship="01")], None, "subscriber-relationship"),
        (
            [rosalind(coverages=[Cov(begin="20270601", end="20270101")])],
            None,
            "end-before-begin",
        ),
        ([rosalind(ssn="999999999")], None, "repeating-digits"),
        ([rosalind(zip="00000")], None, "repeating-digits"),
        ([rosalind(phone="5555555555")], None, "repeating-digits"),
        (
            [rosalind(categories={"PRE AMT 1": ("9X", "300.00"), "PRE AMT TOT": ("9X", "310.00")})],
            None,
            "premium-total",
        ),
        (
            [
                rosalind(
                    categories={
                        "APTC AMT": ("9V", "100.00"),
                        "PRE AMT 1": ("9X", "300.00"),
                        "PRE AMT TOT": ("9X", "300.00"),
                        "TOT RES AMT": ("9V", "250.00"),
                    }
                )
            ],
            None,
            "responsible-amount",
        ),
        (
            [dependent("0005100077", "0005100078", "NOBODY", "512849377")],
            None,
            "dependent-without-subscriber",
        ),
        ([rosalind(), rosalind()], None, "member-twice-in-file"),
        ([rosalind(reason="AI", categories={})], None, "maintenance-combination"),
        ([rosalind(category_period="20270101-20270331")], None, "premium-gap"),
        (
            [rosalind(maintenance="024", reason="07", categories={}, coverages=[])],
            None,
            "term-without-end-date",
        ),
    ],
)
def test_each_rule_fires_and_its_severity_is_the_partners(
    gw, partner, members_in, qty, rule
) -> None:
    rid = feed(gw, partner, interchange(members_in, control=1, qty=qty))
    found = {r for _, (_, rules) in outcomes(gw, rid).items() for r in rules}
    assert rule in found
    with gw.reads() as s:
        severities = set(
            s.scalars(select(BusinessFinding.severity).where(BusinessFinding.rule == rule))
        )
    assert severities == {RULES[rule].default.value}

    # The same file (a new ISA13) with the rule ignored: no finding of that rule.
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", severities={rule: "ignore"})
    with unit_of_work(gw.sessions) as s:  # start from an empty ledger again
        for model in (CoreDelivery, BusinessFinding, MemberEventRow, LedgerMember):
            s.query(model).delete()
    rid = feed(gw, partner, interchange(members_in, control=2, qty=qty))
    found = {r for _, (_, rules) in outcomes(gw, rid).items() for r in rules}
    assert rule not in found


def test_a_member_sent_again_in_a_later_chunk_is_twice_in_the_file(
    gw, partner, monkeypatch
) -> None:
    # One family a chunk: the first chunk looks nothing up (no member of the file is recorded
    # yet), the second finds the first's member in the file's recorded events.
    monkeypatch.setattr(ledger, "CHUNK_MEMBERS", 1)
    rid = feed(gw, partner, interchange([rosalind(), rosalind()], control=1))
    with gw.reads() as s:
        events = recorded_events(s, rid)
        rules = [
            sorted(s.scalars(select(BusinessFinding.rule).where(BusinessFinding.event_id == e.id)))
            for e in events
        ]
    assert [e.member_key for e in events] == [SUB, SUB]
    assert "member-twice-in-file" not in rules[0]
    assert "member-twice-in-file" in rules[1]


def test_a_family_terminated_member_by_member_subscriber_first_is_applied(
    gw: Gateway, partner: int
) -> None:
    """CMS sends a 024 for each member, the subscriber first: the dependent's own termination
    is applied (it was dependent-without-subscriber: its subscriber, ended a moment before,
    was no longer 'present')."""
    feed(gw, partner, interchange(family(), control=1))
    end = {"maintenance": "024", "reason": "14", "eligibility_end": "20270630", "categories": {}}
    sub = rosalind(**end, coverages=[Cov(maintenance="024", end="20270630")])
    child = dependent(SUB, "0005100003", "MILO", "512849303", **end,
                      coverages=[Cov(maintenance="024", end="20270630")])  # fmt: skip
    rid = feed(gw, partner, interchange([sub, child], control=2, bgn_date="20270615"))
    got = outcomes(gw, rid)  # (maintenance-combination warns: 024/14 without its AMRC)
    assert {k: (o, "dependent-without-subscriber" in r) for k, (o, r) in got.items()} == {
        SUB: ("applied", False),
        "0005100003": ("applied", False),
    }
    assert {m.member_key: m.coverages[0].status for m in members(gw).values()} == {
        SUB: "terminated",
        "0005100003": "terminated",
    }


@pytest.mark.parametrize("chunk_members", [1, 500])
def test_a_plan_change_in_one_file_applies_the_termination_then_the_new_addition(
    gw, partner, monkeypatch, chunk_members
) -> None:
    """A term of one policy and the addition of the next for one member, in one file (in one
    chunk, or the second in a later chunk): two transactions, both applied in file order. The
    same transaction sent again is still member-twice-in-file."""
    monkeypatch.setattr(ledger, "CHUNK_MEMBERS", chunk_members)
    alone = {"PRE AMT 1": ("9X", "300.00"), "PRE AMT TOT": ("9X", "300.00")}
    feed(gw, partner, interchange([rosalind(categories=alone)], control=1))
    term = rosalind(maintenance="024", reason="14", categories={},
                    coverages=[Cov(maintenance="024", end="20270630")])  # fmt: skip
    new_plan = rosalind(categories=alone, coverages=[Cov(policy="31200999", begin="20270701")])
    rid = feed(gw, partner, interchange([term, new_plan, new_plan], control=2))
    with gw.reads() as s:
        events = recorded_events(s, rid)
        rules = [
            sorted(s.scalars(select(BusinessFinding.rule).where(BusinessFinding.event_id == e.id)))
            for e in events
        ]
    assert [(e.maintenance_type, e.outcome) for e in events] == [
        ("024", "applied"),
        ("021", "applied"),
        ("021", "rejected"),
    ]
    assert "member-twice-in-file" not in rules[0] + rules[1]
    assert "member-twice-in-file" in rules[2]
    (member,) = members(gw).values()
    assert sorted((c.policy_number, c.status, str(c.benefit_end)) for c in member.coverages) == [
        ("31200457", "terminated", "2027-06-30"),
        ("31200999", "initial", "2027-12-31"),
    ]

    # Two changes of one member in one file, effective on other days: two transactions.
    def aptc(day: str, value: str) -> Member:
        return rosalind(maintenance="001", reason="AI", effective=day, coverages=[],
                        categories={"APTC AMT": ("9V", value)}, category_period=day)  # fmt: skip

    rid = feed(gw, partner, interchange([aptc("20270801", "120.00"),
                                         aptc("20270901", "140.00")], control=3))  # fmt: skip
    with gw.reads() as s:
        assert [e.outcome for e in recorded_events(s, rid)] == ["applied", "applied"]
    (member,) = members(gw).values()
    (new,) = [c for c in member.coverages if c.policy_number == "31200999"]
    assert [(str(p.begin), p.aptc) for p in new.periods][-2:] == [
        ("2027-08-01", "120.00"),
        ("2027-09-01", "140.00"),
    ]


@pytest.fixture
def gw_on_both(tmp_path, database_url):
    """A gateway on SQLite, and again on PostgreSQL, which enforces a column's width."""
    yield from in_process_gateway(tmp_path / "var", database_url)


def test_amounts_are_stored_as_their_decimal_whatever_their_width(gw_on_both) -> None:
    # A premium padded with zeros to 21 characters, and an absurd but readable CSR amount: the
    # columns were 20 wide and kept 000000000000000412.3 (billed 412.30) and lost a digit.
    gw = gw_on_both
    partner = add_va(gw)
    padded = rosalind(
        categories={
            "APTC AMT": ("9V", "0"),
            "PRE AMT 1": ("9X", "000000000000000412.37"),
            "PRE AMT TOT": ("9X", "412.37"),
            "TOT RES AMT": ("9V", "412.37"),
            "CSR AMT": ("9V", "-999999999999999999.99"),
            "RATING AREA": ("9X", "R-VA008"),
        }
    )
    rid = feed(gw, partner, interchange([padded], control=1))
    assert outcomes(gw, rid) == {SUB: ("applied", [])}
    with gw.reads() as s:
        terms = s.execute(
            select(
                LedgerPeriod.premium,
                LedgerPeriod.aptc,
                LedgerPeriod.csr_amount,
                LedgerPeriod.rating_area,
                LedgerCoverage.premium,
                LedgerCoverage.csr_amount,
            ).join(LedgerCoverage, LedgerCoverage.id == LedgerPeriod.coverage_id)
        ).one()
    assert tuple(terms) == (
        "412.37",
        "0",
        "-999999999999999999.99",
        "R-VA008",
        "412.37",
        "-999999999999999999.99",
    )


def test_a_finding_about_nm1_n4_or_per_names_that_segments_position(gw, partner) -> None:
    """Not the INS's: TED04 (824) and the finding point at the segment sent (found by a
    new-user run: an SSN placeholder was reported at position 5, the INS; NM1 was at 9)."""
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", severities={"repeating-digits": "reject"})
    content = interchange(
        [rosalind(ssn="999999999", zip="99999", phone="9999999999", categories={})], control=1
    )
    segments = [seg.strip() for seg in content.decode().split("~")]
    st = next(i for i, seg in enumerate(segments) if seg.startswith("ST*"))
    at = {seg[:3].rstrip("*"): i - st + 1 for i, seg in enumerate(segments) if i > st}
    rid = feed(gw, partner, content)
    with gw.reads() as s:
        found = sorted(
            (f.segment_id, f.segment_position, f.element_position)
            for f in s.scalars(select(BusinessFinding).where(BusinessFinding.receipt_id == rid))
        )
    assert found == sorted(
        [("NM1", at["NM1"], 9), ("N4", at["N4"], 3), ("PER", at["PER"], None)]
    ), (found, at)
    assert len({at["INS"], at["NM1"], at["N4"], at["PER"]}) == 4


def test_warn_applies_with_a_stored_finding(gw, partner) -> None:
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", severities={"duplicate-add": "warn"})
    feed(gw, partner, interchange(family(), control=1))
    rid = feed(gw, partner, interchange([rosalind(categories={})], control=2))
    assert outcomes(gw, rid) == {SUB: ("applied", ["duplicate-add"])}


def test_a_rejected_maintenance_combination_is_in_the_824_and_a_partner_list_allows_it(
    gw, partner
) -> None:
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", severities={"maintenance-combination": "reject"}, send_824=True)
    odd = rosalind(reason="AI", categories={})  # INS03 021 / INS04 AI: not in the CMS FFE table
    rid = feed(gw, partner, interchange([odd], control=1))
    assert outcomes(gw, rid) == {SUB: ("rejected", ["maintenance-combination"])}
    with gw.reads() as s:
        (advice,) = s.scalars(select(Ack.content).where(Ack.receipt_id == rid, Ack.kind == "824"))
    teds = [seg.strip() for seg in advice.decode().split("~") if seg.strip().startswith("TED*")]
    assert len(teds) == 1 and teds[0].startswith("TED*012*")  # X186: invalid combination

    # A non-CMS exchange's own list (stored beside the severities, which it leaves alone).
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", combinations=["021/AI", "001/*"])
    with gw.reads() as s:
        stored = json.loads(s.scalars(select(Partner.rule_severities)).one())
    assert stored == {
        "@maintenance-combinations": ["021/AI", "001/*"],
        "maintenance-combination": "reject",
    }
    rid = feed(gw, partner, interchange([odd], control=2))
    assert outcomes(gw, rid) == {SUB: ("applied", [])}
    with unit_of_work(gw.sessions) as s:  # an empty list: back to the CMS table
        configure_rules(s, "va", combinations=[])
    with gw.reads() as s:
        stored = json.loads(s.scalars(select(Partner.rule_severities)).one())
    assert stored == {"maintenance-combination": "reject"}


def test_plan_list_and_cms_term_rule(gw, partner) -> None:
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", plan_ids=["48213VA004000701"])
    other_plan = Member(
        subscriber_id="0005100040", member_id="0005100040", last="LOWE", first="ANA",
        ssn="530194840", coverages=[Cov(plan="99999VA999999999", policy="31200470")],
    )  # fmt: skip
    rid = feed(gw, partner, interchange([rosalind(categories={}), other_plan], control=1))
    assert outcomes(gw, rid) == {
        SUB: ("applied", []),
        "0005100040": ("rejected", ["plan-not-listed"]),
    }
    # A termination whose 2300 still adds coverage (HD01 021): CMS says no.
    amrc = {"ADDL MAINT REASON": ("17", "TERM-NLE")}
    bad_term = rosalind(maintenance="024", reason="07", categories=amrc, coverages=[Cov()])
    rid = feed(gw, partner, interchange([bad_term], control=2))
    assert outcomes(gw, rid) == {SUB: ("rejected", ["term-carries-coverage"])}
    assert members(gw)[SUB].status == "active"


def test_a_termination_with_no_end_date_is_rejected_not_applied_as_nothing(gw, partner) -> None:
    with unit_of_work(gw.sessions) as s:  # (this builder sends 2750 loops only with a 2300)
        configure_rules(s, "va", severities={"maintenance-combination": "ignore"})
    feed(gw, partner, interchange([rosalind(categories={})], control=1))
    # No DTP*357, no DTP*303 and no 2300 loop: nothing says when coverage ends.
    undated = rosalind(maintenance="024", reason="07", categories={}, coverages=[])
    rid = feed(gw, partner, interchange([undated], control=2))
    assert outcomes(gw, rid) == {SUB: ("rejected", ["term-without-end-date"])}
    assert members(gw)[SUB].status == "active"
    with gw.reads() as s:
        (finding,) = s.scalars(select(BusinessFinding).where(BusinessFinding.receipt_id == rid))
    assert (finding.segment_id, finding.element_position) == ("INS", 3)
    # The same termination with its DTP*357 ends the coverage.
    dated = rosalind(
        maintenance="024", reason="07", categories={}, coverages=[], eligibility_end="20270630"
    )
    rid = feed(gw, partner, interchange([dated], control=3))
    assert outcomes(gw, rid) == {SUB: ("applied", [])}
    assert members(gw)[SUB].status == "terminated"


def test_audit_reports_exactly_the_planted_discrepancies(gw, partner) -> None:
    newcomer = Member(
        subscriber_id="0005100010", member_id="0005100010", last="WAINWRIGHT-OSEI",
        first="TOBIAS", ssn="530194862", coverages=[Cov(policy="31200458", level="IND",
        begin="20270201")],
    )  # fmt: skip
    feed(gw, partner, interchange([*family(), newcomer], control=1))

    def audited(m: Member) -> Member:
        m.maintenance, m.reason = "030", "XN"
        for c in m.coverages:
            c.maintenance = "030"
        return m

    sub, _child = (audited(m) for m in family())  # the child is left out
    shifted = audited(
        Member(
            subscriber_id="0005100010", member_id="0005100010", last="WAINWRIGHT-OSEI",
            first="TOBIAS", ssn="530194862", coverages=[Cov(policy="31200458", level="IND",
            begin="20270301")],
        )
    )  # fmt: skip
    stranger = audited(
        Member(subscriber_id="0005100020", member_id="0005100020", last="ACHTERBERG",
               first="WILHELMINA", ssn="530194820", coverages=[Cov(policy="31200459")])
    )  # fmt: skip
    rid = feed(gw, partner, interchange([sub, shifted, stranger], control=2, action="4"))
    with gw.reads() as s:
        r = s.get_one(Receipt, rid)
        assert r.ledger_status == "reconciled" and r.members_applied == 0
        items = s.scalars(select(ReconciliationItem).order_by(ReconciliationItem.seq)).all()
        got = [(i.kind, i.member_key, i.field, i.file_value, i.ledger_value) for i in items]
    assert got == [
        ("mismatch", "0005100010", "HLT benefit_begin", "2027-03-01", "2027-02-01"),
        ("missing_in_ledger", "0005100020", "", "", ""),
        ("missing_in_file", "0005100003", "", "", ""),
    ]
    assert members(gw)["0005100010"].coverages[0].benefit_begin.isoformat() == "2027-02-01"


def test_sender_order_and_waiting_for_earlier_files(gw, partner) -> None:
    """Files queued together apply in the sender's order (BGN date), not arrival order: a
    validated file waits while another file of its sender is still being validated."""
    with unit_of_work(gw.sessions) as s:  # x834 sends no 2700 loop without a 2300 (no AMRC)
        configure_rules(s, "va", severities={"maintenance-combination": "ignore"})
    add = interchange(family(), control=2, bgn_date="20270101")
    change = interchange(
        [rosalind(maintenance="001", reason="25", street="9 NEW RD", coverages=[], categories={})],
        control=3,
        bgn_date="20270105",
    )
    later = _receipt(gw, partner, change)  # arrives first, but the sender made it later
    earlier = _receipt(gw, partner, add)
    worker = Worker(gw)
    assert worker.run_once()  # validates `later` only
    assert not worker.apply_ledger_once()  # `earlier` is not validated yet: wait for it
    with gw.reads() as s:
        assert s.get_one(Receipt, later).ledger_status == "pending"
    assert worker.run_once()
    assert worker.apply_ledger_once() and worker.apply_ledger_once()
    assert outcomes(gw, earlier)[SUB] == ("applied", [])
    assert outcomes(gw, later)[SUB] == ("applied", [])  # not "unknown-member": order was kept
    assert order_key("VA0.EDI834.D270101.AR.P", [add]) < order_key("x.834", [add])


def test_a_file_applied_after_a_later_one_of_its_sender_is_said_to_be_out_of_order(
    gw, partner
) -> None:
    """A file the sender's order puts before one already applied (sent late, past the order
    window) is applied as it comes, and its timeline says so for the operators."""
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", severities={"maintenance-combination": "ignore"})
    feed(gw, partner, interchange(family(), control=2, bgn_date="20270101"))
    # An audit dated later changes nothing: applying after it is not out of order.
    audit = rosalind(maintenance="030", reason="XN", coverages=[Cov(maintenance="030")])
    feed(gw, partner, interchange([audit], control=9, action="4", bgn_date="20270120"))
    moved = rosalind(maintenance="001", reason="25", street="9 NEW RD", coverages=[],
                     categories={})  # fmt: skip
    late = feed(gw, partner, interchange([moved], control=3, bgn_date="20270110"))
    early = feed(gw, partner, interchange([moved], control=4, bgn_date="20270105"))

    def events(rid: str) -> list[tuple[str, str | None]]:
        with gw.reads() as s:
            return [
                (e.event, e.detail)
                for e in repo.history_of(s, rid)
                if e.event == "ledger_out_of_order"
            ]

    assert events(late) == []
    ((_, detail),) = events(early)
    assert detail is not None and detail.startswith("applied after x.834, which its sender's")


def test_a_half_applied_file_resumes_without_applying_anything_twice(
    gw, partner, monkeypatch
) -> None:
    monkeypatch.setattr(ledger, "CHUNK_MEMBERS", 2)
    people = [
        Member(subscriber_id=f"00052000{n:02d}", member_id=f"00052000{n:02d}", last="DOE",
               first=f"P{n}", ssn=f"5301948{n:02d}", coverages=[Cov(policy=f"3130{n:04d}")])
        for n in range(10)
    ]  # fmt: skip
    receipt_id = _receipt(gw, partner, interchange(people, control=1))
    worker = Worker(gw)
    assert worker.run_once()
    real_commit = ledger._commit_chunk
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut in the middle of the file")
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(ledger, "_commit_chunk", flaky)
    assert worker.apply_ledger_once()  # fails after two chunks (4 members) committed
    with unit_of_work(gw.sessions) as s:
        r = s.get_one(Receipt, receipt_id)
        assert (r.ledger_status, r.ledger_progress, r.ledger_attempts) == ("pending", 4, 1)
        r.lease_expires_at = None  # skip the back-off
    assert worker.apply_ledger_once()
    with gw.reads() as s:
        r = s.get_one(Receipt, receipt_id)
        assert (r.ledger_status, r.ledger_progress, r.members_applied) == ("applied", 10, 10)
        assert s.scalar(select(func.count()).select_from(MemberEventRow)) == 10
        assert s.scalar(select(func.count()).select_from(CoreDelivery)) == 10
    assert len(members(gw)) == 10


def test_the_file_is_read_once_to_validate_and_once_to_apply(
    gw: Gateway, partner: int, monkeypatch
) -> None:
    """The order key comes from the chunk validation read, the QTY counts from validation's
    own count: the ledger stage reads the blob once, to extract the members."""
    reads: list[str] = []
    real_chunks = gw.blobs.chunks

    def counting(path: str, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        reads.append(path)
        return real_chunks(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(gw.blobs, "chunks", counting)
    wrong_qty = interchange(family(), control=77, qty={"TO": 3})
    receipt_id = _receipt(gw, partner, wrong_qty)
    worker = Worker(gw)
    assert worker.run_once()
    assert len(reads) == 1  # validation; the order key came from its first chunk
    while worker.apply_ledger_once():
        pass
    assert len(reads) == 2  # the ledger: one streaming pass
    # ...and the QTY check still knew the set's members (from validation's count).
    got = outcomes(gw, receipt_id)
    assert all(outcome == "rejected" and "qty-totals" in rules for outcome, rules in got.values())
    with gw.reads() as s:
        assert s.get_one(Receipt, receipt_id).ledger_order.startswith("220270101")


def test_audit_compares_every_field_the_ledger_holds_and_not_an_ended_members_status(
    gw, partner
) -> None:
    """Planted differences in who the member is (name, SSN, birth date, gender, residential
    address), the coverage level and the policy id are each reported; a terminated member the
    audit lists with the same end date matches."""
    tobias = Member(
        subscriber_id="0005100010", member_id="0005100010", last="WAINWRIGHT-OSEI",
        first="TOBIAS", ssn="530194862", coverages=[Cov(policy="31200458", level="IND")],
    )  # fmt: skip
    feed(gw, partner, interchange([*family(), tobias], control=1))
    ended = Member(
        subscriber_id="0005100010", member_id="0005100010", last="WAINWRIGHT-OSEI",
        first="TOBIAS", ssn="530194862", maintenance="024", reason="07",
        coverages=[Cov(maintenance="024", policy="31200458", level="IND", end="20270331")],
    )  # fmt: skip
    feed(gw, partner, interchange([ended], control=2, bgn_date="20270301"))

    def audited(m: Member) -> Member:
        m.maintenance, m.reason = "030", "XN"
        for c in m.coverages:
            c.maintenance = "030"
        return m

    sub = audited(
        rosalind(last="QUINTERO", ssn="512849399", birth="19800102", gender="M",
                 street="1 OTHER ST", coverages=[Cov(level="IND")])
    )  # fmt: skip
    child = audited(family()[1])
    child.coverages = [Cov(maintenance="030", policy="99999999")]
    same_end = audited(ended)
    rid = feed(
        gw, partner, interchange([sub, child, same_end], control=3, action="4", bgn_date="20270601")
    )
    with gw.reads() as s:
        items = s.scalars(select(ReconciliationItem).order_by(ReconciliationItem.seq)).all()
        got = [(i.member_key, i.field, i.file_value, i.ledger_value) for i in items]
        assert s.get_one(Receipt, rid).ledger_status == "reconciled"
    assert got == [
        (SUB, "last name", "QUINTERO", "QUINTERO-HALE"),
        (SUB, "SSN", "512849399", "512849301"),
        (SUB, "birth date", "1980-01-02", "1980-01-01"),
        (SUB, "gender", "M", "F"),
        (SUB, "residence line1", "1 OTHER ST", "100 MAIN ST"),
        (SUB, "HLT coverage_level", "IND", "FAM"),
        ("0005100003", "HLT policy", "99999999", "31200457"),
    ]


def test_a_member_id_ended_earlier_in_the_file_holds_nothing_for_its_successor(gw, partner) -> None:
    """One file ends a member id in March and adds the same person (SSN and birth date) under
    a new id from April (an exchange re-issuing the member id; an employee moved to another
    subscriber number): no identity-overlap — the chunk's own termination counts, not the
    ledger as it was when the chunk began. Without the termination, the same addition is
    flagged."""
    feed(gw, partner, interchange(family(), control=1))
    ended = rosalind(maintenance="024", reason="07", categories={},
                     coverages=[Cov(maintenance="024", begin=None, end="20270331")])  # fmt: skip
    successor = rosalind(subscriber_id="0005100077", member_id="0005100077", categories={},
                         coverages=[Cov(policy="31200499", begin="20270401")])  # fmt: skip
    rid = feed(gw, partner, interchange([ended, successor], control=2))
    got = outcomes(gw, rid)
    assert got == {SUB: ("applied", ["maintenance-combination"]), "0005100077": ("applied", [])}
    overlapping = rosalind(subscriber_id="0005100078", member_id="0005100078", categories={},
                           coverages=[Cov(policy="31200498", begin="20270601")])  # fmt: skip
    rid = feed(gw, partner, interchange([overlapping], control=3))
    assert outcomes(gw, rid) == {"0005100078": ("applied", ["identity-overlap"])}


def test_the_same_person_twice_is_flagged_and_another_senders_member_is_never_named(
    gw, partner
) -> None:
    """Same SSN and birth date: under a new member id of the same sender (named, it is the
    sender's own), then through another sender (not named to it; the operators' note says who);
    a placeholder SSN identifies no one; `reject` keeps the second enrollment out."""
    feed(gw, partner, interchange(family(), control=1))
    again = rosalind(subscriber_id="0005100077", member_id="0005100077", categories={},
                     coverages=[Cov(policy="31200499")])  # fmt: skip
    rid = feed(gw, partner, interchange([again], control=2))
    assert outcomes(gw, rid) == {"0005100077": ("applied", ["identity-overlap"])}  # warn
    with gw.reads() as s:
        (finding,) = s.scalars(select(BusinessFinding).where(BusinessFinding.receipt_id == rid))
        assert SUB in finding.message and finding.severity == "warn"

    with unit_of_work(gw.sessions) as s:
        md, _ = add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0SBE")
        md_id = md.id
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "md", severities={"identity-overlap-elsewhere": "reject"})
    elsewhere = rosalind(subscriber_id="MD000001", member_id="MD000001", categories={},
                         coverages=[Cov(policy="MD555", begin="20270601")])  # fmt: skip
    rid = feed(gw, md_id, interchange([elsewhere], control=3, sender="MD0SBE"))
    assert outcomes(gw, rid) == {"MD000001": ("rejected", ["identity-overlap-elsewhere"])}
    with gw.reads() as s:
        (finding,) = s.scalars(select(BusinessFinding).where(BusinessFinding.receipt_id == rid))
        assert "another sender" in finding.message
        assert SUB not in finding.message and "va" not in finding.message.split()
        assert "partner va member" in finding.operator_note
        assert "operator_note" not in BusinessFindingOut.model_fields  # not in the API
        assert not s.scalars(select(LedgerMember).where(LedgerMember.partner_id == md_id)).all()

    # Next year does not overlap; a placeholder SSN falls back to name and birth date.
    next_year = rosalind(
        subscriber_id="MD000002", member_id="MD000002", categories={},
        coverages=[Cov(policy="MD556", begin="20280101", end="20281231")],
    )  # fmt: skip
    placeholder = rosalind(subscriber_id="MD000003", member_id="MD000003", categories={},
                           ssn="999999999", coverages=[Cov(policy="MD557")])  # fmt: skip
    rid = feed(gw, md_id, interchange([next_year, placeholder], control=4, sender="MD0SBE"))
    got = outcomes(gw, rid)
    assert got["MD000002"] == ("applied", [])
    assert got["MD000003"] == ("rejected", ["identity-overlap-elsewhere", "repeating-digits"])
    with gw.reads() as s:
        messages = s.scalars(
            select(BusinessFinding.message).where(
                BusinessFinding.receipt_id == rid,
                BusinessFinding.rule == "identity-overlap-elsewhere",
            )
        ).all()
    assert messages == [
        "the same person (name and birth date) is already enrolled in HLT for overlapping "
        "dates through another sender"
    ]

    # Twice in one file under two member ids, the person also enrolled through va: the second
    # is this sender's own overlap whatever else is found (another sender's enrollment, found
    # first, hid it: its configured reject was lost, and its missing warning told the sender
    # the person was insured elsewhere).
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "md", severities={"identity-overlap": "reject",
                                             "identity-overlap-elsewhere": "warn"})  # fmt: skip
    twice = [
        rosalind(subscriber_id=f"MD00001{n}", member_id=f"MD00001{n}", categories={},
                 coverages=[Cov(policy=f"MD56{n}", begin="20270601")])
        for n in (1, 2)
    ]  # fmt: skip
    rid = feed(gw, md_id, interchange(twice, control=5, sender="MD0SBE"))
    got = outcomes(gw, rid)
    assert got["MD000011"] == ("applied", ["identity-overlap-elsewhere"])
    assert got["MD000012"] == ("rejected", ["identity-overlap", "identity-overlap-elsewhere"])


def test_a_dependent_without_ref17_keeps_its_key_when_who_it_is_is_corrected(
    gw_on_both,
) -> None:
    """An employer's dependents come without REF*17: the key is a digest of who they are. A
    newborn's SSN sent for the first time, or a name or birth date corrected with 2100B (NM1*70
    and its DMG), computes another digest — the change still reaches the same member, under the
    key it has; a different SSN is a different person."""
    gw = gw_on_both
    partner = add_va(gw)
    sub = "0007700001"
    with unit_of_work(gw.sessions) as s:  # an employer's file: not CMS's combinations
        configure_rules(s, "va", severities={"maintenance-combination": "ignore"})

    def kid(first: str, ssn: str, birth: str, **kw: object) -> Member:
        return dependent(sub, "", first, ssn, birth=birth, last="OKAFOR", **kw)

    def change(m: Member) -> Member:
        m.maintenance, m.reason, m.coverages = "001", "25", []
        return m

    parent = Member(subscriber_id=sub, member_id="", last="OKAFOR", first="ADA", ssn="530194801")
    feed(
        gw,
        partner,
        interchange([parent, kid("AVA", "", "20260115"), kid("LEO", "", "20200202")], control=1),
    )
    keys = sorted(k for k in members(gw) if k != sub)
    assert len(keys) == 2

    def held() -> dict[str, tuple[str, str, str]]:
        return {
            k: (m.first_name, m.id_value, str(m.birth_date))
            for k, m in members(gw).items()
            if k != sub
        }

    before = held()
    ava = next(k for k, v in before.items() if v[0] == "AVA")
    leo = next(k for k, v in before.items() if v[0] == "LEO")

    # The newborn's SSN, sent for the first time.
    rid = feed(gw, partner, interchange([change(kid("AVA", "512849399", "20260115"))], control=2))
    assert outcomes(gw, rid) == {ava: ("applied", [])}
    # A first name and a birth date put right, with what was sent before in 2100B.
    fixed = change(kid("LEON", "", "20200203", prior=["NM1*70*1*OKAFOR*LEO", "DMG*D8*20200202*F"]))
    rid = feed(gw, partner, interchange([fixed], control=3))
    assert outcomes(gw, rid) == {leo: ("applied", [])}
    assert held() == {
        ava: ("AVA", "512849399", "2026-01-15"),
        leo: ("LEON", "", "2020-02-03"),
    }
    # Both are found again as they now are: AVA by her SSN, LEON by name and birth date.
    rid = feed(
        gw,
        partner,
        interchange(
            [change(kid("AVA", "512849399", "20260115")), change(kid("LEON", "", "20200203"))],
            control=4,
        ),
    )
    assert outcomes(gw, rid) == {ava: ("applied", []), leo: ("applied", [])}
    # Another SSN is another person, whatever the name and birth date: not AVA.
    rid = feed(gw, partner, interchange([change(kid("AVA", "512849398", "20260115"))], control=5))
    [(key, outcome)] = outcomes(gw, rid).items()
    assert key not in (ava, leo) and outcome == ("rejected", ["unknown-member"])
    assert sorted(k for k in members(gw) if k != sub) == keys


def test_a_re_add_after_a_cancel_starts_the_enrollment_afresh(gw, partner) -> None:
    """Cancelled, then added again from the same date with another premium: one enrollment,
    initial again, whose only period is the new one (the stored period with that begin date is
    replaced, not duplicated — (coverage, begin) is unique)."""
    feed(
        gw, partner, interchange([rosalind(categories={"PRE AMT 1": ("9X", "300.00")})], control=1)
    )
    assert members(gw)[SUB].coverages[0].periods[0].premium == "300.00"
    cancel = rosalind(maintenance="024", reason="14", categories={},
                      coverages=[Cov(maintenance="024", end="20270101")])  # fmt: skip
    feed(gw, partner, interchange([cancel], control=2, bgn_date="20270102"))
    (cov,) = members(gw)[SUB].coverages
    assert (cov.status, str(cov.benefit_end)) == ("cancelled", "2027-01-01")
    again = rosalind(categories={"PRE AMT 1": ("9X", "310.00"), "PRE AMT TOT": ("9X", "310.00")})
    rid = feed(gw, partner, interchange([again], control=3, bgn_date="20270103"))
    assert outcomes(gw, rid)[SUB][0] == "applied"
    (cov,) = members(gw)[SUB].coverages
    assert (cov.status, str(cov.benefit_end), cov.premium) == ("initial", "2027-12-31", "310.00")
    assert [(str(p.begin), p.premium) for p in cov.periods] == [("2027-01-01", "310.00")]


def test_a_corrected_begin_date_moves_the_stored_periods(gw: Gateway, partner: int) -> None:
    """An add, a change from May (two periods), then the begin date corrected to June: the
    January period is deleted and May's starts in June (ledger_periods' (coverage, begin) is
    unique, so the order of the writes matters); corrected back to January, it starts there."""
    who = "0005100077"
    policy = "51200477"

    def sub(**kw: object) -> Member:
        base: dict[str, object] = {
            "subscriber_id": who,
            "member_id": who,
            "last": "VERANO",
            "first": "LUZ",
            "ssn": "934610077",
            "coverages": [Cov(policy=policy)],
        }
        base.update(kw)
        return Member(**base)  # type: ignore[arg-type]

    def stored() -> list[tuple[str, str]]:
        with gw.reads() as s:
            rows = s.execute(
                select(LedgerPeriod.begin, LedgerPeriod.aptc)
                .join(LedgerCoverage, LedgerCoverage.id == LedgerPeriod.coverage_id)
                .where(LedgerCoverage.policy_number == policy)
                .order_by(LedgerPeriod.begin)
            ).all()
        return [(b.isoformat(), a) for b, a in rows]

    def correct(control: int, begin: str) -> None:
        cov = Cov(maintenance="001", policy=policy, begin=begin)
        feed(gw, partner, interchange([sub(maintenance="001", reason="AI", coverages=[cov])],
                                      control=control))  # fmt: skip

    feed(gw, partner, interchange([sub(categories={"APTC AMT": ("9V", "400.00")})], control=71))
    change = sub(
        maintenance="001",
        reason="AI",
        effective="20270501",
        coverages=[Cov(maintenance="001", policy=policy)],
        categories={"APTC AMT": ("9V", "450.00")},
        category_period="20270501-20271231",
    )
    feed(gw, partner, interchange([change], control=72))
    assert stored() == [("2027-01-01", "400.00"), ("2027-05-01", "450.00")]
    correct(73, "20270601")
    assert stored() == [("2027-06-01", "450.00")]
    correct(74, "20270101")
    assert stored() == [("2027-01-01", "450.00")]


def test_each_history_payload_is_the_members_own_json(gw: Gateway, partner: int) -> None:
    """The history row's payload is assembled from the member's JSON (shared with the core's
    payload) and its set's header encoded once: byte for byte pydantic's model_dump_json of
    the member, for members of two sets with different headers, applied or not."""
    import io

    from gateway.enrollment import extract_members
    from tests.gateway.test_extract import gen834

    buf = io.BytesIO()
    gen834.write_834(buf, 40, seed=2, sets=2)
    first = buf.getvalue()
    receipt_id = feed(gw, partner, first)
    events = list(extract_members([first]))
    with gw.reads() as s:
        rows = recorded_events(s, receipt_id)
        assert [r.payload for r in rows] == [e.model_dump_json() for e in events]
        core = [json.loads(d.payload)["member"] for d in s.scalars(select(CoreDelivery))]
    assert len({e.header.reference for e in events}) == 2
    assert core == [json.loads(e.model_dump_json(exclude={"header", "source"})) for e in events]


class _LockedOnce:
    """`_Chunk.apply` that fails once, as SQLite's "database is locked" would, after the chunk
    has made every decision (the run's in-memory state already changed): the transaction is
    rolled back and retried."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at_call: int) -> None:
        self.calls, self.at_call = 0, at_call
        self.real = ledger._Chunk.apply
        monkeypatch.setattr(ledger._Chunk, "apply", self)

    def __get__(self, chunk: object, owner: object = None):  # bound like the method it replaces
        return lambda seq: self(chunk, seq)

    def __call__(self, chunk: object, seq: int) -> tuple[int, int, int]:
        result = self.real(chunk, seq)
        self.calls += 1
        if self.calls == self.at_call:
            raise OperationalError("COMMIT", {}, Exception("database is locked"))
        return result


def test_a_retried_audit_chunk_counts_and_lists_each_member_once(gw, partner, monkeypatch) -> None:
    feed(gw, partner, interchange(family(), control=1))
    monkeypatch.setattr(ledger, "CHUNK_MEMBERS", 1)  # one family a chunk
    fails = _LockedOnce(monkeypatch, at_call=2)
    stranger = Member(
        subscriber_id="0005100020", member_id="0005100020", last="ACHTERBERG",
        first="WILHELMINA", ssn="530194820", coverages=[Cov(policy="31200459")],
    )  # fmt: skip
    audited = [*family(), stranger]
    for m in audited:
        m.maintenance, m.reason = "030", "XN"
        for c in m.coverages:
            c.maintenance = "030"
    audited[0].first = "ROSALINDA"
    rid = feed(gw, partner, interchange(audited, control=2, action="4"))
    assert fails.calls == 3  # the stranger's chunk ran twice
    with gw.reads() as s:
        assert s.get_one(Receipt, rid).ledger_status == "reconciled"
        rec = s.scalars(select(Reconciliation)).one()
        counts = (rec.members_in_file, rec.members_matched, rec.mismatches)
        assert (*counts, rec.missing_in_ledger, rec.missing_in_file) == (3, 1, 1, 1, 0)
        items = s.scalars(select(ReconciliationItem).order_by(ReconciliationItem.seq)).all()
        got = [(i.seq, i.kind, i.member_key, i.field) for i in items]
    assert got == [
        (0, "mismatch", SUB, "first name"),
        (1, "missing_in_ledger", "0005100020", ""),
    ]


def test_a_retried_dry_run_chunk_judges_its_members_as_the_first_attempt_did(
    gw, partner, monkeypatch
) -> None:
    with unit_of_work(gw.sessions) as s:
        configure_rules(s, "va", onboarding=True)
    monkeypatch.setattr(ledger, "CHUNK_MEMBERS", 1)
    fails = _LockedOnce(monkeypatch, at_call=1)
    content = interchange(family(), control=1).replace(b"*0*P*:~", b"*0*T*:~", 1)
    rid = feed(gw, partner, content)
    assert fails.calls == 2
    assert outcomes(gw, rid) == {
        SUB: ("would_apply", []),
        "0005100003": ("would_apply", []),
    }
    assert members(gw) == {}


def test_a_change_for_the_subscriber_alone_is_totalled_with_the_policys_other_members(
    gw, partner
) -> None:
    """PRE AMT TOT is the policy's: an exchange that sends only the changed subscriber (new
    premium from June) still sends the family's total, and the ledger's other member on the
    policy (MILO, 200.00) counts in the sum. A total that is wrong even so is still refused."""
    feed(gw, partner, interchange(family(), control=501))

    def alone(total: str) -> Member:
        return rosalind(
            maintenance="001",
            reason="",
            effective="20270601",
            coverages=[Cov(maintenance="001")],
            categories={
                "ADDL MAINT REASON": ("17", "FINANCIAL CHANGE"),  # CMS's 001 financial change
                "PRE AMT 1": ("9X", "350.00"),
                "PRE AMT TOT": ("9X", total),
            },
            category_period="20270601",
        )

    right = feed(gw, partner, interchange([alone("550.00")], control=502))
    assert outcomes(gw, right) == {SUB: ("applied", [])}
    wrong = feed(gw, partner, interchange([alone("600.00")], control=503, bgn_date="20270102"))
    assert outcomes(gw, wrong) == {SUB: ("rejected", ["premium-total"])}
    with gw.reads() as s:
        (message,) = s.scalars(
            select(BusinessFinding.message).where(BusinessFinding.receipt_id == wrong)
        ).all()
    assert message == "PRE AMT TOT 600.00 but the members' PRE AMT 1 add up to 550.00"
    # The same change without 2300 (the policy known from the ledger): judged the same way.
    bare = alone("570.00")
    bare.coverages = []
    bare.categories = {**bare.categories, "PRE AMT 1": ("9X", "370.00")}
    right = feed(gw, partner, interchange([bare], control=504, bgn_date="20270103"))
    assert outcomes(gw, right) == {SUB: ("applied", [])}
    bare.categories = {**bare.categories, "PRE AMT TOT": ("9X", "370.00")}  # the subscriber's own
    wrong = feed(gw, partner, interchange([bare], control=505, bgn_date="20270104"))
    assert outcomes(gw, wrong) == {SUB: ("rejected", ["premium-total"])}


def test_the_cores_events_name_their_sender(gw, partner) -> None:
    """Member keys are per sender (the ledger holds VA's 0005100001 and MD's 0005100001 as two
    members): each core event names its partner, or a core system fed by two exchanges whose
    member ids overlap would take the second's addition for the first's member."""
    alone = {"PRE AMT 1": ("9X", "300.00"), "PRE AMT TOT": ("9X", "300.00"),
             "TOT RES AMT": ("9V", "300.00")}  # fmt: skip
    rid = feed(gw, partner, interchange([rosalind(categories=alone)], control=1))
    assert outcomes(gw, rid) == {SUB: ("applied", [])}
    with unit_of_work(gw.sessions) as s:
        md, _ = add_partner(s, name="md", isa_qualifier="ZZ", isa_id="MD0SBE")
        md_id = md.id
    other = rosalind(first="CORA", ssn="512849388", categories=alone)
    rid = feed(gw, md_id, interchange([other], control=1, sender="MD0SBE"))
    assert outcomes(gw, rid) == {SUB: ("applied", [])}
    with gw.reads() as s:
        rows = s.scalars(select(CoreDelivery).order_by(CoreDelivery.id))
        sent = [json.loads(d.payload) for d in rows]
    policy = sent[0]["policy_key"]
    assert [(p["member_key"], p["policy_key"], p["partner"]) for p in sent] == [
        (SUB, policy, "va"),
        (SUB, policy, "md"),
    ]
