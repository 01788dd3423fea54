"""Seeded, deterministic mutations of X12 834 files, for the differential tests between the
validation engines (issue 7). Pure: bytes and a seed in, bytes and a description out; no I/O,
no clock, no global randomness (every choice comes from `random.Random(seed)`).

A file is cut into segments and elements with its own delimiters (element separator at byte 3
of the ISA, repetition separator ISA11, component separator ISA16, the terminator right after
ISA16); mutations work on that list and the file is written back with the same delimiters and
the same line breaks between segments. Mutations aim at the inside of a transaction set (the
segments between ST and SE) and only now and then at the ST/SE themselves, so that the
transaction-set checkers get exercised rather than the interchange envelope.

What the guide says about elements (types, lengths, codes) is read from pyx12's map of
005010X220A1, so dates go to date elements, numbers to N0/R elements, wrong codes to coded
elements, and "codes valid elsewhere in the guide" are real guide codes.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import string
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from validators.implementation import load_map

# -- what the guide says about each segment tag ----------------------------------------------


@dataclass(frozen=True, slots=True)
class GuideElement:
    tag: str
    position: int  # 1-based element position in the segment
    data_type: str | None  # AN, ID, DT, TM, N0, R, ... (None for a composite)
    max_len: int
    codes: tuple[str, ...]
    composite: bool


@dataclass(frozen=True, slots=True)
class Guide:
    tags: tuple[str, ...]  # every segment ID of the guide, sorted
    codes: tuple[str, ...]  # every code value of every coded element, sorted
    elements: dict[str, tuple[GuideElement, ...]]  # tag -> its elements (all loops merged)

    def element(self, tag: str, position: int) -> GuideElement | None:
        for el in self.elements.get(tag, ()):
            if el.position == position:
                return el
        return None


def _map_segments(node: Any) -> Iterator[Any]:
    if node.is_segment():
        yield node
        return
    pos_map = getattr(node, "pos_map", None)
    children = (
        [c for pos in sorted(pos_map) for c in pos_map[pos]]
        if pos_map
        else list(getattr(node, "children", None) or [])
    )
    for child in children:
        yield from _map_segments(child)


@functools.cache
def guide() -> Guide:
    """The 834 guide's segment IDs, code values and element shapes, from pyx12's map."""
    tags: set[str] = set()
    codes: set[str] = set()
    elements: dict[str, dict[int, GuideElement]] = {}
    for seg in _map_segments(load_map()):
        tag = str(seg.id)
        tags.add(tag)
        by_pos = elements.setdefault(tag, {})
        for child in seg.children:
            position = int(child.seq)
            if child.is_composite():
                for kid in child.children:
                    codes.update(str(c) for c in kid.valid_codes or () if c)
                by_pos.setdefault(position, GuideElement(tag, position, None, 0, (), True))
                continue
            valid = tuple(sorted(str(c) for c in child.valid_codes or () if c))
            codes.update(valid)
            old = by_pos.get(position)
            if old is None or (not old.codes and valid):
                by_pos[position] = GuideElement(
                    tag, position, child.data_type, int(child.max_len), valid, composite=False
                )
    return Guide(
        tags=tuple(sorted(tags)),
        codes=tuple(sorted(codes)),
        elements={t: tuple(v[p] for p in sorted(v)) for t, v in sorted(elements.items())},
    )


# -- a file as segments ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    element: str
    component: str
    repetition: str
    terminator: str
    line_break: str  # what follows most terminators in the source: "", "\n" or "\r\n"


@dataclass(slots=True)
class Document:
    """A mutable working copy: only the mutator's own functions ever hold one."""

    layout: Layout
    prefix: str  # anything before the first ISA (a BOM, junk)
    segments: list[list[str]]  # [tag, element 01, element 02, ...]
    tail: str  # an unterminated remainder
    final_break: bool = True  # whether the line break follows the last terminator too

    def render(self) -> bytes:
        lay = self.layout
        end = lay.terminator + lay.line_break
        body = end.join(lay.element.join(seg) for seg in self.segments)
        if self.segments:
            body += lay.terminator + (lay.line_break if self.final_break else "")
        return (self.prefix + body + self.tail).encode("latin-1")


