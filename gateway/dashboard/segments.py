"""The offending segment in context, from the stored file, with member data masked.
Reads the blob streaming and keeps only the few segments around each finding."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from parsers.envelope import EnvelopeReader
from parsers.events import (
    NEED_DATA,
    GroupStart,
    InterchangeStart,
    Segment,
    TransactionSetEnd,
    TransactionSetStart,
)

MASK = "•••••"

_CODE = frozenset(("any code",))  # stands for: any value that reads as a code (`_is_code`)
_CONTACT = frozenset({"AP", "BN", "CP", "EM", "EX", "FX", "HP", "TE", "WP"})
SHOWN: dict[str, dict[int, frozenset[str]]] = {
    "NM1": {
        1: _CODE,
        2: frozenset({"1", "2"}),
        8: frozenset({"24", "34", "EI", "FI", "II", "MI", "PI", "SV", "XX", "ZZ"}),
    },
    "REF": {1: _CODE},
    "DMG": {1: frozenset({"D8"})},
    "N3": {},
    "N4": {},
    "PER": {1: _CODE, 3: _CONTACT, 5: _CONTACT, 7: _CONTACT},
    "HLH": {1: _CODE},
    "ICM": {1: _CODE},
}
"""The segments that carry member data in 005010X220A1 — names and ids (NM1), reference ids
(REF), birth date, gender and marital status (DMG), address with its county (N3/N4), contacts
(PER), health and income (HLH, ICM) — and the only elements of them a viewer sees: qualifiers,
each only when its value is one of the guide's codes for it (or, `_CODE`, reads as a code).
Everything else is masked, an element the guide does not have included: a stray separator (a
`*` in a name) moves an SSN one place right, and masking by position alone showed it."""


Key = tuple[int, int, int, int]  # envelope ordinal, group ordinal, set ordinal, IK302 position


@dataclass
class Cell:
    value: str
    masked: bool = False
    highlight: bool = False


@dataclass
class Line:
    position: int | None
    tag: str
    cells: list[Cell]
    target: bool = False


@dataclass
class Context:
    separator: str = "*"
    lines: list[Line] = field(default_factory=list)


def _is_code(value: str) -> bool:
    return 1 <= len(value) <= 3 and value.isascii() and value.isalnum() and value.isupper()


# The other segments of 005010X220A1 (and its envelope), shown as they are: codes, dates of
# coverage, amounts, the sponsor's and payer's names.
PLAIN = frozenset(
    {"ISA", "IEA", "GS", "GE", "ST", "SE", "BGN", "DTP", "QTY", "N1", "ACT", "INS", "EC", "AMT"}
    | {"LUI", "DSB", "HD", "IDC", "COB", "LX", "PLA", "LS", "LE", "TA1"}
)


def is_phi(tag: str, element: int | None, value: str) -> bool:
    """Whether a viewer must not see this element of this segment: every element of a member
    data segment (`SHOWN`, whatever the case of its id: `nm1` is read as sent) but a qualifier
    holding a code, and every element of a segment the guide does not have (`NMI`, `DM6`,
    `N 3`: a misspelt id carries what its segment would)."""
    key = tag.strip().upper()
    shown = SHOWN.get(key)
    if shown is None:
        return key not in PLAIN
    codes = shown.get(element) if element is not None else None
    if codes is None:
        return True
    return not (_is_code(value) if codes is _CODE else value in codes)


def mask_value(tag: str | None, element: int | None, value: str | None, reveal: bool) -> str | None:
    if value is None or reveal or tag is None:
        return value
    return MASK if is_phi(tag, element, value) else value


def _line(seg: Segment, target: int | None, highlight: int | None, reveal: bool) -> Line:
    cells = []
    for n, v in enumerate(seg.elements, start=1):
        hide = not reveal and bool(v) and is_phi(seg.tag, n, v)
        cells.append(
            Cell(
                value=MASK if hide else v,
                masked=hide,
                highlight=(seg.index == target and highlight == n),
            )
        )
    return Line(position=seg.index, tag=seg.tag, cells=cells, target=seg.index == target)


def segment_contexts(
    chunks: Iterable[bytes],
    targets: dict[Key, int | None],
    *,
    reveal: bool,
    radius: int = 4,
    max_segment_bytes: int = 65_536,
) -> dict[Key, Context]:
    """For each (envelope, group, set, position) target, the segments from position-radius to
    position+radius, the target's element (the value) highlighted."""
    out: dict[Key, Context] = {k: Context() for k in targets}
    if not targets:
        return out
    by_set: dict[tuple[int, int, int], list[int]] = {}
    for e, g, s, p in targets:
        by_set.setdefault((e, g, s), []).append(p)
    last_needed = max(by_set)
    reader = EnvelopeReader(max_segment_bytes=max_segment_bytes)
    env = grp = tset = -1
    separator = "*"
    wanted: list[int] = []

    def take(seg: Segment) -> None:
        if seg.index is None:
            return
        for p in wanted:
            if abs(seg.index - p) <= radius:
                key = (env, grp, tset, p)
                ctx = out[key]
                ctx.separator = separator
                ctx.lines.append(_line(seg, p, targets[key], reveal))

    def handle(event: object) -> bool:
        nonlocal env, grp, tset, separator, wanted
        if isinstance(event, InterchangeStart):
            env, grp, tset = env + 1, -1, -1
            separator = event.delimiters.element
        elif isinstance(event, GroupStart):
            grp, tset = grp + 1, -1
        elif isinstance(event, TransactionSetStart):
            tset += 1
            wanted = by_set.get((env, grp, tset), [])
            take(event.st)
        elif isinstance(event, Segment):
            take(event)
        elif isinstance(event, TransactionSetEnd):
            if event.se is not None:
                take(event.se)
            wanted = []
            if (env, grp, tset) >= last_needed:
                return True
        return False

    for chunk in chunks:
        reader.feed(chunk)
        while (event := reader.next_event()) is not NEED_DATA and event is not None:
            if handle(event):
                return out
    reader.feed(b"")
    while (event := reader.next_event()) is not NEED_DATA and event is not None:
        if handle(event):
            break
    return out


