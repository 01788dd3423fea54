"""Pure; no I/O. The layer both 005010X220A1 engines share (the compiled tables and pyx12's own
walker): each places a segment in the guide and runs pyx12's element checks; this layer decides
what those checks are given and what is reported, where pyx12 departs from X12.6 and X231A1.

- Repetitions (ISA11) are split. An element repeats up to its `repeat` in the guide (DMG05,
  C056, up to 10 in X220A1); each repetition is checked as the element; one more is IK403 12, and
  so is a repetition of an element that does not repeat (X231A1 IK403 12 "too many
  repetitions"; pyx12 never splits them).
- A component separator inside a simple element, or more components than a composite has, is
  IK403 13 "too many components" (pyx12: 6, or it raises), the value copied as sent.
- An element, composite or component the guide marks "not used" that is present is IK403 I10
  (pyx12: 10, which X231A1 reserves for "exclusion condition violated"; 5 for a composite).
- Syntax notes (X12.6 P/R/E/C/L) name the element to fix: the missing one for IK403 2 (P0809 on
  NM1 with NM108 and no NM109 is NM109), the second present one for IK403 10 (pyx12 names the
  note's first element either way).
- An element of spaces alone is no value (X12.6 suppresses trailing spaces): a required one is
  IK403 1, another IK403 6 (pyx12 takes `REF*0F*   ` as a subscriber number).
- An LS opens a loop its LE must close (X12.6 "loop start/loop end"): an LS whose LE never comes
  is a missing segment, IK304 3 (pyx12's map has LE situational and no pairing). LS and LE are
  segments of loop 2000 (IK303), not of pyx12's wrapper "LS_LOOP".

What the layer reads of the guide comes from pyx12's map nodes (`rules_for`), the nodes both
engines place segments on; an engine hands over its element checks as `ElementCheck`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parsers.delimiters import Delimiters
from validators.issues import ElementSyntaxError, Issue, Level, SegmentSyntaxError, meaning

# Loops that are envelope or table wrappers in pyx12's map, not implementation-guide loop ids:
# an IK303 names the guide loop around them. X220A1 lists LS and LE in loop 2000.
NOT_GUIDE_LOOPS = frozenset(
    {"ISA_LOOP", "GS_LOOP", "ST_LOOP", "HEADER", "DETAIL", "FOOTER", "LS_LOOP"}
)

_ELEMENT_CODES = frozenset(c.value for c in ElementSyntaxError)
_MISSING_SEGMENT = SegmentSyntaxError.REQUIRED_SEGMENT_MISSING.value
_DATA_ELEMENT_ERRORS = SegmentSyntaxError.DATA_ELEMENT_ERRORS.value
_LOOP_OVER_MAXIMUM = SegmentSyntaxError.LOOP_OVER_MAXIMUM.value
_SEGMENT_OVER_MAXIMUM = SegmentSyntaxError.SEGMENT_OVER_MAXIMUM_USE.value
_NOT_USED = ElementSyntaxError.NOT_USED_ELEMENT_PRESENT.value
_TOO_MANY_REPETITIONS = ElementSyntaxError.TOO_MANY_REPETITIONS.value
_TOO_MANY_COMPONENTS = ElementSyntaxError.TOO_MANY_COMPONENTS.value
_CONDITIONAL_MISSING = ElementSyntaxError.CONDITIONAL_REQUIRED_MISSING.value
_REQUIRED_MISSING = ElementSyntaxError.REQUIRED_MISSING.value
_EXCLUSION = ElementSyntaxError.EXCLUSION_VIOLATED.value
_INVALID_CHARACTER = ElementSyntaxError.INVALID_CHARACTER.value


@dataclass(frozen=True, slots=True)
class ElementFinding:
    """One element finding, before it becomes an IK4 `Issue`: what an engine's element checks
    return, and what this layer adds."""

    code: str
    element_pos: int | None
    component_pos: int | None = None
    ref: str | None = None  # IK402: the data element number (None for a composite)
    name: str | None = None
    bad_value: str | None = None
    repetition_pos: int | None = None


ElementCheck = Callable[[tuple[str, ...]], list[ElementFinding]]
"""An engine's element checks of the segment it placed, given the elements to check: pyx12's
checks of each element and composite, without the syntax notes (this layer reads those)."""


@dataclass(frozen=True, slots=True)
class Component:
    usage: str | None
    ref: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class Position:
    """One element position of a guide segment (pyx12's child at that sequence number)."""

    usage: str | None
    ref: str | None  # the data element number; None for a composite (C056 is not N0)
    name: str | None
    repeat: int  # repetitions allowed (X220A1 DMG05: 10)
    components: tuple[Component, ...] | None  # None: a simple element


@dataclass(frozen=True, slots=True)
class SegmentRules:
    """What this layer needs of one guide segment."""

    loop_id: str | None
    positions: tuple[Position | None, ...]  # None where pyx12 finds no single child
    syntax: tuple[tuple[str, tuple[int, ...]], ...]
    opens_pair: bool  # LS
    closes_pair: bool  # LE
    inside_pair: bool  # a segment between LS and LE (loops 2700, 2750)
    not_used: tuple[int, ...]  # indexes holding what the guide marks not used (or a part of)


_RULES: dict[int, tuple[Any, SegmentRules]] = {}


def rules_for(node: Any) -> SegmentRules:
    """The rules of a pyx12 map segment node, read once per node (kept beside the node, so an
    id reused by another map's node is never mistaken for it)."""
    found = _RULES.get(id(node))
    if found is None or found[0] is not node:
        found = _RULES[id(node)] = (node, _read_rules(node))
    return found[1]


def guide_loop_id(node: Any) -> str | None:
    """The implementation guide's loop id (IK303) around a pyx12 map node, or None."""
    loop = node if node.is_loop() else node.parent
    while loop is not None and not loop.is_map_root():
        if loop.id not in NOT_GUIDE_LOOPS:
            return str(loop.id)
        loop = loop.parent
    return None


def _read_rules(node: Any) -> SegmentRules:
    positions: list[Position | None] = []
    for i in range(len(node.children)):
        same = [c for c in node.children if int(c.seq) == i + 1]
        if len(same) != 1:
            positions.append(None)
            continue
        child = same[0]
        if child.is_composite():
            positions.append(
                Position(
                    usage=child.usage,
                    ref=None,
                    name=child.name,
                    repeat=max(int(getattr(child, "repeat", 1) or 1), 1),
                    components=tuple(
                        Component(k.usage, str(k.data_ele) if k.data_ele else None, k.name)
                        for k in child.children
                    ),
                )
            )
        else:
            ref = str(child.data_ele) if child.data_ele else None
            positions.append(Position(child.usage, ref, child.name, 1, None))
    parents: list[str] = []
    loop = node.parent
    while loop is not None and not loop.is_map_root():
        parents.append(str(loop.id))
        loop = loop.parent
    tag = str(node.id)
    in_ls = "LS_LOOP" in parents
    not_used = tuple(
        i
        for i, p in enumerate(positions)
        if p is not None and (p.usage == "N" or any(k.usage == "N" for k in p.components or ()))
    )
    return SegmentRules(
        loop_id=guide_loop_id(node),
        positions=tuple(positions),
        syntax=tuple((str(s[0]), tuple(int(i) for i in s[1:])) for s in node.syntax),
        opens_pair=in_ls and tag == "LS",
        closes_pair=in_ls and tag == "LE",
        inside_pair=in_ls and tag not in ("LS", "LE"),
        not_used=not_used,
    )


def _present(raw: str, comp: str) -> bool:
    """pyx12's presence: a value, or a composite with at least one component."""
    return raw != "" and (comp not in raw or raw.replace(comp, "") != "")


class SetConformance:
    """One transaction set's state in this layer (the open LS) and its element rules."""

    def __init__(self, delimiters: Delimiters) -> None:
        self.comp = delimiters.component
        # An ISA11 that cannot be a separator (TA105 016) splits nothing.
        self.rep = delimiters.repetition_separator
        self.ls_open = False
        self._ls_loop_id: str | None = None

    # -- LS / LE ---------------------------------------------------------------------------
    def loop_pairs(self, rules: SegmentRules, position: int) -> list[Issue]:
        """The LS/LE pairing, told every segment an engine placed (in order): an open LS that
        the next segment outside its loops does not close is a missing LE, reported at that
        segment's position (as pyx12 reports any missing segment)."""
        found: list[Issue] = []
        if self.ls_open and not rules.inside_pair and not rules.closes_pair:
            found.append(segment_issue(_MISSING_SEGMENT, "LE", position, self._ls_loop_id))
            self.ls_open = False
        if rules.opens_pair:
            self.ls_open = True
            self._ls_loop_id = rules.loop_id
        elif rules.closes_pair:
            self.ls_open = False
        return found

    # -- elements --------------------------------------------------------------------------
    def element_issues(
        self,
        rules: SegmentRules,
        tag: str,
        elements: tuple[str, ...],
        position: int,
        check: ElementCheck,
    ) -> list[Issue]:
        """IK3 (8) and its IK4s for one placed segment: the engine's element checks on the
        elements as this layer prepares them, and this layer's own findings."""
        prepared, own, more = self._prepare(rules, elements)
        findings = check(prepared)
        cut = {f.element_pos for f in own if f.code == _TOO_MANY_COMPONENTS and not f.component_pos}
        if cut:
            # A simple element holding a component separator is IK403 13, its value as sent.
            # The engine was handed its first component only, to check the other elements:
            # what it finds there (`DTP*007*RD8*20260501:20261231` an invalid date 20260501) is
            # about a value nobody sent.
            findings = [f for f in findings if f.element_pos not in cut]
        repeated = {i for i, _k, _v in more}
        if repeated:
            findings = [
                dataclasses.replace(f, repetition_pos=1)
                if f.element_pos is not None and f.element_pos - 1 in repeated
                else f
                for f in findings
            ]
        for i, k, value in more:
            virtual = (*prepared[:i], value, *prepared[i + 1 :])
            findings.extend(
                dataclasses.replace(f, repetition_pos=k)
                for f in check(virtual)
                if f.element_pos == i + 1
            )
        findings.extend(own)
        notes = self._syntax(rules, prepared) if rules.syntax else None
        if notes:
            # A note's element that the guide requires anyway is already IK403 1: not twice.
            required = {f.element_pos for f in findings if f.code == _REQUIRED_MISSING}
            notes = [f for f in notes if f.element_pos not in required]
            # An element of spaces a note finds missing (NM109 with NM108) is that, not also 6.
            noted = {f.element_pos for f in notes}
            findings = [
                f
                for f in findings
                if not (
                    f.code == _INVALID_CHARACTER
                    and f.element_pos in noted
                    and not (f.bad_value or "").strip(" ")
                )
            ]
            findings.extend(notes)
        if not findings:
            return []
        # X231A1 orders nothing inside a segment: the IK4s read in element order.
        findings.sort(
            key=lambda f: (f.element_pos or 0, f.component_pos or 0, f.repetition_pos or 0)
        )
        loop_id = rules.loop_id
        out = [segment_issue(_DATA_ELEMENT_ERRORS, tag, position, loop_id)]
        out.extend(
            element_issue(
                f.code,
                tag,
                position,
                loop_id,
                element_pos=f.element_pos,
                component_pos=f.component_pos,
                repetition_pos=f.repetition_pos,
                ref=f.ref,
                name=f.name,
                bad_value=f.bad_value if f.bad_value not in (None, "") else None,
            )
            for f in findings
        )
        return out

    def _prepare(
        self, rules: SegmentRules, elements: tuple[str, ...]
    ) -> tuple[tuple[str, ...], list[ElementFinding], list[tuple[int, int, str]]]:
        """(the elements the engine checks, this layer's findings, further repetitions to
        check as (index, repetition number, value)). An element is handed over as its first
        repetition and its defined components; what is not used is handed over empty."""
        comp, rep = self.comp, self.rep
        own: list[ElementFinding] = []
        more: list[tuple[int, int, str]] = []
        text = "".join(elements)
        n = len(elements)
        blank = [i for i, e in enumerate(elements) if e and not e.strip(" ")] if " " in text else []
        if (
            not blank
            and comp not in text
            and (rep is None or rep not in text)
            and not any(i < n and elements[i] for i in rules.not_used)
        ):
            return elements, own, more  # nothing to split or empty: handed over as it is
        out = list(elements)
        for i in blank:
            # Only spaces: X12.6 suppresses a value's trailing spaces, and nothing is left. A
            # required element is missing (IK403 1, the engine's); another is IK403 6.
            blanked = rules.positions[i] if i < len(rules.positions) else None
            if blanked is None or blanked.components is not None or blanked.usage == "N":
                continue  # a composite's or a not-used element's own checks say more
            out[i] = ""
            if blanked.usage != "R":
                own.append(_finding(_INVALID_CHARACTER, i + 1, None, blanked, elements[i]))
        for i, position in enumerate(rules.positions[: len(elements)]):
            raw = out[i]
            if raw == "" or position is None:
                continue
            pos = i + 1
            if position.usage == "N":
                if _present(raw, comp) or position.components is None:
                    own.append(_finding(_NOT_USED, pos, None, position, raw))
                out[i] = ""
                continue
            repetitions = raw.split(rep) if rep is not None and rep in raw else [raw]
            if len(repetitions) > position.repeat:
                extra = position.repeat + 1
                own.append(
                    ElementFinding(
                        _TOO_MANY_REPETITIONS,
                        pos,
                        None,
                        position.ref,
                        position.name,
                        repetitions[position.repeat],
                        repetition_pos=extra,
                    )
                )
                repetitions = repetitions[: position.repeat]
            several = len(repetitions) > 1
            cleaned = [
                self._components(position, pos, value, k if several else None, own)
                for k, value in enumerate(repetitions, start=1)
            ]
            out[i] = cleaned[0]
            more.extend((i, k, value) for k, value in enumerate(cleaned[1:], start=2))
        prepared = tuple(out)
        return (elements if prepared == elements else prepared), own, more

    def _components(
        self,
        position: Position,
        pos: int,
        value: str,
        repetition: int | None,
        own: list[ElementFinding],
    ) -> str:
        """One repetition, cut to the components the element defines (IK403 13 beyond), its
        not-used components emptied (IK403 I10)."""
        comp = self.comp
        if comp not in value:
            return value
        parts = value.split(comp)
        kids = position.components
        allowed = len(kids) if kids is not None else 1
        if len(parts) > allowed:
            own.append(
                ElementFinding(
                    _TOO_MANY_COMPONENTS,
                    pos,
                    allowed + 1 if kids is not None else None,
                    position.ref,
                    position.name,
                    value,
                    repetition_pos=repetition,
                )
            )
        parts = parts[:allowed]
        if kids is None:
            return parts[0]
        for j, part in enumerate(parts):
            if part and kids[j].usage == "N":
                own.append(
                    ElementFinding(
                        _NOT_USED, pos, j + 1, kids[j].ref, kids[j].name, part, repetition
                    )
                )
                parts[j] = ""
        return comp.join(parts)

    def _syntax(self, rules: SegmentRules, elements: tuple[str, ...]) -> list[ElementFinding]:
        """X12.6 syntax notes, each finding on the element the sender must change."""
        found: list[ElementFinding] = []
        comp = self.comp
        n = len(elements)
        for code, idx in rules.syntax:
            present = [s for s in idx if s <= n and _present(elements[s - 1], comp)]
            absent = [s for s in idx if s not in present]
            if len(idx) < 2:
                continue
            if code == "P" and present and absent:  # paired: all or none
                found.extend(self._missing(rules, s) for s in absent)
            elif code == "R" and not present:  # required: at least one
                found.append(self._missing(rules, idx[0]))
            elif code == "E" and len(present) > 1:  # exclusion: at most one
                s = present[1]
                where = rules.positions[s - 1] if s <= len(rules.positions) else None
                found.append(
                    ElementFinding(
                        _EXCLUSION,
                        s,
                        None,
                        where.ref if where else None,
                        where.name if where else None,
                        elements[s - 1],
                    )
                )
            elif code == "C" and idx[0] in present:  # conditional: first needs the rest
                found.extend(self._missing(rules, s) for s in idx[1:] if s in absent)
            elif code == "L" and idx[0] in present and not present[1:]:  # list conditional
                found.append(self._missing(rules, idx[1]))
        return found

    @staticmethod
    def _missing(rules: SegmentRules, s: int) -> ElementFinding:
        where = rules.positions[s - 1] if s <= len(rules.positions) else None
        return ElementFinding(
            _CONDITIONAL_MISSING,
            s,
            None,
            where.ref if where else None,
            where.name if where else None,
        )


def _finding(
    code: str, pos: int, component: int | None, position: Position, value: str
) -> ElementFinding:
    return ElementFinding(code, pos, component, position.ref, position.name, value)


def walk_code(code: str, loop_name: str | None) -> str:
    """An engine's IK304 for a segment it walked, read against the guide: a "loop over its
    maximum" (4) on one of pyx12's wrapper loops (`NOT_GUIDE_LOOPS`: HEADER, LS_LOOP) is the
    segment that opens it used past its own maximum, 5 — X220A1 has a second BGN or a second LS
    in a member, each a segment of maximum use 1, not a loop (pyx12 says 4)."""
    if code == _LOOP_OVER_MAXIMUM and loop_name in NOT_GUIDE_LOOPS:
        return _SEGMENT_OVER_MAXIMUM
    return code


def engine_code(code: str) -> str:
    """An engine's element code as an IK403 value (pyx12's unknown codes read as 7)."""
    return code if code in _ELEMENT_CODES else ElementSyntaxError.INVALID_CODE_VALUE.value


def segment_issue(code: str, seg_id: str, position: int, loop_id: str | None) -> Issue:
    """An IK3 finding, worded the same whichever engine found it."""
    where = f"{seg_id} at position {position}" + (f" in loop {loop_id}" if loop_id else "")
    return Issue(
        level=Level.SEGMENT,
        code=code,
        message=f"{where}: {meaning('IK304', code)}",
        segment_id=seg_id,
        segment_position=position,
        loop_id=loop_id,
    )


def element_issue(
    code: str,
    tag: str,
    position: int,
    loop_id: str | None,
    *,
    element_pos: int | None,
    component_pos: int | None,
    ref: str | None,
    name: str | None,
    bad_value: str | None,
    repetition_pos: int | None = None,
) -> Issue:
    """An IK4 finding, worded the same whichever engine found it."""
    where = f"{tag}{element_pos:02d}" if element_pos else tag
    if component_pos:
        where += f"-{component_pos}"
    if repetition_pos:
        where += f" (repetition {repetition_pos})"
    label = f"{where} ({name})" if name else where
    return Issue(
        level=Level.ELEMENT,
        code=code,
        message=f"{label}: {meaning('IK403', code)}",
        segment_id=tag,
        segment_position=position,
        loop_id=loop_id,
        element_position=element_pos,
        component_position=component_pos,
        repetition_position=repetition_pos,
        element_ref=ref,
        bad_value=bad_value,
    )