_BETWEEN = " \t\r\n"


def read_layout(text: str) -> tuple[int, Layout] | None:
    """Where the first ISA starts and the delimiters it declares; None when there is none."""
    start = text.find("ISA")
    if start < 0 or len(text) < start + 106:
        return None
    element = text[start + 3]
    if element.isalnum() or element in "\r\n":
        return None
    # ISA16 (the component separator) follows the 16th element separator; the terminator
    # follows ISA16. Counting separators also reads an ISA that is not padded to 106 bytes.
    at = start
    fields: list[str] = []
    for _ in range(16):
        nxt = text.find(element, at + 1)
        if nxt < 0:
            return None
        fields.append(text[at + 1 : nxt])
        at = nxt
    if at + 2 >= len(text):
        return None
    component = text[at + 1]
    terminator = text[at + 2]
    repetition = fields[11] if len(fields) > 11 and len(fields[11]) == 1 else "^"
    if len({element, component, terminator}) < 3 or terminator.isalnum():
        return None
    return start, Layout(element, component, repetition, terminator, "")


def parse(data: bytes) -> Document | None:
    text = data.decode("latin-1")
    found = read_layout(text)
    if found is None:
        return None
    start, lay = found
    pieces = text[start:].split(lay.terminator)
    # Whitespace between segments is tolerated by readers; keep the commonest, drop the rest.
    leads = [p[: len(p) - len(p.lstrip(_BETWEEN))] for p in pieces[1:]]
    line_break = Counter(leads).most_common(1)[0][0] if leads else ""
    lay = dataclasses.replace(lay, line_break=line_break)
    tail = pieces.pop()
    final_break = tail.startswith(line_break)
    tail = tail[len(line_break) :] if final_break else tail
    segments = [p.lstrip(_BETWEEN).split(lay.element) for p in pieces]
    return Document(lay, text[:start], segments, tail, final_break)


# -- picking places ----------------------------------------------------------------------------

_SET_ENDERS = frozenset({"SE", "ST", "GE", "GS", "IEA", "ISA"})


def _sets(doc: Document) -> list[tuple[int, int]]:
    """(ST index, index of its SE or of whatever ends the set) for every transaction set."""
    out = []
    segs = doc.segments
    for i, seg in enumerate(segs):
        if seg[0] != "ST":
            continue
        j = i + 1
        while j < len(segs) and segs[j][0] not in _SET_ENDERS:
            j += 1
        out.append((i, j))
    return out


def _pick_set(rng: random.Random, doc: Document) -> tuple[int, int]:
    sets = _sets(doc)
    if sets:
        return rng.choice(sets)
    # No ST: the segments after the ISA and the GS, say.
    return min(2, len(doc.segments)), len(doc.segments)


def _body_index(rng: random.Random, doc: Document, *, envelope: float = 0.04) -> int:
    """A segment index inside a set's body; now and then its ST or SE."""
    st, se = _pick_set(rng, doc)
    lo, hi = st + 1, se - 1
    if rng.random() < envelope or hi < lo:
        lo, hi = st, min(se, len(doc.segments) - 1)
    if hi < lo:
        return max(0, min(lo, len(doc.segments) - 1))
    return rng.randint(lo, hi)


def _insert_index(rng: random.Random, doc: Document) -> int:
    """A place to insert a segment: after ST, at most before the set's end."""
    st, se = _pick_set(rng, doc)
    return rng.randint(min(st + 1, se), se)


def _body_indices(doc: Document) -> list[int]:
    return [i for st, se in _sets(doc) for i in range(st + 1, se)]


