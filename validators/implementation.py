"""Pure; no I/O beyond reading pyx12's packaged map once. Validates the inside of one 834
transaction set against 005010X220A1 with pyx12's map and walker, segment by segment, and
turns pyx12's findings into our `Issue` records (IK3/IK4 with loop ids and CTX)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import Any

import pyx12.map_if
import pyx12.params
import pyx12.segment
from pyx12.map_walker import pop_to_parent_loop, walk_tree
from pyx12.syntax import is_syntax_valid

from parsers.delimiters import Delimiters
from parsers.events import Segment
from validators.conformance import (
    ElementFinding,
    SetConformance,
    element_issue,
    engine_code,
    guide_loop_id,
    rules_for,
    segment_issue,
    walk_code,
)
from validators.issues import Issue, SegmentSyntaxError

__all__ = [
    "IMPLEMENTATION_REFERENCE",
    "TransactionSetChecker",
    "element_issue",
    "guide_segment_ids",
    "load_map",
    "loop_id_of",
    "segment_issue",
    "walking_elements",
]

MAP_FILE = "834.5010.X220.A1.xml"
IMPLEMENTATION_REFERENCE = "005010X220A1"

logging.getLogger("pyx12").addHandler(logging.NullHandler())
logging.getLogger("pyx12").propagate = False

_SEGMENT_CODES = {c.value for c in SegmentSyntaxError}


@functools.cache
def load_map() -> Any:
    """pyx12's 005010X220A1 map, parsed once per process (about 50 ms)."""
    return pyx12.map_if.load_map_file(MAP_FILE, pyx12.params.ParamsBase())


@functools.cache
def guide_segment_ids() -> frozenset[str]:
    """Every segment ID the 834 guide uses anywhere (envelope included)."""
    return frozenset(str(node.id) for node in _segment_nodes())


def _segment_nodes() -> Iterator[Any]:
    """Every segment node of the 834 map, in every loop."""
    stack = [load_map()]
    while stack:
        node = stack.pop()
        if node.is_segment():
            yield node
        elif node.is_loop() or node.is_map_root():
            stack.extend(_children(node))


_CONTROL_SEGMENTS = frozenset({"ISA", "GS", "ST", "SE", "GE", "IEA"})  # the envelope's own checks


@functools.cache
def walk_codes() -> dict[str, tuple[frozenset[str], str]]:
    """Tags the 834 map has once, as a segment the walker matches by a required coded element
    01 (pyx12's `segment_if.is_match`: INS by INS01, HD by HD01, …): tag -> (the codes, one to
    walk with). A tag the map has twice or more is left out: there its code says which loop."""
    nodes: dict[str, list[Any]] = {}
    for node in _segment_nodes():
        nodes.setdefault(str(node.id), []).append(node)
    found: dict[str, tuple[frozenset[str], str]] = {}
    for tag, (node, *more) in nodes.items():
        first = node.children[0] if node.children else None
        if more or first is None or not first.is_element() or tag in _CONTROL_SEGMENTS:
            continue
        codes = [str(c) for c in first.valid_codes if c is not None]
        if first.get_data_type() == "ID" and first.usage == "R" and codes:
            found[tag] = (frozenset(codes), codes[0])
    return found


def walking_elements(tag: str, elements: tuple[str, ...]) -> tuple[str, ...]:
    """The elements the walker is given: as sent — but for a segment of `walk_codes` whose
    element 01 is not one of its codes (HD*099, an INS with no INS01), one that is, so the
    segment is placed where it alone can be. Its element checks, on the elements as sent,
    then name the bad code (IK403 7) or the missing element (IK403 1) at that segment, where
    the walker alone could not place it (IK304 2) nor the loop's segments after it (a cascade
    of IK304 2 that names everything but the problem). Both engines walk the same way."""
    known = walk_codes().get(tag)
    if known is None:
        return elements
    codes, stand_in = known
    if elements and elements[0] in codes:
        return elements
    return (stand_in, *elements[1:])


def _loop_segment_ids(node: Any) -> set[str]:
    loop = pop_to_parent_loop(node) if node is not None and not node.is_loop() else node
    if loop is None:
        return set()
    return {str(c.id) for c in _children(loop) if c.is_segment()}


def _children(node: Any) -> list[Any]:
    """A loop's or the root's children (pyx12 keeps them in `pos_map`, by position)."""
    pos_map = getattr(node, "pos_map", None)
    if pos_map:
        return [child for pos in sorted(pos_map) for child in pos_map[pos]]
    return list(getattr(node, "children", None) or [])


_LOOP_IDS: dict[int, str | None] = {}


def loop_id_of(node: Any) -> str | None:
    """The implementation guide's loop id (IK303) that holds a map node, or None."""
    if node is None:
        return None
    key = id(node)  # map nodes live as long as the cached map
    if key not in _LOOP_IDS:
        _LOOP_IDS[key] = guide_loop_id(node)
    return _LOOP_IDS[key]


