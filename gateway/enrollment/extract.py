"""Pure; no I/O, no logging; constant memory. Raw 834 bytes in, one `MemberEvent` per 2000 loop out.

Reads with the project's own `EnvelopeReader`, so delimiters come from each ISA and nothing is
rewritten. Only one member (plus its set's header) is held at a time: a member is yielded as
soon as the next INS, or its set's end, is read. Bad data never raises: what cannot be read
is left empty (or None beside its raw text), and segments the extractor does not know are
skipped. Which sets to trust is the caller's decision (`include`), typically from the 999.

A large set's body can be read elsewhere (`extract_part`, in the gateway's process pool, block
by block: `SetParts`) while this reader reads only the envelope: the same events, in the same
order; then a few blocks of members are held instead of one member.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol, TypeVar

from gateway.enrollment.codes import MAINTENANCE_NAMES, RELATIONSHIP_NAMES
from gateway.enrollment.events import (
    MemberEvent,
    Party,
    TransactionSetHeader,
)
from parsers.delimiters import Delimiters
from parsers.envelope import EnvelopeReader, read_events
from parsers.events import (
    NEED_DATA,
    GroupStart,
    InterchangeStart,
    Segment,
    TransactionSetEnd,
    TransactionSetStart,
)
from parsers.tokenizer import SegmentReader
from validators.parallel import Part, PlannedSet

SetKey = tuple[int, int, int]
"""(envelope, group, transaction set) ordinals, 0-based; group within its interchange, set
within its group."""

MAX_ITEMS_PER_MEMBER = 1000
"""Bound on each collection of one member (coverages, reporting categories, REF/DTP/PER
entries). X220 allows 99 2300 loops; the bound keeps memory constant on hostile input."""

# 2100 loops by NM101 (X220): which NM1 opens which loop.
_NAME_ENTITIES = frozenset({"IL", "74"})  # 2100A
_INCORRECT_NAME_ENTITY = "70"  # 2100B
_MAILING_ENTITY = "31"  # 2100C
_REPORTING_ENTITY = "75"  # 2750 N1*75


class _Loop(enum.Enum):
    """Where in the 2000 loop the last segment was, as far as the extractor needs to know."""

    MEMBER = "2000"
    NAME = "2100A"
    INCORRECT_NAME = "2100B"
    MAILING = "2100C"
    OTHER_PARTY = "2100D-H"  # employer, school, custodial parent, responsible person, drop-off
    DISABILITY = "2200"
    COVERAGE = "2300"
    PROVIDER = "2310"  # LX inside 2300: not a reporting category
    COORDINATION = "2320/2330"
    REPORTING = "2700"  # between LS*2700 and LE*2700
    AFTER_REPORTING = "after LE"


# Loops where an NM1 opens a 2100 loop (after the first HD, an NM1 is a 2310/2330 entity).
_BEFORE_COVERAGE = frozenset(
    {_Loop.MEMBER, _Loop.NAME, _Loop.INCORRECT_NAME, _Loop.MAILING, _Loop.OTHER_PARTY}
)
_IN_COVERAGE = frozenset({_Loop.COVERAGE, _Loop.PROVIDER, _Loop.COORDINATION})

_V = TypeVar("_V", str, date)


def parse_d8(value: str) -> date | None:
    """A CCYYMMDD date, or None when `value` is not one."""
    if len(value) != 8 or not (value.isascii() and value.isdigit()):
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def _put(target: dict[str, _V], key: str, value: _V) -> bool:
    """First one sent wins. False when the entry was dropped because of the bound."""
    if key in target:
        return True
    if len(target) >= MAX_ITEMS_PER_MEMBER:
        return False
    target[key] = value
    return True


@dataclass(slots=True)
class _SetContext:
    """The open transaction set: its position and its header, until its first INS."""

    envelope: int
    group: int
    transaction_set: int
    isa13: str
    gs06: str
    st02: str
    delimiters: Delimiters
    has_bgn: bool = False
    purpose: str = ""
    reference: str = ""
    creation_date_raw: str = ""
    creation_time: str = ""
    time_zone: str = ""
    action: str = ""
    file_effective_raw: str = ""
    policy_number: str | None = None
    sponsor: Party | None = None
    payer: Party | None = None
    brokers: list[Party] = field(default_factory=list)
    quantities: dict[str, str] = field(default_factory=dict)
    quantity_positions: dict[str, int] = field(default_factory=dict)
    header: TransactionSetHeader | None = None

    def on_header_segment(self, seg: Segment) -> None:
        """BGN, QTY, DTP*007, REF*38, and the 1000A/B/C N1s; the rest of the header is not
        needed."""
        tag = seg.tag
        if tag == "BGN" and not self.has_bgn:
            self.has_bgn = True
            self.purpose = seg.element(1)
            self.reference = seg.element(2)
            self.creation_date_raw = seg.element(3)
            self.creation_time = seg.element(4)
            self.time_zone = seg.element(5)
            self.action = seg.element(8)
        elif tag == "QTY" and seg.element(1) and seg.element(1) not in self.quantities:
            if len(self.quantities) < 3:  # X220: QTY repeats three times (TO, DT, ET)
                self.quantities[seg.element(1)] = seg.element(2)
                self.quantity_positions[seg.element(1)] = seg.index or 0
        elif tag == "DTP" and seg.element(1) == "007" and not self.file_effective_raw:
            self.file_effective_raw = seg.element(3) if seg.element(2) == "D8" else ""
        elif tag == "REF" and seg.element(1) == "38" and self.policy_number is None:
            self.policy_number = seg.element(2)
        elif tag == "N1":
            entity = seg.element(1)
            party = Party(
                entity=entity,
                name=seg.element(2),
                id_qualifier=seg.element(3),
                id=seg.element(4),
            )
            if entity == "P5" and self.sponsor is None:
                self.sponsor = party
            elif entity == "IN" and self.payer is None:
                self.payer = party
            elif entity in ("BO", "TV") and len(self.brokers) < 2:  # X220: 1000C repeats twice
                self.brokers.append(party)

    def header_fields(self) -> dict[str, object]:
        """The header read so far, as `TransactionSetHeader`'s fields (plain, to pickle)."""
        return {
            "purpose": self.purpose,
            "reference": self.reference,
            "creation_date": parse_d8(self.creation_date_raw),
            "creation_date_raw": self.creation_date_raw,
            "file_effective_date": parse_d8(self.file_effective_raw),
            "creation_time": self.creation_time,
            "time_zone": self.time_zone,
            "action": self.action,
            "policy_number": self.policy_number,
            "sponsor": self.sponsor,
            "payer": self.payer,
            "brokers": tuple(self.brokers),
            "quantities": dict(self.quantities),
            "quantity_positions": dict(self.quantity_positions),
        }

    def frozen_header(self) -> TransactionSetHeader:
        if self.header is None:
            self.header = TransactionSetHeader.model_validate(self.header_fields())
        return self.header