def _element_slot(
    rng: random.Random, doc: Document, want: Callable[[GuideElement], bool] | None
) -> tuple[int, int]:
    """(segment index, element position) of an element, preferring the kind `want` picks."""
    g = guide()
    if want is not None:
        slots = []
        for i in _body_indices(doc):
            seg = doc.segments[i]
            for el in g.elements.get(seg[0], ()):
                if want(el) and el.position < len(seg) + 1:
                    slots.append((i, el.position))
        if slots and rng.random() < 0.9:
            return rng.choice(slots)
    i = _body_index(rng, doc)
    seg = doc.segments[i]
    if len(seg) < 2:
        seg.append("")
    return i, rng.randint(1, len(seg) - 1)


def _set_element(seg: list[str], position: int, value: str) -> None:
    while len(seg) <= position:
        seg.append("")
    seg[position] = value


def _short(seg: Sequence[str]) -> str:
    return seg[0] if seg else "?"


def _where(doc: Document, i: int, position: int | None = None) -> str:
    tag = _short(doc.segments[i]) if 0 <= i < len(doc.segments) else "?"
    return f"#{i}:{tag}" + (f"{position:02d}" if position is not None else "")


# -- segment mutations -------------------------------------------------------------------------


def delete_segment(rng: random.Random, doc: Document) -> str:
    i = _body_index(rng, doc)
    where = _where(doc, i)
    del doc.segments[i]
    return f"delete {where}"


def duplicate_segment(rng: random.Random, doc: Document) -> str:
    i = _body_index(rng, doc)
    times = rng.choice((1, 1, 1, 2, 3, 12))
    for _ in range(times):
        doc.segments.insert(i + 1, list(doc.segments[i]))
    return f"duplicate {_where(doc, i)} x{times}"


def swap_segments(rng: random.Random, doc: Document) -> str:
    i = _body_index(rng, doc, envelope=0.0)
    j = i + 1 if rng.random() < 0.6 else _body_index(rng, doc, envelope=0.0)
    if j >= len(doc.segments):
        j = i
    segs = doc.segments
    where = f"{_where(doc, i)} <-> {_where(doc, j)}"
    segs[i], segs[j] = segs[j], segs[i]
    return f"swap {where}"


def move_segment(rng: random.Random, doc: Document) -> str:
    i = _body_index(rng, doc, envelope=0.0)
    where = _where(doc, i)
    seg = doc.segments.pop(i)
    st, se = _pick_set(rng, doc)
    # Into the header (right after ST, BGN, a REF or DTP there), or anywhere in a set.
    header = rng.random() < 0.35
    j = min(st + rng.randint(1, 4), se) if header else _insert_index(rng, doc)
    doc.segments.insert(j, seg)
    return f"move {where} to #{j}"


def truncate_segment(rng: random.Random, doc: Document) -> str:
    """Drop trailing elements, or cut the segment's text at a random character."""
    i = _body_index(rng, doc)
    seg = doc.segments[i]
    where = _where(doc, i)
    if rng.random() < 0.5 and len(seg) > 1:
        keep = rng.randint(0, len(seg) - 2)
        doc.segments[i] = seg[: keep + 1]
        return f"truncate {where} to {keep} elements"
    text = doc.layout.element.join(seg)
    cut = rng.randint(1, max(1, len(text) - 1))
    doc.segments[i] = text[:cut].split(doc.layout.element)
    return f"cut {where} at character {cut}"


def truncate_file(rng: random.Random, doc: Document) -> str:
    """The file ends inside a transaction set (a partial segment, no SE/GE/IEA)."""
    i = _body_index(rng, doc, envelope=0.0)
    text = doc.layout.element.join(doc.segments[i])
    cut = rng.randint(0, len(text))
    doc.tail = text[:cut]
    del doc.segments[i:]
    return f"end the file inside #{i} at character {cut}"


