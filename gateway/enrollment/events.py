"""Pure; no I/O. Typed member events: one 2000 loop of an 834 (005010X220A1), frozen.

A `MemberEvent` is everything from one INS up to the next INS or SE, plus the facts of the
transaction set it came from (where it sits, BGN, 1000A/1000B/1000C). Values are kept as sent;
codes keep their code, with a plain name where the guide's list is short and stable. A value
that cannot be read (a DMG02 that is not a date) is None beside its raw text, never an error.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Code(_Frozen):
    """A code as sent, and its plain name when the code is in the guide's list (else None)."""

    code: str
    name: str | None = None


class Source(_Frozen):
    """Where the member's INS sits in the input. Ordinals are 0-based and nested: `group`
    counts within its interchange, `transaction_set` within its group."""

    envelope: int
    group: int
    transaction_set: int
    isa13: str
    gs06: str
    st02: str
    segment_position: int
    """X231 IK302: the INS's position within the transaction set, 1-based, ST = 1."""


class Party(_Frozen):
    """An N1 of the 834 header: 1000A sponsor (P5), 1000B payer (IN), 1000C broker/TPA."""

    entity: str
    """N101: P5 sponsor, IN payer, BO broker, TV third-party administrator."""
    name: str
    """N102."""
    id_qualifier: str
    """N103: FI federal taxpayer id, 94 code assigned by the organization, XV CMS plan id, …"""
    id: str
    """N104."""


class TransactionSetHeader(_Frozen):
    """The 834 header (BGN, REF*38, 1000A/B/C); one object shared by every member of a set."""

    purpose: str = ""
    """BGN01 Transaction Set Purpose Code: 00 original, 15 re-submission, 22 information copy."""
    reference: str = ""
    """BGN02 Transaction Set Reference Number."""
    creation_date: date | None = None
    """BGN03 Transaction Set Creation Date (None when absent or not a CCYYMMDD date)."""
    creation_date_raw: str = ""
    file_effective_date: date | None = None
    """Header DTP*007 File Effective Date (an audit's "as of"), None when absent or no D8."""
    creation_time: str = ""
    """BGN04 Transaction Set Creation Time, as sent (HHMM[SS[d..]])."""
    time_zone: str = ""
    """BGN05 Time Zone Code."""
    action: str = ""
    """BGN08 Action Code: 2 change (update), 4 verify, RX replace."""
    policy_number: str | None = None
    """Header REF*38 Master Policy Number."""
    sponsor: Party | None = None
    """Loop 1000A, N1*P5."""
    payer: Party | None = None
    """Loop 1000B, N1*IN."""
    brokers: tuple[Party, ...] = ()
    """Loop 1000C, N1*BO / N1*TV (at most 2)."""
    quantities: dict[str, str] = {}
    """Header QTY01 -> QTY02 as sent: TO total members, ET subscribers (employees), DT
    dependents (first of each qualifier)."""
    quantity_positions: dict[str, int] = {}
    """Header QTY01 -> the QTY's X231 IK302 position."""


class MemberName(_Frozen):
    """2100A NM1*IL (or *74, corrected insured)."""

    entity: str
    """NM101: IL insured or subscriber, 74 corrected insured."""
    last: str
    first: str
    middle: str
    prefix: str
    suffix: str
    id_qualifier: str
    """NM108: 34 social security number, ZZ mutually defined."""
    id: str
    """NM109."""


class Address(_Frozen):
    """N3 + N4 of 2100A (residence) or 2100C (mailing)."""

    line1: str = ""
    line2: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = ""
    location_qualifier: str = ""
    """N405: CY county/parish, 60 area."""
    location_id: str = ""
    """N406, e.g. a county FIPS code when N405 = CY."""
    country_subdivision: str = ""


class RaceEthnicity(_Frozen):
    """One repetition of the DMG05 composite (C056), split with the interchange's separators."""

    code: str
    """C05601 Race or Ethnicity Code."""
    code_list_qualifier: str
    """C05602, e.g. RET (CDC race and ethnicity code set)."""
    industry_code: str
    """C05603, e.g. 2135-2."""


class Coverage(_Frozen):
    """One 2300 Health Coverage loop: HD and its DTP / REF (2310 and 2320 are not read)."""

    segment_position: int
    """X231 IK302 position of the HD."""
    maintenance_type: Code
    """HD01."""
    insurance_line: str
    """HD03 Insurance Line Code: HLT, DEN, VIS, HMO, …"""
    plan_coverage_description: str
    """HD04."""
    coverage_level: str
    """HD05 Coverage Level Code: IND, FAM, EMP, ESP, …"""
    benefit_begin: date | None = None
    """DTP*348."""
    benefit_end: date | None = None
    """DTP*349."""
    last_premium_paid: date | None = None
    """DTP*543."""
    dates: dict[str, date] = {}
    """Every 2300 DTP whose DTP03 is a D8 date, by DTP01 qualifier (first one sent wins)."""
    unparsed_dates: dict[str, str] = {}
    """2300 DTP values that are not D8 dates, as sent, by qualifier."""
    group_or_policy_number: str | None = None
    """REF*1L Group or Policy Number (CMS: exchange-assigned policy id)."""
    class_of_contract_code: str | None = None
    """REF*CE Class of Contract Code (CMS: the 16-character plan id)."""
    internal_control_number: str | None = None
    """REF*X9 Internal Control Number."""
    references: dict[str, str] = {}
    """Every 2300 REF, REF01 qualifier -> REF02 (first one sent wins)."""


