"""Pure; no I/O. Who a member is, which enrollment group it belongs to, where it came from, and
in which order a sender's files are meant to apply."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gateway.enrollment.codes import Maintenance
from gateway.enrollment.events import MemberEvent
from gateway.enrollment.extract import SetKey
from parsers.envelope import read_events
from parsers.events import InterchangeStart, Segment

_NOT_DIGITS = re.compile(r"\D")
AUDIT_ACTIONS = ("4", "RX")  # BGN08: full-file audit, replace

# CMS outbound file names (X12-REFERENCE §5, companion guide v7.2; Hub EDI File Naming
# Conventions): SENDER.RECEIVER.FUNCTION.Dyymmdd.Thhmmssmmm.P|T, FUNCTION I834 (daily), I834RT
# (retransmission), I834AR (auto re-enrollment). Real senders loosen it: any case, `_` or `-`
# for `.`, `834AR` or `I834.AR` / `I834_AR`, an 8-digit year, a 6-digit time, an extension.
_SEP = r"[._\-\s]"
_FUNCTION = re.compile(rf"(?:^|{_SEP})(?:I834{_SEP}?(AR|RT)?|834{_SEP}?(AR|RT))(?={_SEP}|$)")
_BARE_RANK = re.compile(rf"(?:^|{_SEP})(AR|RT)(?={_SEP}|$)")
_NAME_DATE = re.compile(rf"(?:^|{_SEP})D((?:20)?\d{{6}})(?={_SEP}|$)")
_NAME_TIME = re.compile(rf"(?:^|{_SEP})T(\d{{6,9}})(?={_SEP}|$)")
_RANKS = {"AR": "0", "RT": "1", "": "2"}
"""AR (batch auto re-enrollment), then RT (retransmission), then daily: CMS's processing order."""


@dataclass(frozen=True, slots=True)
class FileName:
    """What a sender's file name says about its place in the sender's order."""

    function: str
    """"AR", "RT" or "" (daily, or a name that says nothing)."""
    cms: bool
    """The name carries a CMS function token (I834, I834AR, I834RT or their looser forms)."""
    stamp: str | None = None
    """yyyymmddhhmmssdd from the name's Dyymmdd.Thhmmssmmm, when it is a CMS name with a
    valid date (the time defaults to 00:00); BGN04's HHMMSSDD precision."""


def read_file_name(filename: str | None) -> FileName:
    """Recognise a CMS outbound name (strict or loose) in a path or bare file name. A name
    without a CMS function token still ranks by a standalone AR / RT token between separators
    (`VA0.AR.D270101.P`); anything else is a daily file with no stamp."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].upper()
    function = _FUNCTION.search(name)
    if function is None:
        bare = _BARE_RANK.search(name)
        return FileName(bare.group(1) if bare else "", cms=False)
    kind = function.group(1) or function.group(2) or ""
    return FileName(kind, cms=True, stamp=_name_stamp(name))


def _name_stamp(name: str) -> str | None:
    date = _NAME_DATE.search(name)
    if date is None:
        return None
    digits = date.group(1)
    digits = digits if len(digits) == 8 else "20" + digits
    try:
        dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None
    at = _NAME_TIME.search(name)
    clock = (at.group(1) if at else "")[:8].ljust(8, "0")
    if int(clock[:2]) > 23 or int(clock[2:4]) > 59 or int(clock[4:6]) > 59:
        clock = "00000000"  # not a time of day: the date alone
    return digits + clock


def _pieces(chunks: Iterable[bytes], size: int = 512) -> Iterator[bytes]:
    """The chunks in small pieces: the reader cuts each piece it is given into segments whole,
    and the first BGN is in the first few hundred bytes (a whole small file cost three times
    as much, issue 19)."""
    for chunk in chunks:
        for start in range(0, len(chunk), size):
            yield chunk[start : start + size]


def order_key(filename: str | None, head: Iterable[bytes]) -> str:
    """The sender's intended order: CMS auto re-enrollment (I834AR) files, then
    retransmissions (I834RT), then daily files (from the file name); within a rank, a CMS
    name's Dyymmdd.Thhmmssmmm, else the first BGN03/BGN04; then ISA13."""
    named = read_file_name(filename)
    rank = _RANKS[named.function]
    isa13 = bgn_date = bgn_time = ""
    # An order key never fails a file: an unreadable head just sorts last.
    with contextlib.suppress(Exception):
        for event in read_events(_pieces(head)):
            if isinstance(event, InterchangeStart) and not isa13:
                isa13 = event.isa.element(13).strip()
            elif isinstance(event, Segment) and event.tag == "BGN":
                bgn_date, bgn_time = event.element(3), event.element(4)
                break
    stamp = named.stamp or (
        _NOT_DIGITS.sub("", bgn_date)[:8].rjust(8, "9")
        + _NOT_DIGITS.sub("", bgn_time)[:8].ljust(8, "0")
    )
    return rank + stamp + _NOT_DIGITS.sub("", isa13)[:9].rjust(9, "0")


