"""Pure; no I/O. A member's enrollments and what one maintenance event does to them.

An *enrollment* is one member on one policy (REF*1L), insurance line (HD03) and plan year: its
lifecycle state, its begin and end dates, the premium paid through, and its *coverage periods* —
the terms in force from a date on (plan and CSR variant, coverage level, premium, APTC, CSR
amount, rating area). A period runs until the next one begins; the enrollment's begin and end
bound them all. Plan years coexist: next year's re-enrollment is a second enrollment.

The lifecycle (CMS FFE enrollment manual, "Enrollment and Maintenance"):

    initial --(021/28, or a paid-through date DTP*543)--> effectuated
    initial | effectuated --(024, end after begin)------> terminated
    initial | effectuated --(024, end on/before begin)--> cancelled
    terminated | cancelled --(025)----------------------> initial / effectuated (as it was)
    terminated --(024 with an earlier end)--------------> terminated (retroactive)

Refused (business rules, never silent): an addition for an enrollment already in force
(`duplicate-add`, also a second policy on the same line in the same plan year), or one that
begins on or before the end of its terminated enrollment (`add-over-termination`: it would
reopen the months the termination ended — an old file sent again; reinstate instead); a termination
that would move a recorded end date later (`term-extends-coverage`: reinstate first; for one
in force, a termination only ends it earlier); a reinstatement of an enrollment in force
(`reinstate-in-force`), or one whose DTP*303 is a day its terminated enrollment was in
force (`reinstate-covered-date`: it reinstates an earlier termination, not the one held — an
old file sent again); a change, termination or reinstatement of an insurance line or policy
the member does not have (`unknown-member`).

An event without 2300 loops is about the member's enrollments on its 2000-level REF*1L policy,
in the plan year of its date (`member_level`). A subscriber's cancellation or termination ends
the policy: every dependent enrolled on the same policy, line and plan year is cancelled or
terminated with it, those already terminated later than it too; its effectuation (the premium is
paid per policy) effectuates them too (`Outcome.cascades`).

`plan_event` reads; `apply_event` mutates the enrollments it was given (after `plan_event`
found nothing to refuse), marking what changed `dirty` for the caller to store.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from gateway.enrollment.codes import Maintenance, priced_line
from gateway.enrollment.events import Coverage, MemberEvent
from gateway.enrollment.planyear import CALENDAR, PlanYear
from gateway.enrollment.rules import amount

EFFECTUATION_REASON = "28"  # INS04 28 "Initial Enrollment": the issuer's effectuation
ENDS_EVERYTHING = frozenset({"03", "08", "16", "17"})
"""INS04 of a termination that ends all the member's coverage, later plan years' too: 03
death, 08 termination of employment, 16 quit, 17 fired. Any other reason ends the coverage
of its date's plan year (an exchange's 2027 termination leaves 2028's re-enrollment)."""


class State(enum.StrEnum):
    INITIAL = "initial"  # enrolled, awaiting effectuation (the binder payment)
    EFFECTUATED = "effectuated"  # the first premium is paid
    TERMINATED = "terminated"  # ended after it began
    CANCELLED = "cancelled"  # ended on or before its begin date: never in force


IN_FORCE = frozenset({State.INITIAL, State.EFFECTUATED})


def state_of(status: str) -> State:
    """A stored status; `active` / `ended` were written by versions before the lifecycle."""
    try:
        return State(status)
    except ValueError:
        return State.INITIAL if status == "active" else State.TERMINATED


TERMS = ("plan_id", "coverage_level", "premium", "aptc", "csr_amount", "rating_area")
"""What a coverage period carries, and the names of the ledger's columns for it."""

CATEGORY_TERMS = {
    "PRE AMT 1": "premium",
    "APTC AMT": "aptc",
    "CSR AMT": "csr_amount",
    "RATING AREA": "rating_area",
}
"""CMS 2750 reporting categories that are terms of a period (N102 -> term)."""

AMOUNT_TERMS = ("premium", "aptc", "csr_amount")


@dataclass
class Period:
    """The terms in force from `begin` until the next period begins (or the enrollment ends)."""

    begin: dt.date
    terms: dict[str, str]
    event_id: int | None = None
    id: int | None = None
    dirty: bool = True


