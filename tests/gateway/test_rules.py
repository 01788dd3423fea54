"""The business rules and the ledger's pure helpers, without a database: keys, sender order,
audit comparison, rule configuration, and arbitrary member data never making a rule raise."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.enrollment.combinations import CMS_FFE, Combination, Combinations
from gateway.enrollment.events import MemberEvent
from gateway.enrollment.extract import extract_members
from gateway.enrollment.keys import (
    FileName,
    is_audit,
    member_key,
    order_key,
    policy_key,
    read_file_name,
)
from gateway.enrollment.lifecycle import TERMS, Enrollment, Period, State
from gateway.enrollment.reconcile import compare
from gateway.enrollment.repository import MemberRec
from gateway.enrollment.rules import (
    COMBINATIONS_KEY,
    RULES,
    Hit,
    LedgerView,
    MemberFacts,
    RuleConfig,
    Severity,
    amount,
    family_premium,
    member_rules,
    rejecting,
    set_rules,
    unevaluable,
)
from tests.gateway.x834 import Cov, Member, dependent, interchange

NO_FACTS = MemberFacts(
    ledger=None, subscriber_present=True, seen_in_file=False, family_premium=None
)
DEFAULTS = RuleConfig(severities={})
COMBO = "maintenance-combination"


def events(members: list[Member], **kw: object):
    return list(extract_members([interchange(members, control=9, **kw)]))  # type: ignore[arg-type]


def subscriber(**kw: object) -> Member:
    base: dict[str, object] = {
        "subscriber_id": "0001",
        "member_id": "0001",
        "last": "ROE",
        "first": "ANA",
        "ssn": "512849301",
    }
    base.update(kw)
    return Member(**base)  # type: ignore[arg-type]


def test_keys() -> None:
    sub, dep = events(
        [subscriber(), dependent("0001", "0002", "KIM", "512849302", coverages=[Cov(policy="")])]
    )
    assert member_key(sub) == "0001" and member_key(dep) == "0002"
    assert policy_key(sub) == "31200457"
    assert policy_key(dep) == "0001"  # no REF*1L anywhere: the subscriber's REF*0F


def test_a_dependent_without_ref17_is_keyed_without_member_data() -> None:
    """Employer files often leave REF*17 out: the dependent's key comes from its SSN (else its
    name and birth date) but shows none of them, stays one address segment, and is the same
    in the next file."""
    _, kim, lee = events(
        [
            subscriber(),
            dependent("0001", "0002", "KIM", "512849302"),
            dependent("0001", "0003", "LEE", "512849303"),
        ]
    )
    kim = kim.model_copy(update={"client_reporting_category": None})
    lee = lee.model_copy(update={"client_reporting_category": None})
    assert kim.name is not None and lee.name is not None
    no_ssn = kim.model_copy(update={"name": kim.name.model_copy(update={"id": ""})})
    keys = [member_key(e) for e in (kim, lee, no_ssn)]
    assert len(set(keys)) == 3
    for key, event in zip(keys, (kim, lee, no_ssn), strict=True):
        assert key.startswith("0001:") and "/" not in key and len(key) <= 120
        assert event.name is not None
        for value in (event.name.id or "-", event.name.id[-4:] or "-", event.name.first,
                      event.name.last, event.birth_date_raw or "-"):  # fmt: skip
            assert value not in key, (value, key)
    again = events([subscriber(), dependent("0001", "0002", "KIM", "512849302")])[1]
    assert member_key(again.model_copy(update={"client_reporting_category": None})) == keys[0]


def test_order_key_puts_ar_then_rt_then_daily_then_bgn_date_then_isa13() -> None:
    early = interchange([subscriber()], control=5, bgn_date="20270101")
    late = interchange([subscriber()], control=4, bgn_date="20270102")
    assert order_key("x.834", [early]) < order_key("x.834", [late])
    assert order_key("VA0.RT.D270109.834", [late]) < order_key("x.834", [early])
    assert order_key("VA0.AR.D270109.834", [late]) < order_key("VA0.RT.D270101.834", [early])
    assert order_key("PARTRIDGE.834", [early]) == order_key("x.834", [early])  # not a token
    assert order_key("x.834", [b"garbage"]) > order_key("x.834", [late])  # sorts last, no raise


class TestCmsFileNames:
    """CMS outbound names (SENDER.RECEIVER.FUNCTION.Dyymmdd.Thhmmssmmm.P|T) and the looser
    spellings senders use: AR before RT before daily, then the name's date and time."""

    AR = "VA0FFM.EDI834GATEWAY.I834AR.D270105.T120000000.P"
    RT = "VA0FFM.EDI834GATEWAY.I834RT.D270103.T120000000.P"
    DAILY = "VA0FFM.EDI834GATEWAY.I834.D270101.T120000000.P"

    @pytest.mark.parametrize(
        ("name", "function", "stamp"),
        [
            ("VA0FFM.EDI834GATEWAY.I834AR.D270105.T120000000.P", "AR", "2027010512000000"),
            ("VA0FFM.EDI834GATEWAY.I834RT.D270103.T093015250.T", "RT", "2027010309301525"),
            ("VA0FFM.EDI834GATEWAY.I834.D270101.T235959999.P", "", "2027010123595999"),
            ("va0ffm.edi834gateway.i834ar.d270105.t120000000.p", "AR", "2027010512000000"),
            ("VA0FFM_EDI834GATEWAY_I834_AR_D20270105_T120000.P.edi", "AR", "2027010512000000"),
            ("VA0FFM-EDI834GATEWAY-834RT-D270103.x12", "RT", "2027010300000000"),
            (
                "outbound/2027/VA0FFM.EDI834GATEWAY.I834.RT.D270103.T1200.P",
                "RT",
                "2027010300000000",
            ),
            ("VA0FFM.EDI834GATEWAY.I834.D271301.T120000000.P", "", None),  # month 13: BGN
            ("VA0FFM.EDI834GATEWAY.I834AR.D270105.T990000000.P", "AR", "2027010500000000"),
        ],
    )
    def test_recognises_strict_and_loose_names(
        self, name: str, function: str, stamp: str | None
    ) -> None:
        named = read_file_name(name)
        assert (named.cms, named.function, named.stamp) == (True, function, stamp)

    @pytest.mark.parametrize(
        "name", ["x.834", "PARTRIDGE.834", "ARKANSAS.EDI834GATEWAY.D270101.P", "AR0.834", ""]
    )
    def test_other_names_are_daily_without_a_stamp(self, name: str) -> None:
        assert read_file_name(name) == FileName("", cms=False)

    def test_ar_then_rt_then_daily_whatever_the_dates(self) -> None:
        early = interchange([subscriber()], control=9, bgn_date="20270101")
        late = interchange([subscriber()], control=1, bgn_date="20270109")
        keys = [
            order_key(self.DAILY, [early]),
            order_key(self.RT, [early]),
            order_key(self.AR, [late]),
        ]
        assert sorted(keys) == keys[::-1]
        assert order_key(self.AR, [late]) < order_key("x.834", [early])

    def test_within_a_rank_the_name_stamp_then_isa13(self) -> None:
        # The BGN dates disagree with the names; a CMS name's D/T stamp is the sender's order.
        first = interchange([subscriber()], control=7, bgn_date="20270109")
        second = interchange([subscriber()], control=3, bgn_date="20270101")
        morning = "VA0FFM.EDI834GATEWAY.I834.D270102.T080000000.P"
        noon = "VA0FFM.EDI834GATEWAY.I834.D270102.T120000000.P"
        assert order_key(morning, [first]) < order_key(noon, [second])
        assert order_key(noon, [second]) < order_key(noon, [first])  # same stamp: ISA13

    def test_unknown_or_undated_names_fall_back_to_bgn(self) -> None:
        head = interchange([subscriber()], control=5, bgn_date="20270104")
        assert order_key("VA0.I834.P", [head]) == order_key("x.834", [head])
        bad_date = "VA0FFM.EDI834GATEWAY.I834.D271301.T120000000.P"
        assert order_key(bad_date, [head]) == order_key("x.834", [head])