def unknown_segment(rng: random.Random, doc: Document) -> str:
    letters = string.ascii_uppercase + string.digits
    tag = rng.choice(("ZZZ", "XX", "ABC", "N9X", "INSS", "HD1", "", "X"))
    if rng.random() < 0.5:
        tag = rng.choice(string.ascii_uppercase) + "".join(
            rng.choice(letters) for _ in range(rng.randint(1, 2))
        )
    if tag in guide().tags:
        tag = "ZZ" + tag[:1]
    elements = [rng.choice(("", "1", "X", "ABC", "20270101")) for _ in range(rng.randint(0, 4))]
    j = _insert_index(rng, doc)
    doc.segments.insert(j, [tag, *elements])
    return f"insert unknown {tag!r} at #{j}"


# The segments issue 7 names, and with them every other segment ID of the guide.
_NAMED_TAGS = (
    "INS", "REF", "DTP", "NM1", "N3", "N4", "DMG", "HD", "LX", "N1", "LS", "LE", "AMT", "HLH",
    "LUI", "PER", "COB", "EC", "ICM", "DSB", "BGN", "QTY",
)  # fmt: skip


def _random_elements(rng: random.Random, tag: str) -> list[str]:
    g = guide()
    out = []
    for el in g.elements.get(tag, ())[: rng.randint(0, 8)]:
        if el.codes and rng.random() < 0.8:
            out.append(rng.choice(el.codes))
        elif el.data_type in ("DT",):
            out.append("20270101")
        elif el.data_type in ("TM",):
            out.append("1200")
        elif el.data_type and el.data_type[0] in "NR":
            out.append(str(rng.randint(0, 120)))
        else:
            out.append(rng.choice(("", "X", "ABC", "D8", "20270101", "2700")))
    return out


def guide_segment(rng: random.Random, doc: Document) -> str:
    """Insert a segment with an ID of the guide: a copy of one in the file, or random values."""
    tag = rng.choice(_NAMED_TAGS) if rng.random() < 0.7 else rng.choice(guide().tags)
    copies = [s for s in doc.segments if s and s[0] == tag]
    if copies and rng.random() < 0.6:
        seg = list(rng.choice(copies))
    else:
        seg = [tag, *_random_elements(rng, tag)]
    j = _insert_index(rng, doc)
    doc.segments.insert(j, seg)
    return f"insert {tag} at #{j}"


def retag_segment(rng: random.Random, doc: Document) -> str:
    i = _body_index(rng, doc)
    tag = rng.choice(_NAMED_TAGS) if rng.random() < 0.7 else rng.choice(guide().tags)
    where = _where(doc, i)
    doc.segments[i][0] = tag
    return f"retag {where} as {tag}"


def repeat_segment(rng: random.Random, doc: Document) -> str:
    """One segment many times: an NM1 of 2100A, a DMG, a REF past its maximum use."""
    candidates = [i for i in _body_indices(doc) if doc.segments[i][0] in ("NM1", "DMG", "REF")]
    i = rng.choice(candidates) if candidates and rng.random() < 0.7 else _body_index(rng, doc)
    times = rng.choice((2, 5, 15, 30))
    doc.segments[i + 1 : i + 1] = [list(doc.segments[i]) for _ in range(times)]
    return f"repeat {_where(doc, i)} x{times}"


# -- loops ---------------------------------------------------------------------------------


def _el(seg: Sequence[str], position: int) -> str:
    return seg[position] if position < len(seg) else ""


