"""Pure; no I/O. What the X12 reader yields: segments with their positions, envelope events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from parsers.delimiters import Delimiters


class _NeedData:
    """Sentinel: the reader needs more bytes (or the end of input) before it can go on."""

    _instance: _NeedData | None = None

    def __new__(cls) -> _NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


@dataclass(slots=True, unsafe_hash=True)
class Segment:
    """One segment. `elements` excludes the tag: elements[0] is element 01.

    Not frozen, though nothing changes a segment once read but the reader that made it (its
    `index`): a frozen dataclass's `__init__` sets each field through `object.__setattr__`,
    which made building segments a fifth of reading a file (0.9 against 0.33 us a segment).
    Equal and hashed by tag and elements, as a frozen one would be.

    Composite elements and repetitions are kept as written; split them with the
    interchange's component and repetition separators.
    """

    tag: str
    elements: tuple[str, ...]
    offset: int = field(default=0, compare=False)
    """Byte offset of the segment's first byte in the input."""
    length: int = field(default=0, compare=False)
    """Bytes from the first byte of the tag up to (not including) the terminator."""
    index: int | None = field(default=None, compare=False)
    """X231 IK302: position within the transaction set, 1-based, ST = 1; None outside a set."""
    terminated: bool = field(default=True, compare=False)

    def element(self, position: int) -> str:
        """Element at a 1-based position (X12 numbering); '' when absent."""
        if 1 <= position <= len(self.elements):
            return self.elements[position - 1]
        return ""


@dataclass(frozen=True, slots=True)
class Isa:
    """Tokenizer output for an ISA: the segment, its delimiters, and how it was laid out."""

    segment: Segment
    delimiters: Delimiters
    fixed_width: bool
    """True when the ISA is exactly 106 characters with its separators at the fixed offsets."""
    leading_bytes: int = 0
    """Non-whitespace bytes skipped before this ISA (a UTF-8 byte-order mark)."""


@dataclass(frozen=True, slots=True)
class OversizedSegment:
    """A segment longer than the reader's cap; its bytes were skipped, not buffered."""

    offset: int
    length: int
    tag_prefix: str
    index: int | None = None


class UnusableReason(enum.Enum):
    EMPTY = "empty"
    BINARY = "binary"
    NOT_X12 = "not_x12"
    TRUNCATED_ISA = "truncated_isa"
    MALFORMED_ISA = "malformed_isa"


UNUSABLE_MESSAGES: dict[UnusableReason, str] = {
    UnusableReason.EMPTY: "The file is empty: there is no interchange to acknowledge.",
    UnusableReason.BINARY: "The file holds binary data, not an X12 interchange.",
    UnusableReason.NOT_X12: "The file does not begin with an ISA segment, so it is not an X12 "
    "interchange.",
    UnusableReason.TRUNCATED_ISA: "The file ends inside its ISA segment: the interchange header "
    "is incomplete.",
    UnusableReason.MALFORMED_ISA: "The ISA segment cannot be read: it does not have 16 elements "
    "followed by a component separator and a segment terminator.",
}


@dataclass(frozen=True, slots=True)
class Unusable:
    """Input that is not an interchange at all from this offset on. Ends the event stream."""

    reason: UnusableReason
    offset: int
    message: str


@dataclass(frozen=True, slots=True)
class TrailingData:
    """Bytes after an IEA that are not another interchange."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class InterchangeStart:
    isa: Segment
    delimiters: Delimiters
    fixed_width: bool
    leading_bytes: int = 0


@dataclass(frozen=True, slots=True)
class InterchangeEnd:
    """`iea` is None when the interchange ended without its IEA trailer."""

    iea: Segment | None
    offset: int


@dataclass(frozen=True, slots=True)
class GroupStart:
    gs: Segment


@dataclass(frozen=True, slots=True)
class GroupEnd:
    """`ge` is None when the group ended without its GE trailer."""

    ge: Segment | None
    transaction_set_count: int


@dataclass(frozen=True, slots=True)
class TransactionSetStart:
    st: Segment


@dataclass(frozen=True, slots=True)
class TransactionSetEnd:
    """`se` is None when the set ended without its SE trailer.

    `segment_count` counts the set's segments as SE01 must: ST and SE included.
    """

    se: Segment | None
    segment_count: int


@dataclass(frozen=True, slots=True)
class StraySegment:
    """A segment where the envelope allows none: outside an interchange, or between
    ISA and GS, or between GS and ST, or a trailer with nothing open."""

    segment: Segment
    context: str


Token = Segment | Isa | OversizedSegment | Unusable | TrailingData

Event = (
    InterchangeStart
    | InterchangeEnd
    | GroupStart
    | GroupEnd
    | TransactionSetStart
    | TransactionSetEnd
    | Segment
    | StraySegment
    | OversizedSegment
    | TrailingData
    | Unusable
)
