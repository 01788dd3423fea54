"""Streams a synthetic, exchange-style 005010X220A1 834 in constant memory.

Deterministic for a given (members, seed, sets, created): the same arguments give the same bytes.
Every person, SSN, phone number (NANP 555-01xx, reserved for fiction) and address is made up;
SSNs, phones and ZIP codes never consist of one repeated digit.

The file follows the CMS federally facilitated exchange companion guide (v7.2) where pyx12's
map of 005010X220A1 allows it: sender VA0FFM, receiver EDI834GATEWAY, ISA14 = 1, ISA15 = P,
INS 021/EC (an initial enrollment, a combination the FFE sends), REF*0F / REF*17 exchange ids,
2300 REF*CE 16-character plan id and REF*1L policy id, and 2750 reporting categories (APTC AMT,
PRE AMT 1, PRE AMT TOT, TOT RES AMT, RATING AREA) that balance: PRE AMT TOT = sum of the family's
PRE AMT 1, TOT RES AMT = PRE AMT TOT - APTC AMT.

Usage: python tests/benchmarks/generate_834.py --members N --out FILE [--seed S] [--sets K]
"""

from __future__ import annotations

import argparse
import random
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

ELEMENT = "*"
REPETITION = "^"
COMPONENT = ":"
TERMINATOR = "~"

SENDER_ID = "VA0FFM"  # ISA06, qualifier ZZ
RECEIVER_ID = "EDI834GATEWAY"  # ISA08, qualifier ZZ
EXCHANGE_TENANT = "VA0"  # GS02: state + "0"
ISSUER_HIOS_ID = "38234"  # GS03, REF*38 and the first five characters of every plan id
ISSUER_NAME = "BLUE RIDGE MUTUAL HEALTH PLAN"
ISSUER_TIN = "541873620"
SPONSOR_NAME = "VIRGINIA HEALTH BENEFIT EXCHANGE"
SPONSOR_TIN = "261594837"

# A fixed clock, so a given seed always gives the same file (the benchmark caches by seed).
DEFAULT_CREATED = datetime(2026, 11, 20, 6, 30, 15, tzinfo=UTC)

# Dependents per family (0-3); roughly the shape of exchange enrollment.
DEPENDENT_WEIGHTS = (52, 21, 16, 11)

