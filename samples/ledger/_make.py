#!/usr/bin/env python3
"""Regenerate the ledger scenario series in samples/ledger/ deterministically (no randomness).

Usage:  .venv/bin/python samples/ledger/_make.py

One sender (ZZ:VA0FFM, GS02 VA0, the CMS federally facilitated exchange, Virginia tenant) sends
eight 834 files (005010X220A1), one ISA/GS/ST each, with ascending ISA13/GS06 and BGN03/BGN04.
Played in file order against an empty ledger they exercise add, change, term, reinstate,
duplicate add, term of an unknown member, a full-file audit with three planted discrepancies,
and a premium-total imbalance. Every file is 999-clean (AK9*A / IK5*A): all outcomes are
business-level. Expected outcomes are written to expect.json; see README.md.

Everything is fictitious: SSNs are in the never-issued 9xx area with no repeated-digit
patterns, phones in the 555-01xx block, e-mail at example.com.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))

SENDER = ("ZZ", "VA0FFM")
RECEIVER = ("ZZ", "EDI834GATEWAY")
GS02, GS03 = "VA0", "EDI834GATEWAY"
VERSION = "005010X220A1"
SPONSOR = ["N1", "P5", "FEDERALLY FACILITATED EXCHANGE", "FI", "521874306"]
PAYER = ["N1", "IN", "BLUE RIDGE MUTUAL HEALTH PLAN", "FI", "540962817"]
PLAN = "48213VA004000701"  # REF*CE: 14-character QHP id + 2-digit variant
FIRST_CONTROL = 52001  # ISA13 000052001.., GS06 52001..: unused by the other samples

PLAN_YEAR_END = "20271231"


@dataclass(frozen=True)
class Person:
    last: str
    first: str
    middle: str
    ssn: str
    birth: str
    sex: str
    marital: str = ""  # DMG04; left out for children


@dataclass(frozen=True)
class Residence:
    line1: str
    line2: str
    city: str
    zip: str
    county: str  # N406 county FIPS (N405 = CY)
    rating_area: str


# --- the people -------------------------------------------------------------------------------

ROSALIND = Person("QUINTERO-HALE", "ROSALIND", "M", "934618270", "19840917", "F", "M")
ANSELM = Person("QUINTERO-HALE", "ANSELM", "J", "937254016", "19820603", "M", "M")
MARISOL = Person("QUINTERO-HALE", "MARISOL", "", "941837260", "20150228", "F")
TOBIAS = Person("WAINWRIGHT-OSEI", "TOBIAS", "K", "958361247", "19910412", "M", "S")
IGNATIUS = Person("FERRO-LAMBERT", "IGNATIUS", "P", "962470351", "19760921", "M", "D")
WILHELMINA = Person("ACHTERBERG", "WILHELMINA", "E", "973158042", "19680714", "F", "W")
CORDELIA = Person("ASHGROVE-NUNEZ", "CORDELIA", "F", "984263175", "19870305", "F", "D")
TEODORO = Person("ASHGROVE-NUNEZ", "TEODORO", "", "986312740", "20190811", "M")

ROSALIND_HOME_OLD = Residence("2718 GROVE AVE", "", "RICHMOND", "23220", "51760", "R-VA009")
ROSALIND_HOME_NEW = Residence(
    "4601 KENSINGTON AVE", "APT 2", "RICHMOND", "23221", "51760", "R-VA009"
)
TOBIAS_HOME = Residence("1207 COLLEY AVE", "APT 3", "NORFOLK", "23517", "51710", "R-VA010")
IGNATIUS_HOME = Residence("1522 RIVERMONT AVE", "", "LYNCHBURG", "24503", "51680", "R-VA006")
WILHELMINA_HOME = Residence(
    "907 PRINCESS ANNE ST", "", "FREDERICKSBURG", "22401", "51630", "R-VA008"
)
CORDELIA_HOME = Residence("618 RIDGE ST", "", "CHARLOTTESVILLE", "22902", "51540", "R-VA007")

CONTACT = {
    ROSALIND: ["PER", "IP", "", "HP", "8045550163", "EM", "r.quintero-hale@example.com"],
    TOBIAS: ["PER", "IP", "", "HP", "7575550148", "EM", "tobias.wo@example.com"],
    IGNATIUS: ["PER", "IP", "", "HP", "4345550171"],
    WILHELMINA: ["PER", "IP", "", "HP", "5405550184"],
    CORDELIA: ["PER", "IP", "", "HP", "4345550129", "EM", "cordelia.an@example.com"],
}

# --- ids, policies, money ---------------------------------------------------------------------

QH_SUB = "0005100001"  # REF*0F of the QUINTERO-HALE household = Rosalind's REF*17
QH_POLICY = "31200457"
QH_BEGIN = "20270101"
QH_PREMIUM = {ROSALIND: Decimal("538.46"), ANSELM: Decimal("501.19"), MARISOL: Decimal("287.63")}
QH_APTC = Decimal("640.00")

TOBIAS_ID, TOBIAS_POLICY, TOBIAS_BEGIN = "0005100010", "31200458", "20270201"
TOBIAS_PREMIUM, TOBIAS_APTC = Decimal("412.58"), Decimal("275.00")

IGNATIUS_ID, IGNATIUS_POLICY = "0005199999", "31299871"

WILHELMINA_ID, WILHELMINA_POLICY, WILHELMINA_BEGIN = "0005100020", "31200459", "20270101"
WILHELMINA_PREMIUM, WILHELMINA_APTC = Decimal("603.14"), Decimal("150.00")

AN_SUB, AN_CHILD, AN_POLICY, AN_BEGIN = "0005100030", "0005100031", "31200460", "20270301"
AN_PREMIUM = {CORDELIA: Decimal("455.20"), TEODORO: Decimal("266.35")}
AN_APTC = Decimal("300.00")
AN_TOTAL_ERROR = Decimal("10.00")  # the planted imbalance of file 08


def money(value: Decimal) -> str:
    return f"{value:.2f}"


# --- segment builders -------------------------------------------------------------------------


def ins(subscriber: bool, relationship: str, maintenance: str, reason: str) -> list[str]:
    seg = ["INS", "Y" if subscriber else "N", relationship, maintenance, reason, "A"]
    return [*seg, "", "", "AC"] if subscriber else seg  # INS08 employment status on subscribers


def name_loop(
    person: Person, home: Residence | None, *, contact: bool, lui: bool
) -> list[list[str]]:
    """2100A: NM1*IL, PER, N3, N4, DMG, LUI (address only on subscribers: X220 sends a
    dependent's residence only when it differs from the subscriber's)."""
    segs = [["NM1", "IL", "1", person.last, person.first, person.middle, "", "", "34", person.ssn]]
    if contact:
        segs.append(CONTACT[person])
    if home is not None:
        segs.append(["N3", home.line1, home.line2])
        segs.append(["N4", home.city, "VA", home.zip, "", "CY", home.county])
    segs.append(["DMG", "D8", person.birth, person.sex, person.marital])
    if lui:
        segs.append(["LUI", "LE", "ENG", "", "7"])
    return segs


def coverage(hd01: str, level: str, begin: str, end: str, policy: str) -> list[list[str]]:
    """2300: HD, DTP*348 (required), DTP*349, REF*CE plan id, REF*1L policy id."""
    return [
        ["HD", hd01, "", "HLT", "", level],
        ["DTP", "348", "D8", begin],
        ["DTP", "349", "D8", end],
        ["REF", "CE", PLAN],
        ["REF", "1L", policy],
    ]


def reporting(items: list[tuple[str, str, str]], begin: str, end: str) -> list[list[str]]:
    """2700/2750: LS*2700, (LX, N1*75, REF, DTP*007) per category, LE*2700."""
    segs = [["LS", "2700"]]
    for n, (name, qualifier, value) in enumerate(items, 1):
        segs += [
            ["LX", str(n)],
            ["N1", "75", name],
            ["REF", qualifier, value],
            ["DTP", "007", "RD8", begin + "-" + end],
        ]
    return [*segs, ["LE", "2700"]]


def subscriber_premiums(
    own: Decimal, total: Decimal, aptc: Decimal, area: str
) -> list[tuple[str, str, str]]:
    """The subscriber's categories. TOT RES AMT = PRE AMT TOT - APTC AMT, as sent."""
    return [
        ("APTC AMT", "9V", money(aptc)),
        ("PRE AMT 1", "9X", money(own)),
        ("PRE AMT TOT", "9X", money(total)),
        ("TOT RES AMT", "9V", money(total - aptc)),
        ("RATING AREA", "9X", area),
    ]