def test_set_rules_count_members() -> None:
    (event,) = events([subscriber()], qty={"TO": 2})
    hits = set_rules(event.header, subscribers=1, dependents=0)
    assert [(h.rule, h.segment_id) for h in hits] == [("qty-totals", "QTY")]
    assert hits[0].segment_position == event.header.quantity_positions["TO"]
    assert set_rules(event.header, subscribers=2, dependents=0)[0].message.startswith("QTY*ET")


def test_each_rule_is_named_with_a_snip_type_reason_and_remedy() -> None:
    for name, rule in RULES.items():
        assert rule.name == name and rule.snip in (3, 4, 6, 7)
        assert rule.title and rule.remedy and rule.ted01.isalnum()


def test_config_parses_and_refuses_unknown_rules() -> None:
    config = RuleConfig.parse('{"duplicate-add": "warn"}', "A\nB, C")
    assert config.severity("duplicate-add") is Severity.WARN
    assert config.severity("unknown-member") is Severity.REJECT
    assert config.plan_ids == frozenset({"A", "B", "C"})
    with pytest.raises(ValueError, match="unknown rule"):
        RuleConfig.parse('{"no-such-rule": "warn"}', "")
    with pytest.raises(ValueError, match="sometimes"):
        RuleConfig.parse('{"duplicate-add": "sometimes"}', "")


