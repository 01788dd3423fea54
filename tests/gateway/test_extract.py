"""extract_members: typed member events from raw 834 bytes, streaming, never raising."""

from __future__ import annotations

import gc
import importlib.util
import io
import json
import sys
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.enrollment import (
    Address,
    Code,
    MemberEvent,
    MemberName,
    Party,
    RaceEthnicity,
    ReportingCategory,
    extract_members,
)
from gateway.enrollment.extract import MAX_ITEMS_PER_MEMBER
from tests.conftest import SAMPLES, needs_peer_corpus, peer_files, peer_params, sample_files
from tests.x12build import HEADER, MEMBER, TS, Group, x12

GOOD = sorted(p for p in sample_files() if p.name.startswith("good_"))
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_834", BENCHMARKS / "generate_834.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_834", module)
    spec.loader.exec_module(module)
    return module


gen834 = _load_generator()


def read(name: str) -> bytes:
    return (SAMPLES / f"{name}.834").read_bytes()


def members(
    data: bytes,
    chunk: int | None = None,
    *,
    include: Callable[[tuple[int, int, int]], bool] | None = None,
) -> list[MemberEvent]:
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return list(extract_members(pieces, include=include))


def ins_positions(data: bytes) -> list[tuple[str, int]]:
    """(ST02, IK302 position) of every INS, read from the text independently of the parsers:
    delimiters from the ISA's fixed offsets, positions counted from ST = 1."""
    text = data.decode("latin-1")
    sep, term = text[3], text[105]
    out: list[tuple[str, int]] = []
    st02, position = "", 0
    for raw in text.split(term):
        elements = raw.strip().split(sep)
        tag = elements[0]
        if tag == "ST":
            st02, position = elements[2], 1
        elif position:
            position += 1
            if tag == "INS":
                out.append((st02, position))
            elif tag == "SE":
                position = 0
    return out


def day(value: str) -> date:
    return date(int(value[:4]), int(value[4:6]), int(value[6:]))