_Starts = Callable[[Sequence[str]], bool]
# loop -> (does a segment start it, tags that end it, how many extra copies to add). The large
# counts go past the guide's maximum (2300: 99, 2310: 30, 2320: 5); 1000A/B, 2100A and 2750
# allow one, so any copy is over. 2000 and 2200 have no maximum: a few copies will do.
_LOOPS: dict[str, tuple[_Starts, frozenset[str], tuple[int, ...]]] = {
    "1000": (lambda s: s[0] == "N1" and _el(s, 1) != "75", frozenset({"N1", "INS"}), (1, 2, 3)),
    "2000": (lambda s: s[0] == "INS", frozenset({"INS"}), (1, 2)),
    "2100": (lambda s: s[0] == "NM1", frozenset({"NM1", "INS", "HD", "LS", "DSB"}), (1, 2, 3)),
    "2200": (lambda s: s[0] == "DSB", frozenset({"DSB", "HD", "LS", "INS"}), (1, 2)),
    "2300": (lambda s: s[0] == "HD", frozenset({"HD", "LS", "LE", "INS"}), (1, 2, 3, 99)),
    "2310/2700": (
        lambda s: s[0] == "LX",
        frozenset({"LX", "COB", "HD", "LE", "LS", "INS"}),
        (1, 2, 3, 30),
    ),
    "2320": (lambda s: s[0] == "COB", frozenset({"COB", "HD", "LS", "INS"}), (1, 4, 5)),
    "2750": (
        lambda s: s[0] == "N1" and _el(s, 1) == "75",
        frozenset({"N1", "LX", "LE", "INS"}),
        (1, 2, 3),
    ),
}


def _block(doc: Document, start: int, enders: frozenset[str]) -> int:
    end = start + 1
    segs = doc.segments
    while end < len(segs) and segs[end][0] not in enders and segs[end][0] not in _SET_ENDERS:
        end += 1
    return end


def repeat_loop(rng: random.Random, doc: Document) -> str:
    """A loop's segments repeated: past its maximum (2300 > 99, 1000A/2100A/2750 > 1)."""
    found = [
        (name, i)
        for i in _body_indices(doc)
        for name, (starts, _enders, _times) in _LOOPS.items()
        if starts(doc.segments[i])
    ]
    if not found:
        return duplicate_segment(rng, doc)
    name, start = rng.choice(found)
    _starts, enders, counts = _LOOPS[name]
    end = _block(doc, start, enders)
    times = rng.choice(counts)
    block = doc.segments[start:end]
    doc.segments[end:end] = [list(s) for _ in range(times) for s in block]
    return f"repeat loop {name} at #{start} ({end - start} segments) x{times}"


_REPORTING_BLOCK = (
    ["LS", "2700"],
    ["LX", "1"],
    ["N1", "75", "PRE AMT 1"],
    ["REF", "9X", "123.45"],
    ["DTP", "007", "RD8", "20270101-20271231"],
    ["LE", "2700"],
)


def ls_le_trap(rng: random.Random, doc: Document) -> str:
    """LS/LE traps: LE or LS deleted, swapped, doubled, emptied; a pair in the wrong place."""
    st, se = _pick_set(rng, doc)
    segs = doc.segments
    ls = [i for i in range(st, se) if segs[i][0] == "LS"]
    note = ""
    if not ls:
        # Add a 2700 block at the end of some member (before the next INS or the SE).
        ins = [i for i in range(st, se) if segs[i][0] == "INS"]
        at = _block(doc, rng.choice(ins), frozenset({"INS"})) if ins else se
        segs[at:at] = [list(s) for s in _REPORTING_BLOCK]
        se += len(_REPORTING_BLOCK)
        ls = [at]
        note = f"add a 2700 block at #{at}; "
        if rng.random() < 0.25:
            return note.rstrip("; ")
    i = rng.choice(ls)
    le = next((k for k in range(i + 1, se) if segs[k][0] == "LE"), None)
    kind = rng.choice(
        ("delete LE", "delete LS", "swap LS/LE", "empty LS", "LE twice", "LS twice",
         "pair elsewhere", "LX after LE", "LE01 differs", "N1 after LE")
    )  # fmt: skip
    if kind == "delete LE" and le is not None:
        del segs[le]
    elif kind == "delete LS":
        del segs[i]
    elif kind == "swap LS/LE" and le is not None:
        segs[i], segs[le] = segs[le], segs[i]
    elif kind == "empty LS" and le is not None:
        del segs[i + 1 : le]
    elif kind == "LE twice" and le is not None:
        segs.insert(le + 1, list(segs[le]))
    elif kind == "LS twice":
        segs.insert(i + 1, list(segs[i]))
    elif kind == "pair elsewhere":
        at = rng.randint(min(st + 1, i), i)
        segs[at:at] = [["LS", "2700"], ["LE", "2700"]]
    elif kind == "LX after LE" and le is not None:
        segs.insert(le + 1, ["LX", str(rng.randint(1, 3))])
    elif kind == "LE01 differs" and le is not None:
        _set_element(segs[le], 1, rng.choice(("2701", "", "X", "27")))
    elif kind == "N1 after LE" and le is not None:
        segs.insert(le + 1, ["N1", "75", "APTC AMT"])
    else:
        kind = "delete LS"
        del segs[i]
    return f"{note}{kind} (LS at #{i})"