class TestMaintenanceCombination:
    """INS03 / INS04 / 2750 ADDL MAINT REASON against the CMS FFE table or a partner's list."""

    @staticmethod
    def hits(config: RuleConfig = DEFAULTS, **kw: object) -> list[Hit]:
        (event,) = events([subscriber(**kw)])
        return [h for h in member_rules(event, NO_FACTS, config) if h.rule == COMBO]

    @pytest.mark.parametrize(
        ("maintenance", "reason", "amrc"),
        [  # CMS X12 834 companion guide v7.2, Table 30 (outbound)
            ("021", "EC", None),  # initial enrollment
            ("021", "EC", "CIC"),
            ("021", "41", "PASSIVE"),  # batch auto re-enrollment (I834AR)
            ("021", "41", " passive "),  # case and blanks are not the sender's error
            ("021", "41", "PASSIVE - INITIAL"),
            ("021", "41", "PASSIVE - B2S"),
            ("021", "41", "PASSIVE-NEW SUBSCRIBER (B2S)"),
            ("021", "EC", "PASSIVE REENROLL - NEW TO ISSUER"),
            ("024", "14", "CANCEL"),
            ("024", "07", "CANCEL-NLE"),
            ("024", "03", "TERM-PDM"),
            ("024", "", "CANCEL-CARRYFORWARD"),  # no INS04
            ("001", "", "FINANCIAL CHANGE"),
            ("001", "", "NO CHANGE"),
            ("001", "25", "DEMOGRAPHIC CHANGE"),
            ("001", "43", "DEMOGRAPHIC CHANGE"),
        ],
    )
    def test_the_cms_table_allows_what_the_ffe_sends(
        self, maintenance: str, reason: str, amrc: str | None
    ) -> None:
        cats = {"ADDL MAINT REASON": ("17", amrc)} if amrc else {}
        assert self.hits(maintenance=maintenance, reason=reason, categories=cats) == []

    @pytest.mark.parametrize(
        ("maintenance", "reason", "amrc"),
        [
            ("001", "25", None),  # a demographic change says so in ADDL MAINT REASON
            ("001", "AI", "FINANCIAL CHANGE"),  # ... and a financial one sends no INS04
            ("021", "41", None),  # re-enrollment comes from BAR, with a PASSIVE value
            ("021", "28", "CONFIRM"),  # effectuation: the issuer's, to the FFE (Table 29)
            ("024", "59", "TERM"),  # non-payment: the issuer's, to the FFE
            ("024", "07", "CANCEL-OTH-COVERAGE"),  # other coverage is 14
            ("025", "", "ISSUER - REINSTATEMENT"),  # the FFE sends no reinstatement
        ],
    )
    def test_the_cms_table_flags_what_the_ffe_does_not_send(
        self, maintenance: str, reason: str, amrc: str | None
    ) -> None:
        cats = {"ADDL MAINT REASON": ("17", amrc)} if amrc else {}
        (hit,) = self.hits(maintenance=maintenance, reason=reason, categories=cats)
        assert hit.message.startswith(f"INS03 {maintenance} / INS04 {reason or '(none)'}")

    def test_an_unlisted_pair_points_at_ins04(self) -> None:
        (event,) = events([subscriber(maintenance="021", reason="AI")])
        (hit,) = [h for h in member_rules(event, NO_FACTS, DEFAULTS) if h.rule == COMBO]
        assert (hit.segment_id, hit.segment_position, hit.element_position) == (
            "INS",
            event.source.segment_position,
            4,
        )
        assert hit.message == "INS03 021 / INS04 AI is not a combination this sender uses"
        assert RULES[COMBO].ted01 == "012" and RULES[COMBO].snip == 7

    def test_a_listed_pair_with_an_unlisted_addl_maint_reason_points_at_its_n1(self) -> None:
        cats = {"ADDL MAINT REASON": ("17", "PASSIVE")}
        (event,) = events([subscriber(maintenance="024", reason="14", categories=cats)])
        (hit,) = [h for h in member_rules(event, NO_FACTS, DEFAULTS) if h.rule == COMBO]
        (loop,) = event.reporting_category_loops
        assert (hit.segment_id, hit.segment_position) == ("N1", loop.segment_position)
        assert "ADDL MAINT REASON 'PASSIVE'" in hit.message
        # 021/41 is in the table with PASSIVE values only: without one, the AMRC is what is
        # wrong (said at the INS: there is no N1 to point at); 024/AI is in it with none.
        (hit,) = self.hits(maintenance="021", reason="41")
        assert "ADDL MAINT REASON (none)" in hit.message and hit.segment_id == "INS"
        assert [h.segment_id for h in self.hits(maintenance="024", reason="AI")] == ["INS"]

    def test_a_partner_list_replaces_the_cms_table(self) -> None:
        listed = json.dumps(
            {COMBINATIONS_KEY: ["021/AI  # our exchange's adds", "001/*", "024/*/*"]}
        )
        config = RuleConfig.parse(listed, "")
        assert not config.combinations.default
        assert self.hits(config, maintenance="021", reason="AI") == []
        assert self.hits(config, maintenance="001", reason="99") == []
        cats = {"ADDL MAINT REASON": ("17", "ANYTHING")}
        assert self.hits(config, maintenance="024", reason="14", categories=cats) == []
        assert len(self.hits(config, maintenance="021", reason="EC")) == 1  # CMS's, not theirs
        cats = {"ADDL MAINT REASON": ("17", "NEW")}
        assert len(self.hits(config, maintenance="001", reason="25", categories=cats)) == 1

    def test_severity_is_the_partners_and_ignore_skips_it(self) -> None:
        assert RULES[COMBO].default is Severity.WARN
        ignore = RuleConfig.parse(json.dumps({COMBO: "ignore"}), "")
        assert self.hits(ignore, maintenance="021", reason="AI") == []
        reject = RuleConfig.parse(json.dumps({COMBO: "reject"}), "")
        assert rejecting(self.hits(reject, maintenance="021", reason="AI"), reject)

    @pytest.mark.parametrize(
        ("entry", "error"),
        [
            ("021", "expected INS03/INS04"),
            ("21/EC", "INS03 must be"),
            ("021/E", "INS04 must be"),
            ("021/NULL", "INS04 must be"),  # the guide's NULL is written as nothing: 021//
            ("021/EC/" + "X" * 81, "longer than"),
        ],
    )
    def test_bad_entries_are_refused_by_name(self, entry: str, error: str) -> None:
        with pytest.raises(ValueError, match=error):
            RuleConfig.parse(json.dumps({COMBINATIONS_KEY: [entry]}), "")

    def test_the_stored_setting_must_be_a_list_of_strings(self) -> None:
        with pytest.raises(ValueError, match="list"):
            RuleConfig.parse(json.dumps({COMBINATIONS_KEY: "021/EC"}), "")
        assert Combinations.parse(["021/EC", "021/ec", "", "# note"]).lines() == ["021/EC"]
        assert str(Combination.parse(" 024 / 07 / cancel-nle ")) == "024/07/CANCEL-NLE"
        assert str(Combination.parse("001//financial  change")) == "001//FINANCIAL CHANGE"
        # A list typed from the guide, which prints an en dash in some values
        assert str(Combination.parse("021/41/PASSIVE \u2013 B2S")) == "021/41/PASSIVE-B2S"
        assert CMS_FFE.default and "021/41/PASSIVE" in CMS_FFE.lines()