class TestExtractMembersOnSamples:
    @pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
    def test_one_event_per_ins_at_its_position(self, path: Path) -> None:
        data = path.read_bytes()
        events = members(data)
        expected = ins_positions(data)
        assert expected
        assert [(e.source.st02, e.source.segment_position) for e in events] == expected

    def test_exchange_new_enrollment(self) -> None:
        subscriber, spouse = members(read("good_exchange_new_enrollment"))
        assert subscriber.source.model_dump() == {
            "envelope": 0,
            "group": 0,
            "transaction_set": 0,
            "isa13": "000041017",
            "gs06": "41017",
            "st02": "0001",
            "segment_position": 8,
        }
        header = subscriber.header
        assert (header.purpose, header.reference, header.creation_date) == (
            "00",
            "VA0-20260412-041017",
            date(2026, 4, 12),
        )
        assert (header.creation_time, header.time_zone, header.action) == ("021530", "ET", "2")
        assert header.sponsor == Party(
            entity="P5", name="FEDERALLY FACILITATED EXCHANGE", id_qualifier="FI", id="521874306"
        )
        assert header.payer == Party(
            entity="IN", name="BLUE RIDGE MUTUAL HEALTH PLAN", id_qualifier="FI", id="540962817"
        )
        assert header.brokers == ()
        assert spouse.header is header  # one header object per set, shared

        assert subscriber.subscriber is True
        assert subscriber.relationship == Code(code="18", name="self")
        assert subscriber.maintenance_type == Code(code="021", name="addition")
        assert (subscriber.maintenance_reason, subscriber.benefit_status) == ("EC", "A")
        assert subscriber.employment_status == "AC"
        assert subscriber.subscriber_number == "0004718293"
        assert subscriber.client_reporting_category == "0004718293"
        assert subscriber.references == {"0F": "0004718293", "17": "0004718293"}
        assert subscriber.dates == {"356": date(2026, 5, 1)}
        assert subscriber.eligibility_begin == date(2026, 5, 1)
        assert subscriber.eligibility_end is None
        assert subscriber.name == MemberName(
            entity="IL",
            last="OKAFOR",
            first="DANIELLE",
            middle="R",
            prefix="",
            suffix="",
            id_qualifier="34",
            id="914273856",
        )
        assert subscriber.contact == {"HP": "7035550142", "EM": "d.okafor@example.com"}
        assert subscriber.residence == Address(
            line1="4127 N PERSHING DR",
            line2="APT 204",
            city="ARLINGTON",
            state="VA",
            postal_code="22203",
            location_qualifier="CY",
            location_id="51013",
        )
        assert subscriber.mailing is None
        assert (subscriber.birth_date, subscriber.birth_date_raw) == (date(1988, 3, 14), "19880314")
        assert (subscriber.gender, subscriber.marital_status) == ("F", "M")

        (coverage,) = subscriber.coverages
        assert coverage.segment_position == 18
        assert coverage.maintenance_type == Code(code="021", name="addition")
        assert (coverage.insurance_line, coverage.coverage_level) == ("HLT", "FAM")
        assert coverage.plan_coverage_description == ""
        assert (coverage.benefit_begin, coverage.benefit_end) == (
            date(2026, 5, 1),
            date(2026, 12, 31),
        )
        assert coverage.last_premium_paid is None
        assert coverage.class_of_contract_code == "48213VA004000701"
        assert coverage.group_or_policy_number == "21846603"
        assert coverage.references == {"CE": "48213VA004000701", "1L": "21846603"}

        assert subscriber.reporting_categories == {
            "APTC AMT": "540.00",
            "PRE AMT 1": "412.37",
            "PRE AMT TOT": "810.21",
            "TOT RES AMT": "270.21",
            "RATING AREA": "R-VA010",
        }
        assert subscriber.reporting_category_loops[2] == ReportingCategory(
            segment_position=33,
            name="PRE AMT TOT",
            qualifier="9X",
            value="810.21",
            period_begin=date(2026, 5, 1),
            period_end=date(2026, 12, 31),
            period_raw="20260501-20261231",
        )
        # The file balances: PRE AMT TOT = sum of PRE AMT 1; TOT RES AMT = TOT - APTC AMT.
        tot = Decimal(subscriber.reporting_categories["PRE AMT TOT"])
        each = [Decimal(m.reporting_categories["PRE AMT 1"]) for m in (subscriber, spouse)]
        assert tot == sum(each) == Decimal("810.21")
        assert tot - Decimal(subscriber.reporting_categories["APTC AMT"]) == Decimal("270.21")

        assert spouse.source.segment_position == 45
        assert spouse.subscriber is False
        assert spouse.relationship == Code(code="01", name="spouse")
        assert spouse.client_reporting_category == "0004718294"
        assert spouse.subscriber_number == "0004718293"
        assert spouse.name is not None
        assert (spouse.name.first, spouse.name.middle, spouse.name.id) == (
            "MARCUS",
            "T",
            "917482635",
        )
        assert (spouse.birth_date, spouse.gender) == (date(1986, 11, 2), "M")
        assert spouse.residence is None
        assert spouse.contact == {}
        assert spouse.reporting_categories == {"PRE AMT 1": "397.84"}

    def test_add_family_broker_file(self) -> None:
        events = members(read("good_add_family"))
        assert [e.relationship.code for e in events] == ["18", "01", "19", "19"]
        assert [e.relationship.name for e in events] == ["self", "spouse", "child", "child"]
        assert [e.subscriber for e in events] == [True, False, False, False]
        assert [e.name.first for e in events if e.name] == [
            "COLLEEN",
            "OLUWASEUN",
            "NIAMH",
            "TOBIAS",
        ]
        assert [e.client_reporting_category for e in events] == [
            None,
            "CDL00218-01",
            "CDL00218-02",
            "CDL00218-03",
        ]
        assert {e.subscriber_number for e in events} == {"CDL00218"}
        assert [e.student_status for e in events] == ["", "", "F", ""]
        subscriber = events[0]
        assert subscriber.header.policy_number == "CDL7730"
        assert subscriber.header.brokers == (
            Party(entity="BO", name="SUMMIT BENEFITS GROUP", id_qualifier="94", id="18352706"),
        )
        assert subscriber.header.time_zone == ""
        assert subscriber.header.sponsor is not None
        assert subscriber.header.sponsor.name == "CHESAPEAKE DENTAL LABS LLC"
        assert subscriber.dates == {"336": date(2026, 5, 13)}
        assert subscriber.employment_status == "FT"
        assert subscriber.name is not None
        assert subscriber.name.last == "BRENNAN-ADEYEMI"
        for event in events:
            assert [(c.insurance_line, c.coverage_level) for c in event.coverages] == [
                ("HLT", "FAM"),
                ("DEN", "FAM"),
            ]
            assert {c.benefit_begin for c in event.coverages} == {date(2026, 6, 1)}
            assert {c.group_or_policy_number for c in event.coverages} == {"CDL7730"}
            assert event.reporting_categories == {}
        assert events[2].birth_date == date(2012, 9, 5)
        assert events[2].gender == "F"

    def test_termination(self) -> None:
        (event,) = members(read("good_termination"))
        assert event.maintenance_type == Code(code="024", name="cancellation or termination")
        assert event.maintenance_reason == "59"
        assert event.dates == {"356": date(2026, 1, 1), "357": date(2026, 8, 31)}
        assert event.eligibility_end == date(2026, 8, 31)
        assert event.coverages == ()
        assert event.reporting_categories == {"ADDL MAINT REASON": "TERM"}
        (category,) = event.reporting_category_loops
        assert (category.qualifier, category.period_begin, category.period_end) == (
            "17",
            date(2026, 8, 31),
            date(2026, 8, 31),
        )
        assert event.header.reference == "VA0-TRM-20260915-0033"

    def test_a_benefit_begin_range_gives_the_begin_and_the_end(self) -> None:
        """DTP*348 RD8 (valid in 2300: employers send the plan year so): its begin is the
        benefit begin, its end the benefit end unless a DTP*349 is sent. Only the raw range
        was kept: the coverage had no dates."""
        text = read("good_exchange_new_enrollment")
        ranged = text.replace(b"DTP*348*D8*20260501~DTP*349*D8*20261231~",
                              b"DTP*348*RD8*20260501-20270430~", 1)  # fmt: skip
        assert ranged != text
        first = members(ranged)[0].coverages[0]
        assert (first.benefit_begin, first.benefit_end) == (date(2026, 5, 1), date(2027, 4, 30))
        both = text.replace(b"DTP*348*D8*20260501~", b"DTP*348*RD8*20260501-20270430~", 1)
        first = members(both)[0].coverages[0]
        assert (first.benefit_begin, first.benefit_end) == (date(2026, 5, 1), date(2026, 12, 31))
        backwards = text.replace(b"DTP*348*D8*20260501~", b"DTP*348*RD8*20260501-20260101~", 1)
        assert members(backwards)[0].coverages[0].benefit_begin is None  # not a range

    def test_cancel_ends_where_it_begins(self) -> None:
        (event,) = members(read("good_cancel"))
        assert event.maintenance_type.code == "024"
        assert event.maintenance_reason == "14"
        assert event.eligibility_begin == event.eligibility_end == date(2026, 5, 1)
        assert event.coverages == ()
        assert event.reporting_categories == {"ADDL MAINT REASON": "CANCEL"}
        assert event.name is not None
        assert event.name.last == "PRZYBYLSKI"
        assert event.residence is not None
        assert (event.residence.city, event.residence.postal_code) == ("NORFOLK", "23508")

    def test_reinstatement(self) -> None:
        (event,) = members(read("good_reinstatement"))
        assert event.maintenance_type == Code(code="025", name="reinstatement")
        assert event.maintenance_reason == "41"
        (coverage,) = event.coverages
        assert coverage.maintenance_type == Code(code="025", name="reinstatement")
        assert (coverage.insurance_line, coverage.coverage_level) == ("HLT", "IND")
        assert (coverage.benefit_begin, coverage.benefit_end) == (
            date(2026, 1, 1),
            date(2026, 12, 31),
        )
        assert coverage.class_of_contract_code == "48213VA004000702"
        assert coverage.group_or_policy_number == "20977154"
        assert event.reporting_categories == {"ADDL MAINT REASON": "REINSTATEMENT"}
        # Same person as good_termination: the ledger can join them on the exchange ids.
        (terminated,) = members(read("good_termination"))
        assert (event.subscriber_number, event.name) == (
            terminated.subscriber_number,
            terminated.name,
        )

    def test_newborn_dependent_only(self) -> None:
        (event,) = members(read("good_newborn_dependent_add"))
        assert event.subscriber is False
        assert event.relationship == Code(code="19", name="child")
        assert (event.maintenance_type.code, event.maintenance_reason) == ("021", "02")
        assert event.subscriber_number == "0007720415"
        assert event.client_reporting_category == "0007720417"
        assert event.name == MemberName(
            entity="IL",
            last="HOLLOWAY",
            first="PRIYA",
            middle="N",
            prefix="",
            suffix="",
            id_qualifier="",
            id="",
        )
        assert event.birth_date == date(2026, 3, 9)
        assert event.residence is None
        (coverage,) = event.coverages
        assert coverage.benefit_begin == event.birth_date == event.eligibility_begin
        assert coverage.class_of_contract_code == "61590MD011000403"
        assert event.header.sponsor is not None
        assert event.header.sponsor.name == "MARYLAND HEALTH CONNECTION"

    def test_audit_030(self) -> None:
        events = members(read("good_audit_030"))
        assert len(events) == 5
        assert {e.maintenance_type for e in events} == {Code(code="030", name="audit or compare")}
        assert {e.maintenance_reason for e in events} == {"XN"}
        assert {c.maintenance_type.code for e in events for c in e.coverages} == {"030"}
        assert {e.header.action for e in events} == {"4"}
        # Header DTP*007 is a file date, not a member date.
        assert all("007" not in e.dates for e in events)
        households = {e.subscriber_number for e in events}
        assert households == {"0007114820", "0007302917", "0007481063"}
        assert [e.name.last for e in events if e.name] == [
            "TSAI",
            "MORROW",
            "ABERNATHY",
            "NWACHUKWU",
            "NWACHUKWU",
        ]
        assert events[0].name is not None
        assert (events[0].name.first, events[0].name.middle) == ("WEN-LI", "")
        assert events[2].coverages[0].coverage_level == "IND"
        assert events[4].birth_date == date(2023, 1, 19)

    def test_multi_interchange_ordinals(self) -> None:
        events = members(read("good_multi_interchange"))
        assert [(e.source.envelope, e.source.group, e.source.transaction_set) for e in events] == [
            (0, 0, 0),
            (0, 0, 0),
            (1, 0, 0),
        ]
        assert [e.source.isa13 for e in events] == ["000041401", "000041401", "000041402"]
        assert [e.source.gs06 for e in events] == ["41401", "41401", "41402"]
        assert [e.header.reference for e in events] == [
            "VA0-20260414-041401",
            "VA0-20260414-041401",
            "VA0-20260414-041402",
        ]
        assert events[2].name is not None
        assert events[2].name.last == "KOWALCZYK"
        assert events[2].reporting_categories["APTC AMT"] == "0.00"
        assert events[2].reporting_categories["PRE AMT TOT"] == "702.55"
        assert events[2].reporting_categories["RATING AREA"] == "R-VA007"

    def test_multi_set_one_group(self) -> None:
        events = members(read("good_multi_set_one_group"))
        assert [(e.source.transaction_set, e.source.st02) for e in events] == [
            (0, "0001"),
            (0, "0001"),
            (1, "0002"),
            (2, "0003"),
        ]
        assert [e.source.segment_position for e in events] == [8, 45, 8, 8]
        assert [e.header.reference[-1] for e in events] == ["1", "1", "2", "3"]
        assert events[0].header is events[1].header
        assert events[1].header is not events[2].header
        assert events[2].reporting_categories == {
            "APTC AMT": "301.00",
            "PRE AMT 1": "389.12",
            "PRE AMT TOT": "389.12",
            "TOT RES AMT": "88.12",
            "RATING AREA": "R-VA009",
        }

    def test_multi_group_ordinals(self) -> None:
        events = members(read("good_multi_group"))
        assert [(e.source.group, e.source.transaction_set, e.source.st02) for e in events] == [
            (0, 0, "0001"),
            (0, 0, "0001"),
            (1, 0, "0001"),
        ]
        assert [e.source.gs06 for e in events] == ["41301", "41301", "41302"]

    def test_provider_lx_is_not_a_reporting_category(self) -> None:
        (event,) = members(read("good_provider_lx_and_reporting_lx"))
        (coverage,) = event.coverages
        assert (coverage.insurance_line, coverage.coverage_level) == ("HMO", "IND")
        assert coverage.references == {"CE": "48213VA005000301", "1L": "21861470"}
        # 2310's NM1*P3 / N3 / N4 / PER belong to the provider, not the member.
        assert event.name is not None
        assert event.name.last == "OYELOWO-GRANT"
        assert event.residence is not None
        assert (event.residence.line1, event.residence.postal_code) == ("815 W 38TH ST", "23508")
        assert event.contact == {"HP": "7575550170"}
        assert [c.name for c in event.reporting_category_loops] == [
            "APTC AMT",
            "PRE AMT 1",
            "PRE AMT TOT",
            "TOT RES AMT",
            "RATING AREA",
        ]
        assert event.reporting_category_loops[0].segment_position == 30
        assert event.reporting_categories["PRE AMT TOT"] == "498.63"
        assert event.reporting_categories["TOT RES AMT"] == "283.63"

    def test_pipe_delimiters_and_race_composite(self) -> None:
        (event,) = members(read("good_delimiters_pipe"))
        assert event.name is not None
        assert (event.name.last, event.name.first) == ("SANTIAGO-REYES", "MARISOL")
        assert event.birth_date == date(1981, 6, 9)
        # ISA16 is '>': DMG05 H>RET>2135-2 is one composite, split on it.
        assert event.race_ethnicity == (
            RaceEthnicity(code="H", code_list_qualifier="RET", industry_code="2135-2"),
        )
        assert event.reporting_categories == {
            "PRE AMT 1": "455.18",
            "PRE AMT TOT": "455.18",
            "APTC AMT": "0.00",
            "TOT RES AMT": "455.18",
            "RATING AREA": "R-MD001",
        }
        assert event.coverages[0].benefit_end == date(2026, 12, 31)

    @pytest.mark.parametrize(("name", "count"), [("two", 2), ("ten", 10)])
    def test_dmg05_repetitions_split_with_isa11(self, name: str, count: int) -> None:
        # The files the validator accepts with DMG05 repeated (X220A1: up to 10).
        subscriber, spouse = members(read(f"good_dmg05_{name}_repetitions"))
        assert len(subscriber.race_ethnicity) == count
        assert subscriber.race_ethnicity[0] == RaceEthnicity(
            code="C", code_list_qualifier="RET", industry_code="2106-3"
        )
        assert subscriber.race_ethnicity[-1].industry_code == ("2135-2" if count == 2 else "2036-2")
        assert spouse.race_ethnicity == (
            RaceEthnicity(code="C", code_list_qualifier="RET", industry_code="2106-3"),
        )

    def test_dmg05_empty_repetitions_and_an_isa11_that_is_no_separator(self) -> None:
        dmg = "DMG*D8*19910323*F**C:RET:2106-3^^H:RET:2135-2^"
        (event,) = members(_member_file(*[dmg if s.startswith("DMG") else s for s in MEMBER]))
        assert [r.code for r in event.race_ethnicity] == ["C", "H"]
        # ISA11 'U' (TA105 016) splits nothing, as in the validator.
        data = x12(
            Group(sets=[TS(body=[*HEADER, *MEMBER[:7], "DMG*D8*19910323*F**U:RET:2106-3"])]),
            isa_kwargs={"rep": "U"},
        )
        (event,) = members(data)
        assert event.race_ethnicity == (
            RaceEthnicity(code="U", code_list_qualifier="RET", industry_code="2106-3"),
        )

    def test_caret_delimiters_employer_file(self) -> None:
        subscriber, spouse = members(read("good_delimiters_caret"))
        assert subscriber.race_ethnicity == (
            RaceEthnicity(code="C", code_list_qualifier="RET", industry_code="2106-3"),
        )
        assert spouse.race_ethnicity == ()
        assert subscriber.group_or_policy_number == "HBV20418"  # 2000-level REF*1L
        assert subscriber.subscriber_number == spouse.subscriber_number == "E104902"
        assert subscriber.dates == {"336": date(2026, 6, 8)}
        assert [(c.insurance_line, c.coverage_level) for c in subscriber.coverages] == [
            ("HLT", "ESP")
        ]
        assert spouse.coverages[0].benefit_begin == date(2026, 7, 1)
        assert subscriber.residence is not None
        assert subscriber.residence.state == "NC"
        assert subscriber.header.sponsor is not None
        assert subscriber.header.sponsor.name == "HARBORVIEW MANUFACTURING INC"

    def test_employer_group_city_containing_ins(self) -> None:
        events = members(read("good_employer_group_enrollment"))
        # "WINSTON SALEM" holds the letters INS; only segment ids count.
        assert len(events) == 3
        assert events[2].residence is not None
        assert events[2].residence.city == "WINSTON SALEM"
        assert [[c.insurance_line for c in e.coverages] for e in events] == [
            ["HLT", "DEN", "VIS"],
            ["HLT", "DEN"],
            ["HLT"],
        ]
        assert {c.coverage_level for e in events for c in e.coverages} == {"EMP"}
        assert [e.dates["336"] for e in events] == [
            date(2026, 5, 18),
            date(2026, 5, 18),
            date(2026, 5, 11),
        ]

    def test_incorrect_name_loop_does_not_replace_the_member(self) -> None:
        (event,) = members(read("good_name_correction"))
        assert event.name is not None
        assert event.name.last == "VANTERPOOL"
        assert event.birth_date == date(1987, 6, 12)  # not 2100B's DMG 19870621
        assert event.maintenance_effective == date(2026, 6, 12)
        # 2100B is what was sent before: kept apart, to find the member under its old key.
        assert event.prior_name is not None
        assert (event.prior_name.entity, event.prior_name.last) == ("70", "VANTERPOL")
        assert event.prior_birth_date_raw == "19870621"

    def test_coordination_of_benefits_is_not_the_member(self) -> None:
        (event,) = members(read("good_cob_other_insurance"))
        assert event.name is not None
        assert event.name.last == "ACHTERBERG"
        (coverage,) = event.coverages
        assert coverage.dates == {"348": date(2026, 7, 1)}  # 2320 DTP*344 is not coverage
        assert coverage.references == {"1L": "CDL7730"}

    def test_names_containing_envelope_tags(self) -> None:
        events = members(read("good_name_isaac"))
        assert [(e.name.last, e.name.first) for e in events if e.name] == [
            ("ISAAC", "ISABELLA"),
            ("ISAACSON-ISAAC", "GSELL"),
        ]

    @needs_peer_corpus()
    def test_mailing_address_and_corrected_insured_from_peer_file(self) -> None:
        (event,) = members(
            next(p for p in peer_files() if p.name == "pyx12_834_ls_le_ls.834").read_bytes()
        )
        assert event.name is not None
        assert (event.name.entity, event.name.last) == ("74", "SUBSCRIBER LAST 1")
        assert event.birth_date == date(1983, 7, 19)
        assert event.mailing == Address(
            line1="RECIPIENT MAIL ADDRESS LINE 1",
            line2="RECIPIENT MAIL ADDRESS LINE 2",
            city="SALEM",
            state="OR",
            postal_code="97301",
        )
        assert event.client_number == "REF 23"
        assert event.references["3H"] == "REF 3H"
        assert event.coverages[0].plan_coverage_description == "12345678902012062020130415N"
        assert event.coverages[0].references == {"17": "D4"}  # 2320 REFs are not coverage
        assert event.reporting_categories["PREVIOUS PMP END DATE"] == ""  # a DTP-only loop
        due = next(c for c in event.reporting_category_loops if c.name == "DUE DATE")
        assert due.period_begin == due.period_end == date(2013, 6, 20)
        assert len(event.reporting_category_loops) == 13

    @pytest.mark.parametrize("path", peer_params())
    def test_peer_files(self, path: Path) -> None:
        data = path.read_bytes()
        events = members(data)
        assert [e.source.segment_position for e in events] == [p for _, p in ins_positions(data)]
        assert all(e.name is not None for e in events)