def plain_mask(text: str) -> str:
    """A mask for an ack downloaded as bytes: five of a Latin-1 character the ack does not use
    as a delimiter (the bullet of MASK cannot be encoded as Latin-1)."""
    used = set(text[3:4] + text[82:83] + text[104:106]) if len(text) >= 106 else set()
    char = next(c for c in "X#?@" if c not in used)
    return char * 5


def mask_ack(text: str, reveal: bool, *, mask: str = MASK) -> str:
    """A 999 or 824 as sent, with what may be member data masked: a 999's IK404 bad values
    and CTX identifiers, an 824's TED02 messages (a business rule's, e.g. "dependent of
    subscriber 0007720415") and TED07 bad values."""
    if reveal or len(text) < 106 or not text.startswith("ISA"):
        return text
    element, component, terminator = text[3], text[104], text[105]
    lines = text.split(terminator)
    out = []
    for seg in lines:
        parts = seg.split(element)
        tag = parts[0].strip()
        if tag == "IK4" and len(parts) > 4 and parts[4]:
            parts[4] = mask
        elif tag == "TED":
            for i in (2, 7):
                if len(parts) > i and parts[i]:
                    parts[i] = mask
        elif tag == "CTX" and len(parts) > 1 and component in parts[1]:
            name, _, _value = parts[1].partition(component)
            parts[1] = f"{name}{component}{mask}"
        out.append(element.join(parts))
    return terminator.join(out)


def ack_lines(text: str) -> list[str]:
    """An ack as sent, one segment a line (its terminator kept) for reading; text that is not
    an interchange as one line."""
    if len(text) < 106 or not text.startswith("ISA"):
        return [text]
    terminator = text[105]
    return [seg.strip("\r\n") + terminator for seg in text.split(terminator) if seg.strip()]