def test_unknown_policy_on_a_known_member() -> None:
    amrc = {"ADDL MAINT REASON": ("17", "DEMOGRAPHIC CHANGE")}
    (event,) = events(
        [subscriber(maintenance="001", reason="25", categories=amrc, coverages=[Cov(policy="999")])]
    )
    known = MemberFacts(
        ledger=LedgerView(active=True, policy_numbers=frozenset({"31200457"})),
        subscriber_present=True,
        seen_in_file=False,
        family_premium=None,
    )
    hits = member_rules(event, known, DEFAULTS)
    assert [h.rule for h in hits] == ["unknown-member"] and "policy 999" in hits[0].message


def test_family_premium_sums_what_is_sent() -> None:
    fam = events(
        [
            subscriber(categories={"PRE AMT 1": ("9X", "10.10")}),
            dependent("0001", "0002", "KIM", "512849302", categories={"PRE AMT 1": ("9X", "0.2")}),
            dependent("0001", "0003", "LEE", "512849303"),
        ]
    )
    assert family_premium(fam) == Decimal("10.30")
    assert family_premium(fam[2:]) is None


def same_person(event: MemberEvent) -> MemberRec:
    """The ledger's member as the event names it: who the member is matches."""
    assert event.name is not None
    return MemberRec(
        id=1,
        partner_id=1,
        member_key="x",
        relationship_code="18",
        last_name=event.name.last,
        first_name=event.name.first,
        id_qualifier=event.name.id_qualifier,
        id_value=event.name.id,
        birth_date=event.birth_date,
        gender=event.gender,
        residence=event.residence.model_dump_json() if event.residence else "",
    )


