"""Pure; no I/O. Which maintenance combinations a sender uses — INS03 (maintenance type), INS04
(maintenance reason) and the 2750 ADDL MAINT REASON value — for the `maintenance-combination`
rule: the CMS federally facilitated exchange's outbound table by default, or a partner's own
list (a state exchange, a non-CMS sender).

A combination is written `INS03/INS04[/ADDL MAINT REASON]`: `021/EC` (sent without an ADDL MAINT
REASON), `021/41/PASSIVE`, `024/07/CANCEL-NLE`, `001//FINANCIAL CHANGE` (sent without an INS04);
`*` stands for any value in its place, and a third place of `*` also allows none (`001/AI/*`).
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
_INS04 = re.compile(r"[0-9A-Z]{2,3}|\*|")  # empty: no INS04 sent
_SPACES = re.compile(r"\s+")
_DASH = re.compile(r"\s*[-\u2013\u2014]\s*")


def normalise_amrc(value: str | None) -> str | None:
    """Upper case, inner runs of blanks as one space, a dash (hyphen, en or em dash) with the
    blanks around it as one hyphen (the guide prints `PASSIVE - INITIAL` with a hyphen and
    other values with an en dash, U+2013; a file carries ASCII), and blank is None (no ADDL
    MAINT REASON)."""
    if value is None:
        return None
    text = _DASH.sub("-", _SPACES.sub(" ", value.strip())).upper()
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
            raise ValueError(f"{text!r}: INS04 must be a 2-3 character code, * or empty")
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
    # CMS X12 834 Companion Guide v7.2 (August 2024), Appendix C, Table 30 "Outbound Transaction
    # Combinations" (FFE to issuer), row for row. The table's NULL is nothing sent: an empty
    # INS04 (`001//…`), no ADDL MAINT REASON (`021/EC`).
    # Initial enrollment
    "021/EC",
    "021/EC/CIC",
    # BAR, the batch auto re-enrollment (I834AR files only; B2S = bronze to silver)
    "021/41/PASSIVE",
    "021/41/PASSIVE - B2S",
    "021/41/PASSIVE - INITIAL",
    "021/41/PASSIVE - NEW SUBSCRIBER",
    "021/41/PASSIVE - NEW SUBSCRIBER (B2S)",
    "021/EC/PASSIVE REENROLL - NEW TO ISSUER",
    "021/EC/PASSIVE REENROLL - NEW TO ISSUER (B2S)",
    # Cancellation
    "024/14/CANCEL",
    "024/14/CANCELCIC",
    "024/07/CANCEL-NLE",
    "024/07/CANCEL-FRD",  # "tentative to go live Q2 of 2025"
    "024/14/CANCEL-OTH-COVERAGE",
    "024/03/CANCEL-PDM",
    "024//CANCEL-CARRYFORWARD",
    # Termination
    "024/14/TERM",
    "024/14/TERMCIC",
    "024/07/TERM-NLE",
    "024/14/TERM-OTH-COVERAGE",
    "024/03/TERM-PDM",
    # Maintenance (the 024 and 021 rows again for a non-subscriber: already listed above)
    "001//AGENT BROKER INFO",
    "001//CSR VARIANT CHANGE",
    "001//FINANCIAL CHANGE",
    "001/43/DEMOGRAPHIC CHANGE",
    "001/25/DEMOGRAPHIC CHANGE",
    "001//DEMOGRAPHIC CHANGE",
    "001//NO CHANGE",
)
"""The default list: the maintenance combinations the CMS federally facilitated exchange sends
to issuers — Table 30 of its X12 834 companion guide v7.2, Appendix C (X12-REFERENCE §5). The
FFE sends no reinstatement (025) and no effectuation (021/28, Table 29: issuer to FFE); a
partner that sends other combinations (a state exchange, an issuer's own feed) gets its own
list (`edi834 partner rules NAME --combinations FILE`)."""

CMS_FFE = Combinations.parse(CMS_FFE_OUTBOUND, default=True)