@dataclass(slots=True)
class _CoverageDraft:
    hd: Segment
    dates: dict[str, date] = field(default_factory=dict)
    unparsed_dates: dict[str, str] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)
    range_end: date | None = None  # a DTP*348 RD8's end: the coverage's end without DTP*349

    def fields(self) -> dict[str, object]:
        """`Coverage`'s fields."""
        refs, hd = self.references, self.hd
        return {
            "segment_position": hd.index or 0,
            "maintenance_type": _code(hd.element(1), MAINTENANCE_NAMES),
            "insurance_line": hd.element(3),
            "plan_coverage_description": hd.element(4),
            "coverage_level": hd.element(5),
            "benefit_begin": self.dates.get("348"),
            "benefit_end": self.dates.get("349") or self.range_end,
            "last_premium_paid": self.dates.get("543"),
            "dates": self.dates,
            "unparsed_dates": self.unparsed_dates,
            "group_or_policy_number": refs.get("1L"),
            "class_of_contract_code": refs.get("CE"),
            "internal_control_number": refs.get("X9"),
            "references": refs,
        }


@dataclass(slots=True)
class _CategoryDraft:
    n1: Segment
    qualifier: str = ""
    value: str = ""
    has_ref: bool = False
    period_raw: str = ""
    period_format: str = ""
    has_dtp: bool = False

    def fields(self) -> dict[str, object]:
        """`ReportingCategory`'s fields."""
        begin = end = None
        if self.period_format == "RD8":
            first, _, last = self.period_raw.partition("-")
            begin, end = parse_d8(first), parse_d8(last)
        else:
            begin = end = parse_d8(self.period_raw)
        return {
            "segment_position": self.n1.index or 0,
            "name": self.n1.element(2).upper(),
            "qualifier": self.qualifier,
            "value": self.value,
            "period_begin": begin,
            "period_end": end,
            "period_raw": self.period_raw,
        }


