"""gateway.gate: the one decision of which members may reach the insurer."""

from __future__ import annotations

import itertools

import pytest

from gateway.gate import Disposition, SenderFacts, SetFacts, decide, interchange_acknowledged

PARTNER = SenderFacts("ZZ", "VA0FFM")
CLEAN = SetFacts(
    ta1_code="A",
    ta1_note="000",
    usage="P",
    sender=("ZZ", "VA0FFM"),
    group_ack="A",
    set_ack="A",
    st01="834",
)


def facts(**kw: object) -> SetFacts:
    values = {f: getattr(CLEAN, f) for f in CLEAN.__slots__}  # type: ignore[attr-defined]
    values.update(kw)
    return SetFacts(**values)  # type: ignore[arg-type]


class TestDecide:
    def test_an_accepted_production_834_from_its_sender_is_applied(self) -> None:
        decision = decide(CLEAN, PARTNER)
        assert decision.disposition is Disposition.APPLY
        assert decision.reaches_insurer and decision.reason == ""

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"ta1_code": "R", "ta1_note": "006"}, "interchange rejected (TA1 006)"),
            ({"ta1_code": "R", "ta1_note": "025"}, "interchange rejected (TA1 025)"),
            ({"sender": ("ZZ", "MD0SBE")}, "not from the authenticated sender"),
            ({"sender": ("01", "VA0FFM")}, "not from the authenticated sender"),
            ({"group_ack": "R"}, "functional group rejected (AK901 R)"),
            ({"set_ack": "R"}, "transaction set rejected (IK501 R)"),
            ({"st01": "835"}, "not an 834"),
            ({"usage": "T"}, "test interchange (ISA15 T)"),
            ({"usage": "I"}, "test interchange (ISA15 I)"),
            ({"usage": ""}, "ISA15 none"),
        ],
    )
    def test_everything_else_is_not_applied_with_its_reason(self, change, reason) -> None:
        decision = decide(facts(**change), PARTNER)
        assert decision.disposition is Disposition.NOT_APPLIED
        assert not decision.reaches_insurer
        assert reason in decision.reason

    @pytest.mark.parametrize(("group", "tset"), [("E", "E"), ("P", "A"), ("A", "E")])
    def test_accepted_with_errors_and_partial_groups_pass(self, group, tset) -> None:
        assert decide(facts(group_ack=group, set_ack=tset), PARTNER).reaches_insurer

    def test_padding_of_the_sender_id_does_not_matter(self) -> None:
        assert decide(
            facts(sender=("ZZ", "VA0FFM   ")), SenderFacts("ZZ", "VA0FFM")
        ).reaches_insurer

    def test_an_onboarding_senders_test_data_gets_a_dry_run_and_nothing_else(self) -> None:
        onboarding = SenderFacts("ZZ", "VA0FFM", onboarding=True)
        assert decide(facts(usage="T"), onboarding).disposition is Disposition.DRY_RUN
        # Rejected test data is not dry-run; production data of an onboarding sender applies.
        assert decide(facts(usage="T", set_ack="R"), onboarding).disposition is (
            Disposition.NOT_APPLIED
        )
        assert decide(CLEAN, onboarding).disposition is Disposition.APPLY

    def test_only_one_combination_of_every_fact_reaches_the_insurer(self) -> None:
        """Exhaustive over the codes each fact can take: APPLY exactly when all pass."""
        for ta1, usage, sender, group, tset, st01, onboarding in itertools.product(
            ("A", "E", "R"),
            ("P", "T", "I"),
            (("ZZ", "VA0FFM"), ("ZZ", "OTHER")),
            ("A", "E", "P", "R"),
            ("A", "E", "R"),
            ("834", "835"),
            (False, True),
        ):
            f = facts(
                ta1_code=ta1, usage=usage, sender=sender, group_ack=group, set_ack=tset, st01=st01
            )
            decision = decide(f, SenderFacts("ZZ", "VA0FFM", onboarding))
            passes = (
                ta1 != "R"
                and sender == ("ZZ", "VA0FFM")
                and group != "R"
                and tset != "R"
                and st01 == "834"
            )
            assert decision.reaches_insurer == (passes and usage == "P"), f
            dry = passes and usage == "T" and onboarding
            assert (decision.disposition is Disposition.DRY_RUN) == dry, f


def test_a_ta1_rejected_interchange_has_no_999_answer() -> None:
    assert interchange_acknowledged("A") and interchange_acknowledged("E")
    assert not interchange_acknowledged("R")