@dataclass
class Enrollment:
    line: str
    policy: str
    plan_year: int
    state: State
    begin: dt.date | None
    end: dt.date | None
    paid_through: dt.date | None = None
    effectuated: bool = False
    periods: list[Period] = field(default_factory=list)  # ascending begin, distinct begins
    # The end it has while in force (its addition's or a change's DTP*349): a termination
    # leaves it, a reinstatement without an end of its own restores it.
    scheduled_end: dt.date | None = None
    # Enrolled again after a termination in the same plan year (a rehire, COBRA after a gap):
    # a second enrollment of the same policy, line and plan year, numbered 1, 2, …
    stint: int = 0
    id: int | None = None
    dirty: bool = True

    @property
    def in_force(self) -> bool:
        return self.state in IN_FORCE

    def terms_on(self, day: dt.date) -> dict[str, str] | None:
        """The terms in force on `day`, or None when the enrollment does not cover it."""
        if self.state is State.CANCELLED or not self.covers(day, day):
            return None
        current = None
        for period in self.periods:
            if period.begin > day:
                break
            current = period
        return dict(current.terms) if current is not None else None

    def covers(self, first: dt.date, last: dt.date) -> bool:
        """Whether [first, last] overlaps the enrollment's [begin, end] (not for a cancel)."""
        if self.state is State.CANCELLED:
            return False
        return (self.begin is None or self.begin <= last) and (
            self.end is None or self.end >= first
        )

    def spans(self) -> list[tuple[Period, dt.date, dt.date | None]]:
        """Each period with the days it is in force: [begin, end] clipped to the enrollment;
        periods that are never in force (superseded, or after the end) are left out."""
        out: list[tuple[Period, dt.date, dt.date | None]] = []
        if self.state is State.CANCELLED:
            return out
        for n, period in enumerate(self.periods):
            begin = max(period.begin, self.begin) if self.begin else period.begin
            nxt = self.periods[n + 1].begin if n + 1 < len(self.periods) else None
            end = nxt - dt.timedelta(days=1) if nxt is not None else None
            if self.end is not None and (end is None or end > self.end):
                end = self.end
            if end is not None and end < begin:
                continue
            out.append((period, begin, end))
        return out


@dataclass(frozen=True, slots=True)
class Refusal:
    rule: str
    message: str
    segment_id: str
    segment_position: int
    element_position: int | None = None


@dataclass(frozen=True, slots=True)
class Cascade:
    """What a subscriber's event does to the rest of its policy (line, plan year): an end
    (`cancel` when the subscriber's enrollment was cancelled), or effectuation (`paid_through`:
    the premium is paid for the policy, not for one member)."""

    line: str
    policy: str
    plan_year: int
    end: dt.date | None
    cancel: bool = False
    paid_through: dt.date | None = None
    # The subscriber's enrollment's span before the event: a dependent's stint that ended
    # before it began, or begins after it ended, is another stint's, left be.
    begin: dt.date | None = None
    until: dt.date | None = None

    @classmethod
    def ending(cls, e: Enrollment, end: dt.date, until: dt.date | None) -> Cascade:
        """The subscriber's enrollment `e`, just ended (or cancelled) at `end`; it ran `until`
        before."""
        cancel = e.state is State.CANCELLED
        return cls(e.line, e.policy, e.plan_year, end, cancel, begin=e.begin, until=until)


@dataclass
class Outcome:
    refusals: list[Refusal] = field(default_factory=list)
    cascades: list[Cascade] = field(default_factory=list)
    touched: list[Enrollment] = field(default_factory=list)


# --- reading the event ----------------------------------------------------------------------


def plan_of(cov: Coverage) -> str:
    return (cov.class_of_contract_code or cov.plan_coverage_description or "")[:80]


def csr_variant(plan_id: str) -> str:
    """The CSR variant of a CMS plan id (14-character HIOS plan id + 2-digit variant)."""
    tail = plan_id.replace("-", "")
    return tail[14:16] if len(tail) >= 16 and tail[14:16].isdigit() else ""


def policy_of(cov: Coverage, event: MemberEvent, fallback: str) -> str:
    return (cov.group_or_policy_number or event.group_or_policy_number or fallback or "")[:80]


def event_effective(event: MemberEvent) -> dt.date | None:
    """When a change takes effect: DTP*303, else the earliest 2750 DTP*007 begin."""
    if event.maintenance_effective is not None:
        return event.maintenance_effective
    begins = [
        loop.period_begin
        for loop in event.reporting_category_loops
        if loop.name in CATEGORY_TERMS and loop.period_begin is not None
    ]
    return min(begins) if begins else None