class TestStreaming:
    @pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
    def test_same_events_whole_or_one_byte_at_a_time(self, path: Path) -> None:
        data = path.read_bytes()
        whole = members(data)
        assert members(data, chunk=1) == whole
        assert members(data, chunk=7) == whole

    def test_yields_before_the_input_ends(self) -> None:
        consumed = 0
        data = read("good_large_200_members")

        def chunks() -> Iterator[bytes]:
            nonlocal consumed
            for i in range(0, len(data), 1024):
                consumed += 1
                yield data[i : i + 1024]

        stream = extract_members(chunks())
        first = next(stream)
        assert first.source.segment_position == ins_positions(data)[0][1]
        assert consumed * 1024 < len(data) // 10
        assert sum(1 for _ in stream) == 199

    def test_large_file_one_member_alive_and_header_shared(self) -> None:
        """5,000 members: each event can be freed before the next is built, every event of the
        set shares one header, and the 2750 amounts balance as the generator wrote them."""
        buffer = io.BytesIO()
        written, _ = gen834.write_834(buffer, 5000, seed=11)
        buffer.seek(0)
        alive: list[weakref.ref[MemberEvent]] = []
        count = subscribers = 0
        header = None
        premium_total = Decimal(0)
        premium_each = Decimal(0)
        for event in extract_members(iter(lambda: buffer.read(1 << 16), b"")):
            assert all(ref() is None for ref in alive)  # nothing kept the earlier members
            alive = [weakref.ref(event)]
            if header is None:
                header = event.header
            assert event.header is header
            count += 1
            premium_each += Decimal(event.reporting_categories["PRE AMT 1"])
            if event.subscriber:
                subscribers += 1
                premium_total += Decimal(event.reporting_categories["PRE AMT TOT"])
                assert event.coverages[0].class_of_contract_code is not None
                assert len(event.coverages[0].class_of_contract_code) == 16
        assert count == written == 5000
        assert subscribers > 1000
        assert premium_total == premium_each

    def test_memory_does_not_grow_with_the_file(self, tmp_path: Path) -> None:
        """tracemalloc peak while streaming from a file: flat from 120 to 480 members (the file
        grows by ~185 KB; holding the events would cost ~17 KB per member, ~6 MB more)."""
        members(read("good_exchange_new_enrollment"))  # first-use allocations are not streaming
        peaks: dict[int, tuple[int, int]] = {}
        for count in (120, 480):
            path = tmp_path / f"{count}.834"
            with path.open("wb") as fp:
                gen834.write_834(fp, count, seed=5)
            gc.collect()
            with path.open("rb") as fp:
                tracemalloc.start()
                try:
                    seen = sum(1 for _ in extract_members(iter(lambda: fp.read(1 << 12), b"")))
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
            assert seen == count
            peaks[count] = (peak, path.stat().st_size)
        (small, _), (large, size) = peaks[120], peaks[480]
        assert size > 240_000
        assert large < small + 64 * 1024, peaks
        # What remains is the reader's buffer (up to ~80 KB) and one member, not the file.
        assert large < min(size, 384 * 1024), peaks