def test_compare_reports_each_field_once() -> None:
    (event,) = events(
        [
            subscriber(
                maintenance="030",
                relationship="18",
                coverages=[Cov(maintenance="030", begin="20270301", plan="OTHERPLAN0000001")],
                categories={"PRE AMT 1": ("9X", "300"), "APTC AMT": ("9V", "100.00")},
            )
        ]
    )
    assert is_audit(event)
    member = same_person(event)  # only the coverage's fields differ
    terms = {"plan_id": "48213VA004000701", "coverage_level": "FAM", "premium": "300.00"}
    terms["aptc"] = "90.00"
    enrollment = Enrollment(
        line="HLT",
        policy=event.coverages[0].group_or_policy_number or "",
        plan_year=2027,
        state=State.INITIAL,
        begin=dt.date(2027, 1, 1),
        end=dt.date(2027, 12, 31),
        periods=[Period(dt.date(2027, 1, 1), {k: terms.get(k, "") for k in TERMS})],
    )
    assert compare(event, member, [enrollment]) == [
        ("HLT benefit_begin", "2027-03-01", "2027-01-01"),
        ("HLT plan", "OTHERPLAN0000001", "48213VA004000701"),
        ("HLT aptc", "100.00", "90.00"),
    ]


TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="*~:^\r\n"),
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ssn=TEXT,
    zip_code=TEXT,
    phone=TEXT,
    begin=TEXT,
    end=TEXT,
    amounts=st.lists(TEXT, min_size=4, max_size=4),
    maintenance=st.sampled_from(["001", "021", "024", "025", "030", "X", ""]),
    relationship=st.sampled_from(["18", "01", "19", "", "ZZ"]),
    facts=st.builds(
        MemberFacts,
        ledger=st.none()
        | st.builds(LedgerView, active=st.booleans(), policy_numbers=st.just(frozenset({"1"}))),
        subscriber_present=st.booleans(),
        seen_in_file=st.booleans(),
        family_premium=st.none() | st.decimals(allow_nan=False, allow_infinity=False, places=2),
    ),
)
def test_arbitrary_member_data_never_makes_a_rule_raise(
    ssn, zip_code, phone, begin, end, amounts, maintenance, relationship, facts
) -> None:
    member = subscriber(
        ssn=ssn,
        zip=zip_code,
        phone=phone,
        maintenance=maintenance,
        relationship=relationship,
        coverages=[Cov(maintenance=maintenance, begin=begin or None, end=end or None)],
        categories={
            name: ("9X", value or "0")
            for name, value in zip(
                ("APTC AMT", "PRE AMT 1", "PRE AMT TOT", "TOT RES AMT"), amounts, strict=True
            )
        },
    )
    for event in events([member]):
        hits = member_rules(event, facts, RuleConfig(severities={}, plan_ids=frozenset({"P"})))
        assert all(h.rule in RULES and h.message for h in hits)
        assert member_key(event) == "0001" and isinstance(policy_key(event), str)