# (city, ZIP, county FIPS, rating area): real Virginia places; the people living there are not.
PLACES: tuple[tuple[str, str, str, int], ...] = (
    ("RICHMOND", "23219", "51760", 10),
    ("ARLINGTON", "22201", "51013", 8),
    ("ALEXANDRIA", "22314", "51510", 8),
    ("FAIRFAX", "22030", "51600", 8),
    ("LEESBURG", "20176", "51107", 8),
    ("NORFOLK", "23510", "51710", 9),
    ("VIRGINIA BEACH", "23451", "51810", 9),
    ("CHESAPEAKE", "23320", "51550", 9),
    ("NEWPORT NEWS", "23606", "51700", 9),
    ("HAMPTON", "23669", "51650", 9),
    ("SUFFOLK", "23434", "51800", 9),
    ("ROANOKE", "24011", "51770", 11),
    ("BLACKSBURG", "24060", "51121", 6),
    ("LYNCHBURG", "24504", "51680", 7),
    ("CHARLOTTESVILLE", "22902", "51540", 2),
    ("HARRISONBURG", "22801", "51660", 5),
    ("STAUNTON", "24401", "51790", 12),
    ("WINCHESTER", "22601", "51840", 12),
    ("FREDERICKSBURG", "22401", "51630", 4),
    ("DANVILLE", "24541", "51590", 3),
)
# fmt: off
AREA_CODES = ("804", "703", "571", "757", "540", "434", "276")
STREETS = (
    "MAPLE", "OAK", "CEDAR", "WILLOW", "LAUREL", "BIRCH", "HICKORY", "DOGWOOD", "CHESTNUT",
    "SYCAMORE", "MAGNOLIA", "POPLAR", "ASPEN", "HOLLY", "JUNIPER", "SPRUCE", "ORCHARD",
    "MEADOW", "RIVERBEND", "HILLCREST", "BROOKSIDE", "STONEGATE", "FOXHALL", "PINECREST",
)
STREET_TYPES = ("ST", "AVE", "RD", "DR", "LN", "CT", "WAY", "PL", "BLVD", "CIR")
LAST_NAMES = (
    "ABERNATHY", "BALDWIN", "CALLOWAY", "DELACROIX", "ELLSWORTH", "FAIRBANKS", "GALLOWAY",
    "HARTWELL", "IRELAND", "JAMESON", "KINCAID", "LANGSTON", "MERRIWEATHER", "NORCROSS",
    "OGLETHORPE", "PEMBERTON", "QUINTERO", "RADCLIFFE", "SALAZAR", "THORNBURY", "UNDERHILL",
    "VANCE", "WHITAKER", "YARBROUGH", "ZAMORA", "ASHWORTH", "BRANNIGAN", "CORDOVA", "DUNMORE",
    "ESPINOZA", "FENWICK", "GREYSON", "HOLLOWAY", "ISHIKAWA", "JUAREZ", "KOWALSKI", "LINDQVIST",
    "MONTGOMERY", "NAKAMURA", "OKAFOR", "PRESCOTT", "RAMIREZ", "SUTHERLAND", "TREMBLAY",
    "VILLANUEVA", "WAINWRIGHT", "ALDRIDGE", "BECKFORD", "CHANDRA", "DOMINGUEZ",
)
FEMALE_NAMES = (
    "ABIGAIL", "BEATRICE", "CAMILLE", "DELIA", "ELOISE", "FIONA", "GRETA", "HAZEL", "IMOGEN",
    "JUNE", "KEIRA", "LUCIA", "MAEVE", "NADIA", "OPAL", "PRIYA", "ROSALIND", "SIENNA", "TESSA",
    "VIOLET", "WREN", "YASMIN", "ZARA", "AMARA", "BRIDGET", "CLARA", "DAPHNE", "ESME",
)
MALE_NAMES = (
    "ADRIAN", "BENNETT", "CALLUM", "DESMOND", "EMMETT", "FELIX", "GIDEON", "HUGO", "ISAAC",
    "JASPER", "KIERAN", "LEANDER", "MALCOLM", "NOLAN", "OSWALD", "PERCIVAL", "QUENTIN",
    "ROLAND", "SILAS", "TOBIAS", "ULRICH", "VICTOR", "WESLEY", "XAVIER", "ARLO", "BRAM",
)
# fmt: on
MIDDLE_INITIALS = "ABCDEFGHJKLMNPRSTW"


@dataclass(frozen=True, slots=True)
class Person:
    """One member of a family, as the 2000/2100A/2300 loops report them."""

    relationship: str  # INS02: 18 self, 01 spouse, 19 child
    member_id: str  # REF*17, exchange-assigned member id
    last: str
    first: str
    middle: str
    ssn: str | None
    birth: date
    gender: str
    premium: Decimal  # 2750 PRE AMT 1
    student: str  # INS09 for adult children (F full-time, N not a student), else ""


@dataclass(frozen=True, slots=True)
class Family:
    """A subscriber and 0-3 dependents sharing one policy, plan and address."""

    subscriber_id: str  # REF*0F
    policy_id: str  # 2300 REF*1L
    plan_id: str  # 2300 REF*CE, 16 characters
    street: str
    unit: str | None
    place: tuple[str, str, str, int]
    phone: str
    cell: str | None
    aptc: Decimal  # APTC AMT
    members: tuple[Person, ...]


def segment(*elements: str) -> bytes:
    """Joins elements into one terminated segment, dropping trailing empty elements."""
    parts = list(elements)
    while parts and parts[-1] == "":
        parts.pop()
    return (ELEMENT.join(parts) + TERMINATOR).encode("ascii")


def build_isa(*, created: datetime, control_number: int) -> bytes:
    """The fixed-width interchange header: exactly 106 characters, terminator included."""
    isa = segment(
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        SENDER_ID.ljust(15),
        "ZZ",
        RECEIVER_ID.ljust(15),
        created.strftime("%y%m%d"),
        created.strftime("%H%M"),
        REPETITION,
        "00501",
        f"{control_number:09d}",
        "1",  # ISA14: TA1 requested (CMS requires it)
        "P",  # ISA15: production
        COMPONENT,
    )
    if len(isa) != 106:
        raise AssertionError(f"ISA is {len(isa)} characters, not 106")
    return isa


