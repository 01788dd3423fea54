"""A claimed receipt as the worker carries it through validation and acknowledgement, and how
that work can stop short."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway.db.models import Receipt


class Abandoned(Exception):
    """Shutdown asked the worker to stop mid-file; the lease is released, nothing is stored."""


class LeaseLost(Exception):
    """Another worker took the receipt over (our lease expired); our results are discarded."""


class DuplicateRace(Exception):
    """A concurrent file from the same sender registered the same ISA13 first; validate again."""


@dataclass(frozen=True, slots=True)
class Job:
    receipt_id: str
    partner_id: int
    partner_name: str
    expected_sender: tuple[str, str]
    blob_path: str
    filename: str | None
    received_at: dt.datetime


def job_of(receipt: Receipt) -> Job:
    p = receipt.partner
    return Job(
        receipt_id=receipt.id,
        partner_id=p.id,
        partner_name=p.name,
        expected_sender=(p.isa_qualifier, p.isa_id),
        blob_path=receipt.blob_path,
        filename=receipt.filename,
        received_at=receipt.received_at,
    )