class TestAmounts:
    @pytest.mark.parametrize(
        ("text", "value"),
        [("425.50", Decimal("425.50")), ("-12", Decimal(-12)), (".5", Decimal("0.5")),
         ("+7.", Decimal(7)), (" 3.25 ", Decimal("3.25")), ("9" * 18, Decimal("9" * 18))],
    )  # fmt: skip
    def test_x12_decimals_are_amounts(self, text: str, value: Decimal) -> None:
        assert amount(text) == value

    @pytest.mark.parametrize(
        "text", ["9E+999999999", "1e5", "NaN", "Infinity", "1,000.00", "", "12.5.1", "9" * 19,
                 "1.1234567", "٣", "$5"],
    )  # fmt: skip
    def test_anything_else_is_not_an_amount(self, text: str) -> None:
        assert amount(text) is None

    @given(st.lists(st.text(max_size=40), max_size=200))
    def test_any_text_sums_without_raising(self, texts: list[str]) -> None:
        # Decimal's context never overflows on what amount() accepts, however many.
        total = sum((a for t in texts if (a := amount(t)) is not None), Decimal(0))
        assert total.is_finite()

    def test_an_unreadable_2750_amount_is_a_reject_that_says_which(self) -> None:
        member = subscriber(categories={"PRE AMT 1": ("9X", "9E+999999999")})
        (event,) = events([member])
        hits = member_rules(event, NO_FACTS, DEFAULTS)
        (hit,) = [h for h in hits if h.rule == "unreadable-amount"]
        assert "PRE AMT 1" in hit.message and hit.segment_id == "N1"
        assert DEFAULTS.severity("unreadable-amount") is Severity.REJECT

    def test_a_member_the_rules_cannot_evaluate_is_always_rejected(self) -> None:
        softened = RuleConfig.parse('{"member-twice-in-file": "ignore"}', "")
        (event,) = events([subscriber()])
        hit = unevaluable(event)
        assert hit.rule == "member-unevaluable" and hit.rule in RULES
        assert softened.severity(hit.rule) is Severity.REJECT
        assert RuleConfig({"member-unevaluable": Severity.IGNORE}).severity(hit.rule) is (
            Severity.REJECT
        )


def test_a_2750_range_that_ends_before_it_begins_is_end_before_begin() -> None:
    (event,) = events([subscriber(categories={"APTC AMT": ("9V", "100.00")})])
    reversed_range = subscriber(
        categories={"APTC AMT": ("9V", "100.00")}, category_period="20271231-20270101"
    )
    (backwards,) = events([reversed_range])
    assert [
        h for h in member_rules(event, NO_FACTS, DEFAULTS) if h.rule == "end-before-begin"
    ] == []
    (hit,) = [
        h for h in member_rules(backwards, NO_FACTS, DEFAULTS) if h.rule == "end-before-begin"
    ]
    (loop,) = backwards.reporting_category_loops
    assert (hit.segment_id, hit.segment_position) == ("N1", loop.segment_position)
    assert "APTC AMT" in hit.message and "20271231-20270101" in hit.message


def test_premium_gap_only_where_the_ranges_stop_before_the_coverage() -> None:
    """premium-gap: PRE AMT 1 only as RD8 ranges, the last ending before the priced coverage
    (DTP*349, else December 31). A D8 date runs until the next one; no gap."""
    pre = {"PRE AMT 1": ("9X", "300.00")}

    def gap(period: str, **kw: object) -> list[str]:
        (event,) = events([subscriber(categories=pre, category_period=period, **kw)])
        return [
            h.message for h in member_rules(event, NO_FACTS, DEFAULTS) if h.rule == "premium-gap"
        ]

    [message] = gap("20270101-20270331")
    assert "runs to 2027-03-31" in message and "2027-12-31: 275 days" in message
    assert gap("20270101-20271231") == []
    assert gap("20270101") == []  # D8: from that day on
    assert gap("20270101-20270630", coverages=[Cov(end="20270630")]) == []
    assert gap("20270101-20270630", coverages=[Cov(end=None)]) != []  # to the plan year's end
    assert gap("20270101-20270331", coverages=[Cov(maintenance="024", end="20270331")]) == []
    # Dental and health: the premium is health's (HLT ends in March here: no gap).
    both = [Cov(line="DEN"), Cov(line="HLT", end="20270331")]
    assert gap("20270101-20270331", coverages=both) == []
    # Two ranges: the later one's end is what counts.
    (event,) = events([subscriber(categories=pre, category_period="20270101-20270331")])
    later = event.reporting_category_loops[0].model_copy(
        update={
            "period_begin": dt.date(2027, 4, 1),
            "period_end": dt.date(2027, 12, 31),
            "period_raw": "20270401-20271231",
        }
    )
    both_ranges = event.model_copy(
        update={"reporting_category_loops": (*event.reporting_category_loops, later)}
    )
    assert not [h for h in member_rules(both_ranges, NO_FACTS, DEFAULTS) if h.rule == "premium-gap"]