class _Generator:
    """Holds the seeded random streams and the running id counters for one file."""

    def __init__(self, seed: int, created: datetime) -> None:
        # Two streams: family sizes come from `shape`, which is replayed to count QTY totals
        # ahead of each transaction set; everything else comes from `data`.
        self.shape = random.Random(f"shape-{seed}")
        self.data = random.Random(f"data-{seed}")
        self.created = created
        self.coverage_begin = date(created.year + 1, 1, 1)
        self.coverage_end = date(created.year + 1, 12, 31)
        self.next_subscriber = 1_000_000_000 + self.data.randrange(10_000_000)
        self.next_member = 2_000_000_000 + self.data.randrange(10_000_000)
        self.next_policy = 40_000_000 + self.data.randrange(1_000_000)
        self.plans = [self._plan_id(product) for product in range(1, 7)]

    def _plan_id(self, product: int) -> str:
        # 14-character QHP id (HIOS issuer, state, product, plan) + 2-digit CSR variant.
        variant = self.data.choice(("01", "01", "01", "04", "05", "06"))
        return f"{ISSUER_HIOS_ID}VA{product:03d}{self.data.randrange(1, 10_000):04d}{variant}"

    def family_sizes(self, members: int) -> Iterator[int]:
        """Yields family sizes (1 + dependents) from `shape` until exactly `members` are used."""
        remaining = members
        while remaining > 0:
            dependents = self.shape.choices(range(4), weights=DEPENDENT_WEIGHTS)[0]
            size = min(1 + dependents, remaining)
            remaining -= size
            yield size

    def _ssn(self) -> str:
        while True:
            area = self.data.randrange(1, 900)
            if area == 666:
                continue
            ssn = f"{area:03d}{self.data.randrange(1, 100):02d}{self.data.randrange(1, 10_000):04d}"
            if len(set(ssn)) >= 3:  # never 999999999 or 121212121
                return ssn

    def _phone(self) -> str:
        # 555-0100 to 555-0199 are reserved for fictional use in every NANP area code.
        return f"{self.data.choice(AREA_CODES)}5550{self.data.randrange(100, 200)}"

    def _birth(self, min_age: int, max_age: int) -> date:
        days = self.data.randrange(min_age * 365 + 1, max_age * 365 + 300)
        return self.coverage_begin - timedelta(days=days)

    def _age(self, birth: date) -> int:
        return (self.coverage_begin - birth).days // 365

    def _premium(self, birth: date) -> Decimal:
        age = self._age(birth)
        cents = 100 * (180 + 9 * max(age - 20, 0)) + self.data.randrange(0, 6000)
        return Decimal(cents).scaleb(-2)

    def _person(self, relationship: str, last: str, gender: str, ages: tuple[int, int]) -> Person:
        first = self.data.choice(FEMALE_NAMES if gender == "F" else MALE_NAMES)
        birth = self._birth(*ages)
        age = self._age(birth)
        student = ""
        if relationship == "19" and age >= 19:
            student = "F" if self.data.random() < 0.6 else "N"
        member_id = f"{self.next_member:010d}"
        self.next_member += 1
        return Person(
            relationship=relationship,
            member_id=member_id,
            last=last,
            first=first,
            middle=self.data.choice(MIDDLE_INITIALS) if self.data.random() < 0.6 else "",
            ssn=self._ssn() if age >= 18 or self.data.random() < 0.8 else None,
            birth=birth,
            gender=gender,
            premium=self._premium(birth),
            student=student,
        )

    def family(self, size: int) -> Family:
        last = self.data.choice(LAST_NAMES)
        gender = self.data.choice("FM")
        people = [self._person("18", last, gender, (21, 64))]
        age = self._age(people[0].birth)
        spouse_ages = (max(21, age - 8), min(64, age + 8))
        child_ages = (0, max(0, min(25, age - 19)))  # dependent children end at 26
        for index in range(1, size):
            if index == 1 and self.data.random() < 0.55:
                opposite = "M" if gender == "F" else "F"
                spouse_gender = opposite if self.data.random() < 0.95 else gender
                people.append(self._person("01", last, spouse_gender, spouse_ages))
            else:
                people.append(self._person("19", last, self.data.choice("FM"), child_ages))
        total = sum((person.premium for person in people), Decimal(0))
        aptc = (total * Decimal(self.data.randrange(0, 86)) / 100).quantize(Decimal("0.01"))
        subscriber_id = f"{self.next_subscriber:010d}"
        policy_id = f"{self.next_policy:08d}"
        self.next_subscriber += 1
        self.next_policy += 1
        street = (
            f"{self.data.randrange(10, 9990)} {self.data.choice(STREETS)} "
            f"{self.data.choice(STREET_TYPES)}"
        )
        unit = f"APT {self.data.randrange(1, 40)}{self.data.choice('ABCD')}"
        return Family(
            subscriber_id=subscriber_id,
            policy_id=policy_id,
            plan_id=self.data.choice(self.plans),
            street=street,
            unit=unit if self.data.random() < 0.3 else None,
            place=self.data.choice(PLACES),
            phone=self._phone(),
            cell=self._phone() if self.data.random() < 0.4 else None,
            aptc=aptc,
            members=tuple(people),
        )