def member_key(event: MemberEvent, *, ref17: bool = True) -> str:
    """REF*17 (the exchange-assigned member id; `ref17` False: the partner's REF*17 is a
    client reporting category, no one's id); a subscriber without one is its REF*0F; a
    dependent without one is its subscriber's REF*0F and a digest of its NM108/NM109 (else of
    its name and DOB) — `dependent_key`: the key is shown, listed and put in addresses, so it
    never carries an SSN, a name or a birth date in clear."""
    if ref17 and event.client_reporting_category:
        return event.client_reporting_category[:120]
    subscriber = event.subscriber_number or ""
    if event.subscriber and subscriber:
        return subscriber[:120]
    name = event.name
    if name is not None and name.id:
        who = _by_id(name.id_qualifier, name.id)
    else:
        who = _by_name(name.last if name else "", name.first if name else "", event.birth_date_raw)
    return dependent_key(subscriber, who)


def _by_id(qualifier: str, value: str) -> str:
    """What a dependent's digest is of when it has an identifier (NM108/NM109)."""
    return f"{qualifier}{value}"


def _by_name(last: str, first: str, born: str | None) -> str:
    """…and when it has none: its name and DMG02 as sent."""
    return f"{last}|{first}|{born or ''}"


def keyed_by_digest(event: MemberEvent, *, ref17: bool = True) -> bool:
    """A dependent without REF*17 (or whose REF*17 is no id: `member_key`): its key is a digest
    of who it is, and a correction of who it is — an SSN sent for the first time, a name or
    birth date put right — computes another key for the same person."""
    has_id = ref17 and bool(event.client_reporting_category)
    return not (has_id or event.subscriber) and bool(event.subscriber_number)


def prior_member_keys(event: MemberEvent, *, ref17: bool = True) -> list[str]:
    """The keys a dependent without REF*17 had before the correction its 2100B (NM1*70
    Incorrect Member Name, with the incorrect DMG) sends: by the prior identifier, and by the
    prior name and birth date (a part 2100B leaves out is the current one)."""
    prior = event.prior_name
    if prior is None or not keyed_by_digest(event, ref17=ref17):
        return []
    subscriber = event.subscriber_number or ""
    keys = []
    if prior.id:
        keys.append(dependent_key(subscriber, _by_id(prior.id_qualifier, prior.id)))
    name = event.name
    last = prior.last or (name.last if name else "")
    first = prior.first or (name.first if name else "")
    born = event.prior_birth_date_raw or event.birth_date_raw
    keys.append(dependent_key(subscriber, _by_name(last, first, born)))
    return keys


def dependent_key(subscriber: str, who: str) -> str:
    """`SUBSCRIBER:` and 20 hex digits of SHA-256 over what identifies the dependent (the
    qualifier and id, or name and DOB): stable from file to file, one address segment, and
    nothing in it reads as member data. A digest without a secret is an identifier, not a
    secret: the key is still masked for viewers and kept out of the logs."""
    digest = hashlib.sha256(b"edi834 dependent\x1f" + who.encode()).hexdigest()[:20]
    return f"{subscriber[:99]}:{digest}"


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