class TransactionSetChecker:
    """Walks one 834 transaction set through pyx12's map, one segment at a time."""

    def __init__(self, delimiters: Delimiters) -> None:
        self._map = load_map()
        self._delims = delimiters
        self._walker = walk_tree()
        self._walker.forceWalkCounterToLoopStart("/ISA_LOOP", "/ISA_LOOP/ISA")
        self._walker.forceWalkCounterToLoopStart("/ISA_LOOP/GS_LOOP", "/ISA_LOOP/GS_LOOP/GS")
        self._node: Any = self._map.getnodebypath("/ISA_LOOP/GS_LOOP/GS")
        self._ls_id: str | None = None
        self._conformance = SetConformance(delimiters)

    def _to_pyx12(self, tag: str, elements: tuple[str, ...]) -> pyx12.segment.Segment:
        # Build pyx12's segment from ours directly: no re-joining and re-splitting of the text.
        d = self._delims
        seg = pyx12.segment.Segment(None, d.segment, d.element, d.component, d.repetition)
        seg.seg_id = tag
        seg.elements = [pyx12.segment.Composite(e, d.component) for e in elements]
        return seg

    def _element_findings(self, node: Any, seg_data: pyx12.segment.Segment) -> list[ElementFinding]:
        """pyx12's element checks of a placed segment, without its syntax notes (the shared
        layer reads those): pyx12 appends one finding per failed note, last."""
        _ok, errors = node.is_valid_errors(seg_data)
        if errors:
            failed = sum(1 for syn in node.syntax if not is_syntax_valid(seg_data, syn)[0])
            if failed:
                errors = errors[:-failed]
        return [_element_finding(e) for e in errors]

    def check(self, segment: Segment) -> list[Issue]:
        """Issues for one segment of the set (ST and SE included), in pyx12's order."""
        position = segment.index or 0
        try:
            return self._check(segment, position)
        except Exception:
            # pyx12 could not place or read the segment: report it, keep the set's verdict
            # honest (rejected, with a reason), and go on with the next segment.
            return [
                segment_issue(
                    SegmentSyntaxError.UNEXPECTED_SEGMENT.value,
                    segment.tag,
                    position,
                    loop_id_of(self._node),
                )
            ]

    def _check(self, segment: Segment, position: int) -> list[Issue]:
        seg_data = self._to_pyx12(segment.tag, segment.elements)
        issues: list[Issue] = []
        if segment.tag == "LS":
            self._ls_id = segment.element(1)
        walking = walking_elements(segment.tag, segment.elements)
        walk_data = (
            seg_data if walking is segment.elements else self._to_pyx12(segment.tag, walking)
        )
        node, _pop, _push, walk_errors = self._walker.walk_errors(
            self._node, walk_data, position, position, self._ls_id
        )
        for err in walk_errors:
            code = err.err_cde if err.err_cde in _SEGMENT_CODES else "2"
            seg_id = err.seg_data.get_seg_id() if err.seg_data is not None else segment.tag
            if code == SegmentSyntaxError.UNRECOGNIZED_SEGMENT_ID.value and seg_id in (
                guide_segment_ids()
            ):
                # pyx12 says "unrecognized" for any segment it cannot place. X231: a known 834
                # segment out of place is 7 when its loop has it elsewhere, else 2.
                code = (
                    SegmentSyntaxError.SEGMENT_OUT_OF_SEQUENCE.value
                    if seg_id in _loop_segment_ids(self._node)
                    else SegmentSyntaxError.UNEXPECTED_SEGMENT.value
                )
            if err.map_node is not None and err.map_node.is_loop():
                code = walk_code(code, str(err.map_node.id))
            if (
                err.map_node is not None
                and code == SegmentSyntaxError.REQUIRED_SEGMENT_MISSING.value
            ):
                seg_id = err.map_node.id
            pos = err.seg_count if err.seg_count is not None else position
            issues.append(segment_issue(code, seg_id, pos, loop_id_of(err.map_node or self._node)))
        if segment.tag == "LE":
            self._ls_id = None
        if node is None:
            return issues
        self._node = node
        rules = rules_for(node)
        conformance = self._conformance
        # The shared layer (issue 16): LS/LE pairing, then the elements as X12.6 splits them.
        if conformance.ls_open or rules.opens_pair:
            issues[:0] = conformance.loop_pairs(rules, position)

        def check(elements: tuple[str, ...]) -> list[ElementFinding]:
            # The walk's pyx12 segment when the layer hands the elements over unchanged.
            data = seg_data if elements is segment.elements else self._to_pyx12(tag, elements)
            return self._element_findings(node, data)

        tag = segment.tag
        issues.extend(conformance.element_issues(rules, tag, segment.elements, position, check))
        return issues


def _element_finding(err: Any) -> ElementFinding:
    """One of pyx12's EleErrors as the shared layer reads element findings."""
    element_pos: int | None = None
    component_pos: int | None = None
    ref: str | None = None
    node = err.map_node
    if node is not None:
        ref = str(node.data_ele) if getattr(node, "data_ele", None) else None
        parent = node.parent
        if parent is not None and parent.is_composite():
            element_pos, component_pos = int(parent.seq), int(node.seq)
        else:
            element_pos = int(node.seq)
    elif err.refdes:
        digits = "".join(ch for ch in str(err.refdes)[-2:] if ch.isdigit())
        element_pos = int(digits) if digits else None
    return ElementFinding(
        engine_code(err.err_cde),
        element_pos,
        component_pos,
        ref,
        getattr(node, "name", None) if node is not None else None,
        err.err_val if err.err_val not in (None, "") else None,
    )
