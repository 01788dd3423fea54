"""Pure; no I/O. Renders segments with any legal delimiters (the ack builders use it)."""

from __future__ import annotations

from collections.abc import Iterable

from parsers.delimiters import Delimiters
from parsers.events import Segment


def render_segment(segment: Segment, delimiters: Delimiters) -> str:
    """One segment with its terminator. Trailing empty elements are dropped (X12.6), except
    in the ISA, whose 16 elements are fixed."""
    elements = list(segment.elements)
    if segment.tag != "ISA":
        while elements and elements[-1] == "":
            elements.pop()
    return delimiters.element.join((segment.tag, *elements)) + delimiters.segment


def render_segments(
    segments: Iterable[Segment], delimiters: Delimiters, *, line_break: str = ""
) -> bytes:
    """Segments joined, each followed by its terminator and `line_break` (e.g. "\\n")."""
    return "".join(render_segment(s, delimiters) + line_break for s in segments).encode("latin-1")


def segment(tag: str, *elements: str) -> Segment:
    """A segment built from its tag and elements (element 01 first)."""
    return Segment(tag=tag, elements=tuple(elements))
