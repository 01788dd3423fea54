"""The gate: which members may reach the insurer. Pure; no I/O.

One decision, made here and nowhere else, for every transaction set of every received file:
its members reach the enrollment ledger and the core system only when the set is an 834
accepted by its 999 (IK501 A or E), in a functional group the 999 accepted (AK901 A, E or P),
in an interchange no TA1 rejected, sent by the partner who authenticated the upload (ISA05/ISA06
are theirs), and marked as production data (ISA15 P). Everything else is validated and
acknowledged as usual and its members are recorded as *not applied*, with the reason.

A test interchange (ISA15 T) that would otherwise pass goes to a dry run when its sender is
onboarding: the business rules say what they *would* do, stored apart, never applied and
never delivered.

The worker records the decision on each transaction set as the 999 is stored
(`transaction_sets.gate`, `gate_reason`); the ledger, the core outbox, the 824, the partner
API, the dashboard, the metrics and `edi834 ledger check` read it from there (or call `decide`
on the stored facts), so no stage re-derives it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ACCEPTED_SET = frozenset({"A", "E"})  # IK501: accepted, accepted with errors
ACCEPTED_GROUP = frozenset({"A", "E", "P"})  # AK901: accepted, with errors, partially
PRODUCTION = "P"  # ISA15
TEST = "T"


class Disposition(enum.StrEnum):
    """What becomes of a transaction set's members."""

    APPLY = "apply"  # production: the ledger and the core system
    DRY_RUN = "dry_run"  # an onboarding sender's test data: rules run, nothing applied or sent
    NOT_APPLIED = "not_applied"  # validated and acknowledged; recorded, never applied


@dataclass(frozen=True, slots=True)
class Decision:
    disposition: Disposition
    reason: str = ""  # plain English; empty when applied

    @property
    def reaches_insurer(self) -> bool:
        return self.disposition is Disposition.APPLY


APPLY = Decision(Disposition.APPLY)


@dataclass(frozen=True, slots=True)
class SetFacts:
    """What the gate needs to know of one transaction set, as validated and stored."""

    ta1_code: str  # A | E | R (R: a TA1 rejected the interchange)
    ta1_note: str  # TA105
    usage: str  # ISA15
    sender: tuple[str, str]  # ISA05, ISA06 (unpadded)
    group_ack: str  # AK901
    set_ack: str  # IK501
    st01: str


@dataclass(frozen=True, slots=True)
class SenderFacts:
    """The partner who authenticated the upload."""

    isa_qualifier: str
    isa_id: str
    onboarding: bool = False


def decide(facts: SetFacts, sender: SenderFacts) -> Decision:
    """The gate. Reasons are checked outermost first: the interchange, then who sent it, the
    group, the set, and last whether it is production data."""
    if facts.ta1_code not in ("A", "E"):
        return _stop(f"interchange rejected (TA1 {facts.ta1_note or facts.ta1_code})")
    qualifier, isa_id = facts.sender
    if (qualifier.strip(), isa_id.strip()) != (sender.isa_qualifier.strip(), sender.isa_id.strip()):
        return _stop("interchange not from the authenticated sender (ISA05/ISA06)")
    if facts.group_ack not in ACCEPTED_GROUP:
        return _stop(f"functional group rejected (AK901 {facts.group_ack or 'none'})")
    if facts.st01 != "834":
        return _stop(f"not an 834 transaction set (ST01 {facts.st01})")
    if facts.set_ack not in ACCEPTED_SET:
        return _stop(f"transaction set rejected (IK501 {facts.set_ack or 'none'})")
    if facts.usage != PRODUCTION:
        if facts.usage == TEST and sender.onboarding:
            return Decision(Disposition.DRY_RUN, "test interchange (ISA15 T): dry run only")
        return _stop(f"test interchange (ISA15 {facts.usage or 'none'})")
    return APPLY


def _stop(reason: str) -> Decision:
    return Decision(Disposition.NOT_APPLIED, reason)


def interchange_acknowledged(ta1_code: str) -> bool:
    """Groups and sets of an interchange a TA1 rejected were never acknowledged by a 999."""
    return ta1_code != "R"


__all__ = [
    "APPLY",
    "Decision",
    "Disposition",
    "SenderFacts",
    "SetFacts",
    "decide",
    "interchange_acknowledged",
]