def _d8(day: date) -> str:
    return day.strftime("%Y%m%d")


def _reporting_category(number: int, name: str, qualifier: str, value: str, period: str) -> bytes:
    """One 2700 LX plus its 2750 N1*75 / REF / DTP*007."""
    return b"".join(
        (
            segment("LX", str(number)),
            segment("N1", "75", name),
            segment("REF", qualifier, value),
            segment("DTP", "007", "RD8", period),
        )
    )


def build_family(gen: _Generator, family: Family) -> tuple[bytes, int]:
    """All 2000 loops of one family, subscriber first; returns (bytes, segment count)."""
    begin = _d8(gen.coverage_begin)
    period = f"{begin}-{_d8(gen.coverage_end)}"
    level = "IND" if len(family.members) == 1 else "FAM"
    city, zip_code, county, rating_area = family.place
    total = sum((person.premium for person in family.members), Decimal(0))
    out: list[bytes] = []
    for person in family.members:
        subscriber = person.relationship == "18"
        if subscriber:
            out.append(segment("INS", "Y", "18", "021", "EC", "A", "", "", "AC"))
        else:
            out.append(
                segment(
                    "INS", "N", person.relationship, "021", "EC", "A", "", "", "", person.student
                )
            )
        out.append(segment("REF", "0F", family.subscriber_id))
        out.append(segment("REF", "17", person.member_id))
        out.append(segment("DTP", "356", "D8", begin))
        name_id = ("34", person.ssn) if person.ssn else ("", "")
        out.append(
            segment("NM1", "IL", "1", person.last, person.first, person.middle, "", "", *name_id)
        )
        if family.cell:
            out.append(segment("PER", "IP", "", "TE", family.phone, "CP", family.cell))
        else:
            out.append(segment("PER", "IP", "", "TE", family.phone))
        out.append(segment("N3", family.street, family.unit or ""))
        out.append(segment("N4", city, "VA", zip_code, "", "CY", county))
        out.append(segment("DMG", "D8", _d8(person.birth), person.gender))
        out.append(segment("HD", "021", "", "HLT", "", level))
        out.append(segment("DTP", "348", "D8", begin))
        out.append(segment("REF", "CE", family.plan_id))
        out.append(segment("REF", "1L", family.policy_id))
        out.append(segment("LS", "2700"))
        categories: tuple[tuple[str, str, str], ...]
        if subscriber:
            categories = (
                ("APTC AMT", "9V", f"{family.aptc:.2f}"),
                ("PRE AMT 1", "9X", f"{person.premium:.2f}"),
                ("PRE AMT TOT", "9X", f"{total:.2f}"),
                ("TOT RES AMT", "9V", f"{total - family.aptc:.2f}"),
                ("RATING AREA", "9X", f"R-VA{rating_area:03d}"),
            )
        else:
            categories = (("PRE AMT 1", "9X", f"{person.premium:.2f}"),)
        for number, (name, qualifier, value) in enumerate(categories, start=1):
            out.append(_reporting_category(number, name, qualifier, value, period))
        out.append(segment("LE", "2700"))
    data = b"".join(out)
    return data, data.count(TERMINATOR.encode("ascii"))