def test_a_cancels_end_the_day_before_its_begin_is_not_end_before_begin() -> None:
    """CMS cancels with the end on the begin date or the day before (X12-REFERENCE 5); a day
    earlier still, or an addition ending before it begins, is end-before-begin."""

    def hits(maintenance: str, begin: str, end: str) -> list[str]:
        cov = Cov(maintenance=maintenance, begin=begin, end=end)
        (event,) = events([subscriber(maintenance=maintenance, reason="14", coverages=[cov])])
        return [
            h.rule for h in member_rules(event, NO_FACTS, DEFAULTS) if h.rule == "end-before-begin"
        ]

    assert hits("024", "20270201", "20270131") == []
    assert hits("024", "20270201", "20270201") == []
    assert hits("024", "20270201", "20270130") == ["end-before-begin"]
    assert hits("021", "20270201", "20270131") == ["end-before-begin"]


def test_an_audit_compares_each_2750_range_paid_through_and_rating_area() -> None:
    """An audit listing APTC 400.00 to May 14 and 450.00 from May 15 matches a ledger holding
    just that (the first loop of a name was compared with the whole year); the paid-through
    date (DTP*543) and the rating area are compared too; the audit's date is its header
    DTP*007 (file effective date), not BGN03."""
    from tests.gateway.test_lifecycle import _with_ranges

    cov = Cov(maintenance="030", plan="48213VA004000701", paid_through="20270430")
    (sent,) = events([subscriber(maintenance="030", coverages=[cov],
                                 categories={"APTC AMT": ("9V", "0")})])  # fmt: skip
    member = same_person(sent)
    base = {"plan_id": "48213VA004000701", "coverage_level": "FAM", "premium": "500.00",
            "rating_area": "R-VA010"}  # fmt: skip
    enrollment = Enrollment(
        line="HLT",
        policy=sent.coverages[0].group_or_policy_number or "",
        plan_year=2027,
        state=State.EFFECTUATED,
        begin=dt.date(2027, 1, 1),
        end=dt.date(2027, 12, 31),
        paid_through=dt.date(2027, 4, 30),
        periods=[
            Period(dt.date(2027, 1, 1), {k: {**base, "aptc": "400.00"}.get(k, "") for k in TERMS}),
            Period(dt.date(2027, 5, 15), {k: {**base, "aptc": "450.00"}.get(k, "") for k in TERMS}),
        ],
    )
    agree = _with_ranges(
        sent,
        ("APTC AMT", "400.00", "20270101-20270514"),
        ("APTC AMT", "450.00", "20270515-20271231"),
        ("PRE AMT 1", "500.00", "20270101-20271231"),
        ("RATING AREA", "R-VA010", "20270101-20271231"),
    )
    assert compare(agree, member, [enrollment]) == []
    disagree = _with_ranges(
        sent,
        ("APTC AMT", "400.00", "20270101-20270531"),  # the ledger has 450.00 from May 15
        ("APTC AMT", "450.00", "20270601-20271231"),
        ("RATING AREA", "R-VA011", "20270101-20271231"),
    )
    disagree = disagree.model_copy(
        update={"coverages": (disagree.coverages[0].model_copy(
            update={"last_premium_paid": dt.date(2027, 5, 31)}),)}
    )  # fmt: skip
    assert compare(disagree, member, [enrollment]) == [
        ("HLT paid_through", "2027-05-31", "2027-04-30"),
        ("HLT aptc on 2027-05-15", "400.00", "450.00"),
        ("HLT rating_area", "R-VA011", "R-VA010"),
    ]
    # A loop without a range is judged on the audit's date: the header's DTP*007.
    undated = agree.model_copy(
        update={
            "reporting_category_loops": tuple(
                loop.model_copy(update={"period_begin": None, "period_end": None})
                for loop in agree.reporting_category_loops[:1]
            )
        }
    )
    as_of = {"creation_date": dt.date(2027, 5, 16), "file_effective_date": dt.date(2027, 4, 30)}
    in_april = undated.model_copy(update={"header": undated.header.model_copy(update=as_of)})
    assert compare(in_april, member, [enrollment]) == []
    in_may = undated.model_copy(
        update={"header": undated.header.model_copy(update={**as_of, "file_effective_date": None})}
    )
    assert compare(in_may, member, [enrollment]) == [("HLT aptc", "400.00", "450.00")]

    # 450.00 for the summer only: a whole-year 400.00 (RD8) differs in its middle, and so does
    # a D8 400.00 from January, which holds until the audit's date (October 1).
    summer = dataclasses.replace(
        enrollment,
        periods=[
            *enrollment.periods,
            Period(dt.date(2027, 9, 1), {k: {**base, "aptc": "400.00"}.get(k, "") for k in TERMS}),
        ],
    )
    year = _with_ranges(sent, ("APTC AMT", "400.00", "20270101-20271231"))
    assert compare(year, member, [summer]) == [("HLT aptc on 2027-05-15", "400.00", "450.00")]
    d8 = year.model_copy(
        update={
            "reporting_category_loops": tuple(
                loop.model_copy(update={"period_end": loop.period_begin, "period_raw": "20270101"})
                for loop in year.reporting_category_loops
            ),
            "header": year.header.model_copy(update={"file_effective_date": dt.date(2027, 10, 1)}),
        }
    )
    assert compare(d8, member, [summer]) == [("HLT aptc on 2027-05-15", "400.00", "450.00")]
    # An enrollment in force on the audit's date that the audit leaves out is reported.
    dental = Enrollment(line="DEN", policy="D1", plan_year=2027, state=State.INITIAL,
                        begin=dt.date(2027, 1, 1), end=dt.date(2027, 12, 31))  # fmt: skip
    assert compare(agree, member, [enrollment, dental]) == [
        ("DEN policy D1", "(not in the audit)", "initial 2027-01-01 .. 2027-12-31")
    ]