def member_premium(own: Decimal) -> list[tuple[str, str, str]]:
    return [("PRE AMT 1", "9X", money(own))]


def member(ins_seg, subscriber_id, member_id, dates, names, coverages=(), categories=None):
    segs = [ins_seg, ["REF", "0F", subscriber_id], ["REF", "17", member_id]]
    segs += [["DTP", qualifier, "D8", value] for qualifier, value in dates]
    segs += names
    for cov in coverages:
        segs += cov
    if categories is not None:
        segs += categories
    return segs


# --- the QUINTERO-HALE household (files 01-05, 07) ------------------------------------------


def qh_premium_items(person: Person, in_file: list[Person]) -> list[tuple[str, str, str]]:
    if person is ROSALIND:
        total = sum((QH_PREMIUM[p] for p in in_file), Decimal("0.00"))
        return subscriber_premiums(
            QH_PREMIUM[ROSALIND], total, QH_APTC, ROSALIND_HOME_OLD.rating_area
        )
    return member_premium(QH_PREMIUM[person])


QH_MEMBERS = [
    (ROSALIND, "18", "0005100001"),
    (ANSELM, "01", "0005100002"),
    (MARISOL, "19", "0005100003"),
]
QH_ID = {person: member_id for person, _, member_id in QH_MEMBERS}
QH_REL = {person: rel for person, rel, _ in QH_MEMBERS}


