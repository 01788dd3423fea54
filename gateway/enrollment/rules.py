"""Pure; no I/O. The business rules a 999 cannot express (WEDI SNIP types 3, 4, 6 and 7).

Each rule has a name, a SNIP type, a default severity and a plain-English reason; a partner can
set any rule to reject, warn or ignore. The rules read one member (and its family, and what the
ledger already knows, which the caller looks up) and return `Hit`s; the ledger decides from the
severities whether the member is applied. A hit's message may quote member data (PHI): it is
stored for the sender and operators, never logged.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.enrollment.codes import SELF, Maintenance, priced_coverage
from gateway.enrollment.combinations import ADDL_MAINT_REASON, CMS_FFE, Combinations
from gateway.enrollment.events import MemberEvent, TransactionSetHeader
from gateway.enrollment.planyear import CALENDAR, PlanYear

REF17_KEY = "@ref17"
"""What the partner's 2000 REF*17 is, beside the severities: absent, the member's id (the
exchanges' "exchange-assigned member ID", CMS FFE companion guide); "category", the TR3's
Client Reporting Category (an employer's SALARIED / HOURLY): no member's identity."""
EFFECTUATION_KEY = "@effectuation"
"""When the partner's additions are effectuated, beside the severities: absent, "binder" (an
exchange's: initial until 021/28 or a paid-through date, CMS's binder payment); "on-add" (an
employer's group: there is no binder payment, an addition is in force as sent)."""
PLAN_YEAR_KEY = "@plan-year-start"
"""The month the partner's plan years begin (1-12), beside the severities: absent, January
(an exchange's QHP); an employer's group may start in July or October (`planyear`)."""
KEYS_KEY = "@keys"
"""How the partner's members are told apart, beside the severities: absent, "partner" (REF*0F /
REF*17 as sent); "by-group" (a broker's or TPA's: REF*0F qualified by the set's employer group,
REF*38 else N1*P5 N104, so that two employers' employee ids never meet)."""
GROUP_PLAN_YEARS_KEY = "@plan-year-start-by-group"
"""{group: month} beside the severities: a broker's or TPA's employer groups (the set's REF*38
master policy number, else its N1*P5 sponsor's N104) whose plan year starts in another month
than the partner's."""
COMBINATIONS_KEY = "@maintenance-combinations"
"""Where a partner's maintenance combinations live in its stored rule settings (the
`rule_severities` JSON object), beside the severities: a list of INS03/INS04[/AMRC] strings."""


class Severity(enum.StrEnum):
    REJECT = "reject"  # the member does not touch the ledger; the 824 reports it
    WARN = "warn"  # applied, and the finding is stored
    IGNORE = "ignore"  # not checked


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    snip: int
    default: Severity
    title: str
    remedy: str
    ted01: str
    """X186 TED01 Application Error Condition Code for this rule in the 824: 006 duplicate,
    007 missing data, 008 out of range, 009 invalid date, 010 total out of balance, 011 not
    matching, 012 invalid combination, 848 incorrect data."""


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "qty-totals",
            3,
            Severity.REJECT,
            "QTY totals do not match the members in the set",
            "Send QTY*TO / QTY*ET / QTY*DT equal to the INS loops of the set.",
            "010",
        ),
        Rule(
            "premium-total",
            3,
            Severity.REJECT,
            "PRE AMT TOT is not the sum of the members' PRE AMT 1",
            "Send the policy's total premium equal to the sum of each member's premium.",
            "010",
        ),
        Rule(
            "responsible-amount",
            3,
            Severity.REJECT,
            "TOT RES AMT is not PRE AMT TOT minus APTC AMT (and other payments)",
            "Send the enrollee's responsible amount as the total premium less APTC and other "
            "payment amounts.",
            "010",
        ),
        Rule(
            "subscriber-relationship",
            4,
            Severity.REJECT,
            "subscriber whose relationship is not self (or a dependent sent as self)",
            "INS01 = Y needs INS02 = 18; a dependent (INS01 = N) cannot be 18.",
            "012",
        ),
        Rule(
            "dependent-without-subscriber",
            4,
            Severity.REJECT,
            "dependent with no subscriber in the enrollment group",
            "Send the subscriber first, in the same file or earlier, with the same REF*0F.",
            "007",
        ),
        Rule(
            "end-before-begin",
            4,
            Severity.REJECT,
            "an end date before its begin date",
            "Send DTP*349 on or after DTP*348, DTP*357 on or after DTP*356, and each 2750 "
            "DTP*007 range (RD8) with its end on or after its begin.",
            "009",
        ),
        Rule(
            "repeating-digits",
            4,
            Severity.WARN,
            "SSN, ZIP code or telephone number made of one repeated digit (a placeholder)",
            "Send the member's real identifier, or omit it.",
            "848",
        ),
        Rule(
            "term-carries-coverage",
            6,
            Severity.REJECT,
            "a cancellation or termination that still carries coverage being added or changed",
            "CMS: a 024 member's 2300 loops must be HD*024 with a DTP*349 end date.",
            "012",
        ),
        Rule(
            "term-without-end-date",
            4,
            Severity.REJECT,
            "a cancellation or termination with no end date",
            "A 024 member needs its end date: DTP*357 (or DTP*303) in 2000, or DTP*349 in "
            "each 2300 HD*024 loop.",
            "007",
        ),
        Rule(
            "plan-not-listed",
            6,
            Severity.REJECT,
            "plan id not in the partner's plan list",
            "Send a plan id (REF*CE, else HD04) that the insurer offers through this sender.",
            "848",
        ),
        Rule(
            "duplicate-add",
            7,
            Severity.REJECT,
            "an addition (021) for an enrollment already in force: duplicate enrollment (the "
            "same policy, line and plan year, or a second policy on the same line and year)",
            "Send a change (001) for an active enrollment, or terminate the existing one first.",
            "006",
        ),
        Rule(
            "add-over-termination",
            7,
            Severity.REJECT,
            "an addition (021) beginning on or before the end of the member's terminated "
            "enrollment (the same policy, line and plan year): it would undo the termination, "
            "as an earlier file sent again does",
            "To undo a termination send a reinstatement (025); a new enrollment after it begins "
            "after the termination's end date. An old file sent again needs nothing more.",
            "012",
        ),
        Rule(
            "unknown-member",
            7,
            Severity.REJECT,
            "a change, termination or reinstatement for a member or policy the insurer does "
            "not have",
            "Send the member's addition (021) first, or correct REF*17 / REF*0F / REF*1L.",
            "011",
        ),
        Rule(
            "term-extends-coverage",
            7,
            Severity.REJECT,
            "a termination that would move an enrollment's end date later",
            "A termination only ends coverage earlier. For a terminated or cancelled policy CMS "
            "accepts only an earlier end date: send a reinstatement (025) first, then the "
            "termination.",
            "012",
        ),
        Rule(
            "end-after-plan-year",
            7,
            Severity.WARN,
            "coverage sent to end after its plan year",
            "A qualified health plan's enrollment ends by December 31 of its plan year; the "
            "next year is a new enrollment (021, a re-enrollment). Set this rule to reject for "
            "an exchange. An employer's plan year that does not start in January is set with "
            "partner rules --plan-year-start MONTH: its last day is then the bound.",
            "008",
        ),
        Rule(
            "reinstate-in-force",
            7,
            Severity.REJECT,
            "a reinstatement (025) of an enrollment that is not terminated or cancelled",
            "Send a reinstatement only for a terminated or cancelled policy; for an active one "
            "send a change (001).",
            "012",
        ),
        Rule(
            "reinstate-covered-date",
            7,
            Severity.REJECT,
            "a reinstatement (025) effective (DTP*303) on a day its terminated enrollment was "
            "in force: it undoes an earlier termination, not the one held, as an earlier file "
            "sent again after a later termination does",
            "A reinstatement resumes coverage the day after the termination's end date (or from "
            "the coverage's begin). An old file sent again needs nothing more.",
            "012",
        ),
        Rule(
            "identity-overlap",
            7,
            Severity.WARN,
            "the same person (SSN and birth date, or name and birth date) already enrolled on "
            "the same line for overlapping dates, under another member id of the same sender",
            "Terminate the other enrollment first, or correct the member's identity.",
            "006",
        ),
        Rule(
            "member-key-conflict",
            7,
            Severity.REJECT,
            "an addition under a member id (REF*17, else REF*0F) that the ledger holds for "
            "another person (another SSN or birth date): applied, the two would be one member",
            "Send each person under an id of its own; if REF*17 is your client reporting "
            "category, ask the insurer to read it so (partner rules --ref17 category); if "
            "your employer groups' employee ids overlap, to tell them apart by group (partner "
            "rules --keys by-group).",
            "006",
        ),
        Rule(
            "identity-overlap-elsewhere",
            7,
            Severity.WARN,
            "the same person (SSN and birth date, or name and birth date) already enrolled on "
            "the same line for overlapping dates through another sender (shown to the sender "
            "only when set to reject)",
            "Terminate the other enrollment first, or correct the member's identity; the "
            "insurer's operations team can tell you which enrollment it is.",
            "006",
        ),
        Rule(
            "unreadable-amount",
            4,
            Severity.REJECT,
            "a 2750 amount that is not a decimal number",
            "Send amounts as plain decimal numbers (e.g. 425.50): digits, an optional sign and "
            "decimal point, no exponent, at most 18 digits before the point.",
            "848",
        ),
        Rule(
            "member-unevaluable",
            4,
            Severity.REJECT,
            "the member's data could not be evaluated by the business rules",
            "Check the member's loop against the companion guide; the insurer's operations "
            "team has the details.",
            "848",
        ),
        Rule(
            "member-twice-in-file",
            7,
            Severity.REJECT,
            "the same transaction for a member twice in one file",
            "Send each transaction once per file. A member may have several different ones in "
            "one file (a termination and a new addition for a plan change, changes effective "
            "on other days), in the order they apply.",
            "006",
        ),
        Rule(
            "premium-gap",
            7,
            Severity.WARN,
            "the premium's 2750 DTP*007 range ends before the coverage does: days in force "
            "with no premium",
            "Send PRE AMT 1 for the whole coverage: a range (RD8) that ends with it, a start "
            "date (D8) alone, or another PRE AMT 1 from the day after the range ends.",
            "007",
        ),
        Rule(
            "maintenance-combination",
            7,
            Severity.WARN,
            "a maintenance type, reason and ADDL MAINT REASON combination this sender does not use",
            "Send INS03 / INS04 / 2750 ADDL MAINT REASON as one of the combinations agreed "
            "with the insurer: its list for this sender when it has one (partner rules "
            "--combinations), else the CMS FFE companion guide's (v7.2 Table 30: 021/EC, 021/41 "
            "PASSIVE, 024/14 CANCEL, 001 FINANCIAL CHANGE, ...).",
            "012",
        ),
    )
}