# -- element mutations -------------------------------------------------------------------------


def empty_element(rng: random.Random, doc: Document) -> str:
    i, pos = _element_slot(rng, doc, None)
    _set_element(doc.segments[i], pos, "")
    return f"empty {_where(doc, i, pos)}"


def lengthen_element(rng: random.Random, doc: Document) -> str:
    i, pos = _element_slot(rng, doc, None)
    seg = doc.segments[i]
    el = guide().element(seg[0], pos)
    value = _el(seg, pos)
    limit = el.max_len if el is not None and el.max_len else rng.choice((10, 35, 60, 80))
    fill = "9" if el is not None and el.data_type and el.data_type[0] in "NR" else "X"
    value = value + fill * (limit + rng.randint(1, 3) - len(value))
    _set_element(seg, pos, value)
    return f"lengthen {_where(doc, i, pos)} to {len(value)}"


def shorten_element(rng: random.Random, doc: Document) -> str:
    i, pos = _element_slot(rng, doc, None)
    seg = doc.segments[i]
    value = _el(seg, pos)
    keep = rng.randint(1, max(1, len(value) - 1))
    _set_element(seg, pos, value[:keep] if value else "X")
    return f"shorten {_where(doc, i, pos)} to {keep}"


def wrong_code(rng: random.Random, doc: Document) -> str:
    i, pos = _element_slot(rng, doc, lambda el: bool(el.codes))
    if rng.random() < 0.5:
        value = rng.choice(guide().codes)
        how = "a guide code"
    else:
        alphabet = string.ascii_uppercase + string.digits
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
        how = "a random code"
    _set_element(doc.segments[i], pos, value)
    return f"{how} {value!r} in {_where(doc, i, pos)}"


_BAD_DATES = (
    "20270230", "2027011", "99999999", "2027ABCD", "ABCDEFGH", "20271301", "00000000",
    "270101", "202701011", "20270101-20270230", "20270101-", "20270101--20270102",
    "-20270101", "20270101-2027013", "2027-01-01", "19000229", "20240229", "0",
)  # fmt: skip
_BAD_TIMES = ("2560", "1261", "12345", "AB12", "240000", "1", "123", "12:30", "235960", "0000")
_BAD_NUMBERS = (
    "ABC", "-5", "12.50", "-0.5", "1.2.3", "--1", "1-", "1E5", ".", "-", "0012", "1,000",
    "+3", " 1", "99999999999999999999", "-.", "5.", "-12345678901234567", "1\xb2", "\xb3",
)  # fmt: skip


def _is_date(el: GuideElement) -> bool:
    return el.data_type in ("DT", "D8") or (el.tag, el.position) in {("DTP", 3), ("DMG", 2)}


def wrong_date(rng: random.Random, doc: Document) -> str:
    i, pos = _element_slot(rng, doc, _is_date)
    value = rng.choice(_BAD_DATES)
    _set_element(doc.segments[i], pos, value)
    return f"date {value!r} in {_where(doc, i, pos)}"


