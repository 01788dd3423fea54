"""`identity.same_dependent`: which of a subscriber's dependents keyed without REF*17 a member
event describes when the key it computes is not the one the ledger holds."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway.enrollment.extract import extract_members
from gateway.enrollment.identity import same_dependent
from gateway.enrollment.keys import member_key, prior_member_keys
from tests.gateway.x834 import dependent, interchange


@dataclass
class Held:
    first_name: str
    birth_date: dt.date | None
    id_qualifier: str = ""
    id_value: str = ""
    subscriber: bool = False


def event(first: str, ssn: str, birth: str, prior: list[str] | None = None):  # type: ignore[no-untyped-def]
    m = dependent("0007700001", "", first, ssn, birth=birth, last="OKAFOR", prior=prior or [])
    (e,) = extract_members(iter([interchange([m], control=1)]))
    return e


NEWBORN = Held("AVA", dt.date(2026, 1, 15))


def test_an_ssn_sent_for_the_first_time_matches_birth_date_and_first_name() -> None:
    assert same_dependent(event("AVA", "512849399", "20260115"), [NEWBORN]) is NEWBORN
    assert same_dependent(event("ava ", "", "20260115"), [NEWBORN]) is NEWBORN  # as stored


def test_the_same_identifier_is_the_same_person_whatever_the_name() -> None:
    held = Held("AVA", dt.date(2026, 1, 15), "34", "512849399")
    assert same_dependent(event("EVA", "512849399", "20251231"), [held]) is held


def test_another_identifier_another_birth_date_or_first_name_is_not_a_match() -> None:
    held = Held("AVA", dt.date(2026, 1, 15), "34", "512849399")
    assert same_dependent(event("AVA", "512849398", "20260115"), [held]) is None
    assert same_dependent(event("AVA", "", "20260116"), [NEWBORN]) is None
    assert same_dependent(event("AVERY", "", "20260115"), [NEWBORN]) is None
    assert same_dependent(event("AVA", "", "20260115"), [Held("AVA", None)]) is None
    parent = Held("AVA", dt.date(2026, 1, 15), subscriber=True)
    assert same_dependent(event("AVA", "", "20260115"), [parent]) is None


def test_two_candidates_are_no_match() -> None:
    twin = Held("AVA", dt.date(2026, 1, 15))
    assert same_dependent(event("AVA", "512849399", "20260115"), [NEWBORN, twin]) is None


def test_2100b_gives_the_keys_the_member_had_before() -> None:
    before = event("LEO", "", "20200202")
    fixed = event("LEON", "", "20200203", ["NM1*70*1*OKAFOR*LEO", "DMG*D8*20200202*F"])
    assert member_key(fixed) != member_key(before)
    assert member_key(before) in prior_member_keys(fixed)
    was_ssn = event("LEO", "", "20200202", ["NM1*70*1*OKAFOR*LEO****34*512849311"])
    assert member_key(event("LEO", "512849311", "20200202")) in prior_member_keys(was_ssn)
    assert prior_member_keys(before) == []  # no 2100B, nothing before