def qh_member(
    person: Person,
    maintenance: str,
    reason: str,
    *,
    home: Residence | None,
    in_file: list[Person],
    begin: str = QH_BEGIN,
    end: str = PLAN_YEAR_END,
    eligibility_end: str | None = None,
    premiums: bool = True,
) -> list[list[str]]:
    sub = person is ROSALIND
    dates = [("356", QH_BEGIN)] + ([("357", eligibility_end)] if eligibility_end else [])
    covs = [coverage(maintenance, "FAM", begin, end, QH_POLICY)]
    cats = reporting(qh_premium_items(person, in_file), begin, end) if premiums else None
    return member(
        ins(sub, QH_REL[person], maintenance, reason),
        QH_SUB,
        QH_ID[person],
        dates,
        name_loop(person, home if sub else None, contact=sub, lui=sub),
        covs,
        cats,
    )


def tobias(maintenance: str, reason: str, benefit_begin: str) -> list[list[str]]:
    items = subscriber_premiums(
        TOBIAS_PREMIUM, TOBIAS_PREMIUM, TOBIAS_APTC, TOBIAS_HOME.rating_area
    )
    return member(
        ins(True, "18", maintenance, reason),
        TOBIAS_ID,
        TOBIAS_ID,
        [("356", TOBIAS_BEGIN)],
        name_loop(TOBIAS, TOBIAS_HOME, contact=True, lui=True),
        [coverage(maintenance, "IND", benefit_begin, PLAN_YEAR_END, TOBIAS_POLICY)],
        # the category periods stay the enrolled ones: the only planted difference
        # in file 07 is the 2300 DTP*348
        reporting(items, TOBIAS_BEGIN, PLAN_YEAR_END),
    )


