"""Pure. The 834's codes the gateway acts on, one spelling each: maintenance types (INS03 / HD01),
relationships (INS02), and the statuses the ledger keeps. Shared by the extractor, the business
rules, the ledger and the dashboard."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.enrollment.events import Coverage


class Maintenance(enum.StrEnum):
    """X220 element 875, Maintenance Type Code: INS03 and HD01. 002, 026 and 032 are HD01 only."""

    CHANGE = "001"
    DELETE = "002"
    ADDITION = "021"
    TERMINATION = "024"  # cancellation or termination
    REINSTATEMENT = "025"
    CORRECTION = "026"
    AUDIT = "030"  # audit or compare
    NOT_APPLICABLE = "032"  # employee information not applicable


MAINTENANCE_NAMES: dict[str, str] = {
    Maintenance.CHANGE: "change",
    Maintenance.DELETE: "delete",
    Maintenance.ADDITION: "addition",
    Maintenance.TERMINATION: "cancellation or termination",
    Maintenance.REINSTATEMENT: "reinstatement",
    Maintenance.CORRECTION: "correction",
    Maintenance.AUDIT: "audit or compare",
    Maintenance.NOT_APPLICABLE: "employee information not applicable",
}

ACTIVATING = frozenset({Maintenance.ADDITION, Maintenance.REINSTATEMENT})
"""INS03 codes after which a member (or an HD01 after which a coverage) is in force."""

SELF = "18"  # INS02 for the subscriber

# X220 INS02 (element 1069, Individual Relationship Code), as the 834 allows it.
RELATIONSHIP_NAMES: dict[str, str] = {
    "01": "spouse",
    "03": "father or mother",
    "04": "grandfather or grandmother",
    "05": "grandson or granddaughter",
    "06": "uncle or aunt",
    "07": "nephew or niece",
    "08": "cousin",
    "09": "adopted child",
    "10": "foster child",
    "11": "son-in-law or daughter-in-law",
    "12": "brother-in-law or sister-in-law",
    "13": "mother-in-law or father-in-law",
    "14": "brother or sister",
    "15": "ward",
    "16": "stepparent",
    "17": "stepson or stepdaughter",
    "18": "self",
    "19": "child",
    "23": "sponsored dependent",
    "24": "dependent of a minor dependent",
    "25": "ex-spouse",
    "26": "guardian",
    "31": "court appointed guardian",
    "38": "collateral dependent",
    "53": "life partner",
    "60": "annuitant",
    "D2": "trustee",
    "G8": "other relationship",
    "G9": "other relative",
}


class MemberStatus(enum.StrEnum):
    ACTIVE = "active"
    TERMINATED = "terminated"


class CoverageStatus(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


def priced_line(lines: Iterable[str]) -> str | None:
    """The insurance line a member's 2750 amounts (PRE AMT 1, APTC AMT, CSR AMT, RATING AREA)
    belong to: one 2700 loop per member, however many 2300 loops, so one line — health (HLT)
    when the member has it, else the first in code order (DEN before VIS), whatever order a
    file lists them in: a later file that sent VIS first gave VIS the premium DEN still held.
    Copying them to each line counted a family's premium and APTC once per line."""
    return min(lines, key=lambda line: (line != "HLT", line), default=None)


def priced_coverage(coverages: Sequence[Coverage]) -> Coverage | None:
    """The 2300 loop of the priced line (`priced_line`): the first one sent on it."""
    line = priced_line(c.insurance_line[:3] for c in coverages)
    return next((c for c in coverages if c.insurance_line[:3] == line), None)
