"""Pure; no I/O. Who a member is, which enrollment group it belongs to, where it came from, and
in which order a sender's files are meant to apply."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator

from gateway.enrollment.codes import Maintenance
from gateway.enrollment.events import MemberEvent
from gateway.enrollment.extract import SetKey
from parsers.envelope import read_events
from parsers.events import InterchangeStart, Segment

_RANK = re.compile(r"(?:^|[._\-])(AR|RT)(?:[._\-]|$)")
_NOT_DIGITS = re.compile(r"\D")
AUDIT_ACTIONS = ("4", "RX")  # BGN08: full-file audit, replace


def order_key(filename: str | None, head: Iterator[bytes] | list[bytes]) -> str:
    """The sender's intended order: CMS annual renewal (AR) files, then re-enrollment (RT),
    then daily files (from the file name); then the first BGN03/BGN04; then ISA13."""
    name = (filename or "").rsplit("/", 1)[-1].upper()
    match = _RANK.search(name)
    rank = {"AR": "0", "RT": "1"}.get(match.group(1) if match else "", "2")
    isa13 = bgn_date = bgn_time = ""
    # An order key never fails a file: an unreadable head just sorts last.
    with contextlib.suppress(Exception):
        for event in read_events(head):
            if isinstance(event, InterchangeStart) and not isa13:
                isa13 = event.isa.element(13).strip()
            elif isinstance(event, Segment) and event.tag == "BGN":
                bgn_date, bgn_time = event.element(3), event.element(4)
                break
    return (
        rank
        + _NOT_DIGITS.sub("", bgn_date)[:8].rjust(8, "9")
        + _NOT_DIGITS.sub("", bgn_time)[:8].ljust(8, "0")
        + _NOT_DIGITS.sub("", isa13)[:9].rjust(9, "0")
    )


def member_key(event: MemberEvent) -> str:
    """REF*17 (the exchange-assigned member id); a subscriber without one is its REF*0F; a
    dependent without one is its subscriber's REF*0F with its NM109, else its name and DOB."""
    if event.client_reporting_category:
        return event.client_reporting_category[:120]
    subscriber = event.subscriber_number or ""
    if event.subscriber and subscriber:
        return subscriber[:120]
    name = event.name
    if name is not None and name.id:
        who = f"{name.id_qualifier}{name.id}"
    else:
        last = name.last if name else ""
        first = name.first if name else ""
        who = f"{last}|{first}|{event.birth_date_raw or ''}"
    return f"{subscriber}/{who}"[:120]


def policy_key(event: MemberEvent) -> str:
    """The enrollment group: 2300 REF*1L, else 2000 REF*1L, else the subscriber's REF*0F."""
    for cov in event.coverages:
        if cov.group_or_policy_number:
            return cov.group_or_policy_number[:120]
    return (event.group_or_policy_number or event.subscriber_number or "")[:120]


def is_audit(event: MemberEvent) -> bool:
    """A full-file audit (BGN08 4) or replace file (BGN08 RX), or an INS03 030 member."""
    return event.header.action in AUDIT_ACTIONS or event.maintenance_type.code == Maintenance.AUDIT


def set_key(event: MemberEvent) -> SetKey:
    """(interchange, group, transaction set) ordinals of the member's set in its file."""
    s = event.source
    return (s.envelope, s.group, s.transaction_set)


def idempotency_key(receipt_sha256: str, partner_id: int, event: MemberEvent) -> str:
    """Stable across retries, restarts and reprocessing: the core system can dedupe on it."""
    s = event.source
    text = f"{partner_id}|{receipt_sha256}|{s.envelope}|{s.group}|{s.transaction_set}|"
    return hashlib.sha256(f"{text}{s.segment_position}".encode()).hexdigest()