@dataclass(slots=True)
class _MemberDraft:
    """One 2000 loop being read. Mutable; frozen into a `MemberEvent` when it ends."""

    ins: Segment
    delimiters: Delimiters
    loop: _Loop = _Loop.MEMBER
    references: dict[str, str] = field(default_factory=dict)
    dates: dict[str, date] = field(default_factory=dict)
    unparsed_dates: dict[str, str] = field(default_factory=dict)
    name: Segment | None = None
    dmg: Segment | None = None
    residence_n3: Segment | None = None
    residence_n4: Segment | None = None
    prior_name: Segment | None = None  # 2100B NM1*70
    prior_dmg: Segment | None = None
    mailing_nm1: bool = False
    mailing_n3: Segment | None = None
    mailing_n4: Segment | None = None
    contact: dict[str, str] = field(default_factory=dict)
    contact_at: dict[str, int] = field(default_factory=dict)  # PER qualifier -> its position
    coverages: list[_CoverageDraft] = field(default_factory=list)
    categories: list[_CategoryDraft] = field(default_factory=list)
    category: _CategoryDraft | None = None  # the open 2750 loop
    truncated: bool = False

    def on_segment(self, seg: Segment) -> None:
        tag = seg.tag
        loop = self.loop
        if tag == "REF":
            self._on_ref(seg)
        elif tag == "DTP":
            self._on_dtp(seg)
        elif tag == "NM1":
            if loop in _BEFORE_COVERAGE:
                self._open_2100(seg)
        elif tag == "PER":
            if loop is _Loop.NAME:
                for position in (3, 5, 7):  # PER03/04, PER05/06, PER07/08 pairs
                    qualifier = seg.element(position)
                    if not qualifier:
                        continue
                    if qualifier not in self.contact:
                        self.contact_at[qualifier] = seg.index or 0
                    if not _put(self.contact, qualifier, seg.element(position + 1)):
                        self.truncated = True
        elif tag == "N3":
            if loop is _Loop.NAME and self.residence_n3 is None:
                self.residence_n3 = seg
            elif loop is _Loop.MAILING and self.mailing_n3 is None:
                self.mailing_n3 = seg
        elif tag == "N4":
            if loop is _Loop.NAME and self.residence_n4 is None:
                self.residence_n4 = seg
            elif loop is _Loop.MAILING and self.mailing_n4 is None:
                self.mailing_n4 = seg
        elif tag == "DMG":
            if loop is _Loop.NAME and self.dmg is None:
                self.dmg = seg
            elif loop is _Loop.INCORRECT_NAME and self.prior_dmg is None:
                self.prior_dmg = seg
        elif tag == "DSB":
            self.loop = _Loop.DISABILITY
        elif tag == "HD":
            self.category = None
            if len(self.coverages) < MAX_ITEMS_PER_MEMBER:
                self.coverages.append(_CoverageDraft(hd=seg))
                self.loop = _Loop.COVERAGE
            else:
                self.truncated = True
                self.loop = _Loop.COORDINATION  # read nothing until the next loop
        elif tag == "LX":
            # The LX trap: inside LS/LE it starts a 2700 loop, inside 2300 a 2310 loop.
            if loop is _Loop.REPORTING:
                self.category = None
            elif loop in _IN_COVERAGE:
                self.loop = _Loop.PROVIDER
        elif tag == "COB":
            if loop in _IN_COVERAGE:
                self.loop = _Loop.COORDINATION
        elif tag == "LS":
            self.loop = _Loop.REPORTING
            self.category = None
        elif tag == "LE":
            self.loop = _Loop.AFTER_REPORTING
            self.category = None
        elif tag == "N1" and loop is _Loop.REPORTING and seg.element(1) == _REPORTING_ENTITY:
            if len(self.categories) < MAX_ITEMS_PER_MEMBER:
                self.category = _CategoryDraft(n1=seg)
                self.categories.append(self.category)
            else:
                self.category = None
                self.truncated = True

    def _open_2100(self, seg: Segment) -> None:
        entity = seg.element(1)
        if entity in _NAME_ENTITIES:
            self.loop = _Loop.NAME
            if self.name is None:
                self.name = seg
        elif entity == _INCORRECT_NAME_ENTITY:
            self.loop = _Loop.INCORRECT_NAME
            if self.prior_name is None:
                self.prior_name = seg
        elif entity == _MAILING_ENTITY:
            self.loop = _Loop.MAILING
            self.mailing_nm1 = True
        else:
            self.loop = _Loop.OTHER_PARTY

    def _on_ref(self, seg: Segment) -> None:
        qualifier, value = seg.element(1), seg.element(2)
        if self.loop is _Loop.MEMBER:
            target = self.references
        elif self.loop is _Loop.COVERAGE and self.coverages:
            target = self.coverages[-1].references
        elif self.loop is _Loop.REPORTING and self.category is not None:
            if not self.category.has_ref:
                self.category.has_ref = True
                self.category.qualifier, self.category.value = qualifier, value
            return
        else:
            return
        if not _put(target, qualifier, value):
            self.truncated = True

    def _on_dtp(self, seg: Segment) -> None:
        qualifier, fmt, value = seg.element(1), seg.element(2), seg.element(3)
        if self.loop is _Loop.REPORTING and self.category is not None:
            if not self.category.has_dtp:
                self.category.has_dtp = True
                self.category.period_format, self.category.period_raw = fmt, value
            return
        if self.loop is _Loop.MEMBER:
            dates, unparsed = self.dates, self.unparsed_dates
        elif self.loop is _Loop.COVERAGE and self.coverages:
            dates, unparsed = self.coverages[-1].dates, self.coverages[-1].unparsed_dates
        else:
            return
        day = parse_d8(value) if fmt == "D8" else None
        if fmt == "RD8" and qualifier == "348" and self.loop is _Loop.COVERAGE:
            # The TR3 allows a range for the benefit dates (employers send the plan year so):
            # its begin is the begin, and its end the end unless a DTP*349 says otherwise.
            first, _, last = value.partition("-")
            day, end = parse_d8(first), parse_d8(last)
            if day is not None and end is not None and day <= end:
                self.coverages[-1].range_end = self.coverages[-1].range_end or end
            else:
                day = None
        stored = (
            _put(dates, qualifier, day) if day is not None else _put(unparsed, qualifier, value)
        )
        if not stored:
            self.truncated = True

    def fields(self) -> dict[str, object]:
        """`MemberEvent`'s fields but its source and header, plain (dicts for the nested
        models), so that they can cross a process boundary cheaply; `_event` adds the rest."""
        ins, refs = self.ins, self.references
        dmg = self.dmg
        categories = [category.fields() for category in self.categories]
        values: dict[str, str] = {}
        for category in categories:
            values.setdefault(category["name"], category["value"])  # type: ignore[arg-type]
        el = (*ins.elements, *_EMPTY9)
        birth_raw = dmg.element(2) if dmg is not None else None
        return {
            "segment_position": ins.index or 0,
            "subscriber": el[0] == "Y",
            "relationship": _code(el[1], RELATIONSHIP_NAMES),
            "maintenance_type": _code(el[2], MAINTENANCE_NAMES),
            "maintenance_reason": el[3],
            "benefit_status": el[4],
            "employment_status": el[7],
            "student_status": el[8],
            "subscriber_number": refs.get("0F"),
            "group_or_policy_number": refs.get("1L"),
            "client_reporting_category": refs.get("17"),
            "client_number": refs.get("23"),
            "mutually_defined": refs.get("ZZ"),
            "class_of_contract_code": refs.get("CE"),
            "internal_control_number": refs.get("X9"),
            "references": refs,
            "dates": self.dates,
            "unparsed_dates": self.unparsed_dates,
            "name": _name(self.name) if self.name is not None else None,
            "birth_date": parse_d8(birth_raw) if birth_raw is not None else None,
            "birth_date_raw": birth_raw,
            "gender": dmg.element(3) if dmg is not None else "",
            "marital_status": dmg.element(4) if dmg is not None else "",
            "race_ethnicity": (
                _race_ethnicity(dmg.element(5), self.delimiters) if dmg is not None else []
            ),
            "residence": _address(self.residence_n3, self.residence_n4),
            "contact": self.contact,
            "prior_name": _name(self.prior_name) if self.prior_name is not None else None,
            "prior_birth_date_raw": (
                self.prior_dmg.element(2) if self.prior_dmg is not None else None
            ),
            "mailing": _address(self.mailing_n3, self.mailing_n4) if self.mailing_nm1 else None,
            "coverages": [coverage.fields() for coverage in self.coverages],
            "reporting_categories": values,
            "reporting_category_loops": categories,
            "positions": self._positions(),
            "truncated": self.truncated,
        }

    def _positions(self) -> dict[str, int]:
        found = {f"PER/{q}": at for q, at in self.contact_at.items() if q in self.contact}
        for key, seg in (
            ("NM1", self.name),
            ("N4", self.residence_n4),
            ("N4/2100C", self.mailing_n4 if self.mailing_nm1 else None),
        ):
            if seg is not None and seg.index:
                found[key] = seg.index
        return found


