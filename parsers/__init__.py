"""Pure, streaming X12 parsing: bytes in, segments and envelope events out. No I/O, no clock."""

from parsers.delimiters import Delimiters
from parsers.envelope import EnvelopeReader, read_events
from parsers.events import (
    NEED_DATA,
    Event,
    GroupEnd,
    GroupStart,
    InterchangeEnd,
    InterchangeStart,
    OversizedSegment,
    Segment,
    StraySegment,
    TrailingData,
    TransactionSetEnd,
    TransactionSetStart,
    Unusable,
    UnusableReason,
)
from parsers.tokenizer import SegmentReader
from parsers.writer import render_segment, render_segments

__all__ = [
    "NEED_DATA",
    "Delimiters",
    "EnvelopeReader",
    "Event",
    "GroupEnd",
    "GroupStart",
    "InterchangeEnd",
    "InterchangeStart",
    "OversizedSegment",
    "Segment",
    "SegmentReader",
    "StraySegment",
    "TrailingData",
    "TransactionSetEnd",
    "TransactionSetStart",
    "Unusable",
    "UnusableReason",
    "read_events",
    "render_segment",
    "render_segments",
]