def _deltas(
    event: MemberEvent,
    cov: Coverage | None,
    default: dt.date | None,
    *,
    categories: bool = True,
    plan_year: PlanYear = CALENDAR,
) -> list[tuple[dt.date | None, dict[str, str]]]:
    """The terms this event sets, grouped by the date each takes effect: HD's at `default`,
    each 2750 loop's at its DTP*007 begin (else `default`) when `categories`. A loop's RD8
    range that ends before its plan year does (APTC for January to March) leaves the term
    empty from the day after, unless a loop sets it from that day (the next range)."""
    by_date: dict[dt.date | None, dict[str, str]] = {}
    if cov is not None:
        hd: dict[str, str] = {}
        if plan_of(cov):
            hd["plan_id"] = plan_of(cov)
        if cov.coverage_level:
            hd["coverage_level"] = cov.coverage_level[:3]
        if hd:
            by_date.setdefault(default, {}).update(hd)
    seen: set[str] = set()
    ends: list[tuple[dt.date, str]] = []
    for loop in event.reporting_category_loops if categories else ():
        term = CATEGORY_TERMS.get(loop.name)
        if term is None or (loop.name in seen and loop.period_begin is None):
            continue
        seen.add(loop.name)
        value = loop.value.strip()
        if term in AMOUNT_TERMS and (figure := amount(value)) is not None:
            value = format(figure, "f")  # 000412.37 is 412.37; never cut to a column's width
        by_date.setdefault(loop.period_begin or default, {})[term] = value
        begin, end = loop.period_begin, loop.period_end
        if (
            "-" in loop.period_raw
            and begin
            and end
            and begin <= end < plan_year.last_day(plan_year.of(begin))
        ):
            ends.append((end + dt.timedelta(days=1), term))
    for day, term in ends:
        by_date.setdefault(day, {}).setdefault(term, "")
    return sorted(by_date.items(), key=lambda kv: kv[0] or dt.date.min)


# --- matching ---------------------------------------------------------------------------------


def matching(
    enrollments: Sequence[Enrollment],
    line: str,
    policy: str,
    year: int | None,
    day: dt.date | None = None,
) -> Enrollment | None:
    """The member's enrollment on (line, policy) — of `year` when known — that `day` falls in
    (a termination's end, a change's effective date: `on_date`), else the latest. A plan
    year's stints are told apart so: correcting the first one's end leaves a rehire's alone.
    A year the member does not hold (a change may carry a later DTP*348, a begin date
    correction, within the same year) is None — unless an open-ended enrollment of an earlier
    plan year is in force on `day`: an employer's continuous coverage, changed at renewal."""
    same = [e for e in enrollments if e.line == line and e.policy == policy]
    if year is not None:
        of_year = [e for e in same if e.plan_year == year]
        if not of_year and day is not None:
            of_year = [
                e for e in same if e.plan_year < year and e.end is None and e.covers(day, day)
            ]
        same = of_year
    if day is not None and len(same) > 1:
        same = [e for e in same if e.covers(day, day)] or same
    return max(same, key=lambda e: (e.plan_year, e.stint), default=None)


def on_date(event: MemberEvent, cov: Coverage) -> dt.date | None:
    """The day an event on this coverage is about, for `matching`: a termination's end, a
    change's coverage begin (DTP*348: which stint it names; else its effective date); none for
    an addition or a reinstatement (the latest stint)."""
    mtype = event.maintenance_type.code
    if mtype == Maintenance.TERMINATION or cov.maintenance_type.code == Maintenance.TERMINATION:
        return _end_of(event, cov)
    if mtype == Maintenance.CHANGE:
        return cov.benefit_begin or event_effective(event)
    return None


def _stints_on(items: Iterable[Enrollment], day: dt.date | None) -> list[Enrollment]:
    """Of each (line, policy, plan year)'s stints, the one `day` falls in, else the latest."""
    groups: dict[tuple[str, str, int], list[Enrollment]] = {}
    for e in items:
        groups.setdefault((e.line, e.policy, e.plan_year), []).append(e)
    out = []
    for group in groups.values():
        if len(group) > 1 and day is not None:
            group = [e for e in group if e.covers(day, day)] or group
        out.append(max(group, key=lambda e: e.stint))
    return out


def _latest(enrollments: Iterable[Enrollment]) -> list[Enrollment]:
    """The enrollments of the member's latest plan year: of its stints on a policy and line,
    the latest (an earlier one ended before it began)."""
    items = list(enrollments)
    if not items:
        return []
    year = max(e.plan_year for e in items)
    last: dict[tuple[str, str], Enrollment] = {}
    for e in items:
        if e.plan_year == year:
            held = last.get((e.line, e.policy))
            if held is None or e.stint > held.stint:
                last[(e.line, e.policy)] = e
    return list(last.values())