_EMPTY9 = ("",) * 9  # INS01..INS09 read by position, absent ones empty


def _code(value: str, names: dict[str, str]) -> dict[str, object]:
    """`Code`'s fields (`events.code_of`)."""
    return {"code": value, "name": names.get(value)}


def _event(
    fields: dict[str, object],
    context: _SetContext,
    header: TransactionSetHeader,
) -> MemberEvent:
    """The member event of `fields` (from `_MemberDraft.fields`), in its set."""
    fields["source"] = {
        "envelope": context.envelope,
        "group": context.group,
        "transaction_set": context.transaction_set,
        "isa13": context.isa13,
        "gs06": context.gs06,
        "st02": context.st02,
        "segment_position": fields.pop("segment_position"),
    }
    fields["header"] = header
    return MemberEvent.model_validate(fields)


def _name(nm1: Segment) -> dict[str, str]:
    el = (*nm1.elements, *_EMPTY9)
    return {
        "entity": el[0],
        "last": el[2],
        "first": el[3],
        "middle": el[4],
        "prefix": el[5],
        "suffix": el[6],
        "id_qualifier": el[7],
        "id": el[8],
    }


def _address(n3: Segment | None, n4: Segment | None) -> dict[str, str] | None:
    if n3 is None and n4 is None:
        return None
    a = (*n3.elements, "", "") if n3 is not None else ("", "")
    b = (*n4.elements, *_EMPTY9) if n4 is not None else _EMPTY9
    return {
        "line1": a[0],
        "line2": a[1],
        "city": b[0],
        "state": b[1],
        "postal_code": b[2],
        "country": b[3],
        "location_qualifier": b[4],
        "location_id": b[5],
        "country_subdivision": b[6],
    }


