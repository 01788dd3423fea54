"""Pure; no I/O. Which maintenance combinations a sender uses — INS03 (maintenance type), INS04
(maintenance reason) and the 2750 ADDL MAINT REASON value — for the `maintenance-combination`
rule: the CMS federally facilitated exchange's outbound table by default, or a partner's own
list (a state exchange, a non-CMS sender).

A combination is written `INS03/INS04[/ADDL MAINT REASON]`: `021/EC` (sent without an ADDL MAINT
REASON), `021/41/PASSIVE`, `024/07/CANCEL-NLE`; `*` stands for any value in its place, and a
third place of `*` also allows none (`001/AI/*`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

ANY = "*"
ADDL_MAINT_REASON = "ADDL MAINT REASON"
"""The 2750 N1*75 reporting category carrying the AMRC (REF*17), CMS companion guide §5."""

MAX_ENTRIES = 500
_INS03 = re.compile(r"[0-9]{3}|\*")
_INS04 = re.compile(r"[0-9A-Z]{2,3}|\*")
_SPACES = re.compile(r"\s+")


def normalise_amrc(value: str | None) -> str | None:
    """Upper case, inner runs of blanks as one space; blank is None (no ADDL MAINT REASON)."""
    if value is None:
        return None
    text = _SPACES.sub(" ", value.strip()).upper()
    return text or None


@dataclass(frozen=True, slots=True)
class Combination:
    ins03: str
    ins04: str
    amrc: str | None
    """None: sent without an ADDL MAINT REASON; `*`: with any or none."""

    @classmethod
    def parse(cls, text: str) -> Combination:
        parts = [p.strip() for p in text.split("/", 2)]
        if len(parts) < 2:
            raise ValueError(f"{text!r}: expected INS03/INS04[/ADDL MAINT REASON]")
        ins03, ins04 = parts[0], parts[1].upper()
        if not _INS03.fullmatch(ins03):
            raise ValueError(f"{text!r}: INS03 must be three digits or *")
        if not _INS04.fullmatch(ins04):
            raise ValueError(f"{text!r}: INS04 must be a 2-3 character code or *")
        amrc = normalise_amrc(parts[2]) if len(parts) == 3 else None
        if amrc is not None and len(amrc) > 80:
            raise ValueError(f"{text!r}: ADDL MAINT REASON longer than REF02's 80")
        return cls(ins03, ins04, amrc)

    def matches_codes(self, ins03: str, ins04: str) -> bool:
        return self.ins03 in (ANY, ins03) and self.ins04 in (ANY, ins04)

    def matches(self, ins03: str, ins04: str, amrc: str | None) -> bool:
        if not self.matches_codes(ins03, ins04):
            return False
        return self.amrc == ANY or self.amrc == normalise_amrc(amrc)

    def __str__(self) -> str:
        return f"{self.ins03}/{self.ins04}" + (f"/{self.amrc}" if self.amrc else "")


@dataclass(frozen=True, slots=True)
class Combinations:
    entries: tuple[Combination, ...]
    default: bool = False
    """The CMS FFE table (no partner list stored)."""
    _exact: dict[tuple[str, str], frozenset[str | None]] = field(
        init=False, repr=False, compare=False
    )
    _wild: tuple[Combination, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Looked up once per member of every file: a dict probe, not a scan of the list.
        exact: dict[tuple[str, str], set[str | None]] = {}
        for c in self.entries:
            if ANY not in (c.ins03, c.ins04):
                exact.setdefault((c.ins03, c.ins04), set()).add(c.amrc)
        object.__setattr__(self, "_exact", {k: frozenset(v) for k, v in exact.items()})
        wild = tuple(c for c in self.entries if ANY in (c.ins03, c.ins04))
        object.__setattr__(self, "_wild", wild)

    @classmethod
    def parse(cls, lines: Iterable[str], *, default: bool = False) -> Combinations:
        """One combination a line; blank lines and `#` comments skipped; duplicates dropped.
        A bad entry is a ValueError naming it."""
        entries: dict[Combination, None] = {}
        for line in lines:
            text = line.split("#", 1)[0].strip()
            if text:
                entries[Combination.parse(text)] = None
        if len(entries) > MAX_ENTRIES:
            raise ValueError(f"at most {MAX_ENTRIES} maintenance combinations")
        return cls(tuple(entries), default=default)

    def allows(self, ins03: str, ins04: str, amrc: str | None) -> bool:
        amrcs = self._exact.get((ins03, ins04))
        if amrcs is not None and (ANY in amrcs or normalise_amrc(amrc) in amrcs):
            return True
        return any(c.matches(ins03, ins04, amrc) for c in self._wild)

    def allows_codes(self, ins03: str, ins04: str) -> bool:
        """Some combination has this INS03/INS04 (whatever its ADDL MAINT REASON)."""
        return (ins03, ins04) in self._exact or any(
            c.matches_codes(ins03, ins04) for c in self._wild
        )

    def lines(self) -> list[str]:
        return [str(c) for c in self.entries]


CMS_FFE_OUTBOUND: tuple[str, ...] = (
    # Additions. 021/EC: an initial enrollment, the consumer's benefit selection (a policy
    # that replaces one after a change in circumstance carries CIC).
    "021/EC",
    "021/EC/CIC",
    # 021/41: re-enrollment. The batch auto re-enrollment (I834AR) carries PASSIVE.
    "021/41",
    "021/41/PASSIVE",
    # 021/28 with CONFIRM is the issuer's effectuation (inbound to the FFE, Appendix C);
    # listed so a sender that echoes effectuations, and the ledger's lifecycle, are not flagged.
    "021/28",
    "021/28/CONFIRM",
    # Changes: 25 identifying (demographic) data, 43 change of location, AI maintenance with
    # the kind of change in ADDL MAINT REASON.
    "001/25",
    "001/25/DEMOGRAPHIC CHANGE",
    "001/43",
    "001/AI",
    "001/AI/FINANCIAL CHANGE",
    "001/AI/CSR VARIANT CHANGE",
    "001/AI/AGENT BROKER INFO",
    "001/AI/DEMOGRAPHIC CHANGE",
    "001/AI/NO CHANGE",
    # Cancellations and terminations: 14 voluntary withdrawal (CANCEL: ended at its begin
    # date), 03 death, 07 termination of benefits (loss of eligibility: unresolved data
    # matching NLE, periodic data matching PDM, other coverage, a CIC replacement), 59
    # non-payment (issuer-initiated; echoed back by the FFE).
    "024/14",
    "024/14/CANCEL",
    "024/14/TERM",
    "024/03",
    "024/07",
    "024/07/CANCEL-NLE",
    "024/07/TERM-NLE",
    "024/07/CANCEL-PDM",
    "024/07/TERM-PDM",
    "024/07/CANCEL-OTH-COVERAGE",
    "024/07/TERM-OTH-COVERAGE",
    "024/07/CANCEL-CARRYFORWARD",
    "024/AI/CANCELCIC",
    "024/AI/TERMCIC",
    "024/59",
    "024/59/CANCEL",
    "024/59/TERM",
    # Reinstatements: XN notification only (the FFE's reinstatement), 41 re-enrollment.
    "025/XN",
    "025/41",
    "025/XN/ISSUER-REINSTATEMENT",
    # Audits (BGN08 4 / RX) and 030 members are reconciled, not ruled; listed for completeness.
    "030/XN",
)
"""The default list: the maintenance combinations of the CMS FFE's outbound 834s (FFE to issuer).

Source: CMS, "Standard Companion Guide Transaction Information — ASC X12 834 … for the Federally
facilitated Exchange (FFE)", v7.2 (Aug 2024; X12-REFERENCE §5), its transaction-type tables and
Appendix C (ADDL MAINT REASON values), and the CMS "Federally-facilitated Exchange (FFE) and
FF-SHOP Enrollment Manual" (cancellations end coverage at the begin date; terminations after it).
The pairs quoted in issue 15 (021/EC initial, 021/41 PASSIVE, 024/14 CANCEL, 024/07 CANCEL-NLE,
001/25 maintenance, 001/AI, 024/59 non-payment, 025/XN) are from that table; the remaining
ADDL MAINT REASON pairings follow Appendix C's outbound values as the gateway team read them and
were not checked against the guide's text line by line: a partner whose files differ gets its
own list (`edi834 partner rules NAME --combinations FILE`) rather than a change here."""

CMS_FFE = Combinations.parse(CMS_FFE_OUTBOUND, default=True)