class TestInclude:
    def test_include_skips_a_transaction_set(self) -> None:
        asked: list[tuple[int, int, int]] = []

        def include(key: tuple[int, int, int]) -> bool:
            asked.append(key)
            return key != (0, 0, 1)

        events = members(read("good_multi_set_one_group"), include=include)
        assert asked == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
        assert [e.source.st02 for e in events] == ["0001", "0001", "0003"]
        assert [e.source.transaction_set for e in events] == [0, 0, 2]

    def test_keys_nest_group_in_interchange(self) -> None:
        asked: list[tuple[int, int, int]] = []
        for name in ("good_multi_interchange", "good_multi_group"):
            members(read(name), include=lambda key: asked.append(key) or True)
        assert asked == [(0, 0, 0), (1, 0, 0), (0, 0, 0), (0, 1, 0)]

    def test_excluding_everything_yields_nothing(self) -> None:
        assert members(read("good_large_200_members"), include=lambda key: False) == []


def _member_file(*member: str, body_tail: tuple[str, ...] = ()) -> bytes:
    return x12(Group(sets=[TS(body=[*HEADER, *member, *body_tail])]))


class TestBadData:
    def test_birth_date_not_a_date(self) -> None:
        for bad in ("19881345", "1988031", "ABCDEFGH", "", "00000101", "19880230"):
            member = [s.replace("19910323", bad) for s in MEMBER]
            (event,) = members(_member_file(*member))
            assert event.birth_date is None
            assert event.birth_date_raw == bad
            assert event.gender == "F"
            assert event.name is not None
            assert event.name.last == "DOE"

    def test_member_without_dmg(self) -> None:
        (event,) = members(_member_file(*[s for s in MEMBER if not s.startswith("DMG")]))
        assert (event.birth_date, event.birth_date_raw, event.gender) == (None, None, "")

    def test_dates_that_are_not_d8_are_kept_raw(self) -> None:
        member = [*MEMBER[:4], "DTP*357*D8*2026133", "DTP*303*RD8*20260101-20260131", *MEMBER[4:]]
        member.append("DTP*349*D8*20261301")
        (event,) = members(_member_file(*member))
        assert event.dates == {"356": date(2026, 6, 1)}
        assert event.unparsed_dates == {"357": "2026133", "303": "20260101-20260131"}
        assert event.coverages[0].benefit_end is None
        assert event.coverages[0].unparsed_dates == {"349": "20261301"}

    def test_unknown_segments_are_ignored(self) -> None:
        plain = members(_member_file(*MEMBER))
        noisy = [*MEMBER[:8], "ZZZ*1*2", "XYZ", *MEMBER[8:], "QQQ*HD*021"]
        (event,) = members(_member_file(*noisy))
        assert event.model_dump(exclude={"coverages"}) == plain[0].model_dump(exclude={"coverages"})
        assert event.coverages[0].model_dump(exclude={"segment_position"}) == plain[0].coverages[
            0
        ].model_dump(exclude={"segment_position"})

    def test_unknown_codes_have_no_name(self) -> None:
        member = ["INS*Q*77*999", *MEMBER[1:]]
        (event,) = members(_member_file(*member))
        assert event.subscriber is False
        assert event.relationship == Code(code="77", name=None)
        assert event.maintenance_type == Code(code="999", name=None)
        assert event.benefit_status == ""

    def test_first_value_wins_and_segments_out_of_place_are_not_misread(self) -> None:
        member = [
            "INS*Y*18*021*28*A",
            "REF*0F*FIRST",
            "REF*0F*SECOND",
            "NM1*IL*1*DOE*JANE",
            "N3*1 MAIN ST",
            "HD*021**HLT",
            "N3*NOT THE MEMBER",  # N3 inside 2300 belongs to nobody
            "DMG*D8*19700101*M",  # a DMG after HD is out of place
            "NM1*IL*1*LATE*NAME",  # an NM1 after HD is a 2310/2330 entity ...
            "PER*IP**TE*8045550100",  # ... so what follows it is not the member's
            "N4*NOWHERE*VA*23220",
            "DMG*D8*19700101*M",
            "LX*1",
            "N1*75*NOT A CATEGORY",  # outside LS/LE
        ]
        (event,) = members(_member_file(*member))
        assert event.subscriber_number == "FIRST"
        assert event.name is not None
        assert event.name.last == "DOE"
        assert event.residence == Address(line1="1 MAIN ST")
        assert event.birth_date_raw is None
        assert event.contact == {}
        assert event.reporting_categories == {}

    def test_segments_before_the_first_ins_are_header(self) -> None:
        (event,) = members(_member_file("REF*0F*ORPHAN", "DMG*D8*19700101*M", *MEMBER))
        assert event.references == {"0F": "SUB1000001", "17": "MEM1000001"}
        assert event.header.reference == "REF12345"

    def test_set_without_members_and_non_834_set(self) -> None:
        data = x12(Group(sets=[TS(body=HEADER, st02="0001"), TS(st01="835", st02="0002")]))
        assert members(data) == []

    def test_truncated_input_still_yields_what_was_read(self) -> None:
        data = read("good_exchange_new_enrollment")
        cut = data[: data.index(b"LS*2700", data.index(b"INS*N"))]
        events = members(cut)
        assert [e.name.first for e in events if e.name] == ["DANIELLE", "MARCUS"]
        assert events[1].reporting_categories == {}

    def test_collections_are_bounded(self) -> None:
        many = [f"HD*021**HLT**IND~DTP*348*D8*20260101~REF*ZZ*{i}" for i in range(1005)]
        (event,) = members(_member_file("INS*Y*18*021*28*A", *many))
        assert len(event.coverages) == MAX_ITEMS_PER_MEMBER
        assert event.truncated is True
        (plain,) = members(_member_file(*MEMBER))
        assert plain.truncated is False

    @pytest.mark.parametrize(
        "path", [p for p in sample_files() if not p.name.startswith("good_")], ids=lambda p: p.stem
    )
    def test_defective_samples_do_not_raise(self, path: Path) -> None:
        data = path.read_bytes()
        assert members(data) == members(data, chunk=3)