def _race_ethnicity(value: str, delimiters: Delimiters) -> list[dict[str, str]]:
    """DMG05: repetitions (ISA11) of the C056 composite (components split with ISA16), split as
    the validator splits them (`Delimiters.repetition_separator`); an empty repetition carries
    no race or ethnicity and is skipped. `RaceEthnicity`'s fields."""
    if not value:
        return []
    rep = delimiters.repetition_separator
    repetitions = [r for r in (value.split(rep) if rep else [value]) if r]
    out: list[dict[str, str]] = []
    for repetition in repetitions[:MAX_ITEMS_PER_MEMBER]:
        parts = repetition.split(delimiters.component)
        parts += [""] * (3 - len(parts))
        out.append({"code": parts[0], "code_list_qualifier": parts[1], "industry_code": parts[2]})
    return out


@dataclass(frozen=True, slots=True)
class PartMembers:
    """What one block of a set (`validators.parallel.Part`) holds, read in another process:
    the set's header when the block is its first, and its members' fields (`_event` makes
    them `MemberEvent`s where the set's place in the file is known)."""

    header: dict[str, object] | None
    members: list[dict[str, object]]


class SetParts(Protocol):
    """Large sets of the input cut into blocks of members (`validators.parallel.plan_sets`)
    and read elsewhere (`gateway.parallel.FileSetMembers`): the reader skips their bodies."""

    def planned(self, st_offset: int) -> PlannedSet | None: ...

    def members(self, planned: PlannedSet) -> Iterator[PartMembers]:
        """The set's blocks, read, in order."""
        ...