# --- the files --------------------------------------------------------------------------------


def file_01() -> list[list[str]]:
    family = [ROSALIND, ANSELM, MARISOL]
    return [
        seg
        for p in family
        for seg in qh_member(p, "021", "EC", home=ROSALIND_HOME_OLD, in_file=family)
    ]


def file_02() -> list[list[str]]:
    # INS03 001 / INS04 43 (X220 element 1203: 43 Change of Location; 25 Change in Identifying
    # Data Elements is for name, SSN, birth date and ids). DTP*303 maintenance effective date;
    # no 2300: the coverage does not change, and 2300 is situational.
    return member(
        ins(True, "18", "001", "43"),
        QH_SUB,
        QH_SUB,
        [("356", QH_BEGIN), ("303", "20270108")],
        name_loop(ROSALIND, ROSALIND_HOME_NEW, contact=True, lui=True),
    )


def file_03() -> list[list[str]]:
    # INS04 07 Termination of Benefits; DTP*357 eligibility end and 2300 HD*024 / DTP*349.
    return qh_member(
        MARISOL,
        "024",
        "07",
        home=None,
        in_file=[MARISOL],
        end="20270331",
        eligibility_end="20270331",
    )


def file_04() -> list[list[str]]:
    # INS04 41 Re-enrollment; HD*025 with the plan-year dates restored.
    return qh_member(MARISOL, "025", "41", home=None, in_file=[MARISOL])


def file_05() -> list[list[str]]:
    # (a) Rosalind again as an add (021) although she is active: a duplicate add. No 2750
    #     categories, so the only business finding on her can be the duplicate.
    # (b) a new single subscriber.
    return qh_member(
        ROSALIND, "021", "EC", home=ROSALIND_HOME_NEW, in_file=[ROSALIND], premiums=False
    ) + tobias("021", "EC", TOBIAS_BEGIN)


def file_06() -> list[list[str]]:
    # A termination (INS04 14 voluntary withdrawal) of a subscriber never added.
    return member(
        ins(True, "18", "024", "14"),
        IGNATIUS_ID,
        IGNATIUS_ID,
        [("356", "20270101"), ("357", "20270228")],
        name_loop(IGNATIUS, IGNATIUS_HOME, contact=True, lui=False),
        [coverage("024", "IND", "20270101", "20270228", IGNATIUS_POLICY)],
        reporting([("ADDL MAINT REASON", "17", "TERM")], "20270228", "20270228"),
    )


def file_07() -> list[list[str]]:
    # Full-file audit: BGN08 4, every INS03 and HD01 030, INS04 XN (notification only).
    # Planted: (i) Anselm 0005100002 left out; (ii) Wilhelmina 0005100020 unknown to the
    # ledger; (iii) Tobias's DTP*348 20270301 instead of 20270201. The QUINTERO-HALE PRE AMT
    # TOT is the sum over the members listed here (Rosalind + Marisol), as the exchange sees it.
    listed = [ROSALIND, MARISOL]
    segs = [
        seg
        for p in listed
        for seg in qh_member(p, "030", "XN", home=ROSALIND_HOME_NEW, in_file=listed)
    ]
    segs += tobias("030", "XN", "20270301")
    items = subscriber_premiums(
        WILHELMINA_PREMIUM, WILHELMINA_PREMIUM, WILHELMINA_APTC, WILHELMINA_HOME.rating_area
    )
    segs += member(
        ins(True, "18", "030", "XN"),
        WILHELMINA_ID,
        WILHELMINA_ID,
        [("356", WILHELMINA_BEGIN)],
        name_loop(WILHELMINA, WILHELMINA_HOME, contact=True, lui=True),
        [coverage("030", "IND", WILHELMINA_BEGIN, PLAN_YEAR_END, WILHELMINA_POLICY)],
        reporting(items, WILHELMINA_BEGIN, PLAN_YEAR_END),
    )
    return segs