_BODY_TAGS = ("INS", "REF", "DTP", "NM1", "PER", "N3", "N4", "DMG", "HD", "LX", "LS", "LE", "N1")
_BODY_TAGS += ("COB", "DSB", "BGN", "ZZZ")
_ENVELOPE_TAGS = ("ST", "SE", "GS", "GE", "ISA", "IEA")
# fmt: off
_BODY_VALUES = [
    "", "Y", "N", "18", "19", "021", "024", "IL", "74", "70", "31", "75", "0F", "17", "1L",
    "CE", "D8", "RD8", "348", "356", "20260101", "20261331", "2026-01-01", "20260101-20261",
    "A:B:C", "X^Y", ":", "^", "ISA", "\x00", "é", "PRE AMT 1", "9X", "12.50",
]
# fmt: on


def _segments(tags: tuple[str, ...], values: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(
        st.builds(
            lambda tag, elements: "*".join([tag, *elements]),
            st.sampled_from(tags),
            st.lists(st.sampled_from(values), max_size=9),
        ),
        max_size=40,
    )


class TestNeverRaises:
    @settings(max_examples=100, deadline=None)
    @given(data=st.binary(max_size=600))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        list(extract_members([data]))

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(tail=st.binary(max_size=400), cut=st.integers(min_value=0, max_value=2000))
    def test_sample_cut_and_followed_by_noise(self, tail: bytes, cut: int) -> None:
        data = read("good_exchange_new_enrollment")
        list(extract_members([data[:cut], tail, data[cut:]]))

    @settings(max_examples=100, deadline=None)
    @given(body=_segments(_BODY_TAGS, _BODY_VALUES), chunk=st.integers(min_value=1, max_value=64))
    def test_arbitrary_member_segments(self, body: list[str], chunk: int) -> None:
        """Any order of member segments with any values: one event per INS, at its position,
        the same however the bytes are split."""
        data = x12(Group(sets=[TS(body=[*HEADER, *body])]))
        events = members(data)
        assert members(data, chunk=chunk) == events
        assert [e.source.segment_position for e in events] == [p for _, p in ins_positions(data)]

    @settings(max_examples=100, deadline=None)
    @given(
        body=_segments(_BODY_TAGS + _ENVELOPE_TAGS, [*_BODY_VALUES, "~", "*", "834"]),
        chunk=st.integers(min_value=1, max_value=64),
    )
    def test_arbitrary_segments_with_envelope_tags(self, body: list[str], chunk: int) -> None:
        data = x12(Group(sets=[TS(body=[*HEADER, *body])]))
        assert members(data, chunk=chunk) == members(data)


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_the_core_events_member_json_is_the_members_json_data(path: Path) -> None:
    """The core outbox splices `model_dump_json` into its payload (gateway.enrollment.apply):
    the same JSON data as the generic encoder of `model_dump(mode="json")` gave before, for
    every member of every sample (non-ASCII names, dates, absent values)."""
    exclude = {"header", "source"}
    for event in extract_members([path.read_bytes()]):
        assert json.loads(event.model_dump_json(exclude=exclude)) == event.model_dump(
            mode="json", exclude=exclude
        )


def test_the_core_events_member_json_keeps_non_ascii_names() -> None:
    member = [s.replace("DOE", "MÜLLER-ÑÚÑEZ") for s in MEMBER]
    (event,) = members(_member_file(*member))
    assert event.name is not None and "Ü" in event.name.last
    as_text = event.model_dump_json(exclude={"header", "source"})
    assert json.loads(as_text)["name"]["last"] == event.name.last
    assert json.loads(as_text) == event.model_dump(mode="json", exclude={"header", "source"})