def extract_part(
    data: bytes, part: Part, delimiters: Delimiters, *, max_segment_bytes: int = 65536
) -> PartMembers:
    """The members of one block of a set (`data` is the file's bytes [part.start, part.end)),
    exactly as `extract_members` reads them in one go: a block starts at the set's ST or at
    one of its INSes, and ends at the SE or just before the next block's INS."""
    reader = SegmentReader.inside_interchange(delimiters, max_segment_bytes=max_segment_bytes)
    reader.feed(data[: part.lookahead_at] if part.lookahead else data)
    reader.feed(b"")
    context = _SetContext(0, 0, 0, "", "", "", delimiters)
    member: _MemberDraft | None = None
    members: list[dict[str, object]] = []
    index = part.first_index - 1
    while True:
        token = reader.next_token()
        if token is None or token is NEED_DATA:
            break
        index += 1  # an oversized segment has its position too, and is not read
        if not isinstance(token, Segment):
            continue
        tag = token.tag
        if tag == "ST" and index == 1:
            continue
        if tag == "SE":
            break
        object.__setattr__(token, "index", index)  # the tokenizer made it for us alone
        if tag == "INS":
            if member is not None:
                members.append(member.fields())
            member = _MemberDraft(ins=token, delimiters=delimiters)
        elif member is not None:
            member.on_segment(token)
        else:
            context.on_header_segment(token)
    if member is not None:
        members.append(member.fields())
    return PartMembers(header=None if part.resume else context.header_fields(), members=members)


def extract_members(
    chunks: Iterable[bytes],
    *,
    include: Callable[[SetKey], bool] | None = None,
    max_segment_bytes: int = 65536,
    parts: SetParts | None = None,
) -> Iterator[MemberEvent]:
    """Every member of every (included) 834 transaction set, in file order, streaming.

    `include((envelope, group, transaction_set))` is asked once per 834 transaction set, at its
    ST; members of a set it refuses are not built. Sets whose ST01 is not 834 are skipped
    without asking. A set that ends without its SE (truncated input) still yields the members
    read so far: the 999 rejects such a set (IK502 2), and `include` is how to leave it out.

    With `parts`, the bodies of the sets it planned are read there (in other processes) and
    only the envelope here; the events are the same.
    """
    reader = EnvelopeReader(max_segment_bytes=max_segment_bytes)
    envelope = group = transaction_set = -1
    isa13 = gs06 = ""
    delimiters = Delimiters()
    context: _SetContext | None = None
    member: _MemberDraft | None = None
    for event in read_events(chunks, reader=reader):
        if isinstance(event, Segment):
            if context is None:
                continue  # a TA1 between ISA and GS, or a set that is skipped
            if event.tag == "INS":
                if member is not None:
                    yield _event(member.fields(), context, context.frozen_header())
                member = _MemberDraft(ins=event, delimiters=context.delimiters)
            elif member is not None:
                member.on_segment(event)
            elif context.header is None:
                context.on_header_segment(event)
        elif isinstance(event, TransactionSetStart):
            # An ST without its SE ends the previous set first, so no member is open here.
            transaction_set += 1
            key = (envelope, group, transaction_set)
            wanted = event.st.element(1) == "834" and (include is None or include(key))
            context = (
                _SetContext(
                    envelope=envelope,
                    group=group,
                    transaction_set=transaction_set,
                    isa13=isa13,
                    gs06=gs06,
                    st02=event.st.element(2),
                    delimiters=delimiters,
                )
                if wanted
                else None
            )
            planned = (
                parts.planned(event.st.offset)
                if context is not None and parts is not None
                else None
            )
            if planned is not None and parts is not None and context is not None:
                # The body is read in blocks elsewhere: the reader counts it, skips it.
                reader.skip_body(planned.se_offset, planned.segment_count - 2)
                for block in parts.members(planned):
                    if block.header is not None:
                        context.header = TransactionSetHeader.model_validate(block.header)
                    header = context.frozen_header()
                    for fields in block.members:
                        yield _event(fields, context, header)
        elif isinstance(event, TransactionSetEnd):
            if member is not None and context is not None:
                yield _event(member.fields(), context, context.frozen_header())
            member = context = None
        elif isinstance(event, GroupStart):
            group, transaction_set = group + 1, -1
            gs06 = event.gs.element(6)
        elif isinstance(event, InterchangeStart):
            envelope, group, transaction_set = envelope + 1, -1, -1
            isa13 = event.isa.element(13)
            gs06 = ""
            delimiters = event.delimiters