def member_level(
    enrollments: Sequence[Enrollment],
    event: MemberEvent,
    day: dt.date | None,
    plan_year: PlanYear = CALENDAR,
) -> list[Enrollment]:
    """The enrollments an event without 2300 loops is about: those on its 2000-level REF*1L
    policy when the member has that policy (an employer's file may send a group number there,
    which names none of them: then all); of those, the plan year `day` falls in when the
    member has one (a termination in 2027 leaves next year's re-enrollment alone)."""
    items = list(enrollments)
    policy = event.group_or_policy_number
    if policy and any(e.policy == policy for e in items):
        items = [e for e in items if e.policy == policy]
    year = plan_year.of(day) if day is not None else None
    if year is not None and any(e.plan_year == year for e in items):
        items = [e for e in items if e.plan_year == year]
    return items


def _end_of(event: MemberEvent, cov: Coverage | None) -> dt.date | None:
    if cov is not None and cov.benefit_end is not None:
        return cov.benefit_end
    return event.eligibility_end or event.maintenance_effective


def _year(cov: Coverage | None, plan_year: PlanYear) -> int | None:
    if cov is not None and cov.benefit_begin is not None:
        return plan_year.of(cov.benefit_begin)
    return None


# --- planning: what would be refused --------------------------------------------------------


def plan_event(
    enrollments: Sequence[Enrollment],
    event: MemberEvent,
    *,
    policy_fallback: str = "",
    plan_year: PlanYear = CALENDAR,
) -> list[Refusal]:
    """Why `event` cannot apply to these enrollments (empty: it can)."""
    mtype = event.maintenance_type.code
    at = event.source.segment_position
    out: list[Refusal] = []
    for cov in event.coverages:
        line, policy = cov.insurance_line[:3], policy_of(cov, event, policy_fallback)
        year = _year(cov, plan_year)
        target = matching(enrollments, line, policy, year, on_date(event, cov))
        pos = cov.segment_position
        end, its_year = cov.benefit_end, target.plan_year if target is not None else year
        if (
            mtype in (Maintenance.ADDITION, Maintenance.CHANGE, Maintenance.REINSTATEMENT)
            and end is not None
            and its_year is not None
            and end > plan_year.last_day(its_year)
        ):
            out.append(
                Refusal(
                    "end-after-plan-year",
                    f"{line} policy {policy} ({its_year}) sent to end {end}, after its plan "
                    f"year's last day {plan_year.last_day(its_year)}",
                    "HD",
                    pos,
                )
            )
        if mtype == Maintenance.ADDITION:
            if target is not None and target.in_force:
                if event.maintenance_reason != EFFECTUATION_REASON:
                    out.append(
                        Refusal(
                            "duplicate-add",
                            f"addition of {line} policy {policy} ({target.plan_year}), which "
                            f"is already {target.state.value}",
                            "HD",
                            pos,
                            1,
                        )
                    )
                continue
            starts = _begin_of(event, cov)
            if (
                target is not None
                and target.state is State.TERMINATED
                and target.end is not None
                and starts is not None
                and starts <= target.end
            ):
                # Not a new enrollment (that begins after the end: a stint of its own) but the
                # months the termination ended, reopened: an old file sent again, most often.
                out.append(
                    Refusal(
                        "add-over-termination",
                        f"addition of {line} policy {policy} ({target.plan_year}) from {starts}, "
                        f"on or before the end ({target.end}) of its terminated enrollment",
                        "HD",
                        pos,
                        1,
                    )
                )
                continue
            begin = cov.benefit_begin
            for other in enrollments:
                if (
                    other is not target
                    and other.line == line
                    and other.policy != policy
                    and other.in_force
                    and year is not None
                    and other.plan_year == year
                    and other.covers(begin or dt.date.min, cov.benefit_end or dt.date.max)
                ):
                    out.append(
                        Refusal(
                            "duplicate-add",
                            f"addition of {line} policy {policy} while the member is enrolled "
                            f"in {line} policy {other.policy} for {other.plan_year}",
                            "HD",
                            pos,
                            1,
                        )
                    )
                    break
        elif mtype in (Maintenance.CHANGE, Maintenance.TERMINATION, Maintenance.REINSTATEMENT):
            if target is None:
                if any(e.policy == policy for e in enrollments) or not enrollments:
                    out.append(
                        Refusal(
                            "unknown-member",
                            f"{_VERB[mtype]} of {line} coverage on policy {policy}"
                            + (f" for {year}" if year else "")
                            + ", which the member does not have",
                            "HD",
                            pos,
                        )
                    )
                continue  # a policy the member never had: rules.unknown-member says so
            if mtype == Maintenance.TERMINATION:
                out += _refuse_term(target, _end_of(event, cov), "HD", pos)
            elif mtype == Maintenance.REINSTATEMENT and target.in_force:
                out.append(_reinstating_in_force(target, "HD", pos))
            elif mtype == Maintenance.REINSTATEMENT and _covered_on_resumption(target, event):
                out.append(_reinstating_covered(target, event, "HD", pos))
    if not event.coverages and enrollments:
        if mtype == Maintenance.TERMINATION:
            end = _end_of(event, None)
            scope = _stints_on(member_level(enrollments, event, end, plan_year), end)
            live = [e for e in scope if e.in_force]
            for e in live or _latest(scope):
                out += _refuse_term(e, end, "INS", at)
        elif mtype == Maintenance.REINSTATEMENT:
            scope = _latest(member_level(enrollments, event, event_effective(event), plan_year))
            if scope and all(e.in_force for e in scope):
                out.append(_reinstating_in_force(scope[0], "INS", at))
            for e in scope:
                if _covered_on_resumption(e, event):
                    out.append(_reinstating_covered(e, event, "INS", at))
                    break
    return out