_NEEDS_A_MEMBER: dict[str, str] = {
    Maintenance.CHANGE: "change",
    Maintenance.TERMINATION: "termination",
    Maintenance.REINSTATEMENT: "reinstatement",
}
"""INS03 codes that act on a member the insurer must already have."""

ALWAYS_REJECT = frozenset({"member-unevaluable"})
"""Rules no partner setting can soften: a member the rules could not read is never applied."""


# Findings a sender is shown only when they reject its member (the rejection needs its reason):
# a warning that the person is enrolled through another sender would tell any sender, for any
# SSN and birth date it cares to send (in a test file too), whether that person is insured here.
# The insurer's operators see them on the dashboard, with the other enrollment named.
SENDER_SEES_ONLY_REJECTS = frozenset({"identity-overlap-elsewhere"})


def shown_to_sender(rule: str, severity: str) -> bool:
    return rule not in SENDER_SEES_ONLY_REJECTS or severity == Severity.REJECT.value


@dataclass(frozen=True, slots=True)
class Hit:
    rule: str
    message: str
    segment_id: str | None
    segment_position: int | None
    element_position: int | None = None
    operator_note: str = ""  # for the insurer's operators only: never sent to the partner


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """A partner's severities (over the defaults), its plan list (empty: not checked) and its
    maintenance combinations (none stored: the CMS FFE outbound table)."""

    severities: Mapping[str, Severity]
    plan_ids: frozenset[str] = frozenset()
    combinations: Combinations = CMS_FFE
    ref17_member_id: bool = True  # REF17_KEY
    plan_year: PlanYear = CALENDAR  # PLAN_YEAR_KEY
    group_plan_years: Mapping[str, PlanYear] = field(default_factory=dict)  # GROUP_PLAN_YEARS_KEY
    effectuate_on_add: bool = False  # EFFECTUATION_KEY
    keys_by_group: bool = False  # KEYS_KEY

    def plan_year_for(self, header: TransactionSetHeader) -> PlanYear:
        """The plan year of a set's members: its group's (REF*38, else N1*P5 N104) when set,
        else the partner's."""
        if self.group_plan_years:
            for group in (header.policy_number, header.sponsor.id if header.sponsor else None):
                if group and group.strip() in self.group_plan_years:
                    return self.group_plan_years[group.strip()]
        return self.plan_year

    def severity(self, rule: str) -> Severity:
        if rule in ALWAYS_REJECT:
            return Severity.REJECT
        return self.severities.get(rule, RULES[rule].default)

    @classmethod
    def parse(cls, severities_json: str, plan_ids_text: str) -> RuleConfig:
        """From the partner's stored columns; unknown rule names and severities are errors."""
        raw = json.loads(severities_json) if severities_json.strip() else {}
        if not isinstance(raw, dict):
            raise ValueError("rule severities must be a JSON object")
        combinations = CMS_FFE
        if COMBINATIONS_KEY in raw:  # a setting beside the severities, not a rule
            listed = raw.pop(COMBINATIONS_KEY)
            if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
                raise ValueError(f"{COMBINATIONS_KEY} must be a list of INS03/INS04[/AMRC]")
            combinations = Combinations.parse(listed)
        ref17 = raw.pop(REF17_KEY, "member-id")
        if ref17 not in ("member-id", "category"):
            raise ValueError(f"{REF17_KEY} must be member-id or category")
        keys = raw.pop(KEYS_KEY, "partner")
        if keys not in ("partner", "by-group"):
            raise ValueError(f"{KEYS_KEY} must be partner or by-group")
        effectuation = raw.pop(EFFECTUATION_KEY, "binder")
        if effectuation not in ("binder", "on-add"):
            raise ValueError(f"{EFFECTUATION_KEY} must be binder or on-add")
        start = raw.pop(PLAN_YEAR_KEY, 1)
        if not _month(start):
            raise ValueError(f"{PLAN_YEAR_KEY} must be a month, 1 to 12")
        by_group = raw.pop(GROUP_PLAN_YEARS_KEY, {})
        if not isinstance(by_group, dict) or not all(
            isinstance(g, str) and g and _month(m) for g, m in by_group.items()
        ):
            raise ValueError(f"{GROUP_PLAN_YEARS_KEY} must map group ids to months, 1 to 12")
        severities: dict[str, Severity] = {}
        for name, value in raw.items():
            if name not in RULES:
                raise ValueError(f"unknown rule {name!r}; rules: {', '.join(RULES)}")
            severities[name] = Severity(value)
        plans = frozenset(
            p.strip() for p in plan_ids_text.replace(",", "\n").splitlines() if p.strip()
        )
        return cls(
            severities=severities,
            plan_ids=plans,
            combinations=combinations,
            ref17_member_id=ref17 == "member-id",
            plan_year=PlanYear(start) if start != 1 else CALENDAR,
            group_plan_years={g: PlanYear(m) for g, m in by_group.items()},
            effectuate_on_add=effectuation == "on-add",
            keys_by_group=keys == "by-group",
        )