def split_evenly(total: int, parts: int) -> list[int]:
    """Sizes of `parts` consecutive slices of `total`, differing by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def write_834(
    fp: BinaryIO,
    members: int,
    *,
    seed: int = 0,
    sets: int = 1,
    created: datetime = DEFAULT_CREATED,
) -> tuple[int, int]:
    """Writes one interchange with one functional group of `sets` 834 transaction sets.

    Members are spread evenly over the sets (a family never spans two). Memory stays constant:
    each family is built, written and dropped. Returns (members written, segments written),
    counting every segment from ISA to IEA.
    """
    if members < 1:
        raise ValueError("members must be at least 1")
    if not 1 <= sets <= members:
        raise ValueError("sets must be between 1 and members")
    gen = _Generator(seed, created)
    interchange_number = 100_000_000 + seed % 800_000_000 + 1
    group_number = 1 + seed % 900_000_000
    header = build_isa(created=created, control_number=interchange_number) + segment(
        "GS",
        "BE",
        EXCHANGE_TENANT,
        ISSUER_HIOS_ID,
        created.strftime("%Y%m%d"),
        created.strftime("%H%M"),
        str(group_number),
        "X",
        "005010X220A1",
    )
    fp.write(header)
    written_members = 0
    written_segments = 2
    for set_index, set_members in enumerate(split_evenly(members, sets), start=1):
        # Replay the family-size stream once to learn QTY*DT / QTY*ET before writing.
        state = gen.shape.getstate()
        subscribers = sum(1 for _ in gen.family_sizes(set_members))
        gen.shape.setstate(state)
        control = f"{set_index:04d}"
        bgn_reference = str(uuid.UUID(int=gen.data.getrandbits(128), version=4))
        set_header = b"".join(
            (
                segment("ST", "834", control, "005010X220A1"),
                segment(
                    "BGN",
                    "00",
                    bgn_reference,
                    created.strftime("%Y%m%d"),
                    created.strftime("%H%M%S"),
                    "UT",
                    "",
                    "",
                    "2",
                ),
                segment("REF", "38", ISSUER_HIOS_ID),
                segment("DTP", "007", "D8", created.strftime("%Y%m%d")),
                segment("QTY", "TO", str(set_members)),
                segment("QTY", "DT", str(set_members - subscribers)),
                segment("QTY", "ET", str(subscribers)),
                segment("N1", "P5", SPONSOR_NAME, "FI", SPONSOR_TIN),
                segment("N1", "IN", ISSUER_NAME, "FI", ISSUER_TIN),
            )
        )
        fp.write(set_header)
        set_segments = 9
        for size in gen.family_sizes(set_members):
            data, count = build_family(gen, gen.family(size))
            fp.write(data)
            set_segments += count
            written_members += size
        set_segments += 1  # SE counts ST through SE
        fp.write(segment("SE", str(set_segments), control))
        written_segments += set_segments
    fp.write(segment("GE", str(sets), str(group_number)))
    fp.write(segment("IEA", "1", f"{interchange_number:09d}"))
    written_segments += 2
    return written_members, written_segments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, required=True, help="INS loops to write")
    parser.add_argument("--out", type=Path, required=True, help="file to write ('-' = stdout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", type=int, default=1, help="ST/SE transaction sets")
    args = parser.parse_args(argv)
    if args.members < 1 or not 1 <= args.sets <= args.members:
        parser.error("need --members >= 1 and 1 <= --sets <= --members")
    if str(args.out) == "-":
        members, segments = write_834(
            sys.stdout.buffer, args.members, seed=args.seed, sets=args.sets
        )
    else:
        with args.out.open("wb", buffering=1 << 20) as fp:
            members, segments = write_834(fp, args.members, seed=args.seed, sets=args.sets)
    sys.stderr.write(f"wrote {members} members, {segments} segments to {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