_VERB: dict[str, str] = {
    Maintenance.CHANGE: "change",
    Maintenance.TERMINATION: "termination",
    Maintenance.REINSTATEMENT: "reinstatement",
}


def _refuse_term(target: Enrollment, end: dt.date | None, seg: str, pos: int) -> list[Refusal]:
    if end is None:
        return []
    if target.in_force:
        if target.end is not None and end > target.end:
            return [
                Refusal(
                    "term-extends-coverage",
                    f"{target.line} policy {target.policy} ends {target.end}; a termination "
                    f"only ends coverage earlier, not later, to {end}",
                    seg,
                    pos,
                )
            ]
        return []
    recorded = target.begin if target.state is State.CANCELLED else target.end
    if recorded is not None and end > recorded:
        return [
            Refusal(
                "term-extends-coverage",
                f"{target.line} policy {target.policy} is {target.state.value} as of "
                f"{recorded}; a termination cannot move its end to {end} (send a "
                "reinstatement first)",
                seg,
                pos,
            )
        ]
    return []


def _covered_on_resumption(target: Enrollment, event: MemberEvent) -> bool:
    """A reinstatement whose effective date (2000 DTP*303: the day coverage resumes) falls
    after the begin of a terminated enrollment and on or before its end: the enrollment was in
    force that day, so the termination it reinstates is not the one the ledger holds — an
    earlier file sent again after a later termination. A reinstatement from the day after the
    end, or from the coverage's begin (or without DTP*303), undoes the termination held."""
    day = event.maintenance_effective
    return (
        day is not None
        and target.state is State.TERMINATED
        and target.begin is not None
        and target.end is not None
        and target.begin < day <= target.end
    )


def _reinstating_covered(target: Enrollment, event: MemberEvent, seg: str, pos: int) -> Refusal:
    return Refusal(
        "reinstate-covered-date",
        f"reinstatement of {target.line} policy {target.policy} ({target.plan_year}) from "
        f"{event.maintenance_effective}, a day its enrollment was in force: it is terminated "
        f"as of {target.end}",
        seg,
        pos,
    )


def _reinstating_in_force(target: Enrollment, seg: str, pos: int) -> Refusal:
    return Refusal(
        "reinstate-in-force",
        f"reinstatement of {target.line} policy {target.policy}, which is "
        f"{target.state.value} (not terminated or cancelled)",
        seg,
        pos,
    )


# --- applying ---------------------------------------------------------------------------------