def _month(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 12


@dataclass(frozen=True, slots=True)
class LedgerView:
    """What the ledger holds about one member (looked up by the caller)."""

    active: bool
    policy_numbers: frozenset[str]


@dataclass(frozen=True, slots=True)
class MemberFacts:
    ledger: LedgerView | None
    """None: the ledger has never heard of this member."""
    subscriber_present: bool
    """For a dependent: its subscriber was applied earlier in this file or is in the ledger."""
    seen_in_file: bool
    """The same member key was already read earlier in this file."""
    family_premium: Decimal | None
    """Σ PRE AMT 1 over the member's family in this set (for the subscriber's PRE AMT TOT)."""


_AMOUNT = re.compile(r"[+-]?(?:[0-9]{1,18}(?:\.[0-9]{0,6})?|\.[0-9]{1,6})")
"""An X12 decimal (R): sign, digits, a decimal point; no exponent. At most 18 digits before
the point and 6 after, so sums and differences stay exact in Decimal's default context (28
digits) — `9E+999999999` is no amount, and neither is a 60-digit one."""


def amount(value: str | None) -> Decimal | None:
    """The value as a Decimal, or None when absent or not an X12 decimal number."""
    if value is None or not _AMOUNT.fullmatch(value.strip()):
        return None
    return Decimal(value.strip())


def is_amount_category(name: str) -> bool:
    """CMS 2750 amounts: PRE AMT 1, PRE AMT TOT, APTC AMT, CSR AMT, TOT RES AMT, OTH PAY AMT n."""
    return " AMT" in f" {name}"


def family_premium(family: Iterable[MemberEvent]) -> Decimal | None:
    """Σ PRE AMT 1 of a family's members, or None when no member sends one."""
    values = [amount(m.reporting_categories.get("PRE AMT 1")) for m in family]
    present = [v for v in values if v is not None]
    return sum(present, Decimal(0)) if present else None


_CREDITS = ("APTC AMT", "OTH PAY AMT 1", "OTH PAY AMT 2")
"""CMS 2750 amounts that reduce what the enrollee owes (TOT RES AMT)."""


def _repeated(digits: str, length: int) -> bool:
    return len(digits) >= length and len(set(digits)) == 1


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def set_rules(header: TransactionSetHeader, subscribers: int, dependents: int) -> list[Hit]:
    """qty-totals: the header's QTY*TO/ET/DT against the set's INS loops."""
    hits: list[Hit] = []
    actual = {"TO": subscribers + dependents, "ET": subscribers, "DT": dependents}
    names = {"TO": "members", "ET": "subscribers", "DT": "dependents"}
    for qualifier, sent in header.quantities.items():
        if qualifier not in actual:
            continue
        number = amount(sent)
        if number is None or number != actual[qualifier]:
            hits.append(
                Hit(
                    "qty-totals",
                    f"QTY*{qualifier} says {sent or 'nothing'} but the set has "
                    f"{actual[qualifier]} {names[qualifier]}",
                    "QTY",
                    header.quantity_positions.get(qualifier),
                    2,
                )
            )
    return hits


def _cancel_end(begin: dt.date, end: dt.date) -> bool:
    """A cancellation's end: its begin date, or the day before (CMS sends either)."""
    return end == begin - dt.timedelta(days=1)


def member_rules(event: MemberEvent, facts: MemberFacts, config: RuleConfig) -> list[Hit]:
    """Every rule's hits on one (non-audit) member, in a stable order."""
    hits: list[Hit] = []
    at = event.source.segment_position
    mtype = event.maintenance_type.code
    categories = event.reporting_categories

    def add(rule: str, message: str, seg: str | None = "INS", pos: int | None = at,
            element: int | None = None) -> None:  # fmt: skip
        if config.severity(rule) is not Severity.IGNORE:
            hits.append(Hit(rule, message, seg, pos, element))

    rel = event.relationship.code
    if event.subscriber and rel != SELF:
        add("subscriber-relationship", f"subscriber (INS01 Y) with INS02 {rel}, not 18", element=2)
    elif not event.subscriber and rel == SELF:
        add("subscriber-relationship", "dependent (INS01 N) with INS02 18 (self)", element=2)

    if facts.seen_in_file:
        add(
            "member-twice-in-file",
            f"this member's INS03 {mtype}/INS04 {event.maintenance_reason} was already sent, "
            "identical, earlier in this file",
            element=3,
        )

    if (
        mtype == Maintenance.ADDITION
        and not event.coverages  # with 2300 loops: per enrollment (`lifecycle.plan_event`)
        and facts.ledger is not None
        and facts.ledger.active
    ):
        add("duplicate-add", "addition (INS03 021) for a member who is already active", element=3)
    if mtype in _NEEDS_A_MEMBER:
        verb = _NEEDS_A_MEMBER[mtype]
        if facts.ledger is None:
            add("unknown-member", f"{verb} (INS03 {mtype}) for a member the insurer does not have")
        else:
            for cov in event.coverages:
                policy = cov.group_or_policy_number
                if (
                    policy
                    and facts.ledger.policy_numbers
                    and (policy not in facts.ledger.policy_numbers)
                ):
                    add(
                        "unknown-member",
                        f"{verb} for policy {policy}, which the insurer does not hold for "
                        "this member",
                        "HD",
                        cov.segment_position,
                    )

    # A dependent's own termination needs no subscriber in force: CMS terminates a family
    # member by member, the subscriber first (it is ended by then, not gone).
    ending_a_known_dependent = mtype == Maintenance.TERMINATION and facts.ledger is not None
    if not event.subscriber and not facts.subscriber_present and not ending_a_known_dependent:
        add(
            "dependent-without-subscriber",
            f"dependent of subscriber {event.subscriber_number or '(no REF*0F)'}, who is "
            "neither earlier in this file nor in the ledger covered on its date",
        )

    begin, end = event.eligibility_begin, event.eligibility_end
    terminating = mtype == Maintenance.TERMINATION
    if begin and end and end < begin and not (terminating and _cancel_end(begin, end)):
        add("end-before-begin", f"eligibility end {end} before its begin {begin} (DTP*357)")
    spans = [
        (f"{c.insurance_line} coverage", c.benefit_begin, c.benefit_end, "", "HD",
         c.segment_position, terminating or c.maintenance_type.code == Maintenance.TERMINATION)
        for c in event.coverages
    ] + [
        (f"{r.name} period", r.period_begin, r.period_end, f" (2750 DTP*007 {r.period_raw})",
         "N1", r.segment_position, False)
        for r in event.reporting_category_loops
    ]  # fmt: skip
    for what, first, last, raw, segment_id, position, ends in spans:
        if first and last and last < first and not (ends and _cancel_end(first, last)):
            add("end-before-begin", f"{what} ends {last} before it begins {first}{raw}",
                segment_id, position)  # fmt: skip

    if mtype != Maintenance.TERMINATION:
        _premium_gap(event, add, config.plan_year_for(event.header))

    if mtype == Maintenance.TERMINATION:
        if (
            event.eligibility_end is None
            and event.maintenance_effective is None
            and all(cov.benefit_end is None for cov in event.coverages)
        ):
            # The TR3's situational rule (INS03 024 => an end date); without one there is
            # nothing to end, and "applied" would say the member was terminated.
            add(
                "term-without-end-date",
                "cancellation or termination (INS03 024) with no end date: no DTP*357 or "
                "DTP*303 in 2000, no DTP*349 in 2300",
                element=3,
            )
        for cov in event.coverages:
            if cov.maintenance_type.code != Maintenance.TERMINATION or cov.benefit_end is None:
                add(
                    "term-carries-coverage",
                    f"termination carries {cov.insurance_line} coverage HD01 "
                    f"{cov.maintenance_type.code}"
                    + ("" if cov.benefit_end else " without a DTP*349 end date"),
                    "HD",
                    cov.segment_position,
                    1,
                )

    if config.plan_ids:
        for cov in event.coverages:
            plan = cov.class_of_contract_code or cov.plan_coverage_description
            if plan and plan not in config.plan_ids:
                add(
                    "plan-not-listed",
                    f"plan {plan} is not in this sender's plan list",
                    "HD",
                    cov.segment_position,
                )

    for loop in event.reporting_category_loops:
        if is_amount_category(loop.name):
            sent = categories.get(loop.name)
            if sent is not None and sent.strip() and amount(sent) is None:
                add(
                    "unreadable-amount",
                    f"{loop.name} is {_quoted(sent)}, not a decimal number",
                    "N1",
                    loop.segment_position,
                )

    if event.subscriber:
        total = amount(categories.get("PRE AMT TOT"))
        if (
            total is not None
            and facts.family_premium is not None
            and (total != facts.family_premium)
        ):
            add(
                "premium-total",
                f"PRE AMT TOT {total} but the members' PRE AMT 1 add up to {facts.family_premium}",
                *_category_at(event, "PRE AMT TOT"),
            )
        responsible = amount(categories.get("TOT RES AMT"))
        if total is not None and responsible is not None:
            credits = sum(
                (amount(categories.get(name)) or Decimal(0) for name in _CREDITS), Decimal(0)
            )
            owed = total - credits
            # APTC never pays more than the premium (26 USC 36B(b)(2)): with credits above the
            # premium the enrollee owes 0.00, which exchanges send; the negative difference is
            # taken too.
            if responsible != owed and not (owed < 0 and responsible == 0):
                add(
                    "responsible-amount",
                    f"TOT RES AMT {responsible} but PRE AMT TOT {total} less APTC and other "
                    f"payments {credits} is {max(owed, Decimal(0))}",
                    *_category_at(event, "TOT RES AMT"),
                )

    name = event.name
    if name is not None and name.id_qualifier == "34":
        ssn = _digits(name.id)
        if _repeated(ssn, 9) or ssn == "123456789":
            nm1_at = event.positions.get("NM1", at)
            add("repeating-digits", "SSN (NM109) is a placeholder", "NM1", nm1_at, 9)
    for address, where in ((event.residence, "N4"), (event.mailing, "N4/2100C")):
        if address is not None and _repeated(_digits(address.postal_code)[:5], 5):
            n4_at = event.positions.get(where, at)
            message = f"ZIP code {address.postal_code} is a placeholder"
            add("repeating-digits", message, "N4", n4_at, 3)
    for qualifier, number in event.contact.items():
        if qualifier in ("HP", "TE", "CP", "WP", "BN") and _repeated(_digits(number), 10):
            per_at = event.positions.get(f"PER/{qualifier}", at)
            add("repeating-digits", f"telephone ({qualifier}) is a placeholder", "PER", per_at)

    # maintenance-combination: INS03 / INS04 / ADDL MAINT REASON against the sender's list.
    reason = event.maintenance_reason
    amrc = categories.get(ADDL_MAINT_REASON)
    if config.severity("maintenance-combination") is not Severity.IGNORE and (
        not config.combinations.allows(mtype, reason, amrc)
    ):
        said = f"INS03 {mtype} / INS04 {reason or '(none)'}"
        if config.combinations.allows_codes(mtype, reason):  # the pair is fine; the AMRC is not
            add(
                "maintenance-combination",
                f"{said} with ADDL MAINT REASON "
                f"{_quoted(amrc) if amrc and amrc.strip() else '(none)'} is not a combination "
                "this sender uses",
                *_category_at(event, ADDL_MAINT_REASON),
            )
        else:
            add(
                "maintenance-combination",
                f"{said} is not a combination this sender uses",
                element=4,
            )
    return hits


def _premium_gap(event: MemberEvent, add: Callable[..., None], plan_year: PlanYear) -> None:
    """premium-gap: PRE AMT 1 sent only as ranges (RD8) whose last day is before the priced
    coverage's end (DTP*349, else the plan year's last day): the ledger holds no premium for
    the days after it, and bills none. A D8 date is in force until the next one: no gap."""
    loops = [r for r in event.reporting_category_loops if r.name == "PRE AMT 1"]
    if not loops or not event.coverages:
        return
    ends = [r.period_end for r in loops if "-" in r.period_raw and r.period_end is not None]
    if len(ends) != len(loops):
        return
    cov = priced_coverage(event.coverages)
    if cov is None or cov.maintenance_type.code == Maintenance.TERMINATION:
        return
    last = max(ends)
    begin = cov.benefit_begin or min(r.period_begin or last for r in loops)
    through = cov.benefit_end or plan_year.last_day(plan_year.of(begin))
    if last < through:
        at = next(r for r in loops if r.period_end == last)
        add(
            "premium-gap",
            f"PRE AMT 1 runs to {last} (2750 DTP*007 {at.period_raw}) but the "
            f"{cov.insurance_line} coverage runs to {through}: {(through - last).days} days "
            "with no premium unless another PRE AMT 1 covers them",
            "N1",
            at.segment_position,
        )


def _quoted(value: str, limit: int = 20) -> str:
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} characters)"


def _category_at(event: MemberEvent, name: str) -> tuple[str, int | None]:
    for loop in event.reporting_category_loops:
        if loop.name == name:
            return "N1", loop.segment_position
    return "INS", event.source.segment_position


def unevaluable(event: MemberEvent) -> Hit:
    """The hit for a member whose data a rule could not evaluate (never a failed file)."""
    return Hit(
        "member-unevaluable",
        "the business rules could not evaluate this member; it was not applied",
        "INS",
        event.source.segment_position,
    )


def rejecting(hits: Sequence[Hit], config: RuleConfig) -> bool:
    return any(config.severity(h.rule) is Severity.REJECT for h in hits)