def wrong_time(rng: random.Random, doc: Document) -> str:
    i, pos = _element_slot(rng, doc, lambda el: el.data_type == "TM")
    value = rng.choice(_BAD_TIMES)
    _set_element(doc.segments[i], pos, value)
    return f"time {value!r} in {_where(doc, i, pos)}"


def bad_number(rng: random.Random, doc: Document) -> str:
    i, pos = _element_slot(rng, doc, lambda el: (el.data_type or "")[:1] in ("N", "R"))
    value = rng.choice(_BAD_NUMBERS)
    _set_element(doc.segments[i], pos, value)
    return f"number {value!r} in {_where(doc, i, pos)}"


def bad_character(rng: random.Random, doc: Document) -> str:
    i, pos = _element_slot(rng, doc, None)
    seg = doc.segments[i]
    lay = doc.layout
    value = _el(seg, pos)
    bad = rng.choice(
        ("\x07", "\t", "\x01", "\x1c", "\x1f", "\x00", "\x7f", "\r", "\n", "a", "abc", "\xe9",
         "\xf1", "\xa0", "\xff", "^", "!", "@", "%", "~", "*", "|", "{", "&", "'", "\"",
         lay.repetition, lay.component, lay.component, " ", " ", "  ")
    )  # fmt: skip
    where = rng.choice(("end", "end", "start", "middle", "replace"))
    if bad in (lay.element, lay.terminator):
        bad = "?"
    if where == "end":
        value = value + bad
    elif where == "start":
        value = bad + value
    elif where == "middle":
        cut = rng.randint(0, len(value))
        value = value[:cut] + bad + value[cut:]
    else:
        value = value.lower() if value.lower() != value and rng.random() < 0.5 else bad
    _set_element(seg, pos, value)
    return f"character {bad!r} at the {where} of {_where(doc, i, pos)}"