def apply_event(
    enrollments: list[Enrollment],
    event: MemberEvent,
    *,
    policy_fallback: str = "",
    plan_year: PlanYear = CALENDAR,
    effectuate_on_add: bool = False,
) -> Outcome:
    """Apply `event` (which `plan_event` did not refuse) to `enrollments`, in place: new
    enrollments are appended; everything that changed is marked dirty and listed in
    `Outcome.touched`. With `effectuate_on_add` (an employer's group: no binder payment) an
    addition is effectuated at once instead of awaiting 021/28 or a paid-through date."""
    out = Outcome()
    mtype = event.maintenance_type.code
    effective = event_effective(event)
    touched: dict[int, Enrollment] = {}

    def touch(e: Enrollment) -> None:
        e.dirty = True
        touched[id(e)] = e

    priced = priced_line([c.insurance_line[:3] for c in event.coverages])
    for cov in event.coverages:
        line, policy = cov.insurance_line[:3], policy_of(cov, event, policy_fallback)
        year = _year(cov, plan_year)
        target = matching(enrollments, line, policy, year, on_date(event, cov))
        kind = cov.maintenance_type.code if mtype == Maintenance.CHANGE else mtype
        if mtype == Maintenance.TERMINATION or cov.maintenance_type.code == Maintenance.TERMINATION:
            kind = Maintenance.TERMINATION
        if mtype == Maintenance.ADDITION and (target is None or not target.in_force):
            target = _add(enrollments, event, cov, line, policy, target, plan_year)
            if effectuate_on_add:
                _effectuate(target)
            touch(target)
            _close_earlier_years(enrollments, target, touch, plan_year)
        if target is None:
            continue
        touch(target)
        was_effectuated = target.effectuated
        if cov.last_premium_paid is not None:
            _paid(target, cov.last_premium_paid)
        if mtype == Maintenance.ADDITION and event.maintenance_reason == EFFECTUATION_REASON:
            _effectuate(target)
        if (
            event.subscriber
            and target.effectuated
            and (not was_effectuated or cov.last_premium_paid is not None)
        ):
            out.cascades.append(
                Cascade(
                    target.line,
                    target.policy,
                    target.plan_year,
                    None,
                    paid_through=target.paid_through,
                    begin=target.begin,
                )
            )
        if kind == Maintenance.TERMINATION:
            end = _end_of(event, cov)
            if end is not None:
                until = target.end
                _end(target, end)
                if event.subscriber:
                    out.cascades.append(Cascade.ending(target, end, until))
            continue
        if kind == Maintenance.REINSTATEMENT or mtype == Maintenance.REINSTATEMENT:
            _reinstate(target, cov.benefit_end)
        elif mtype == Maintenance.CHANGE:
            carried = year is not None and target.plan_year != year  # continuous coverage
            if cov.benefit_begin is not None and cov.benefit_begin != target.begin and not carried:
                _move_begin(target, cov.benefit_begin)
            if cov.benefit_end is not None and target.in_force:
                target.end = cov.benefit_end  # an ended one moves only by 024 / 025
                target.scheduled_end = cov.benefit_end
        since = target.begin if mtype == Maintenance.ADDITION else (effective or target.begin)
        for day, terms in _deltas(
            event, cov, since, categories=line == priced, plan_year=plan_year
        ):
            _set_terms(target, day, terms)

    if not event.coverages:
        if mtype == Maintenance.TERMINATION:
            end = _end_of(event, None)
            scope = _stints_on(member_level(enrollments, event, end, plan_year), end)
            live = [e for e in scope if e.in_force] or _latest(scope)
            for e in live:
                if end is None:
                    continue
                until = e.end
                _end(e, end)
                touch(e)
                if event.subscriber:
                    out.cascades.append(Cascade.ending(e, end, until))
        elif mtype == Maintenance.REINSTATEMENT:
            for e in _latest(member_level(enrollments, event, event_effective(event), plan_year)):
                if not e.in_force:
                    _reinstate(e, None)
                    touch(e)
        elif mtype == Maintenance.CHANGE:
            deltas = _deltas(event, None, effective, plan_year=plan_year)
            if deltas:
                day = effective
                scope = member_level(enrollments, event, day, plan_year)
                live = [e for e in scope if e.in_force and (day is None or e.covers(day, day))] or [
                    e for e in _latest(scope) if e.in_force
                ]
                priced_now = priced_line([e.line for e in live])
                for e in [e for e in live if e.line == priced_now]:
                    for when, terms in deltas:
                        _set_terms(e, when or e.begin, terms)
                    touch(e)
    if mtype == Maintenance.TERMINATION and event.maintenance_reason in ENDS_EVERYTHING:
        _end_later_enrollments(enrollments, event, out, touch)
    out.touched = list(touched.values())
    return out


def _end_later_enrollments(
    enrollments: list[Enrollment],
    event: MemberEvent,
    out: Outcome,
    touch: Callable[[Enrollment], None],
) -> None:
    """A death or the end of employment also cancels what would begin after it: an employer's
    renewal already sent for the next plan year."""
    ends = [c.benefit_end for c in event.coverages if c.benefit_end is not None]
    end = min(ends) if ends else _end_of(event, None)
    if end is None:
        return
    for e in enrollments:
        if e.in_force and e.begin is not None and e.begin > end:
            until = e.end
            _end(e, end)
            touch(e)
            if event.subscriber:
                out.cascades.append(Cascade.ending(e, end, until))


