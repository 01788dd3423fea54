"""The enrollment ledger: typed member events extracted from accepted 834 transaction sets."""

from gateway.enrollment.events import (
    Address,
    Code,
    Coverage,
    MemberEvent,
    MemberName,
    Party,
    RaceEthnicity,
    ReportingCategory,
    Source,
    TransactionSetHeader,
)
from gateway.enrollment.extract import extract_members

__all__ = [
    "Address",
    "Code",
    "Coverage",
    "MemberEvent",
    "MemberName",
    "Party",
    "RaceEthnicity",
    "ReportingCategory",
    "Source",
    "TransactionSetHeader",
    "extract_members",
]
