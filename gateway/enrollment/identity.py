"""Pure; no I/O. Is this person already enrolled? The same person is the same SSN (NM108 34)
and birth date, or — when no SSN is sent — the same last name, first name and birth date.
An addition that would give such a person a second enrollment in force on the same insurance
line for overlapping dates (under a new member id, or through another sender) is a double
premium and a double APTC risk: the `identity-overlap` rule.

A person enrolled through another sender is `identity-overlap-elsewhere`: that finding names no
one ("through another sender"; the operators' note names the partner, member and policy), and
the sender sees it only when the insurer set it to reject (rules.SENDER_SEES_ONLY_REJECTS)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from gateway.enrollment.codes import Maintenance
from gateway.enrollment.events import MemberEvent


@dataclass(frozen=True, slots=True)
class Person:
    """Who a member is, for the check: a usable SSN (else ""), LAST|FIRST, birth date."""

    ssn: str
    name: str
    birth: dt.date

    def same_as(self, other: Person) -> bool:
        """SSN and birth date when both have an SSN; else name and birth date."""
        if self.birth != other.birth:
            return False
        if self.ssn and other.ssn:
            return self.ssn == other.ssn
        return bool(self.name) and self.name == other.name


def _digits(value: str) -> str:
    if value.isascii() and value.isdigit():  # as sent, nearly always
        return value
    return "".join(ch for ch in value if ch.isdigit())


@functools.lru_cache(maxsize=4096)  # asked several times per member as a chunk applies
def identity_of(
    ssn_qualifier: str, ssn: str, last: str, first: str, birth: dt.date | None
) -> Person | None:
    if birth is None:
        return None
    digits = _digits(ssn) if ssn_qualifier == "34" else ""
    usable = len(digits) == 9 and len(set(digits)) > 1  # a placeholder identifies no one
    name = f"{last.strip().upper()}|{first.strip().upper()}" if last.strip() else ""
    if not usable and not name:
        return None
    return Person(digits if usable else "", name, birth)


def event_identity(event: MemberEvent) -> Person | None:
    name = event.name
    if name is None:
        return None
    return identity_of(name.id_qualifier, name.id, name.last, name.first, event.birth_date)


class StoredDependent(Protocol):
    """What the ledger holds of a dependent (`repository.MemberRec`)."""

    subscriber: bool
    id_qualifier: str
    id_value: str
    first_name: str
    birth_date: dt.date | None


_D = TypeVar("_D", bound=StoredDependent)


def same_dependent(event: MemberEvent, candidates: Iterable[_D]) -> _D | None:
    """The one dependent among `candidates` (its subscriber's, keyed without REF*17) that
    `event` describes under another key: the same identifier (NM108/NM109) — or, where one
    side has none (an SSN sent for the first time, e.g. a newborn's), the same birth date and
    first name (a last name changes with a marriage). Two identifiers that differ are two
    people. None when none matches or more than one does: the event then stays with its own
    key, and a change for it is an unknown member, as before."""
    name = event.name
    if name is None:
        return None
    ident = (name.id_qualifier, name.id.strip()) if name.id.strip() else None
    first = name.first.strip().upper()
    found: list[_D] = []
    for c in candidates:
        if c.subscriber:
            continue
        theirs = (c.id_qualifier, c.id_value.strip()) if c.id_value.strip() else None
        if ident is not None and theirs is not None:
            if ident == theirs:
                found.append(c)
        elif (
            event.birth_date is not None
            and c.birth_date == event.birth_date
            and first
            and c.first_name.strip().upper() == first
        ):
            found.append(c)
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True, slots=True)
class Holding:
    """An enrollment in force that a person already has."""

    partner_id: int
    partner: str
    member_key: str
    line: str
    policy: str
    begin: dt.date | None
    end: dt.date | None


@dataclass(frozen=True, slots=True)
class Conflict:
    message: str  # for the sender: its own member only
    operator_note: str  # for the insurer's operators
    segment_position: int
    elsewhere: bool = False  # the other enrollment is another sender's


def conflicts(
    event: MemberEvent, member_key: str, partner_id: int, holdings: list[tuple[Person, Holding]]
) -> list[Conflict]:
    """For an addition (021): each coverage that overlaps a holding of the same person (see
    `Person.same_as`) on the same line under another member id or another sender."""
    if event.maintenance_type.code != Maintenance.ADDITION:
        return []
    ident = event_identity(event)
    how = "SSN and birth date" if ident and ident.ssn else "name and birth date"
    out: list[Conflict] = []
    for cov in event.coverages:
        line = cov.insurance_line[:3]
        begin, end = cov.benefit_begin or dt.date.min, cov.benefit_end or dt.date.max
        found: set[bool] = set()  # at most one of each kind a coverage: this sender, another
        for person, h in holdings:
            if ident is None or not ident.same_as(person):
                continue
            if h.line != line or (h.partner_id == partner_id and h.member_key == member_key):
                continue
            if (h.begin or dt.date.min) > end or (h.end or dt.date.max) < begin:
                continue
            elsewhere = h.partner_id != partner_id
            if elsewhere in found:
                continue
            span = f"{h.begin or '?'} to {h.end or 'open'}"
            if h.partner_id == partner_id:
                message = (
                    f"the same person ({how}) is already enrolled in {line} from {span} as "
                    f"member {h.member_key} (policy {h.policy})"
                )
            else:
                message = (
                    f"the same person ({how}) is already enrolled in {line} for overlapping "
                    "dates through another sender"
                )
            note = (
                f"same person as partner {h.partner} member {h.member_key}, {line} policy "
                f"{h.policy}, {span}"
            )
            out.append(Conflict(message, note, cov.segment_position, elsewhere))
            found.add(elsewhere)
            # Each kind is judged on its own: another sender's enrollment found first must not
            # hide this sender's own (its finding, or its configured reject, was lost: whether
            # a finding came back told the sender the person was insured elsewhere).
    return out