def _add(
    enrollments: list[Enrollment],
    event: MemberEvent,
    cov: Coverage,
    line: str,
    policy: str,
    existing: Enrollment | None,
    plan_year: PlanYear,
) -> Enrollment:
    begin = _begin_of(event, cov)
    year = plan_year.of(begin or cov.benefit_end or dt.date.min)
    if (
        existing is not None
        and existing.state is State.TERMINATED
        and existing.end is not None
        and begin is not None
        and begin > existing.end
    ):
        # Enrolled again after a termination, in the same plan year (a rehire, COBRA after a
        # gap): a stint of its own. The months the first one was in force stay billed.
        target = Enrollment(
            line=line,
            policy=policy,
            plan_year=existing.plan_year,
            state=State.INITIAL,
            begin=begin,
            end=cov.benefit_end,
            scheduled_end=cov.benefit_end,
            stint=existing.stint + 1,
        )
        enrollments.append(target)
        return target
    if existing is not None:  # a new enrollment on a policy that had ended: starts afresh
        existing.state, existing.begin, existing.end = State.INITIAL, begin, cov.benefit_end
        existing.scheduled_end = cov.benefit_end
        existing.effectuated = False
        target = existing
    else:
        target = Enrollment(
            line=line,
            policy=policy,
            plan_year=year,
            state=State.INITIAL,
            begin=begin,
            end=cov.benefit_end,
            scheduled_end=cov.benefit_end,
        )
        enrollments.append(target)
    if target.periods and begin is not None:
        # Periods of the earlier enrollment stay as history; the new one starts at `begin`.
        target.periods = [p for p in target.periods if p.begin < begin]
        for p in target.periods:
            p.dirty = True
    return target


def _begin_of(event: MemberEvent, cov: Coverage) -> dt.date | None:
    """Where an addition's coverage begins: DTP*348, else the member's eligibility begin
    (DTP*356), else the change's effective date (DTP*303)."""
    return cov.benefit_begin or event.eligibility_begin or event.maintenance_effective


def _close_earlier_years(
    enrollments: list[Enrollment],
    new: Enrollment,
    touch: Callable[[Enrollment], None],
    plan_year: PlanYear,
) -> None:
    """Next year's enrollment closes an open-ended one on the same line at its plan year's
    last day (December 31; June 30 for a July-June plan year)."""
    for e in enrollments:
        if (
            e is not new
            and e.line == new.line
            and e.plan_year < new.plan_year
            and e.in_force
            and (e.end is None or e.end > plan_year.last_day(e.plan_year))
        ):
            e.end = e.scheduled_end = plan_year.last_day(e.plan_year)
            touch(e)


def _paid(target: Enrollment, through: dt.date) -> None:
    if target.paid_through is None or through > target.paid_through:
        target.paid_through = through
    _effectuate(target)


def _effectuate(target: Enrollment) -> None:
    target.effectuated = True
    if target.state is State.INITIAL:
        target.state = State.EFFECTUATED


def _end(target: Enrollment, end: dt.date) -> None:
    """Terminate, or cancel when the end is on or before the begin (CMS: end = begin)."""
    if not target.in_force:  # a retroactive, earlier end of an ended enrollment
        recorded = target.begin if target.state is State.CANCELLED else target.end
        if recorded is not None and end >= recorded:
            return
    if target.begin is not None and end <= target.begin:
        target.state, target.end = State.CANCELLED, target.begin
    else:
        target.state, target.end = State.TERMINATED, end


def _reinstate(target: Enrollment, end: dt.date | None) -> None:
    """Back in force as it was: to the end it had before it was ended (`scheduled_end`)
    unless the reinstatement sends one (DTP*349). Without either (an enrollment stored by a
    version before migration 0018) it is open-ended, as those versions made it."""
    if target.in_force:
        return
    target.state = State.EFFECTUATED if target.effectuated else State.INITIAL
    if end is not None:
        target.scheduled_end = end
    target.end = target.scheduled_end


def _move_begin(target: Enrollment, begin: dt.date) -> None:
    """A corrected begin date. Earlier: the first period starts there. Later: the periods that
    would end before it go, and the one in force on the new date starts there — no period
    begins before its enrollment, whatever changes came between."""
    target.begin = begin
    periods = target.periods
    if not periods:
        return
    if begin <= periods[0].begin:
        periods[0].begin, periods[0].dirty = begin, True
        return
    in_force = [p for p in periods if p.begin <= begin][-1]
    target.periods = [p for p in periods if p is in_force or p.begin > begin]
    in_force.begin, in_force.dirty = begin, True


def _set_terms(target: Enrollment, day: dt.date | None, terms: dict[str, str]) -> None:
    """From `day` on, these terms: split the period in force at `day` (or update the one that
    begins on it). A later period takes a new value only where it had inherited the old one:
    what a later change set itself stays, and so does everything after it — a period past a
    later change inherits from that change, even where its value happens to equal the old one
    (APTC 100, 150 from May, 100 again from September: 120 from March leaves September's)."""
    if not terms:
        return
    day = day or target.begin or dt.date.min
    if target.begin is not None and day < target.begin:
        day = target.begin
    periods = target.periods
    before = [p for p in periods if p.begin <= day]
    inherited = dict(before[-1].terms) if before else {}
    at = before[-1] if before and before[-1].begin == day else None
    if at is None:
        at = Period(begin=day, terms={k: inherited.get(k, "") for k in TERMS})
        periods.append(at)
        periods.sort(key=lambda p: p.begin)
    for k, v in terms.items():
        old = inherited.get(k, "")
        at.terms[k] = v
        for later in (p for p in periods if p.begin > day):
            if later.terms.get(k, "") != old or old == v:
                break  # a later change of its own: it, and what follows it, stay
            later.terms[k] = v
            later.dirty = True
    at.dirty = True