class ReportingCategory(_Frozen):
    """One 2750 loop: N1*75 name, its REF, its DTP*007."""

    segment_position: int
    """X231 IK302 position of the N1*75."""
    name: str
    """N102, upper-cased, otherwise as sent (e.g. PRE AMT TOT)."""
    qualifier: str = ""
    """REF01, e.g. 9X, 9V, 17."""
    value: str = ""
    """REF02."""
    period_begin: date | None = None
    """DTP*007 D8 date, or the start of an RD8 range."""
    period_end: date | None = None
    """DTP*007 D8 date, or the end of an RD8 range."""
    period_raw: str = ""
    """DTP03 as sent."""


class MemberEvent(_Frozen):
    """One member (a 2000 loop and everything under it) with its transaction set's context."""

    source: Source
    header: TransactionSetHeader

    # INS
    subscriber: bool
    """INS01 = Y."""
    relationship: Code
    """INS02 Individual Relationship Code (18 self, 01 spouse, 19 child, …)."""
    maintenance_type: Code
    """INS03 (001 change, 021 addition, 024 cancellation or termination, 025 reinstatement,
    030 audit or compare; `gateway.enrollment.codes`)."""
    maintenance_reason: str
    """INS04 Maintenance Reason Code (e.g. 28 initial enrollment, 59 non-payment, XN)."""
    benefit_status: str
    """INS05 Benefit Status Code: A active, C COBRA, S surviving insured, T TEFRA."""
    employment_status: str = ""
    """INS08 Employment Status Code (AC, FT, …)."""
    student_status: str = ""
    """INS09 Student Status Code (F full-time, P part-time, N not a student)."""

    # 2000 REF
    subscriber_number: str | None = None
    """REF*0F Subscriber Number (CMS: exchange-assigned subscriber id)."""
    group_or_policy_number: str | None = None
    """REF*1L Group or Policy Number (2000 level)."""
    client_reporting_category: str | None = None
    """REF*17 Client Reporting Category (CMS: exchange-assigned member id)."""
    client_number: str | None = None
    """REF*23 Client Number."""
    mutually_defined: str | None = None
    """REF*ZZ Mutually Defined."""
    class_of_contract_code: str | None = None
    """REF*CE at 2000 level (not in X220 there; kept when a sender puts it there)."""
    internal_control_number: str | None = None
    """REF*X9 at 2000 level (likewise)."""
    references: dict[str, str] = {}
    """Every 2000 REF, REF01 qualifier -> REF02 (first one sent wins)."""

    # 2000 DTP
    dates: dict[str, date] = {}
    """2000 DTP D8 dates by qualifier: 356 eligibility begin, 357 eligibility end,
    303 maintenance effective, 336 employment begin, … (first one sent wins)."""
    unparsed_dates: dict[str, str] = {}
    """2000 DTP values that are not D8 dates, as sent, by qualifier."""

    # 2100A
    name: MemberName | None = None
    birth_date: date | None = None
    """DMG02 (D8); None when absent or not a date."""
    birth_date_raw: str | None = None
    """DMG02 exactly as sent; None when 2100A has no DMG."""
    gender: str = ""
    """DMG03 Gender Code: F, M, U."""
    marital_status: str = ""
    """DMG04 Marital Status Code."""
    race_ethnicity: tuple[RaceEthnicity, ...] = ()
    """DMG05 repetitions."""
    residence: Address | None = None
    """2100A N3/N4."""
    contact: dict[str, str] = {}
    """2100A PER numbers by qualifier (HP home, TE telephone, CP cell, EM e-mail, …)."""

    # 2100B
    prior_name: MemberName | None = None
    """2100B NM1*70 Incorrect Member Name: the name and identifier sent before, when this
    event corrects them."""
    prior_birth_date_raw: str | None = None
    """2100B DMG02 as sent: the birth date sent before, when this event corrects it."""

    # 2100C
    mailing: Address | None = None
    """2100C NM1*31 N3/N4."""

    # 2300
    coverages: tuple[Coverage, ...] = ()

    # 2700 / 2750
    reporting_categories: dict[str, str] = {}
    """2750 N1*75 name (upper-cased) -> REF02 value; the first loop of a name wins."""
    reporting_category_loops: tuple[ReportingCategory, ...] = ()
    """Every 2750 loop in order, with its REF01 qualifier and DTP*007 period."""

    positions: dict[str, int] = Field(default_factory=dict, exclude=True)
    """Where some of the 2100A/2100C segments sit (IK302-style set positions), for findings
    about them: `NM1`, `N4` (2100A), `N4/2100C`, `PER/<qualifier>` (the PER that sent that
    number). Not part of the member's JSON (history, core payloads)."""

    truncated: bool = False
    """True when the member exceeded a bound (`MAX_ITEMS_PER_MEMBER`) and items were dropped:
    the member is far outside the guide, and its set should already be rejected."""

    @property
    def eligibility_begin(self) -> date | None:
        """2000 DTP*356."""
        return self.dates.get("356")

    @property
    def eligibility_end(self) -> date | None:
        """2000 DTP*357."""
        return self.dates.get("357")

    @property
    def maintenance_effective(self) -> date | None:
        """2000 DTP*303."""
        return self.dates.get("303")


def code_of(value: str, names: dict[str, str]) -> Code:
    """A `Code` with its plain name from `names` (None for a code not in the list)."""
    return Code(code=value, name=names.get(value))
