"""Pure; no I/O beyond reading pyx12's packaged map once. The compiled engine: pyx12's
005010X220A1 map becomes plain tables (loops and segments in position order with their usage,
repeat limits and path keys; elements with usage, lengths, type, code sets as frozensets and the
external code sets pyx12 checks; composites; syntax notes) once per process, and a port of pyx12's
own walker and element checks walks them.

The walker and the checks keep pyx12's decisions to the letter — the same scan order, the same
deferred "mandatory segment missing" flushes, the same counters (keyed by pyx12's path strings,
reset when a loop is re-entered), the same element checks in the same order, even the same
inputs on which pyx12 raises (an RD8 with two dashes), which `implementation.TransactionSetChecker`
reports as one unexpected segment. What changes is the cost: no per-segment pyx12 objects, no
path parsing, no list-comprehension lookups by sequence number, no regex when a segment has only
plain characters. Where we depart from pyx12 on purpose (repetitions, components, "not used"
elements, syntax notes, LS/LE) is the layer both engines share, `validators.conformance`. The
differential tests (`tests/validators/test_compiled_differential.py`) hold the two engines to
identical findings.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, cast

import pyx12.path
import pyx12.validation
from pyx12.map_if import composite_if, element_if, segment_if

from parsers.delimiters import Delimiters
from parsers.events import Segment
from validators.conformance import (
    NOT_GUIDE_LOOPS,
    ElementFinding,
    SegmentRules,
    SetConformance,
    engine_code,
    rules_for,
    segment_issue,
    walk_code,
)
from validators.implementation import guide_segment_ids, load_map, walking_elements
from validators.issues import Issue, SegmentSyntaxError

_SEGMENT_CODES = frozenset(c.value for c in SegmentSyntaxError)
_UNRECOGNIZED = SegmentSyntaxError.UNRECOGNIZED_SEGMENT_ID.value
_MISSING = SegmentSyntaxError.REQUIRED_SEGMENT_MISSING.value
_UNEXPECTED = SegmentSyntaxError.UNEXPECTED_SEGMENT.value
_OUT_OF_SEQUENCE = SegmentSyntaxError.SEGMENT_OUT_OF_SEQUENCE.value

# pyx12's control characters, in the order it looks for them (its message names the first).
_CONTROL = re.compile("[\x07\x09\x0a\x0b\x0c\x0d\x1c\x1d\x1e\x1f\x01-\x06\x11-\x17]")
_DTP_TYPES = frozenset({"RD8", "D8", "D6", "DT", "TM"})
_DATE_TYPES = ("RD8", "DT", "D8", "D6")


class Elem:
    """A simple element of a segment or a component of a composite."""

    __slots__ = (
        "any_external",
        "codes",
        "component_pos",
        "data_ele",
        "dtype",
        "element_pos",
        "external",
        "max_len",
        "min_len",
        "name",
        "numeric",
        "regex",
        "required_when_empty",
        "seq",
        "text",
        "usage",
        "valid_codes",
    )

    def __init__(self, node: element_if) -> None:
        self.name: str | None = node.name
        self.data_ele: str | None = str(node.data_ele) if node.data_ele else None
        self.usage: str | None = node.usage
        self.seq = int(node.seq)
        self.dtype: str | None = node.data_type
        self.min_len = int(node.min_len)
        self.max_len = int(node.max_len)
        self.numeric = self.dtype is not None and (self.dtype == "R" or self.dtype[0] == "N")
        self.text = self.dtype in ("AN", "ID")
        self.valid_codes: list[str | None] = list(node.valid_codes)
        self.codes: frozenset[str | None] | None = (
            frozenset(node.valid_codes) if node.valid_codes or node.external_codes else None
        )
        self.external: frozenset[str | None] = frozenset()
        self.any_external = False  # an external code set the parameters exclude: all valid
        if node.external_codes is not None:
            ext = node.root.ext_codes
            key = node.external_codes
            if key in ext.exclude_list:
                self.any_external = True
            else:
                self.external = frozenset(ext.codes[key]["codes"])
        self.regex: re.Pattern[str] | None = node.rec
        parent = node.parent
        in_composite = parent is not None and parent.is_composite()
        self.required_when_empty = node.usage == "R" and (
            self.seq != 1 or not in_composite or (parent is not None and parent.usage == "R")
        )
        if in_composite and parent is not None:
            self.element_pos: int | None = int(parent.seq)
            self.component_pos: int | None = self.seq
        else:
            self.element_pos = self.seq
            self.component_pos = None


class Composite:
    __slots__ = ("children", "refdes_pos", "usage")

    def __init__(self, node: composite_if) -> None:
        self.usage: str | None = node.usage
        self.children = tuple(Elem(c) for c in node.children)
        self.refdes_pos = _refdes_position(node.refdes)


class Seg:
    """A segment of the map, with what the walker and the element checks need."""

    __slots__ = (
        "children",
        "eq_key",
        "id",
        "inside_pair",
        "is_dtp",
        "key",
        "loop_id",
        "loop_segment_ids",
        "match",
        "max_repeat",
        "opens_pair",
        "parent",
        "pos",
        "quick",
        "rules",
        "syntax",
        "usage",
    )
    is_loop = False

    def __init__(self, node: segment_if, parent: Loop, keys: dict[str, int]) -> None:
        self.id = str(node.id)
        self.usage: str | None = node.usage
        self.pos = int(node.pos)
        self.max_repeat = int(node.get_max_repeat())
        self.key = _key(node.x12path, keys)
        self.parent = parent
        self.eq_key = (node.id, parent.id)  # pyx12's x12_node.__eq__: id and parent id
        unique = node._resolve_unique_key_field(node.id, with_qual=False)
        self.match: tuple[int, int | None, frozenset[str | None]] | None = (
            None if unique is None else (unique[1], unique[2], unique[0]._valid_codes_set)
        )
        # None where pyx12's get_child_node_by_idx raises (no or several children at a seq).
        children: list[Elem | Composite | None] = []
        for i in range(len(node.children)):
            same = [c for c in node.children if c.seq == i + 1]
            if len(same) != 1:
                children.append(None)
            elif isinstance(same[0], composite_if):
                children.append(Composite(same[0]))
            else:
                children.append(Elem(same[0]))
        self.children = tuple(children)
        self.syntax = tuple(tuple(s) for s in node.syntax)
        self.loop_id = parent.loop_id
        self.loop_segment_ids = parent.segment_ids
        self.is_dtp = self.id == "DTP"
        self.quick: Callable[[tuple[str, ...]], bool] = _never
        self.rules: SegmentRules = rules_for(node)
        self.opens_pair = self.rules.opens_pair
        self.inside_pair = self.rules.inside_pair


class Loop:
    __slots__ = (
        "children",
        "descendants",
        "eq_key",
        "first",
        "first_seg",
        "id",
        "is_root",
        "key",
        "loop_id",
        "max_repeat",
        "parent",
        "pos",
        "positions",
        "segment_ids",
        "usage",
    )
    is_loop = True

    def __init__(self, node: Any, parent: Loop | None, keys: dict[str, int]) -> None:
        self.is_root = parent is None
        self.id = str(node.id) if node.id is not None else ""
        self.usage: str | None = node.usage if not self.is_root else None
        self.pos = int(node.pos) if not self.is_root else 0
        self.max_repeat = int(node.get_max_repeat()) if not self.is_root else 0
        self.key = _key(node.x12path, keys) if not self.is_root else -1
        self.parent = parent if parent is not None else self
        self.eq_key = (node.id, parent.id if parent is not None else None)
        if self.is_root or self.id in NOT_GUIDE_LOOPS:
            self.loop_id: str | None = parent.loop_id if parent is not None else None
        else:
            self.loop_id = self.id
        ordered = [(p, c) for p in sorted(node.pos_map) for c in node.pos_map[p]]
        self.segment_ids = frozenset(str(c.id) for _p, c in ordered if c.is_segment())
        self.children: tuple[tuple[int, Seg | Loop], ...] = tuple(
            (p, Loop(c, self, keys) if c.is_loop() else Seg(c, self, keys)) for p, c in ordered
        )
        self.positions = tuple(p for p, _c in self.children)
        self.first: Seg | Loop | None = self.children[0][1] if self.children else None
        self.first_seg: Seg | None = self.first if isinstance(self.first, Seg) else None
        self.descendants: frozenset[int] = frozenset()


def _never(_els: tuple[str, ...]) -> bool:
    return False


def _key(x12path: Any, keys: dict[str, int]) -> int:
    text = str(x12path.format())
    return keys.setdefault(text, len(keys))


def _refdes_position(refdes: Any) -> int | None:
    if not refdes:
        return None
    digits = "".join(ch for ch in str(refdes)[-2:] if ch.isdigit())
    return int(digits) if digits else None


class CompiledMap:
    """pyx12's map as tables: the loop tree, and every path key's strict descendants."""

    def __init__(self) -> None:
        source = load_map()
        self.keys: dict[str, int] = {}
        self.root = Loop(source, None, self.keys)
        # NodeCounter.reset_to_node(path) deletes every counted path strictly below `path`,
        # compared component by component on pyx12's path strings (X12Path.is_child_path).
        split = {key: text.split("/") for text, key in self.keys.items()}
        for loop in self._loops(self.root):
            if loop.is_root:
                continue
            mine = split[loop.key]
            depth = len(mine)
            loop.descendants = frozenset(
                k for k, parts in split.items() if len(parts) > depth and parts[:depth] == mine
            )
        self.isa_loop = self._key("/ISA_LOOP")
        self.isa = self._key("/ISA_LOOP/ISA")
        self.gs_loop = self._key("/ISA_LOOP/GS_LOOP")
        self.gs = self._key("/ISA_LOOP/GS_LOOP/GS")
        self.start = self.root.children[0][1]  # ISA_LOOP
        gs_loop = next(c for _p, c in cast(Loop, self.start).children if c.id == "GS_LOOP")
        self.gs_node = next(c for _p, c in cast(Loop, gs_loop).children if c.id == "GS")
        self.guide_segment_ids = guide_segment_ids()
        detail = next(c for _p, c in self._st_loop().children if c.id == "DETAIL")
        member = next(c for _p, c in cast(Loop, detail).children if c.id == "2000")
        self.member_start = cast(Loop, member).first_seg
        self.icvn = source.icvn or "00401"
        self.charset = source.param.get("charset")
        segments = [c for loop in self._loops(self.root) for _p, c in loop.children]
        qualified: set[str] = set()
        cacheable = True
        for child in segments:
            if isinstance(child, Seg):
                child.quick = _compile_quick(child, self.charset)
                if child.match is not None:
                    qualified.add(child.id)
                    cacheable = cacheable and child.match[0] == 1 and child.match[1] in (None, 1)
        self.qualified_tags: frozenset[str] | None = frozenset(qualified) if cacheable else None

    def _st_loop(self) -> Loop:
        gs_loop = next(c for _p, c in cast(Loop, self.start).children if c.id == "GS_LOOP")
        return cast(Loop, next(c for _p, c in cast(Loop, gs_loop).children if c.id == "ST_LOOP"))

    def _key(self, path: str) -> int:
        return self.keys.setdefault(pyx12.path.X12Path(path).format(), len(self.keys))

    def _loops(self, loop: Loop) -> list[Loop]:
        found = [loop]
        for _p, child in loop.children:
            if isinstance(child, Loop):
                found.extend(self._loops(child))
        return found


@functools.cache
def compiled_map() -> CompiledMap:
    """The compiled 834 map, built once per process (about 0.2 s including pyx12's parse)."""
    return CompiledMap()


# Trace operations: the only steps of a walk whose effect depends on the counters. Which nodes a
# walk visits, and where it ends, depend only on the map, the starting node and the segment's
# tag and qualifier values — so a walk is recorded once per (start, tag, qualifiers) and then
# replayed: the same steps in the same order on the current counters.
_OP_MISSING_SEG = 0  # a required segment passed over: missing if never counted
_OP_MISSING_LOOP = 1  # a required loop not entered: its first segment missing if never counted
_OP_SEGMENT = 2  # the segment matched: count it, check its use, flush pending "missing"
_OP_ENTER = 3  # the segment opens a loop: count the loop (resetting below it), flush all
_OP_NOT_FOUND = 4  # nowhere in the map from here

_Op = tuple[int, Any, Any]
# (the trace, where it ends, and — for a trace that only passes over required segments to one
# segment — that segment and the counter keys of those passed over)
_Cached = tuple[tuple[_Op, ...], "Seg | None", "Seg | None", tuple[int, ...]]
_TRACE_CACHE_LIMIT = 8192


class _Walk:
    """One walk from the current node to the node that takes the segment (pyx12's walk_errors)."""

    __slots__ = (
        "cache",
        "comp",
        "counts",
        "els",
        "errors",
        "missing",
        "qualified",
        "seg_count",
        "tag",
        "trace",
    )

    def __init__(self, counts: dict[int, int], qualified: frozenset[str] | None) -> None:
        self.counts = counts
        self.missing: list[tuple[Seg, int]] = []
        self.errors: list[tuple[str, str | None, int | None, Seg | Loop | None]] = []
        self.tag = ""
        self.els: tuple[str, ...] = ()
        self.comp = ":"
        self.seg_count = 0
        self.trace: list[_Op] = []
        self.cache: dict[tuple[object, ...], _Cached] = {}
        # Tags some map segment tells apart by element 01 (None: the map reads other elements
        # too, and walks are not cached).
        self.qualified = qualified

    def matches(self, seg: Seg) -> bool:
        if self.tag != seg.id:
            return False
        match = seg.match
        if match is None:
            return True
        ele, sub, codes = match
        els = self.els
        if ele > len(els):
            return None in codes
        raw = els[ele - 1]
        comp = self.comp
        if sub is None:
            value = _format(raw, comp) if comp in raw else raw
            return value in codes
        if comp not in raw:
            return (raw if sub == 1 else None) in codes
        parts = raw.split(comp)
        return (parts[sub - 1] if sub <= len(parts) else None) in codes

    def walk(self, orig: Seg | Loop) -> Seg | None:
        """The node that takes the segment (None: not found); findings in `self.errors`."""
        self.missing = []
        self.errors = []
        els = self.els
        tag = self.tag
        # The map's qualifiers are read from element 01 only; a component separator there makes
        # the value depend on pyx12's formatting, so such a segment is walked afresh.
        key: tuple[object, ...] | None = None
        qualified = self.qualified
        if qualified is not None:
            q1 = (els[0] if els else None) if tag in qualified else None
            if q1 is None or self.comp not in q1:
                key = (orig, tag, q1)
                cached = self.cache.get(key)
                if cached is not None:
                    ops, result, only, passed = cached
                    counts = self.counts
                    if only is None or any(counts.get(k, 0) < 1 for k in passed):
                        self.replay(ops)
                        return result
                    # The common walk: to a segment of the same loop, passing over only
                    # required segments already seen (so nothing is pending): count it and
                    # check its use — what `replay` would do, without the steps that do
                    # nothing.
                    count = counts.get(only.key, 0) + 1
                    counts[only.key] = count
                    if only.usage == "N":
                        self.errors.append((_UNEXPECTED, None, None, None))
                    elif count > only.max_repeat:
                        self.errors.append(("5", tag, self.seg_count, only))
                    return result
        self.trace = []
        result = self.search(orig)
        if key is not None:
            if len(self.cache) >= _TRACE_CACHE_LIMIT:
                self.cache.clear()
            trace = tuple(self.trace)
            only = None
            passed = ()
            if (
                trace
                and trace[-1][0] == _OP_SEGMENT
                and all(op == _OP_MISSING_SEG for op, _a, _b in trace[:-1])
            ):
                only = trace[-1][1]
                passed = tuple(a.key for _op, a, _b in trace[:-1])
            self.cache[key] = (trace, result, only, passed)
        return result

    def replay(self, ops: tuple[_Op, ...]) -> None:
        counts = self.counts
        for op, a, b in ops:
            if op == _OP_SEGMENT:
                counts[a.key] = counts.get(a.key, 0) + 1
                self.check_seg_usage(a)
                if self.missing:
                    eq = a.eq_key
                    self.missing = [m for m in self.missing if m[0].eq_key != eq]
                    self.flush(a.pos)
            elif op == _OP_MISSING_SEG:
                if counts.get(a.key, 0) < 1:
                    self.missing.append((a, self.seg_count))
            elif op == _OP_ENTER:
                self.check_loop_usage(a)
                counts[b.key] = counts.get(b.key, 0) + 1
                if self.missing:
                    self.flush(None)
            elif op == _OP_MISSING_LOOP:
                if counts.get(a.key, 0) < 1:
                    self.missing.append((b, self.seg_count))
            else:
                self.errors.append((_UNRECOGNIZED, self.tag, self.seg_count, a))

    def search(self, orig: Seg | Loop) -> Seg | None:
        node_pos = orig.pos
        node: Loop = orig if isinstance(orig, Loop) else orig.parent
        while True:
            found, seg = self.scan(node, node_pos)
            if found:
                return seg
            if node.is_root:
                self.do((_OP_NOT_FOUND, orig, None))
                return None
            node_pos = node.pos
            node = node.parent

    def do(self, op: _Op) -> None:
        self.trace.append(op)
        self.replay((op,))

    def scan(self, node: Loop, node_pos: int) -> tuple[bool, Seg | None]:
        children = node.children
        positions = node.positions
        i = 0
        n = len(positions)
        while i < n and positions[i] < node_pos:
            i += 1
        tag = self.tag
        while i < n:
            child = children[i][1]
            i += 1
            if isinstance(child, Seg):
                if child.id == tag and self.matches(child):
                    if not node.is_root and self.loop_match(node):
                        return True, self.goto(node)
                    self.do((_OP_SEGMENT, child, None))
                    return True, child
                if child.usage == "R":
                    self.do((_OP_MISSING_SEG, child, None))
            elif self.loop_match(child):
                return True, self.goto(child)
        return False, None

    def check_seg_usage(self, seg: Seg) -> None:
        if seg.usage == "N":
            self.errors.append((_UNEXPECTED, None, None, None))
        elif self.counts.get(seg.key, 0) > seg.max_repeat:
            self.errors.append(("5", self.tag, self.seg_count, seg))

    def loop_match(self, loop: Loop) -> bool:
        first = loop.first
        if first is None:
            return False
        if isinstance(first, Loop):
            for _p, child in loop.children:
                if isinstance(child, Loop) and self.loop_match(child):
                    return True
            return False
        if first.id == self.tag and self.matches(first):
            return True
        if loop.usage == "R":
            self.do((_OP_MISSING_LOOP, loop, first))
        return False

    def goto(self, loop: Loop) -> Seg | None:
        first = loop.first_seg
        if first is not None and first.id == self.tag and self.matches(first):
            self.do((_OP_ENTER, loop, first))
            return first
        for _p, child in loop.children:
            if isinstance(child, Loop):
                seg = self.goto(child)
                if seg is not None:
                    return seg
        return None

    def check_loop_usage(self, loop: Loop) -> None:
        if loop.usage == "N":
            self.errors.append((_UNEXPECTED, None, None, None))
            return
        counts = self.counts
        descendants = loop.descendants
        for key in [k for k in counts if k in descendants]:
            del counts[key]
        count = counts.get(loop.key, 0) + 1
        counts[loop.key] = count
        if count > loop.max_repeat:
            self.errors.append(("4", self.tag, self.seg_count, loop))

    def flush(self, cur_pos: int | None) -> None:
        keep = []
        for seg, seg_count in self.missing:
            if seg.pos != cur_pos:
                self.errors.append((_MISSING, seg.id, seg_count, seg))
            else:
                keep.append((seg, seg_count))
        self.missing = keep


def _format(raw: str, comp: str) -> str:
    """pyx12's Composite.format(): the components with trailing empty ones dropped."""
    parts = raw.split(comp)
    end = len(parts)
    while end > 1 and parts[end - 1] == "":
        end -= 1
    return comp.join(parts[:end])


# One element error: (code, element position, component position, element, bad value).
_EleErr = tuple[str, int | None, int | None, Elem | None, str | None]


class ElementChecks:
    """pyx12's segment_if / composite_if / element_if checks over the compiled tables."""

    def __init__(self, cmap: CompiledMap, delimiters: Delimiters) -> None:
        self.delimiters = delimiters
        self.comp = delimiters.component
        self.icvn = cmap.icvn
        self.charset = cmap.charset
        # Characters that can never fail an AN/ID check, a control-character check or a
        # composite split: a segment made only of these takes the quick path.
        basic = pyx12.validation.rec_ID_E5 if self.icvn == "00501" else pyx12.validation.rec_ID_E
        if self.charset == "B":
            basic = pyx12.validation.rec_ID_B
        self.bad_text = basic

    def segment(self, seg: Seg, els: tuple[str, ...]) -> list[_EleErr]:
        errors: list[_EleErr] = []
        comp = self.comp
        children = seg.children
        child_count = len(children)
        n = len(els)
        if n > child_count:
            extra = els[child_count]
            value = _format(extra, comp) if comp in extra else extra
            errors.append(("3", _refdes_position(f"{child_count + 1:02d}"), None, None, value))
        type_list: list[str | None] = []
        dtype: list[str | None] = []
        for i in range(min(n, child_count)):
            child = children[i]
            if child is None:
                raise LookupError("pyx12 cannot find this element's map node")
            raw = els[i]
            if isinstance(child, Composite):
                parts = raw.split(comp) if comp in raw else [raw]
                if len(parts) > len(child.children) and child.usage != "N":
                    raise IndexError("pyx12 raises on a composite with too many components")
                self.composite(child, parts, errors)
            elif isinstance(child, Elem):
                if i == 1 and seg.is_dtp:
                    value = _format(raw, comp) if comp in raw else raw
                    if value in _DTP_TYPES:
                        dtype = [value]
                if child.data_ele == "1250":
                    type_list.extend(child.valid_codes)
                if comp in raw and len(raw.split(comp)) > 1:
                    # pyx12: "is an invalid composite", with the value as it formats it
                    errors.append(("6", child.element_pos, None, child, _format(raw, comp)))
                    continue
                if i == 2 and seg.is_dtp:
                    self.element(child, raw, dtype, errors)
                elif child.data_ele == "1251" and type_list:
                    self.element(child, raw, type_list, errors)
                else:
                    self.element(child, raw, None, errors)
        for i in range(min(n, child_count), child_count):
            child = children[i]
            if child is None:
                raise LookupError("pyx12 cannot find this element's map node")
            if isinstance(child, Composite):
                self.composite(child, None, errors)
            elif isinstance(child, Elem) and child.required_when_empty:
                errors.append(("1", child.element_pos, child.component_pos, child, None))
        # The syntax notes are read by the shared layer (`conformance`).
        return errors

    def findings(self, seg: Seg, els: tuple[str, ...]) -> list[ElementFinding]:
        """The element checks as the shared layer reads them."""
        return [
            ElementFinding(
                engine_code(code),
                pos,
                cpos,
                el.data_ele if el is not None else None,
                el.name if el is not None else None,
                bad if bad not in (None, "") else None,
            )
            for code, pos, cpos, el, bad in self.segment(seg, els)
        ]

    def composite(self, comp: Composite, parts: list[str] | None, errors: list[_EleErr]) -> None:
        empty = parts is None or all(p == "" for p in parts)
        if empty and comp.usage in ("N", "S"):
            return
        if comp.usage == "R" and empty:
            errors.append(("1", comp.refdes_pos, None, None, None))
            return
        if parts is None:  # empty and optional: returned above; a required one, too
            return
        if comp.usage == "N":
            errors.append(("5", comp.refdes_pos, None, None, None))
            return
        kids = comp.children
        if len(parts) > len(kids):
            errors.append(("3", comp.refdes_pos, None, None, None))
        for i in range(min(len(parts), len(kids))):
            self.element(kids[i], parts[i], None, errors)
        for i in range(min(len(parts), len(kids)), len(kids)):
            if kids[i].required_when_empty:
                kid = kids[i]
                errors.append(("1", kid.element_pos, kid.component_pos, kid, None))

    def element(
        self, el: Elem, value: str, type_list: list[str | None] | None, errors: list[_EleErr]
    ) -> None:
        pos, cpos = el.element_pos, el.component_pos
        if value == "":
            if el.required_when_empty and el.usage not in ("N", "S"):
                errors.append(("1", pos, cpos, el, None))
            return
        if el.usage == "N":
            errors.append(("10", pos, cpos, el, None))
            return
        measured = len(value.replace("-", "").replace(".", "")) if el.numeric else len(value)
        if measured < el.min_len:
            errors.append(("4", pos, cpos, el, value))
        if measured > el.max_len:
            errors.append(("5", pos, cpos, el, value))
        if _CONTROL.search(value) is not None:
            _found, bad = pyx12.validation.contains_control_character(value)
            errors.append(("6", pos, cpos, el, bad))
            return
        if el.text and value[-1] == " " and len(value.rstrip()) >= el.min_len:
            errors.append(("6", pos, cpos, el, value))
        codes = el.codes
        if (
            codes is not None
            and value not in codes
            and not el.any_external
            and value not in el.external
        ):
            errors.append(("7", pos, cpos, el, value))
        dtype = el.dtype
        if dtype is not None and not self.valid_type(value, dtype, self.icvn):
            if dtype in _DATE_TYPES:
                errors.append(("8", pos, cpos, el, value))
            elif dtype == "TM":
                errors.append(("9", pos, cpos, el, value))
            else:
                errors.append(("6", pos, cpos, el, value))
        if type_list:
            # pyx12 tries every type (no short cut): an RD8 with two dashes raises even when an
            # earlier type already matched.
            results = [self.valid_type(value, t, "00401") for t in type_list if t is not None]
            if not any(results):
                if "TM" in type_list:
                    errors.append(("9", pos, cpos, el, value))
                elif any(t in type_list for t in _DATE_TYPES):
                    errors.append(("8", pos, cpos, el, value))
        if el.regex is not None and not el.regex.search(value):
            errors.append(("7", pos, cpos, el, value))

    def valid_type(self, value: str, dtype: str, icvn: str) -> bool:
        if dtype in ("AN", "ID") and icvn == self.icvn:
            return self.bad_text.search(value) is None
        return bool(pyx12.validation.IsValidDataType(value, dtype, self.charset, icvn))


# The least header pyx12's map takes without a finding: ST, BGN, the sponsor and payer N1s.
_PRIMER = (
    "ST*834*0001*005010X220A1",
    "BGN*00*1*20260101*1200****2",
    "N1*P5*SPONSOR*FI*123456789",
    "N1*IN*PAYER*FI*123456789",
)


class CompiledTransactionSetChecker:
    """Walks one 834 transaction set through the compiled map, one segment at a time: the same
    interface and the same findings as `implementation.TransactionSetChecker`."""

    def __init__(self, delimiters: Delimiters) -> None:
        cmap = compiled_map()
        self._map = cmap
        # walk_tree.forceWalkCounterToLoopStart for ISA_LOOP and GS_LOOP
        self._counts: dict[int, int] = {
            cmap.isa_loop: 1,
            cmap.isa: 1,
            cmap.gs_loop: 1,
            cmap.gs: 1,
        }
        self._walk = _Walk(self._counts, cmap.qualified_tags)
        self._walk.comp = delimiters.component
        self._checks = ElementChecks(cmap, delimiters)
        self._node: Seg | Loop = cmap.gs_node
        self._ls_id: str | None = None
        self._conformance = SetConformance(delimiters)
        # The quick path takes only segments of plain characters: none that fails an AN/ID
        # check, and no component or repetition separator (those are the shared layer's).
        self._not_plain = _not_plain(
            self._checks.bad_text, delimiters.component, self._conformance.rep
        ).search
        self.walk_findings = 0

    def check(self, segment: Segment) -> list[Issue]:
        """Issues for one segment of the set (ST and SE included), in pyx12's order."""
        position = segment.index or 0
        self.walk_findings = 0
        try:
            return self._check(segment, position)
        except Exception:
            self.walk_findings = 0
            return [segment_issue(_UNEXPECTED, segment.tag, position, self._node.loop_id)]

    def prime(self) -> None:
        """Walk a minimal header, so that the next INS enters the 2000 loop just as it does
        after any member: for checking a block of members cut from the middle of a set. What
        the walk leaves behind outside the 2000 loop is never read again (the walk only moves
        forward, and entering 2000 resets everything below it)."""
        d = self._checks.delimiters
        for i, text in enumerate(_PRIMER, start=1):
            tag, *elements = text.split("*")
            elements = [e.replace(":", d.component) for e in elements]
            self.check(Segment(tag=tag, elements=tuple(elements), index=i))

    def at_member_start(self) -> bool:
        """The last segment entered the 2000 loop with its INS."""
        return self._node is self._map.member_start

    def _check(self, segment: Segment, position: int) -> list[Issue]:
        tag = segment.tag
        els = segment.elements
        if tag == "LS":
            self._ls_id = segment.element(1)
        walk = self._walk
        walk.tag = tag
        walk.els = walking_elements(tag, els)  # as sent, but for an unplaceable code
        walk.seg_count = position
        node = walk.walk(self._node)
        issues: list[Issue] = []
        if walk.errors:
            issues = self._walk_issues(walk.errors, tag, position)
            self.walk_findings = len(issues)
        if tag == "LE":
            self._ls_id = None
        if node is None:
            return issues
        self._node = node
        conformance = self._conformance
        # The shared layer (issue 16): LS/LE pairing — nothing to tell it but an LS, or, while
        # one is open, a segment outside the 2700 loops — then the elements as X12.6 splits them.
        if conformance.ls_open:
            if not node.inside_pair:
                closing = conformance.loop_pairs(node.rules, position)
                if closing:
                    issues = closing + issues
                    self.walk_findings = len(issues)
        elif node.opens_pair:
            conformance.loop_pairs(node.rules, position)
        text = "*".join(els)
        if (
            self._not_plain(text) is None
            and " *" not in text
            and text[-1:] != " "
            and node.quick(els)
        ):
            # Proven clean, and with no separator nor not-used element for the shared layer.
            return issues
        checks = self._checks
        return issues + conformance.element_issues(
            node.rules, tag, els, position, lambda elements: checks.findings(node, elements)
        )

    def _walk_issues(
        self,
        errors: list[tuple[str, str | None, int | None, Seg | Loop | None]],
        tag: str,
        position: int,
    ) -> list[Issue]:
        issues = []
        current = self._node
        for code, seg_id, seg_count, map_node in errors:
            code = code if code in _SEGMENT_CODES else _UNEXPECTED
            seg_id = seg_id if seg_id is not None else tag
            if code == _UNRECOGNIZED and seg_id in self._map.guide_segment_ids:
                code = _OUT_OF_SEQUENCE if seg_id in _loop_segment_ids(current) else _UNEXPECTED
            if isinstance(map_node, Loop):
                code = walk_code(code, map_node.id)
            if map_node is not None and code == _MISSING:
                seg_id = map_node.id
            pos = seg_count if seg_count is not None else position
            loop_id = (map_node or current).loop_id
            issues.append(segment_issue(code, seg_id, pos, loop_id))
        return issues


@functools.lru_cache(maxsize=64)
def _not_plain(bad_text: re.Pattern[str], *separators: str | None) -> re.Pattern[str]:
    """A pattern for any character `bad_text` finds or any of the separators: one scan of a
    segment's text instead of one per separator (built once per set of delimiters)."""
    plain = (chr(c) for c in range(256))
    allowed = [ch for ch in plain if bad_text.search(ch) is None and ch not in separators]
    return re.compile("[^" + "".join(re.escape(ch) for ch in allowed) + "]")


def _loop_segment_ids(node: Seg | Loop) -> frozenset[str]:
    return node.loop_segment_ids if isinstance(node, Seg) else node.segment_ids


# -- the quick path -----------------------------------------------------------------------------
# Each map segment also gets a generated function that says, without building any finding,
# whether a segment is certainly clean. It is allowed to be wrong only one way: "not sure" sends
# the segment through `ElementChecks`, the exact port, which then finds nothing or the findings.
# So a bug here can cost speed, or hide a finding only if it calls a bad segment clean — which
# the differential tests against pyx12 look for on thousands of mutated files.

_R_VALUE = re.compile(r"-?[0-9]*(\.[0-9]+)?")


@functools.lru_cache(maxsize=1 << 16)
def _date_ok(value: str, dtype: str) -> bool:
    return bool(pyx12.validation.IsValidDataType(value, dtype, "E", "00501"))


@functools.lru_cache(maxsize=1 << 16)
def _types_ok(value: str, types: tuple[str, ...], charset: str) -> bool:
    """pyx12's type-list check (DTP03 by DTP02, DMG02 by DMG01's codes): some type fits and
    none raises."""
    try:
        results = [pyx12.validation.IsValidDataType(value, t, charset) for t in types]
    except Exception:
        return False
    return any(results)


def _value_checks(el: Elem, v: str, name: str, consts: dict[str, object], pad: str) -> list[str]:
    """Lines that `return False` unless the present, plain value `v` passes every check."""
    out: list[str] = []
    if el.usage == "N":
        return [f"{pad}return False"]
    dtype = el.dtype
    lo, hi = el.min_len, el.max_len
    if dtype is not None and dtype[:1] == "N":
        out.append(f"{pad}if not {v}.isdigit() or not {lo} <= len({v}) <= {hi}: return False")
    elif dtype == "R":
        out.append(f"{pad}if _R_VALUE.fullmatch({v}) is None: return False")
        out.append(
            f"{pad}if not {lo} <= len({v}.replace('-', '').replace('.', '')) <= {hi}: return False"
        )
    elif dtype in ("AN", "ID", "B"):
        out.append(f"{pad}if not {lo} <= len({v}) <= {hi}: return False")
    elif dtype in ("DT", "D8", "D6", "TM"):
        out.append(f"{pad}if not {lo} <= len({v}) <= {hi}: return False")
        out.append(f"{pad}if not _date_ok({v}, {dtype!r}): return False")
    else:  # RD8 or an unknown type: leave it to the exact checks
        return [f"{pad}return False"]
    if el.codes is not None and not el.any_external:
        consts[name] = el.codes | el.external
        out.append(f"{pad}if {v} not in {name}: return False")
    if el.regex is not None:
        consts[name + "_re"] = el.regex
        out.append(f"{pad}if {name}_re.search({v}) is None: return False")
    return out


def _quick_source(seg: Seg, consts: dict[str, object]) -> str:
    lines = ["def quick(els):", "    n = len(els)"]
    children = seg.children
    count = len(children)
    if any(c is None for c in children):
        return "def quick(els):\n    return False\n"
    required_upto = 0
    for i, child in enumerate(children):
        if (isinstance(child, Elem) and child.required_when_empty) or (
            isinstance(child, Composite) and child.usage == "R"
        ):
            required_upto = i + 1
    lines.append(f"    if n > {count} or n < {required_upto}: return False")
    type_list: list[str] = []
    for i, child in enumerate(children):
        v = f"v{i}"
        lines.append(f"    {v} = els[{i}] if n > {i} else ''")
        lines.append(f"    if {v}:")
        body: list[str] = []
        pad = "        "
        if isinstance(child, Composite):
            if child.usage == "N":
                body.append(f"{pad}return False")
            elif child.children:
                first = child.children[0]
                body.extend(_value_checks(first, v, f"c{i}", consts, pad))
                if any(k.required_when_empty for k in child.children[1:]):
                    body.append(f"{pad}return False")
            else:
                body.append(f"{pad}return False")
        elif isinstance(child, Elem):
            body.extend(_value_checks(child, v, f"c{i}", consts, pad))
            types: tuple[str, ...] | None = None
            if i == 2 and seg.is_dtp:
                body.append(f"{pad}if v1 in _DTP_TYPES and not _types_ok({v}, (v1,), CHARSET):")
                body.append(f"{pad}    return False")
            elif child.data_ele == "1251" and type_list:
                types = tuple(type_list)
                body.append(f"{pad}if not _types_ok({v}, {types!r}, CHARSET): return False")
            if child.data_ele == "1250":
                type_list.extend(str(c) for c in child.valid_codes if c is not None)
        lines.extend(body or [f"{pad}pass"])
        required = (isinstance(child, Elem) and child.required_when_empty) or (
            isinstance(child, Composite) and child.usage == "R"
        )
        if required:
            lines.append("    else:")
            lines.append("        return False")
    for syn in seg.syntax:
        if len(syn) < 3 or syn[0] not in "PRECL":
            lines.append("    return False")
            continue
        idx = [int(s) for s in syn[1:]]
        present = [f"(n >= {s} and els[{s - 1}] != '')" for s in idx]
        code = syn[0]
        if code == "P":
            cond = f"0 < ({' + '.join(present)}) < {len(idx)}"
        elif code == "R":
            cond = f"not ({' or '.join(present)})"
        elif code == "E":
            cond = f"({' + '.join(present)}) > 1"
        elif code == "C":
            cond = f"{present[0]} and not ({' and '.join(present[1:])})"
        else:
            cond = f"{present[0]} and not ({' or '.join(present[1:])})"
        lines.append(f"    if {cond}: return False")
    lines.append("    return True")
    return "\n".join(lines) + "\n"


def _compile_quick(seg: Seg, charset: str | None) -> Callable[[tuple[str, ...]], bool]:
    consts: dict[str, object] = {}
    source = _quick_source(seg, consts)
    namespace: dict[str, object] = {
        "_R_VALUE": _R_VALUE,
        "_date_ok": _date_ok,
        "_types_ok": _types_ok,
        "_DTP_TYPES": _DTP_TYPES,
        "CHARSET": charset,
        **consts,
    }
    exec(compile(source, f"<quick {seg.id} in {seg.loop_id}>", "exec"), namespace)  # noqa: S102
    return cast(Callable[[tuple[str, ...]], bool], namespace["quick"])