def cascade(enrollments: Iterable[Enrollment], c: Cascade) -> list[Enrollment]:
    """A dependent's enrollments on the subscriber's policy, ended or effectuated with it;
    those that changed. An end reaches enrollments in force and those terminated later than
    it (a retroactive, earlier end of the subscriber's); effectuation only those in force."""
    out = []
    for e in enrollments:
        if (e.line, e.policy, e.plan_year) != (c.line, c.policy, c.plan_year):
            continue
        if c.begin is not None and not e.in_force and e.end is not None and e.end < c.begin:
            continue  # an earlier stint, ended before the subscriber's enrollment began
        if c.until is not None and e.begin is not None and e.begin > c.until:
            continue  # a later stint, begun after the subscriber's enrollment had ended
        if c.end is None:  # effectuation
            if not e.in_force:
                continue
            before = (e.state, e.paid_through)
            if c.paid_through is not None:
                _paid(e, c.paid_through)
            else:
                _effectuate(e)
            if (e.state, e.paid_through) != before:
                e.dirty = True
                out.append(e)
            continue
        if e.state is State.CANCELLED:
            continue  # never in force: nothing to end
        # A dependent already terminated (with the subscriber, or on its own) ends earlier
        # still when the subscriber's end moves back: the policy's end bounds every member.
        end = (e.begin or c.end) if c.cancel else c.end
        if e.end is not None and e.end <= end and not c.cancel:
            continue  # already ends earlier
        before = (e.state, e.end)
        _end(e, end)
        if (e.state, e.end) != before:
            e.dirty = True
            out.append(e)
    return out


# --- the monthly view -------------------------------------------------------------------------


CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class MonthLine:
    """One member's terms over part (or all) of a month, with the amounts prorated by days."""

    month: str  # YYYY-MM
    line: str
    policy: str
    plan_id: str
    csr_variant: str
    coverage_level: str
    rating_area: str
    first: dt.date
    last: dt.date
    days: int
    days_in_month: int
    premium: Decimal | None  # prorated
    aptc: Decimal | None
    csr_amount: Decimal | None


def month_lines(enrollment: Enrollment, year: int, month: int) -> list[MonthLine]:
    """The enrollment's periods in force during the month, each prorated by days covered
    (monthly amount * days / days in the month, to the cent, half up). Where a month is split
    between periods, each part is the rounded running total less the parts before it, so the
    parts add up to the month rounded once: 100.01 split at mid-month is 50.01 + 50.00."""
    days_in = calendar.monthrange(year, month)[1]
    first_day, last_day = dt.date(year, month, 1), dt.date(year, month, days_in)
    parts: list[tuple[Period, dt.date, dt.date, int]] = []
    for period, begin, end in enrollment.spans():
        lo = max(begin, first_day)
        hi = min(end or last_day, last_day)
        if hi >= lo:
            parts.append((period, lo, hi, (hi - lo).days + 1))
    prorated: dict[str, list[Decimal | None]] = {}
    for name in AMOUNT_TERMS:
        running, shown = Decimal(0), Decimal(0)
        column: list[Decimal | None] = []
        for period, _, _, days in parts:
            value = amount(period.terms.get(name, ""))
            if value is None:
                column.append(None)
                continue
            running += value * days / days_in
            total = running.quantize(CENT, rounding=ROUND_HALF_UP)
            column.append(total - shown)
            shown = total
        prorated[name] = column
    return [
        MonthLine(
            month=f"{year:04d}-{month:02d}",
            line=enrollment.line,
            policy=enrollment.policy,
            plan_id=period.terms.get("plan_id", ""),
            csr_variant=csr_variant(period.terms.get("plan_id", "")),
            coverage_level=period.terms.get("coverage_level", ""),
            rating_area=period.terms.get("rating_area", ""),
            first=lo,
            last=hi,
            days=days,
            days_in_month=days_in,
            premium=prorated["premium"][n],
            aptc=prorated["aptc"][n],
            csr_amount=prorated["csr_amount"][n],
        )
        for n, (period, lo, hi, days) in enumerate(parts)
    ]