def extra_elements(rng: random.Random, doc: Document) -> str:
    i = _body_index(rng, doc)
    extra = [rng.choice(("", "X", "EXTRA", "1", "20270101")) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.3:  # past the end by a few empty elements, then a value
        extra = ["", "", *extra]
    doc.segments[i].extend(extra)
    return f"{len(extra)} extra elements on {_where(doc, i)}"


def extra_components(rng: random.Random, doc: Document) -> str:
    composite = rng.random() < 0.5
    i, pos = _element_slot(rng, doc, (lambda el: el.composite) if composite else None)
    seg = doc.segments[i]
    lay = doc.layout
    value = _el(seg, pos)
    if rng.random() < 0.2:  # a repetition instead
        value = value + lay.repetition + rng.choice(("X", value, ""))
        _set_element(seg, pos, value)
        return f"repetition in {_where(doc, i, pos)}"
    count = rng.choice((1, 1, 2, 5, 12))
    parts = [rng.choice(("X", "", "1", "ABC", "D8")) for _ in range(count)]
    value = lay.component.join([value, *parts])
    _set_element(seg, pos, value)
    return f"{count} extra components in {_where(doc, i, pos)}"


def envelope(rng: random.Random, doc: Document) -> str:
    """Now and then the ST or SE itself: counts, control numbers, ST03, a missing SE."""
    st, se = _pick_set(rng, doc)
    segs = doc.segments
    has_se = se < len(segs) and segs[se][0] == "SE"
    kind = rng.choice(("SE01", "SE02", "ST02", "ST03", "delete SE", "ST01", "empty ST"))
    if kind == "SE01" and has_se:
        count = _el(segs[se], 1)
        _set_element(segs[se], 1, str(int(count) + 1) if count.isdigit() else "1")
    elif kind == "SE02" and has_se:
        _set_element(segs[se], 2, "9999")
    elif kind == "ST02" and st < len(segs):
        _set_element(segs[st], 2, rng.choice(("", "12", "ABCD", "0002")))
    elif kind == "ST03" and st < len(segs):
        _set_element(segs[st], 3, rng.choice(("", "005010X220", "005010X221A1")))
    elif kind == "delete SE" and has_se:
        del segs[se]
    elif kind == "ST01" and st < len(segs):
        _set_element(segs[st], 1, rng.choice(("835", "", "8345")))
    elif st < len(segs):
        kind = "empty ST"
        segs[st] = ["ST"]
    return f"envelope: {kind}"


Mutation = Callable[[random.Random, Document], str]

# (name, weight, function): the weights shape the corpus; the names count it.
MUTATIONS: tuple[tuple[str, int, Mutation], ...] = (
    ("delete_segment", 10, delete_segment),
    ("duplicate_segment", 7, duplicate_segment),
    ("swap_segments", 7, swap_segments),
    ("move_segment", 7, move_segment),
    ("truncate_segment", 7, truncate_segment),
    ("truncate_file", 1, truncate_file),
    ("unknown_segment", 4, unknown_segment),
    ("guide_segment", 8, guide_segment),
    ("retag_segment", 4, retag_segment),
    ("repeat_segment", 3, repeat_segment),
    ("repeat_loop", 5, repeat_loop),
    ("ls_le_trap", 6, ls_le_trap),
    ("empty_element", 8, empty_element),
    ("lengthen_element", 6, lengthen_element),
    ("shorten_element", 6, shorten_element),
    ("wrong_code", 9, wrong_code),
    ("wrong_date", 6, wrong_date),
    ("wrong_time", 3, wrong_time),
    ("bad_number", 5, bad_number),
    ("bad_character", 9, bad_character),
    ("extra_elements", 5, extra_elements),
    ("extra_components", 5, extra_components),
    ("envelope", 2, envelope),
)
_NAMES = tuple(name for name, _w, _f in MUTATIONS)
_WEIGHTS = tuple(w for _n, w, _f in MUTATIONS)
_FUNCTIONS = {name: f for name, _w, f in MUTATIONS}


@dataclass(frozen=True, slots=True)
class Mutant:
    seed: int
    source: str
    steps: tuple[str, ...]  # "kind: what was done", in the order applied
    data: bytes

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(step.split(":", 1)[0] for step in self.steps)

    def describe(self) -> str:
        return f"seed {self.seed}, source {self.source}: " + "; ".join(self.steps)


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """For a file with no usable ISA: splice, cut or flip bytes."""
    if not data:
        return "bytes: add an ISA-like prefix", b"ISA*00*"
    at = rng.randrange(len(data))
    kind = rng.choice(("flip", "cut", "dup"))
    if kind == "flip":
        return f"bytes: flip #{at}", data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1 :]
    if kind == "cut":
        return f"bytes: cut at #{at}", data[:at]
    return f"bytes: duplicate from #{at}", data + data[at:]


def mutate(data: bytes, seed: int, *, source: str = "", count: int | None = None) -> Mutant:
    """1-4 random mutations of `data` (or `count`), the same ones for the same seed."""
    rng = random.Random(seed)
    n = count if count is not None else rng.randint(1, 4)
    doc = parse(data)
    steps: list[str] = []
    if doc is None:
        for _ in range(n):
            step, data = mutate_bytes(rng, data)
            steps.append(step)
        return Mutant(seed, source, tuple(steps), data)
    for _ in range(n):
        (name,) = rng.choices(_NAMES, weights=_WEIGHTS)
        if not doc.segments:
            break
        steps.append(f"{name}: {_FUNCTIONS[name](rng, doc)}")
    return Mutant(seed, source, tuple(steps), doc.render())


def corpus_case(seed: int, sources: Sequence[tuple[str, bytes]]) -> Mutant:
    """The corpus file for `seed`: a source picked by the seed, mutated by the seed."""
    name, data = sources[random.Random(seed * 7919 + 1).randrange(len(sources))]
    return mutate(data, seed, source=name)
