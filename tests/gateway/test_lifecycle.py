"""The policy lifecycle and coverage periods (gateway.enrollment.lifecycle), pure: focused cases,
and hypothesis sequences of random maintenance events for a subscriber and a dependent on one
policy, checked after every step against a small reference model written separately — state,
end date, effectuation, and the APTC in force on the first of every month."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.enrollment import lifecycle
from gateway.enrollment.events import MemberEvent
from gateway.enrollment.extract import extract_members
from gateway.enrollment.lifecycle import Enrollment, State
from gateway.enrollment.planyear import CALENDAR, PlanYear
from tests.gateway.x834 import Cov, Member, dependent, interchange

SUB, DEP = "0005300001", "0005300002"
POLICY = "71200457"
BEGIN, YEAR_END = dt.date(2027, 1, 1), dt.date(2027, 12, 31)


def member(who: str, **kw: object) -> Member:
    if who == SUB:
        return Member(subscriber_id=SUB, member_id=SUB, last="LOVELACE", first="ADA",
                      ssn="934100001", **kw)  # type: ignore[arg-type]  # fmt: skip
    return dependent(SUB, DEP, "BYRON", "934100002", **kw)


def event_of(m: Member) -> MemberEvent:
    (event,) = extract_members([interchange([m], control=1)])
    return event


def d8(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def add(who: str, aptc: str, begin: dt.date = BEGIN) -> MemberEvent:
    cov = Cov(policy=POLICY, begin=d8(begin))
    return event_of(member(who, coverages=[cov], categories={"APTC AMT": ("9V", aptc)}))


def term(who: str, end: dt.date) -> MemberEvent:
    cov = Cov(maintenance="024", policy=POLICY, end=d8(end))
    return event_of(member(who, maintenance="024", reason="07", coverages=[cov]))


def reinstate(who: str) -> MemberEvent:
    cov = Cov(maintenance="025", policy=POLICY)
    return event_of(member(who, maintenance="025", reason="41", coverages=[cov]))


def change(who: str, day: dt.date, aptc: str, begin: dt.date = BEGIN) -> MemberEvent:
    return event_of(
        member(
            who,
            maintenance="001",
            reason="AI",
            effective=d8(day),
            coverages=[Cov(maintenance="001", policy=POLICY, begin=d8(begin))],
            categories={"APTC AMT": ("9V", aptc)},
            category_period=d8(day),
        )
    )


def paid(day: dt.date, begin: dt.date = BEGIN) -> MemberEvent:
    cov = Cov(maintenance="001", policy=POLICY, paid_through=d8(day), begin=d8(begin))
    return event_of(member(SUB, maintenance="001", reason="AI", coverages=[cov]))


class Ledger:
    """The lifecycle as the ledger drives it: refusals first, then apply, then the cascade."""

    def __init__(self, plan_year: PlanYear = CALENDAR) -> None:
        self.of: dict[str, list[Enrollment]] = {SUB: [], DEP: []}
        self.plan_year = plan_year

    def send(self, who: str, event: MemberEvent) -> list[str]:
        py = self.plan_year
        refusals = lifecycle.plan_event(self.of[who], event, policy_fallback=POLICY, plan_year=py)
        if refusals:
            return [r.rule for r in refusals]
        outcome = lifecycle.apply_event(self.of[who], event, policy_fallback=POLICY, plan_year=py)
        for c in outcome.cascades:
            for other, items in self.of.items():
                if other != who:
                    lifecycle.cascade(items, c)
        return []

    def one(self, who: str) -> Enrollment | None:
        items = self.of[who]
        assert len(items) <= 1
        return items[0] if items else None


# --- focused cases ----------------------------------------------------------------------------


def test_a_change_from_a_date_splits_the_period_and_keeps_what_came_before() -> None:
    ledger = Ledger()
    assert ledger.send(SUB, add(SUB, "400.00")) == []
    assert ledger.send(SUB, change(SUB, dt.date(2027, 5, 1), "450.00")) == []
    item = ledger.one(SUB)
    assert item is not None
    assert [(b, e, p.terms["aptc"]) for p, b, e in item.spans()] == [
        (BEGIN, dt.date(2027, 4, 30), "400.00"),
        (dt.date(2027, 5, 1), YEAR_END, "450.00"),
    ]
    # A later change of another term leaves the May APTC alone; a retroactive APTC change
    # from March reaches May only where May had inherited the old value (it had not).
    assert ledger.send(SUB, change(SUB, dt.date(2027, 3, 1), "420.00")) == []
    assert [(b, p.terms["aptc"]) for p, b, _ in item.spans()] == [
        (BEGIN, "400.00"),
        (dt.date(2027, 3, 1), "420.00"),
        (dt.date(2027, 5, 1), "450.00"),
    ]


def test_a_retroactive_change_stops_at_the_first_later_change_of_its_own() -> None:
    """APTC 100 from January, 150 from May, 100 again from September; then 120 from March.
    May's change and everything after it stay: September's 100 was the exchange's own change,
    not inherited from January. It became 120 (only equal values were compared), so the
    months from September billed an APTC the exchange never sent, with May to August left
    at 150."""
    ledger = Ledger()
    assert ledger.send(SUB, add(SUB, "100.00")) == []
    assert ledger.send(SUB, change(SUB, dt.date(2027, 5, 1), "150.00")) == []
    assert ledger.send(SUB, change(SUB, dt.date(2027, 9, 1), "100.00")) == []
    assert ledger.send(SUB, change(SUB, dt.date(2027, 3, 1), "120.00")) == []
    item = ledger.one(SUB)
    assert item is not None
    assert [(b, p.terms["aptc"]) for p, b, _ in item.spans()] == [
        (BEGIN, "100.00"),
        (dt.date(2027, 3, 1), "120.00"),
        (dt.date(2027, 5, 1), "150.00"),
        (dt.date(2027, 9, 1), "100.00"),
    ]


def test_a_reinstatement_from_a_day_in_force_is_of_another_termination() -> None:
    """Terminated at March 31, reinstated, terminated at September 30: a reinstatement
    effective (DTP*303) April 1 is the first one sent again — refused, with 2300 and
    without; from October 1 (the day after the end), from the begin or without DTP*303 it
    undoes the termination held."""

    def back(day: str | None, with_2300: bool) -> MemberEvent:
        covs = [Cov(maintenance="025", policy=POLICY)] if with_2300 else []
        return event_of(member(SUB, maintenance="025", reason="41", effective=day,
                               coverages=covs, policy=POLICY))  # fmt: skip

    for with_2300 in (True, False):
        for day, refused in (("20270401", True), ("20270930", True), ("20271001", False),
                             ("20270101", False), (None, False)):  # fmt: skip
            ledger = Ledger()
            ledger.send(SUB, add(SUB, "100.00"))
            ledger.send(SUB, term(SUB, dt.date(2027, 3, 31)))
            assert ledger.send(SUB, back("20270401", with_2300)) == []
            ledger.send(SUB, term(SUB, dt.date(2027, 9, 30)))
            got = ledger.send(SUB, back(day, with_2300))
            assert got == (["reinstate-covered-date"] if refused else []), (day, with_2300)
            item = ledger.one(SUB)
            assert item is not None
            expected = ("terminated", dt.date(2027, 9, 30)) if refused else ("initial", YEAR_END)
            assert (item.state.value, item.end) == expected, (day, with_2300)


def correct_begin(who: str, begin: dt.date) -> MemberEvent:
    cov = Cov(maintenance="001", policy=POLICY, begin=d8(begin))
    return event_of(member(who, maintenance="001", reason="AI", coverages=[cov]))


def test_a_corrected_begin_date_moves_the_periods_with_it() -> None:
    ledger = Ledger()
    ledger.send(SUB, add(SUB, "400.00"))
    ledger.send(SUB, change(SUB, dt.date(2027, 5, 1), "450.00"))
    item = ledger.one(SUB)
    assert item is not None

    def spans() -> list[tuple[dt.date, str]]:
        assert item is not None
        return [(b, p.terms["aptc"]) for p, b, _ in item.spans()]

    # Later, before the May change: the first period starts on the new date.
    assert ledger.send(SUB, correct_begin(SUB, dt.date(2027, 2, 1))) == []
    assert item.begin == dt.date(2027, 2, 1)
    assert spans() == [(dt.date(2027, 2, 1), "400.00"), (dt.date(2027, 5, 1), "450.00")]
    # Later than the May change: the January terms end before coverage begins, so they go;
    # May's terms are in force from the new date.
    assert ledger.send(SUB, correct_begin(SUB, dt.date(2027, 6, 1))) == []
    assert spans() == [(dt.date(2027, 6, 1), "450.00")]
    assert [p.begin for p in item.periods] == [dt.date(2027, 6, 1)]
    # Earlier again: the one period starts there.
    assert ledger.send(SUB, correct_begin(SUB, BEGIN)) == []
    assert spans() == [(BEGIN, "450.00")]


def test_cancel_cascades_a_later_end_is_refused_and_reinstatement_restores() -> None:
    ledger = Ledger()
    ledger.send(SUB, add(SUB, "100.00"))
    ledger.send(DEP, add(DEP, "0.00"))
    assert ledger.send(SUB, term(SUB, BEGIN)) == []  # end = begin: a cancellation
    sub, dep = ledger.one(SUB), ledger.one(DEP)
    assert sub is not None and dep is not None
    assert (sub.state, sub.end, dep.state, dep.end) == (
        State.CANCELLED,
        BEGIN,
        State.CANCELLED,
        BEGIN,
    )
    assert ledger.send(SUB, term(SUB, dt.date(2027, 6, 30))) == ["term-extends-coverage"]
    assert ledger.send(SUB, reinstate(SUB)) == []
    assert (sub.state, sub.end) == (State.INITIAL, YEAR_END)
    assert ledger.send(SUB, reinstate(SUB)) == ["reinstate-in-force"]
    assert dep.state is State.CANCELLED  # a reinstatement is per member


def test_an_earlier_end_of_the_subscriber_ends_the_dependents_already_terminated() -> None:
    ledger = Ledger()
    ledger.send(SUB, add(SUB, "100.00"))
    ledger.send(DEP, add(DEP, "0.00"))
    sub, dep = ledger.one(SUB), ledger.one(DEP)
    assert sub is not None and dep is not None
    assert ledger.send(DEP, term(DEP, dt.date(2027, 9, 30))) == []  # ages off on its own
    assert ledger.send(SUB, term(SUB, dt.date(2027, 6, 30))) == []
    assert (dep.state, dep.end) == (State.TERMINATED, dt.date(2027, 6, 30))
    assert ledger.send(SUB, term(SUB, dt.date(2027, 4, 30))) == []  # retroactive, earlier
    assert (sub.end, dep.state, dep.end) == (
        dt.date(2027, 4, 30),
        State.TERMINATED,
        dt.date(2027, 4, 30),
    )
    assert ledger.send(SUB, term(SUB, BEGIN)) == []  # then cancelled: never in force
    assert (sub.state, dep.state, dep.end) == (State.CANCELLED, State.CANCELLED, BEGIN)


def test_a_termination_cannot_move_an_enrollment_in_force_past_its_end() -> None:
    ledger = Ledger()
    ledger.send(SUB, add(SUB, "100.00"))
    assert ledger.send(SUB, term(SUB, dt.date(2028, 3, 31))) == ["term-extends-coverage"]
    item = ledger.one(SUB)
    assert item is not None and (item.state, item.end) == (State.INITIAL, YEAR_END)
    assert ledger.send(SUB, term(SUB, YEAR_END)) == []  # the end it has: a termination


def test_a_termination_without_2300_ends_its_policy_and_plan_year_only() -> None:
    """CMS terminates with REF*1L at the 2000 level and no 2300 loop: next year's
    re-enrollment (another policy) and another policy of the same year stay in force."""
    ledger = Ledger()
    ledger.send(SUB, add(SUB, "100.00"))
    dental = Cov(line="DEN", policy="72200457", plan="", level="IND")
    next_year = Cov(policy="81200457", begin="20280101", end="20281231")
    assert ledger.send(SUB, event_of(member(SUB, coverages=[dental]))) == []
    assert ledger.send(SUB, event_of(member(SUB, reason="41", coverages=[next_year]))) == []

    def states() -> dict[tuple[str, int], tuple[State, dt.date | None]]:
        return {(e.policy, e.plan_year): (e.state, e.end) for e in ledger.of[SUB]}

    end = dt.date(2027, 11, 30)
    by_policy = member(SUB, maintenance="024", reason="14", coverages=[], policy=POLICY,
                       eligibility_end=d8(end))  # fmt: skip
    assert ledger.send(SUB, event_of(by_policy)) == []
    assert states() == {
        (POLICY, 2027): (State.TERMINATED, end),
        ("72200457", 2027): (State.INITIAL, YEAR_END),
        ("81200457", 2028): (State.INITIAL, dt.date(2028, 12, 31)),
    }
    # Without REF*1L: what is in force in the year of its end, not the next year's.
    whole = member(SUB, maintenance="024", reason="14", coverages=[],
                   eligibility_end=d8(dt.date(2027, 10, 31)))  # fmt: skip
    assert ledger.send(SUB, event_of(whole)) == []
    assert states() == {
        (POLICY, 2027): (State.TERMINATED, end),
        ("72200457", 2027): (State.TERMINATED, dt.date(2027, 10, 31)),
        ("81200457", 2028): (State.INITIAL, dt.date(2028, 12, 31)),
    }


def test_an_event_without_2300_is_about_its_ref_1l_policy_alone() -> None:
    """A change without 2300 naming the dental policy prices dental, not health (each SADP is
    an enrollment of its own). A REF*1L naming none of the member's policies (an employer's
    group number) is the member level, as before."""
    ledger = Ledger()
    ledger.send(SUB, add(SUB, "100.00"))
    dental = Cov(line="DEN", policy="72200457", plan="", level="IND")
    assert ledger.send(SUB, event_of(member(SUB, coverages=[dental]))) == []
    change = member(SUB, maintenance="001", reason="AI", effective="20270701", coverages=[],
                    policy="72200457", categories={"PRE AMT 1": ("9X", "35.00")},
                    category_period="20270701")  # fmt: skip
    assert ledger.send(SUB, event_of(change)) == []
    premiums = {e.line: [(p.begin, p.terms.get("premium")) for p in e.periods]
                for e in ledger.of[SUB]}  # fmt: skip
    assert premiums["DEN"][-1] == (dt.date(2027, 7, 1), "35.00")
    assert all(value != "35.00" for _, value in premiums["HLT"])
    group = member(SUB, maintenance="024", reason="14", coverages=[], policy="G-81999999",
                   eligibility_end="20270630")  # fmt: skip
    assert ledger.send(SUB, event_of(group)) == []
    assert {e.state for e in ledger.of[SUB]} == {State.TERMINATED}


def test_an_end_after_the_plan_year_is_said() -> None:
    """A QHP's enrollment ends by December 31 of its plan year: a change (or an addition)
    sending a later DTP*349 is end-after-plan-year (warn by default; an exchange sets it to
    reject, an employer whose plan year spans two calendar years to ignore)."""
    from gateway.enrollment.rules import RULES, Severity

    ledger = Ledger()
    ledger.send(SUB, add(SUB, "100.00"))

    def end_on(day: str) -> MemberEvent:
        cov = Cov(maintenance="001", policy=POLICY, begin=None, end=day)
        return event_of(member(SUB, maintenance="001", reason="AI", coverages=[cov]))

    assert ledger.send(SUB, end_on("20280331")) == ["end-after-plan-year"]
    assert RULES["end-after-plan-year"].default is Severity.WARN
    assert ledger.send(SUB, end_on("20271130")) == []
    new_year = event_of(member(SUB, coverages=[Cov(policy="99", begin="20280101", end="20290331")]))
    assert lifecycle.plan_event([], new_year) == [
        lifecycle.Refusal("end-after-plan-year",
                          "HLT policy 99 (2028) sent to end 2029-03-31, after its plan year's last "
                          "day 2028-12-31", "HD",
                          new_year.coverages[0].segment_position)
    ]  # fmt: skip


def test_paid_through_effectuates_the_policy_and_survives_a_reinstatement() -> None:
    ledger = Ledger()
    ledger.send(SUB, add(SUB, "100.00"))
    ledger.send(DEP, add(DEP, "0.00"))
    ledger.send(SUB, paid(dt.date(2027, 1, 31)))
    sub, dep = ledger.one(SUB), ledger.one(DEP)
    assert sub is not None and dep is not None
    assert (sub.state, sub.paid_through, dep.state) == (
        State.EFFECTUATED,
        dt.date(2027, 1, 31),
        State.EFFECTUATED,
    )
    ledger.send(SUB, term(SUB, dt.date(2027, 3, 31)))
    assert (sub.state, dep.state, dep.end) == (
        State.TERMINATED,
        State.TERMINATED,
        dt.date(2027, 3, 31),
    )
    ledger.send(SUB, reinstate(SUB))
    assert sub.state is State.EFFECTUATED


def test_next_plan_year_is_a_second_enrollment_and_a_same_year_second_policy_is_refused() -> None:
    ledger = Ledger()
    ledger.send(SUB, add(SUB, "100.00"))
    other = Cov(policy="99999999", begin="20270601", end="20271231")
    same_year = event_of(member(SUB, coverages=[other]))
    assert ledger.send(SUB, same_year) == ["duplicate-add"]
    next_year = Cov(policy="81200457", begin="20280101", end="20281231")
    assert ledger.send(SUB, event_of(member(SUB, reason="41", coverages=[next_year]))) == []
    years = sorted((e.plan_year, e.policy, e.state) for e in ledger.of[SUB])
    assert years == [(2027, POLICY, State.INITIAL), (2028, "81200457", State.INITIAL)]


def test_an_employers_july_plan_year_names_bounds_and_renews_its_enrollments() -> None:
    """An employer's group plan year from July 1 (`partner rules --plan-year-start 7`): a
    plan year is named by the year it begins in, so a hire in February 2028 is in plan year
    2027 with July's enrollees; the July 2028 renewal is a second enrollment — not a
    duplicate-add of February's — and ends open-ended 2027 enrollments on June 30, not on
    December 31 (which dropped January to June from billing); a DTP*349 on June 30 is within
    the plan year, a later one is end-after-plan-year."""
    july = PlanYear(7)
    assert (july.of(dt.date(2027, 7, 1)), july.of(dt.date(2028, 6, 30))) == (2027, 2027)
    assert july.last_day(2027) == dt.date(2028, 6, 30)
    assert CALENDAR.last_day(2027) == YEAR_END and PlanYear(12).last_day(9999).year == 9999

    def enroll(who: str, begin: str, end: str | None, reason: str = "EC") -> MemberEvent:
        return event_of(
            member(who, reason=reason, coverages=[Cov(policy=POLICY, begin=begin, end=end)])
        )

    ledger = Ledger(july)
    assert ledger.send(SUB, enroll(SUB, "20270701", None)) == []  # July's enrollee
    assert ledger.send(DEP, enroll(DEP, "20280201", None)) == []  # a hire in February
    assert [(e.plan_year, e.begin) for e in ledger.of[DEP]] == [(2027, dt.date(2028, 2, 1))]
    for who in (SUB, DEP):  # the renewal
        assert ledger.send(who, enroll(who, "20280701", None, reason="41")) == [], who
        years = [(e.plan_year, e.state, e.end) for e in ledger.of[who]]
        assert years == [
            (2027, State.INITIAL, dt.date(2028, 6, 30)),
            (2028, State.INITIAL, None),
        ], who
    # The same files on a calendar plan year: the February hire's renewal is a duplicate.
    calendar = Ledger()
    calendar.send(DEP, enroll(DEP, "20280201", None))
    assert calendar.send(DEP, enroll(DEP, "20280701", None, reason="41")) == ["duplicate-add"]

    within = Ledger(july)
    assert within.send(SUB, enroll(SUB, "20270701", "20280630")) == []
    beyond = enroll(SUB, "20270701", "20280731")
    assert [r.message for r in lifecycle.plan_event([], beyond, plan_year=july)] == [
        f"HLT policy {POLICY} (2027) sent to end 2028-07-31, after its plan year's last day "
        "2028-06-30"
    ]
    # A termination without 2300 in March 2028 ends plan year 2027's enrollment.
    cancel_march = event_of(
        member(SUB, maintenance="024", reason="07", coverages=[], eligibility_end="20280331")
    )
    assert within.send(SUB, cancel_march) == []
    assert [(e.state, e.end) for e in within.of[SUB]] == [(State.TERMINATED, dt.date(2028, 3, 31))]


def test_enrolled_again_after_a_termination_in_the_same_plan_year_is_a_stint_of_its_own() -> None:
    """A family terminated in March and enrolled again in August of the same plan year (a
    rehire; COBRA after a gap): a second enrollment, stint 1, so January to March stay billed
    (reusing the first moved its begin to August and dropped them). A cancellation of the
    new stint reaches the dependent's new stint only, and a reinstatement without 2300 the
    latest stint only; a re-add before the old end is refused (add-over-termination); after a
    cancel it restarts the one held."""

    def enroll(who: str, begin: str) -> MemberEvent:
        cov = Cov(policy=POLICY, begin=begin, end="20271231")
        return event_of(member(who, reason="28", coverages=[cov],
                               categories={"PRE AMT 1": ("9X", "250.00")},
                               category_period=begin))  # fmt: skip

    ledger = Ledger()
    for who in (SUB, DEP):
        assert ledger.send(who, enroll(who, "20270101")) == []
    assert ledger.send(SUB, term(SUB, dt.date(2027, 3, 31))) == []
    for who in (SUB, DEP):
        assert ledger.send(who, enroll(who, "20270801")) == [], who

    def held(who: str) -> list[tuple[int, int, State, dt.date | None, dt.date | None]]:
        return [(e.plan_year, e.stint, e.state, e.begin, e.end) for e in ledger.of[who]]

    for who in (SUB, DEP):
        assert held(who) == [
            (2027, 0, State.TERMINATED, BEGIN, dt.date(2027, 3, 31)),
            (2027, 1, State.EFFECTUATED, dt.date(2027, 8, 1), YEAR_END),
        ], who

    def billed(who: str, month: int) -> list[str]:
        return [
            str(ln.premium) for e in ledger.of[who] for ln in lifecycle.month_lines(e, 2027, month)
        ]

    assert (billed(SUB, 2), billed(SUB, 5), billed(SUB, 9)) == (["250.00"], [], ["250.00"])
    assert ledger.send(SUB, term(SUB, dt.date(2027, 8, 1))) == []  # cancels the new stint
    for who in (SUB, DEP):
        assert [(e.stint, e.state, e.end) for e in ledger.of[who]] == [
            (0, State.TERMINATED, dt.date(2027, 3, 31)),
            (1, State.CANCELLED, dt.date(2027, 8, 1)),
        ], who
    back = event_of(member(SUB, maintenance="025", reason="41", coverages=[]))
    assert ledger.send(SUB, back) == []
    assert [e.state for e in ledger.of[SUB]] == [State.TERMINATED, State.EFFECTUATED]
    # Enrolled again from a day the ended one covered (an old file sent again, most often):
    # refused, the termination kept. It restarted the enrollment from that day, reopening
    # the months the termination had ended without a reinstatement.
    again = Ledger()
    again.send(SUB, enroll(SUB, "20270101"))
    again.send(SUB, term(SUB, dt.date(2027, 3, 31)))
    for day in ("20270101", "20270301", "20270331"):
        assert again.send(SUB, enroll(SUB, day)) == ["add-over-termination"], day
    assert [(e.stint, e.state, e.begin, e.end) for e in again.of[SUB]] == [
        (0, State.TERMINATED, BEGIN, dt.date(2027, 3, 31))
    ]
    # After a cancellation (never in force), the addition is the enrollment, afresh.
    cancelled = Ledger()
    cancelled.send(SUB, enroll(SUB, "20270101"))
    cancelled.send(SUB, term(SUB, BEGIN))
    assert cancelled.send(SUB, enroll(SUB, "20270101")) == []
    assert [(e.stint, e.state) for e in cancelled.of[SUB]] == [(0, State.EFFECTUATED)]


def test_a_termination_reaches_the_stint_its_date_falls_in() -> None:
    """Terminated in September, enrolled again in December (a rehire), then the employer
    corrects the first termination to September 15 — with 2300 loops and without: the first
    stint ends earlier (its dependent's with it), the rehire's stints stay in force. The
    latest stint was taken whatever the date: the correction cancelled the rehire's coverage.
    COBRA with no gap (enrolled again the day after) likewise."""

    def enroll(who: str, begin: str) -> MemberEvent:
        return event_of(member(who, coverages=[Cov(policy=POLICY, begin=begin)]))

    def member_level_term(end: dt.date) -> MemberEvent:
        return event_of(member(SUB, maintenance="024", reason="07", coverages=[],
                               eligibility_end=d8(end)))  # fmt: skip

    for again, correction in (
        ("20271201", term(SUB, dt.date(2027, 9, 15))),
        ("20271201", member_level_term(dt.date(2027, 9, 15))),
        ("20271001", term(SUB, dt.date(2027, 9, 15))),  # COBRA from the next day
    ):
        ledger = Ledger()
        for who in (SUB, DEP):
            assert ledger.send(who, enroll(who, "20270101")) == []
        assert ledger.send(SUB, term(SUB, dt.date(2027, 9, 30))) == []
        for who in (SUB, DEP):
            assert ledger.send(who, enroll(who, again)) == [], who
        assert ledger.send(SUB, correction) == []
        for who in (SUB, DEP):
            assert [(e.stint, e.state, e.end) for e in ledger.of[who]] == [
                (0, State.TERMINATED, dt.date(2027, 9, 15)),
                (1, State.INITIAL, YEAR_END),
            ], (again, who)


def test_continuous_coverage_is_changed_at_renewal_not_refused() -> None:
    """An employer's open-ended enrollment since July 2026 (plan year from July), changed at
    open enrollment with DTP*303 and DTP*348 on 2027-07-01 (a new plan): the enrollment in
    force that day takes the new plan from then — its begin stays — where the plan year 2027
    it named was `unknown-member`. Without an enrollment in force that day, still refused."""
    ledger = Ledger(PlanYear(7))
    since = event_of(member(SUB, coverages=[Cov(policy=POLICY, begin="20260701", end=None)]))
    assert ledger.send(SUB, since) == []
    new_plan = Cov(maintenance="001", policy=POLICY, begin="20270701", end=None,
                   plan="48213VA0050001")  # fmt: skip
    renewal = event_of(member(SUB, maintenance="001", reason="22", effective="20270701",
                              coverages=[new_plan]))  # fmt: skip
    assert ledger.send(SUB, renewal) == []
    (item,) = ledger.of[SUB]
    assert (item.plan_year, item.begin, item.end) == (2026, dt.date(2026, 7, 1), None)
    assert [(p.begin, p.terms["plan_id"]) for p in item.periods] == [
        (dt.date(2026, 7, 1), "48213VA004000701"),
        (dt.date(2027, 7, 1), "48213VA0050001"),
    ]
    ended = Ledger(PlanYear(7))
    closed = Cov(policy=POLICY, begin="20260701", end="20270630")
    assert ended.send(SUB, event_of(member(SUB, coverages=[closed]))) == []
    assert ended.send(SUB, renewal) == ["unknown-member"]


def test_an_audit_is_compared_with_the_enrollment_in_force_on_its_date() -> None:
    """An employer's full file of September 2027 lists a member renewed in July 2027 with the
    original begin of its continuous coverage (DTP*348 2026-07-01, a July plan year): it is
    compared with the enrollment in force on the audit's date — a begin date difference —
    not with the expired 2026 one, which called the enrollment it lists "not in the audit"."""
    from gateway.enrollment.reconcile import compare
    from gateway.enrollment.repository import MemberRec

    july = PlanYear(7)
    ledger = Ledger(july)
    first = Cov(policy=POLICY, begin="20260701", end="20270630")
    renewed = Cov(policy=POLICY, begin="20270701", end="20280630")
    assert ledger.send(SUB, event_of(member(SUB, coverages=[first]))) == []
    assert ledger.send(SUB, event_of(member(SUB, reason="41", coverages=[renewed]))) == []
    listed = Cov(maintenance="030", policy=POLICY, begin="20260701", end="20280630")
    (audit,) = extract_members(
        [interchange([member(SUB, maintenance="030", reason="XN", coverages=[listed])],
                     control=9, bgn_date="20270920", action="4")]
    )  # fmt: skip
    rec = MemberRec(id=1, partner_id=1, member_key=SUB, subscriber=True, relationship_code="18",
                    status="active", last_name="LOVELACE", first_name="ADA", id_qualifier="34",
                    id_value="934100001", birth_date=dt.date(1980, 1, 1), gender="F")  # fmt: skip
    diffs = [d for d in compare(audit, rec, ledger.of[SUB], july) if d[0].startswith("HLT")]
    assert diffs == [("HLT benefit_begin", "2026-07-01", "2027-07-01")]


def test_the_end_of_employment_also_cancels_the_next_plan_years_renewal() -> None:
    """An employee leaves on June 30, the last day of a July plan year, and the termination
    comes after the July renewal was sent: with INS04 08 (termination of employment; 03
    death, 16 quit, 17 fired too) the renewal is cancelled as well — with 2300 loops and
    without — for the family. Any other reason (07, an exchange's) ends that plan year only."""
    july = PlanYear(7)

    def enrolled(who: str, begin: str, reason: str = "EC") -> MemberEvent:
        return event_of(member(who, reason=reason, coverages=[Cov(policy=POLICY, begin=begin,
                                                                  end=None)]))  # fmt: skip

    def leaves(reason: str, with_2300: bool) -> MemberEvent:
        if with_2300:
            cov = Cov(maintenance="024", policy=POLICY, begin=None, end="20270630")
            return event_of(member(SUB, maintenance="024", reason=reason, coverages=[cov]))
        return event_of(member(SUB, maintenance="024", reason=reason, coverages=[],
                               eligibility_end="20270630"))  # fmt: skip

    for reason, with_2300, renewal in (
        ("08", False, State.CANCELLED),
        ("08", True, State.CANCELLED),
        ("03", False, State.CANCELLED),
        ("07", False, State.INITIAL),
        ("07", True, State.INITIAL),
    ):
        ledger = Ledger(july)
        for who in (SUB, DEP):
            assert ledger.send(who, enrolled(who, "20260701")) == []
            assert ledger.send(who, enrolled(who, "20270701", reason="41")) == []
        assert ledger.send(SUB, leaves(reason, with_2300)) == []
        for who in (SUB, DEP):
            got = [(e.plan_year, e.state, e.end) for e in ledger.of[who]]
            # The subscriber's ends with the termination; the dependent's already ended then.
            first = State.TERMINATED if who == SUB else State.INITIAL
            assert got[0] == (2026, first, dt.date(2027, 6, 30)), (reason, who, got)
            assert got[1][:2] == (2027, renewal), (reason, with_2300, who, got)


def test_monthly_lines_prorate_by_days() -> None:
    ledger = Ledger()
    ledger.send(SUB, add(SUB, "300.00"))
    ledger.send(SUB, change(SUB, dt.date(2027, 2, 15), "356.00"))
    item = ledger.one(SUB)
    assert item is not None
    lines = lifecycle.month_lines(item, 2027, 2)
    # 14 days at 300 and 14 at 356 of February's 28.
    assert [(ln.days, str(ln.aptc)) for ln in lines] == [(14, "150.00"), (14, "178.00")]
    assert lifecycle.csr_variant("48213VA004000704") == "04"
    assert lifecycle.csr_variant("48213VA0040007-06") == "06"


def test_a_reinstatement_without_an_end_restores_the_end_it_had() -> None:
    """CMS reinstates with no 2300 loop (no DTP*349): the enrollment ends where it ended before
    its termination, not open-ended into the next plan year; an open-ended one stays so."""
    ledger = Ledger()
    ledger.send(SUB, add(SUB, "100.00"))
    item = ledger.one(SUB)
    assert item is not None
    bare_term = member(SUB, maintenance="024", reason="14", coverages=[],
                       eligibility_end=d8(dt.date(2027, 3, 31)))  # fmt: skip
    bare_reinstate = member(SUB, maintenance="025", reason="41", coverages=[])
    for event in (bare_term, bare_reinstate):
        assert ledger.send(SUB, event_of(event)) == []
    assert (item.state, item.end) == (State.INITIAL, YEAR_END)
    assert lifecycle.month_lines(item, 2028, 1) == []
    # Open-ended (an employer's coverage, no DTP*349): reinstated open-ended.
    ledger = Ledger()
    open_ended = member(SUB, coverages=[Cov(policy=POLICY, end=None)])
    ledger.send(SUB, event_of(open_ended))
    for event in (bare_term, bare_reinstate):
        assert ledger.send(SUB, event_of(event)) == []
    item = ledger.one(SUB)
    assert item is not None and (item.state, item.end) == (State.INITIAL, None)


def test_a_split_month_adds_up_to_the_month_rounded_once() -> None:
    """100.01 a month, APTC changed on September 16: 15 days and 15 of 30 are 50.005 each,
    which rounded each on its own bill 100.02. The running total gives 50.01 + 50.00."""
    ledger = Ledger()
    add_event = event_of(member(SUB, coverages=[Cov(policy=POLICY)],
                                categories={"PRE AMT 1": ("9X", "100.01"),
                                            "APTC AMT": ("9V", "10.00")}))  # fmt: skip
    ledger.send(SUB, add_event)
    ledger.send(SUB, change(SUB, dt.date(2027, 9, 16), "20.00"))
    item = ledger.one(SUB)
    assert item is not None
    lines = lifecycle.month_lines(item, 2027, 9)
    assert [(ln.days, str(ln.premium), str(ln.aptc)) for ln in lines] == [
        (15, "50.01", "5.00"),
        (15, "50.00", "10.00"),
    ]
    assert sum(ln.premium or 0 for ln in lines) == Decimal("100.01")
    (whole,) = lifecycle.month_lines(item, 2027, 10)
    assert (whole.premium, whole.aptc) == (Decimal("100.01"), Decimal("20.00"))


def test_the_months_totals_never_owe_a_negative_amount() -> None:
    from gateway.enrollment.views import MonthRow, month_totals

    ledger = Ledger()
    ledger.send(SUB, event_of(member(SUB, coverages=[Cov(policy=POLICY)],
                                     categories={"PRE AMT 1": ("9X", "650.00"),
                                                 "APTC AMT": ("9V", "700.00")})))  # fmt: skip
    item = ledger.one(SUB)
    assert item is not None
    rows = [MonthRow(SUB, "18", ln) for ln in lifecycle.month_lines(item, 2027, 10)]
    (total,) = month_totals(rows)
    assert (total["premium"], total["aptc"], total["responsible"], total["aptc_excess"]) == (
        "650.00",
        "700.00",
        "0.00",
        "50.00",
    )


def test_the_months_csv_quotes_away_a_formula_in_what_the_sender_wrote() -> None:
    """Sender text (member key, plan, rating area…) that a spreadsheet would run is quoted, as
    in every export; the ledger's own numbers stay numbers. A rating area of `-1+1+cmd|…`
    passed unquoted as "a negative number"; a leading tab passed too."""
    import csv
    import io

    from gateway.enrollment.views import MonthRow, months_csv

    ledger = Ledger()
    ledger.send(SUB, event_of(member(SUB, coverages=[Cov(policy=POLICY)],
                                     categories={"PRE AMT 1": ("9X", "650.00")})))  # fmt: skip
    item = ledger.one(SUB)
    assert item is not None
    (line,) = lifecycle.month_lines(item, 2027, 10)
    attack = "-1+1+cmd|' /C calc'!A0"
    rows = [
        MonthRow("\t=1+2", "18", dataclasses.replace(line, rating_area=attack, plan_id="@SUM(1)"))
    ]
    (row,) = csv.DictReader(io.StringIO("".join(months_csv(rows))))
    assert row["rating_area"] == "'" + attack
    assert row["member_key"] == "'\t=1+2"
    assert row["plan_id"] == "'@SUM(1)"
    assert (row["premium"], row["days"], row["month"]) == ("650.00", "31", "2027-10")


# --- the state machine against a reference model -------------------------------------------


@dataclass
class Ref:
    """What one enrollment (stint) of a member should be, written from the CMS rules and the
    stints' (a member enrolled again after its termination, later in the plan year, holds a
    second one), not from the code."""

    state: str | None = None
    end: dt.date | None = None
    effectuated: bool = False
    aptc: dict[dt.date, str] = field(default_factory=dict)
    begin: dt.date = BEGIN

    def in_force(self) -> bool:
        return self.state in ("initial", "effectuated")

    def covers(self, day: dt.date) -> bool:
        return (
            self.state not in (None, "cancelled")
            and self.begin <= day
            and (self.end is None or day <= self.end)
        )

    def aptc_on(self, day: dt.date) -> str | None:
        if self.state in (None, "cancelled") or day < self.begin:
            return None
        if self.end is not None and day > self.end:
            return None
        keys = [k for k in self.aptc if k <= day]
        return self.aptc[max(keys)] if keys else None


def end_ref(ref: Ref, end: dt.date) -> None:
    if end <= ref.begin:
        ref.state, ref.end = "cancelled", ref.begin
    else:
        ref.state, ref.end = "terminated", end


def model_step(refs: dict[str, list[Ref]], op: tuple) -> list[str]:
    kind, who = op[0], op[1]
    stints = refs[who]
    if kind == "add":
        begin = op[3]
        new = Ref("initial", YEAR_END, False, {begin: op[2]}, begin)
        if not stints:
            stints.append(new)
        elif stints[-1].in_force():
            return ["duplicate-add"]
        elif stints[-1].state == "terminated" and stints[-1].end and begin > stints[-1].end:
            stints.append(new)  # enrolled again after its termination: a stint of its own
        elif stints[-1].state == "terminated":
            return ["add-over-termination"]  # the months it ended, reopened: reinstate instead
        else:
            stints[-1] = new  # a cancelled one (never in force) starts afresh
        return []
    if not stints:
        return ["unknown-member"]
    ref = stints[-1]
    if kind == "term":
        end = op[2]
        # The stint the end date falls in (correcting the first one's end leaves a rehire's
        # alone), else the latest.
        ref = next((r for r in reversed(stints) if r.covers(end)), ref)
        until = ref.end
        recorded = ref.end if ref.state == "terminated" else ref.begin
        if not ref.in_force() and end > recorded:
            return ["term-extends-coverage"]
        if ref.in_force() or end < recorded:
            end_ref(ref, end)
        if who == SUB:
            for dep in refs[DEP]:
                # The policy's end bounds every member: a dependent terminated later than
                # the subscriber's (new, earlier) end ends with it; a cancel is never in force;
                # a stint that ended before the subscriber's began is left as it ended.
                if dep.state in (None, "cancelled"):
                    continue
                if not dep.in_force() and dep.end is not None and dep.end < ref.begin:
                    continue
                if until is not None and dep.begin > until:
                    continue  # begun after the subscriber's stint had ended
                if ref.state == "cancelled":
                    end_ref(dep, dep.begin)
                elif dep.end is None or dep.end > end:
                    end_ref(dep, end)
        return []
    if kind == "reinstate":
        if ref.in_force():
            return ["reinstate-in-force"]
        ref.state = "effectuated" if ref.effectuated else "initial"
        ref.end = YEAR_END
        return []
    if kind == "change":
        day, value = max(op[2], ref.begin), op[3]
        keys = [k for k in ref.aptc if k <= day]
        old = ref.aptc[max(keys)] if keys else ""
        # Later changes keep what they set: the first later one sending another value ends
        # the reach, even where a change after it sent the old value again.
        for k in sorted(k for k in ref.aptc if k > day):
            if ref.aptc[k] != old or old == value:
                break
            ref.aptc[k] = value
        ref.aptc[day] = value
        return []
    if kind == "paid":
        for member_ref in [ref] + (refs[DEP] if who == SUB else []):
            if member_ref is ref or member_ref.in_force():
                member_ref.effectuated = True
                if member_ref.state == "initial":
                    member_ref.state = "effectuated"
        return []
    raise AssertionError(op)


days = st.dates(min_value=BEGIN, max_value=YEAR_END)
amounts = st.sampled_from(["100.00", "250.00", "400.00", "0.00"])
who = st.sampled_from([SUB, DEP])
begins = st.sampled_from([BEGIN, BEGIN, dt.date(2027, 5, 1), dt.date(2027, 9, 1)])
ops = st.one_of(
    st.tuples(st.just("add"), who, amounts, begins),
    st.tuples(st.just("term"), who, st.one_of(st.just(BEGIN), days)),
    st.tuples(st.just("reinstate"), who),
    st.tuples(st.just("change"), who, days, amounts),
    st.tuples(st.just("paid"), st.just(SUB), days),
)
FIRSTS = [dt.date(2027, m, 1) for m in range(1, 13)] + [dt.date(2027, 6, 15), YEAR_END]


def event_for(op: tuple, begin: dt.date) -> MemberEvent:
    """The op's event; a change or a payment carries the member's enrollment's begin (its
    latest stint's: `begin`) in DTP*348, as a sender does."""
    kind, who = op[0], op[1]
    if kind == "add":
        return add(who, op[2], op[3])
    if kind == "term":
        return term(who, op[2])
    if kind == "reinstate":
        return reinstate(who)
    if kind == "change":
        return change(who, op[2], op[3], begin)
    return paid(op[2], begin)


FAMILY = [("add", SUB, "100.00", BEGIN), ("add", DEP, "0.00", BEGIN)]


SEPTEMBER = dt.date(2027, 9, 1)
BOTH_AGAIN = [("add", SUB, "250.00", SEPTEMBER), ("add", DEP, "0.00", SEPTEMBER)]


@settings(max_examples=400, deadline=None)
@given(st.booleans(), st.lists(ops, min_size=1, max_size=14))
# Terminated in March, both enrolled again in September, then the subscriber's first stint
# cancelled (its dates: the dependent's new stint stays), or its new one cancelled (the first
# stints stay as they ended), or ended in October, reinstated and paid.
@example(True, [("term", SUB, dt.date(2027, 3, 31)), *BOTH_AGAIN, ("term", SUB, BEGIN)])
@example(True, [("term", SUB, dt.date(2027, 3, 31)), *BOTH_AGAIN, ("term", SUB, SEPTEMBER)])
@example(
    True,
    [("term", SUB, dt.date(2027, 3, 31)), *BOTH_AGAIN, ("term", SUB, dt.date(2027, 10, 31)),
     ("reinstate", SUB), ("paid", SUB, dt.date(2027, 9, 30))],
)  # fmt: skip
# APTC 250 from May, 100 again from September, then 400 from March: September's stays.
@example(
    True,
    [("change", SUB, dt.date(2027, 5, 1), "250.00"), ("change", SUB, SEPTEMBER, "100.00"),
     ("change", SUB, dt.date(2027, 3, 1), "400.00")],
)  # fmt: skip
def test_random_maintenance_agrees_with_the_reference_model(
    enrolled: bool, sequence: list[tuple]
) -> None:
    if enrolled:  # most sequences start from an enrolled family, where the lifecycle is
        sequence = FAMILY + sequence
    ledger = Ledger()
    refs: dict[str, list[Ref]] = {SUB: [], DEP: []}
    for step, op in enumerate(sequence):
        held = refs[op[1]]
        begin = held[-1].begin if held else BEGIN
        expected = model_step(refs, op)
        got = ledger.send(op[1], event_for(op, begin))
        assert got == expected, (step, op)
        for key in (SUB, DEP):
            items = ledger.of[key]
            assert [(i.stint, i.state.value, i.begin, i.end, i.effectuated) for i in items] == [
                (n, r.state, r.begin, r.end, r.effectuated) for n, r in enumerate(refs[key])
            ], (step, op, key)
            for item, ref in zip(items, refs[key], strict=True):
                for day in FIRSTS:
                    terms = item.terms_on(day)
                    assert (terms or {}).get("aptc") == ref.aptc_on(day), (step, op, key, day)


def test_a_members_2750_amounts_are_counted_on_one_line_not_on_each() -> None:
    """One 2700 loop per member, three 2300 loops (HLT, DEN, VIS): the premium, APTC, CSR and
    rating area belong to the health line; the dental and vision lines keep their own plan and
    level. Without HLT, the first line carries them. An audit of the same member matches."""
    from gateway.enrollment.reconcile import compare
    from gateway.enrollment.repository import MemberRec

    amounts = {"PRE AMT 1": ("9X", "500.00"), "APTC AMT": ("9V", "300.00"),
               "CSR AMT": ("9V", "45.00"), "RATING AREA": ("9X", "R-VA010")}  # fmt: skip
    three = [
        Cov(line="DEN", policy=POLICY + "D", plan="48213VA0040007D1"),
        Cov(line="HLT", policy=POLICY),
        Cov(line="VIS", policy=POLICY + "V", plan="48213VA0040007V1", level="IND"),
    ]
    ledger = Ledger()
    assert ledger.send(SUB, event_of(member(SUB, coverages=three, categories=amounts))) == []
    terms = {e.line: e.periods[-1].terms for e in ledger.of[SUB]}
    assert {line: (t.get("premium"), t.get("aptc")) for line, t in terms.items()} == {
        "HLT": ("500.00", "300.00"),
        "DEN": ("", ""),
        "VIS": ("", ""),
    }
    assert terms["HLT"]["csr_amount"] == "45.00" and terms["HLT"]["rating_area"] == "R-VA010"
    assert terms["VIS"]["plan_id"] == "48213VA0040007V1" and terms["VIS"]["coverage_level"] == "IND"
    # A change without 2300 (new APTC from June) reaches the health line only.
    june = event_of(
        member(
            SUB,
            maintenance="001",
            reason="AI",
            effective="20270601",
            coverages=[],
            categories={"APTC AMT": ("9V", "320.00")},
            category_period="20270601",
        )
    )
    assert ledger.send(SUB, june) == []
    assert {e.line: e.periods[-1].terms.get("aptc") for e in ledger.of[SUB]} == {
        "HLT": "320.00",
        "DEN": "",
        "VIS": "",
    }
    # An audit of January to May lists the member as sent: no premium or APTC "mismatch" on
    # DEN or VIS (each 2750 range is compared over its own days: June's 320.00 is not in it).
    audit = event_of(member(SUB, maintenance="030", reason="XN", coverages=three,
                            categories=amounts, category_period="20270101-20270531"))  # fmt: skip
    rec = MemberRec(id=1, partner_id=1, member_key=SUB, subscriber=True, relationship_code="18",
                    status="active", last_name="LOVELACE", first_name="ADA", id_qualifier="34",
                    id_value="934100001", birth_date=dt.date(1980, 1, 1), gender="F")  # fmt: skip
    diffs = [d for d in compare(audit, rec, ledger.of[SUB]) if not d[0].startswith("residence")]
    assert diffs == []
    # Dental and vision only: DEN carries the amounts, in whichever order a file lists them.
    ledger = Ledger()
    ledger.send(SUB, event_of(member(SUB, coverages=[three[0], three[2]], categories=amounts)))
    assert {e.line: e.periods[-1].terms.get("premium") for e in ledger.of[SUB]} == {
        "DEN": "500.00",
        "VIS": "",
    }
    vis_first = [Cov(maintenance="001", line=c.line, policy=c.policy, plan=c.plan, level=c.level)
                 for c in (three[2], three[0])]  # fmt: skip
    june = member(SUB, maintenance="001", reason="AI", effective="20270601",
                  coverages=vis_first, categories={"PRE AMT 1": ("9X", "600.00")},
                  category_period="20270601")  # fmt: skip
    assert ledger.send(SUB, event_of(june)) == []
    assert {e.line: e.periods[-1].terms.get("premium") for e in ledger.of[SUB]} == {
        "DEN": "600.00",
        "VIS": "",
    }


def _with_ranges(event: MemberEvent, *ranges: tuple[str, str, str]) -> MemberEvent:
    """`event` with one 2750 loop per (N102, value, RD8 range), in that order."""
    (template,) = [loop for loop in event.reporting_category_loops if loop.name == "APTC AMT"]
    loops = []
    for name, value, raw in ranges:
        first, _, last = raw.partition("-")
        begin, end = (dt.date(int(d[:4]), int(d[4:6]), int(d[6:])) for d in (first, last))
        loops.append(
            template.model_copy(
                update={
                    "name": name,
                    "value": value,
                    "period_begin": begin,
                    "period_end": end,
                    "period_raw": raw,
                }
            )
        )
    return event.model_copy(update={"reporting_category_loops": tuple(loops)})


def test_a_2750_range_that_ends_early_ends_its_term() -> None:
    """APTC AMT for RD8 20270101-20270331 is APTC for January to March, not for the year; a
    next range from April 1 sets the value from then; a range to December 31 ends with the
    year (no empty period after it)."""
    ledger = Ledger()
    added = _with_ranges(
        add(SUB, "0"),
        ("APTC AMT", "100.00", "20270101-20270331"),
        ("PRE AMT 1", "300.00", "20270101-20271231"),
    )
    assert ledger.send(SUB, added) == []
    item = ledger.one(SUB)
    assert item is not None
    assert [(b, e, p.terms["aptc"], p.terms["premium"]) for p, b, e in item.spans()] == [
        (BEGIN, dt.date(2027, 3, 31), "100.00", "300.00"),
        (dt.date(2027, 4, 1), YEAR_END, "", "300.00"),
    ]
    two = Ledger()
    both = _with_ranges(
        add(SUB, "0"),
        ("APTC AMT", "100.00", "20270101-20270331"),
        ("APTC AMT", "150.00", "20270401-20271231"),
    )
    assert two.send(SUB, both) == []
    item = two.one(SUB)
    assert item is not None
    assert [(b, p.terms["aptc"]) for p, b, _ in item.spans()] == [
        (BEGIN, "100.00"),
        (dt.date(2027, 4, 1), "150.00"),
    ]