def file_08() -> list[list[str]]:
    # A new household whose subscriber PRE AMT TOT is 10.00 more than the sum of PRE AMT 1.
    total = AN_PREMIUM[CORDELIA] + AN_PREMIUM[TEODORO] + AN_TOTAL_ERROR
    sub_items = subscriber_premiums(AN_PREMIUM[CORDELIA], total, AN_APTC, CORDELIA_HOME.rating_area)
    return member(
        ins(True, "18", "021", "EC"),
        AN_SUB,
        AN_SUB,
        [("356", AN_BEGIN)],
        name_loop(CORDELIA, CORDELIA_HOME, contact=True, lui=True),
        [coverage("021", "FAM", AN_BEGIN, PLAN_YEAR_END, AN_POLICY)],
        reporting(sub_items, AN_BEGIN, PLAN_YEAR_END),
    ) + member(
        ins(False, "19", "021", "EC"),
        AN_SUB,
        AN_CHILD,
        [("356", AN_BEGIN)],
        name_loop(TEODORO, None, contact=False, lui=False),
        [coverage("021", "FAM", AN_BEGIN, PLAN_YEAR_END, AN_POLICY)],
        reporting(member_premium(AN_PREMIUM[TEODORO]), AN_BEGIN, PLAN_YEAR_END),
    )


# (file name, body, BGN03 date, BGN04 time, BGN08 action, BGN02 kind, header DTP*007 or None)
FILES = [
    ("01_add_family.834", file_01, "20261112", "021430", "2", "ENR", None),
    ("02_change_address.834", file_02, "20270108", "014512", "2", "CHG", None),
    ("03_term_child.834", file_03, "20270115", "015007", "2", "TRM", None),
    ("04_reinstate_child.834", file_04, "20270122", "014844", "2", "RIN", None),
    ("05_daily_duplicate_add.834", file_05, "20270126", "020116", "2", "ENR", None),
    ("06_term_unknown.834", file_06, "20270129", "015533", "2", "TRM", None),
    ("07_audit.834", file_07, "20270205", "010000", "4", "AUD", "20270201"),
    ("08_premium_mismatch.834", file_08, "20270210", "020945", "2", "ENR", None),
]

EXPECT = {
    "01_add_family.834": {"applied": ["0005100001", "0005100002", "0005100003"], "rejected": {}},
    "02_change_address.834": {"applied": ["0005100001"], "rejected": {}},
    "03_term_child.834": {"applied": ["0005100003"], "rejected": {}},
    "04_reinstate_child.834": {"applied": ["0005100003"], "rejected": {}},
    "05_daily_duplicate_add.834": {
        "applied": ["0005100010"],
        "rejected": {"0005100001": ["duplicate-add"]},
    },
    "06_term_unknown.834": {"applied": [], "rejected": {"0005199999": ["unknown-member"]}},
    "07_audit.834": {
        "reconciliation": [
            {"kind": "missing_in_file", "member_key": "0005100002"},
            {"kind": "missing_in_ledger", "member_key": "0005100020"},
            {
                "kind": "mismatch",
                "member_key": "0005100010",
                "field": "HLT benefit_begin",
                "file_value": "2027-03-01",
                "ledger_value": "2027-02-01",
            },
        ]
    },
    "08_premium_mismatch.834": {
        "applied": [],
        "rejected": {
            "0005100030": ["premium-total"],
            "0005100031": ["dependent-without-subscriber"],
        },
    },
}


# --- rendering and self-checks ----------------------------------------------------------------


def render(seg: list[str]) -> str:
    els = list(seg)
    if seg[0] != "ISA":
        while els and els[-1] == "":
            els.pop()
    return "*".join(els) + "~"