@pytest.mark.parametrize(
    ("responsible", "fires"),
    [("0.00", False), ("-37.42", False), ("10.00", True)],
)
def test_responsible_amount_with_aptc_above_the_premium(responsible: str, fires: bool) -> None:
    """APTC 450.00 on a 412.58 premium: the enrollee owes 0.00 (26 USC 36B(b)(2)), which
    exchanges send; it was refused, and only the negative difference passed."""
    cats = {"PRE AMT 1": ("9X", "412.58"), "PRE AMT TOT": ("9X", "412.58"),
            "APTC AMT": ("9V", "450.00"), "TOT RES AMT": ("9V", responsible)}  # fmt: skip
    (event,) = events([subscriber(categories=cats)])
    facts = MemberFacts(
        ledger=None, subscriber_present=True, seen_in_file=False, family_premium=Decimal("412.58")
    )
    rules = [h.rule for h in member_rules(event, facts, DEFAULTS)]
    assert ("responsible-amount" in rules) is fires


def test_a_sets_plan_year_is_its_groups_by_ref38_else_by_sponsor() -> None:
    """A broker's groups (`--group-plan-year`): the set's REF*38 master policy number names
    its group; without one listed, its N1*P5 sponsor id (N104); else the partner's."""
    config = RuleConfig.parse(
        json.dumps({"@plan-year-start": 7,
                    "@plan-year-start-by-group": {"PDL7700": 1, "261594837": 10}}),
        "",
    )  # fmt: skip
    one = [Member(subscriber_id="1", member_id="1", last="ROE", first="A", ssn="512845001")]

    def start_month(**kw: object) -> int:
        (event,) = extract_members([interchange(one, control=1, **kw)])  # type: ignore[arg-type]
        return config.plan_year_for(event.header).start_month

    assert start_month(master_policy="PDL7700") == 1
    assert start_month(master_policy="OTHER") == 10  # the sponsor's FEIN (N1*P5*…*FI*261594837)
    assert start_month() == 10
    alone = RuleConfig.parse(json.dumps({"@plan-year-start": 7}), "")
    (event,) = extract_members([interchange(one, control=1, master_policy="PDL7700")])
    assert alone.plan_year_for(event.header).start_month == 7
    with pytest.raises(ValueError, match="map group ids to months"):
        RuleConfig.parse(json.dumps({"@plan-year-start-by-group": {"X": 13}}), "")