def check_body(name: str, body: list[list[str]]) -> dict[str, int]:
    """QTY totals from the INS segments, and the 2750 balance of every subscriber that carries
    PRE AMT TOT (sum of PRE AMT 1 of the members of its policy in this file)."""
    members: list[dict] = []
    current: dict = {}
    category = None  # the open 2750 loop's N102
    for seg in body:
        if seg[0] == "INS":
            current = {"sub": seg[1] == "Y", "cats": {}, "policy": None}
            members.append(current)
            category = None
        elif seg[0] in ("LS", "LE"):
            category = None
        elif seg[0] == "N1" and seg[1] == "75":
            category = seg[2]
        elif seg[0] == "REF" and category is not None:
            current["cats"][category] = seg[2]
        elif seg[0] == "REF" and seg[1] == "1L" and current["policy"] is None:
            current["policy"] = seg[2]
    for m in members:
        cats = m["cats"]
        if "PRE AMT TOT" not in cats:
            continue
        total = Decimal(cats["PRE AMT TOT"])
        parts = sum(
            Decimal(o["cats"]["PRE AMT 1"])
            for o in members
            if o["policy"] == m["policy"] and "PRE AMT 1" in o["cats"]
        )
        balanced = total == parts
        assert balanced == (name != "08_premium_mismatch.834"), (name, total, parts)
        assert Decimal(cats["TOT RES AMT"]) == total - Decimal(cats["APTC AMT"]), name
    subs = sum(m["sub"] for m in members)
    return {"TO": len(members), "DT": len(members) - subs, "ET": subs}


def build(
    index: int,
    name: str,
    body_fn,
    day: str,
    time: str,
    action: str,
    kind: str,
    effective: str | None,
) -> bytes:
    control = FIRST_CONTROL + index
    body = body_fn()
    qty = check_body(name, body)
    head = [
        ["ST", "834", "0001", VERSION],
        ["BGN", "00", f"VA0-{kind}-{day}-{control:06d}", day, time, "ET", "", "", action],
    ]
    if effective:
        head.append(["DTP", "007", "D8", effective])
    head += [
        ["QTY", "TO", str(qty["TO"])],
        ["QTY", "DT", str(qty["DT"])],
        ["QTY", "ET", str(qty["ET"])],
        SPONSOR,
        PAYER,
    ]
    st = head + body
    st.append(["SE", str(len(st) + 1), "0001"])
    isa = [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        SENDER[0],
        SENDER[1].ljust(15),
        RECEIVER[0],
        RECEIVER[1].ljust(15),
        day[2:],
        time[:4],
        "^",
        "00501",
        f"{control:09d}",
        "1",
        "P",
        ":",
    ]
    assert len(render(isa)) == 106
    segs = [
        isa,
        ["GS", "BE", GS02, GS03, day, time, str(control), "X", VERSION],
        *st,
        ["GE", "1", str(control)],
        ["IEA", "1", f"{control:09d}"],
    ]
    return "".join(render(s) for s in segs).encode("ascii")


def check_people() -> None:
    people = [ROSALIND, ANSELM, MARISOL, TOBIAS, IGNATIUS, WILHELMINA, CORDELIA, TEODORO]
    ssns = [p.ssn for p in people]
    assert len(set(ssns)) == len(ssns)
    for s in ssns:  # 9xx area, 9 digits, no digit more than twice, no run of three
        assert len(s) == 9 and s[0] == "9" and max(s.count(d) for d in s) <= 2, s


def main() -> None:
    check_people()
    dates = [f[2] + f[3] for f in FILES]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)
    for index, (name, body_fn, day, time, action, kind, effective) in enumerate(FILES):
        data = build(index, name, body_fn, day, time, action, kind, effective)
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        print(f"{name}: {data.count(b'~')} segments, {len(data)} bytes")
    assert set(EXPECT) == {f[0] for f in FILES}
    with open(os.path.join(HERE, "expect.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(EXPECT, indent=2) + "\n")
    print(f"expect.json: {len(EXPECT)} files")


if __name__ == "__main__":
    main()
