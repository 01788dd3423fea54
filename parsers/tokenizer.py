"""Pure, sans-IO; constant memory. Splits bytes into segments, re-reading delimiters at every ISA.

The caller owns I/O:

    reader = SegmentReader(max_segment_bytes=65_536)
    for chunk in chunks:
        reader.feed(chunk)
        while (token := reader.next_token()) is not NEED_DATA and token is not None: ...
    reader.feed(b"")          # end of input
    ...drain until next_token() returns None

Data is never rewritten: CR/LF after a terminator is skipped, not removed from segments.
"""

from __future__ import annotations

import enum
from collections import deque

from parsers.delimiters import (
    COMPONENT_SEPARATOR_OFFSET,
    ELEMENT_SEPARATOR_OFFSET,
    ISA_ELEMENT_COUNT,
    ISA_LENGTH,
    SEGMENT_TERMINATOR_OFFSET,
    Delimiters,
    is_delimiter_char,
)
from parsers.events import (
    NEED_DATA,
    UNUSABLE_MESSAGES,
    Isa,
    OversizedSegment,
    Segment,
    Token,
    Unusable,
    UnusableReason,
    _NeedData,
)

DEFAULT_MAX_SEGMENT_BYTES = 65_536
BOM = b"\xef\xbb\xbf"
_SAMPLE_BYTES = 512  # what "binary" or "not X12" is judged from
_BETWEEN_SEGMENTS = b"\r\n \t"
_LEADING_WHITESPACE = b" \t\r\n"
# A mispadded ISA is still read by counting separators, within this many bytes.
_MAX_ISA_SCAN = 256
# ISA element widths (ISA01..ISA16), for reading an ISA whose separator is unusable.
ISA_WIDTHS = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)
# Where a fixed-width ISA has its 16 element separators (3, 6, 17, … 103).
_SEPARATOR_OFFSETS = tuple(
    ELEMENT_SEPARATOR_OFFSET + sum(ISA_WIDTHS[:i]) + i for i in range(len(ISA_WIDTHS))
)
_COMPACT_AT = 1 << 16


class _Mode(enum.Enum):
    EXPECT_ISA = "expect_isa"
    SEGMENTS = "segments"
    DISCARD = "discard"
    DONE = "done"


class SegmentReader:
    """Bytes in, `Isa` / `Segment` / `OversizedSegment` / `Unusable` tokens out."""

    def __init__(self, *, max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES) -> None:
        if max_segment_bytes < ISA_LENGTH:
            raise ValueError("max_segment_bytes must allow at least a 106-byte ISA")
        self.max_segment_bytes = max_segment_bytes
        self._buf = bytearray()
        self._pos = 0  # read position in _buf
        self._base = 0  # absolute offset of _buf[0]
        self._eof = False
        self._mode = _Mode.EXPECT_ISA
        self._seen_isa = False
        self._delims = Delimiters()
        self._term = b"~"
        self._elem = "*"
        self._discard_start = 0
        self._discard_prefix = ""
        self._ready: deque[Segment] = deque()  # segments already cut from the buffer
        self._skip_until = 0  # absolute offset: input before it is dropped unread
        self.unread_bytes = 0  # input after an `Unusable`: counted, never kept

    @classmethod
    def inside_interchange(
        cls, delimiters: Delimiters, *, max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES
    ) -> SegmentReader:
        """A reader for a stretch of segments cut from inside an interchange whose ISA (and
        so its delimiters) was read elsewhere — e.g. one block of a transaction set checked in
        another process."""
        reader = cls(max_segment_bytes=max_segment_bytes)
        reader._seen_isa = True
        reader._delims = delimiters
        reader._elem = delimiters.element
        reader._term = delimiters.segment.encode("latin-1")
        reader._mode = _Mode.SEGMENTS
        return reader

    def skip_to(self, offset: int) -> None:
        """Drop the input up to an absolute byte offset without reading it (segments someone
        else reads, e.g. the members of a set checked in other processes). The next token
        starts there."""
        while self._ready and self._ready[0].offset < offset:
            self._ready.popleft()
        if self._ready:
            return
        end = self._base + len(self._buf)
        if offset <= end:
            self._pos = max(self._pos, offset - self._base)
            return
        self._buf.clear()
        self._base = end
        self._pos = 0
        self._skip_until = offset

    # -- input -----------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Add bytes; an empty `data` marks the end of input."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("feed() after end of input")
        if self._mode is _Mode.DONE:
            # Judged unusable from a bounded prefix: the rest is counted, not kept.
            self.unread_bytes += len(data)
            return
        if self._skip_until:
            end = self._base + len(self._buf)
            drop = min(len(data), self._skip_until - end)
            if drop > 0:
                self._base += drop
                data = data[drop:]
            if self._base + len(self._buf) >= self._skip_until:
                self._skip_until = 0
            if not data:
                return
        if self._pos >= _COMPACT_AT:
            del self._buf[: self._pos]
            self._base += self._pos
            self._pos = 0
        self._buf += data

    @property
    def delimiters(self) -> Delimiters:
        return self._delims

    # -- output ----------------------------------------------------------
    def next_token(self) -> Token | _NeedData | None:
        """The next token, NEED_DATA, or None once the input is exhausted."""
        if self._ready:
            return self._ready.popleft()
        while True:
            if self._mode is _Mode.DONE:
                return None
            if self._mode is _Mode.EXPECT_ISA:
                result = self._expect_isa()
            elif self._mode is _Mode.DISCARD:
                result = self._discard()
            else:
                result = self._segment()
            if result is not _AGAIN:
                return result  # type: ignore[return-value]

    # -- states ----------------------------------------------------------
    def _skip(self, chars: bytes) -> None:
        buf, pos = self._buf, self._pos
        n = len(buf)
        while pos < n and buf[pos] in chars:
            pos += 1
        self._pos = pos

    def _unusable(self, reason: UnusableReason) -> Unusable:
        self._mode = _Mode.DONE
        token = Unusable(reason, self._base + self._pos, UNUSABLE_MESSAGES[reason])
        # Nothing after this is read: drop what is buffered (a chunk at most) and count it.
        self.unread_bytes += len(self._buf) - self._pos
        self._base += len(self._buf)
        self._buf = bytearray()
        self._pos = 0
        return token

    def _expect_isa(self) -> Token | _NeedData | object | None:
        self._skip(_LEADING_WHITESPACE)
        leading = 0
        avail = len(self._buf) - self._pos
        if not self._seen_isa and self._buf.startswith(BOM, self._pos):
            leading = len(BOM)
        start = self._pos + leading
        avail = len(self._buf) - start
        if avail < 4:
            if not self._eof:
                return NEED_DATA
            if avail == 0 and leading == 0:
                if self._seen_isa:
                    self._mode = _Mode.DONE
                    return None
                return self._unusable(UnusableReason.EMPTY)
        head = bytes(self._buf[start : start + 3])
        if head != b"ISA":
            if b"ISA".startswith(head) and len(head) < 3 and not self._eof:
                return NEED_DATA
            if self._seen_isa:
                # Not another interchange: tokenize the rest with the last delimiters so the
                # envelope can report it as segments outside any interchange.
                self._mode = _Mode.SEGMENTS
                return _AGAIN
            # Judge from the same sample however the input was cut: wait for 512 bytes (or the
            # end) so that chunking never changes the verdict (binary vs not X12).
            if len(self._buf) - start < _SAMPLE_BYTES and not self._eof:
                return NEED_DATA
            sample = bytes(self._buf[start : start + _SAMPLE_BYTES])
            if b"\x00" in sample or _mostly_binary(sample):
                return self._unusable(UnusableReason.BINARY)
            return self._unusable(UnusableReason.NOT_X12)
        return self._read_isa(start, leading)

    def _read_isa(self, start: int, leading: int) -> Token | _NeedData | object:
        buf = self._buf
        if len(buf) - start < ELEMENT_SEPARATOR_OFFSET + 1:
            if not self._eof:
                return NEED_DATA
            return self._unusable(UnusableReason.TRUNCATED_ISA)
        sep = buf[start + ELEMENT_SEPARATOR_OFFSET : start + ELEMENT_SEPARATOR_OFFSET + 1]
        elem = sep.decode("latin-1")
        fixed = True
        if len(buf) - start < ISA_LENGTH and not self._eof:
            return NEED_DATA  # the same reading whatever the chunks: judged on 106 bytes
        by_position = not is_delimiter_char(elem) or (
            len(buf) - start >= ISA_LENGTH
            and all(buf[start + at] == sep[0] for at in _SEPARATOR_OFFSETS)
        )
        if by_position:
            # The separator itself is unusable (TA105 026), or the ISA is fixed-width: read the
            # fixed offsets, so that an element holding the separator (ISA11 = '*', the
            # repetition separator equal to the element separator) shifts nothing after it —
            # ISA13 is still the sender's control number.
            if len(buf) - start < ISA_LENGTH:
                return self._unusable(UnusableReason.TRUNCATED_ISA)
            comp_at, term_at = start + COMPONENT_SEPARATOR_OFFSET, start + SEGMENT_TERMINATOR_OFFSET
            elements = (*self._fixed_elements(start), buf[comp_at : comp_at + 1].decode("latin-1"))
        else:
            # Count 16 separators; ISA16 follows the 16th, the terminator follows ISA16.
            count, i = 0, start + ELEMENT_SEPARATOR_OFFSET
            limit = min(len(buf), start + _MAX_ISA_SCAN)
            while count < ISA_ELEMENT_COUNT:
                j = buf.find(sep, i, limit)
                if j < 0:
                    break
                count += 1
                i = j + 1
            if count < ISA_ELEMENT_COUNT or i + 1 >= len(buf):
                if len(buf) - start < _MAX_ISA_SCAN and not self._eof:
                    return NEED_DATA
                if count < ISA_ELEMENT_COUNT and len(buf) - start >= _MAX_ISA_SCAN:
                    return self._unusable(UnusableReason.MALFORMED_ISA)
                return self._unusable(UnusableReason.TRUNCATED_ISA)
            comp_at, term_at = i, i + 1
            fixed = comp_at - start == COMPONENT_SEPARATOR_OFFSET
            # Up to, not including, the 16th separator.
            text = buf[start : comp_at - 1].decode("latin-1")
            parts = text.split(elem)
            elements = (*parts[1:], buf[comp_at : comp_at + 1].decode("latin-1"))
        term = bytes(buf[term_at : term_at + 1])
        repetition = elements[10][:1] if len(elements) > 10 else ""
        delims = Delimiters(
            element=elem,
            repetition=repetition,
            component=elements[15],
            segment=term.decode("latin-1"),
        )
        segment = Segment(
            tag="ISA",
            elements=tuple(elements),
            offset=self._base + start,
            length=term_at - start,
        )
        self._seen_isa = True
        self._delims = delims
        self._elem = elem
        self._term = term
        self._pos = term_at + 1
        self._mode = _Mode.SEGMENTS
        return Isa(segment=segment, delimiters=delims, fixed_width=fixed, leading_bytes=leading)

    def _fixed_elements(self, start: int) -> list[str]:
        """ISA01..ISA15 of a 106-character ISA at `start`, by their fixed offsets."""
        text = self._buf[start : start + COMPONENT_SEPARATOR_OFFSET].decode("latin-1")
        values, at = [], ELEMENT_SEPARATOR_OFFSET + 1
        for width in ISA_WIDTHS[:-1]:
            values.append(text[at : at + width])
            at += width + 1
        return values

    def _segment(self) -> Token | _NeedData | object | None:
        if self._term not in _BETWEEN_SEGMENTS and self._cut_batch():
            return self._ready.popleft()
        self._skip(_BETWEEN_SEGMENTS)
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            if self._eof:
                self._mode = _Mode.DONE
                return None
            return NEED_DATA
        # A new ISA at a segment boundary (e.g. after an IEA, or an IEA that never came).
        if buf.startswith(b"ISA", pos):
            if len(buf) - pos < 4 and not self._eof:
                return NEED_DATA
            nxt = buf[pos + 3 : pos + 4]
            # "ISA" then a separator, or the input ends at "ISA": an interchange header (maybe
            # a truncated one, which the ISA reader reports).
            if not nxt or (not nxt.isalnum() and nxt != b" "):
                self._mode = _Mode.EXPECT_ISA
                return _AGAIN
        end = buf.find(self._term, pos)
        if end < 0:
            if len(buf) - pos > self.max_segment_bytes:
                self._discard_start = self._base + pos
                self._discard_prefix = _tag_prefix(bytes(buf[pos : pos + 3]), self._elem)
                self._pos = len(buf)
                self._mode = _Mode.DISCARD
                return _AGAIN
            if not self._eof:
                return NEED_DATA
            end = len(buf)
            terminated = False
        else:
            terminated = True
        if end - pos > self.max_segment_bytes:
            self._pos = end + 1
            return OversizedSegment(
                offset=self._base + pos,
                length=end - pos,
                tag_prefix=_tag_prefix(bytes(buf[pos : pos + 3]), self._elem),
            )
        raw = buf[pos:end]
        if self._term == b"\n" and raw.endswith(b"\r"):
            raw = raw[:-1]
        parts = raw.decode("latin-1").split(self._elem)
        segment = Segment(
            tag=parts[0],
            elements=tuple(parts[1:]),
            offset=self._base + pos,
            length=end - pos,
            terminated=terminated,
        )
        self._pos = end + 1 if terminated else end
        if segment.tag == "IEA":
            self._mode = _Mode.EXPECT_ISA
        return segment

    def _cut_batch(self) -> bool:
        """Cut every whole, ordinary segment in the next stretch of the buffer in one pass (one
        decode, one split) into `_ready`; the same segments, offsets and lengths `_segment`
        would give one at a time. Stops before anything it does not handle — an ISA, an
        oversized segment — and after an IEA, and leaves those to `_segment`."""
        buf, pos = self._buf, self._pos
        term = self._term
        last = buf.rfind(term, pos, pos + _BATCH_BYTES)
        if last < 0:
            return False
        text = buf[pos:last].decode("latin-1")
        term_str = term.decode("latin-1")
        elem = self._elem
        ready = self._ready
        base = self._base + pos
        limit = self.max_segment_bytes
        at = 0  # index in text of the current piece
        for piece in text.split(term_str):
            start = at
            at += len(piece) + 1
            raw = piece.lstrip(_BETWEEN_SEGMENTS_STR)
            if raw.startswith("ISA") or len(raw) > limit:
                at = start
                break
            parts = raw.split(elem)
            tag = parts[0]
            ready.append(
                Segment(
                    tag=tag,
                    elements=tuple(parts[1:]),
                    offset=base + start + len(piece) - len(raw),
                    length=len(raw),
                )
            )
            if tag == "IEA":
                self._mode = _Mode.EXPECT_ISA
                break
        self._pos = pos + at
        return bool(ready)

    def _discard(self) -> Token | _NeedData | object:
        end = self._buf.find(self._term, self._pos)
        if end < 0:
            if not self._eof:
                self._pos = len(self._buf)
                return NEED_DATA
            end = len(self._buf)
        self._pos = min(end + 1, len(self._buf))
        self._mode = _Mode.SEGMENTS
        return OversizedSegment(
            offset=self._discard_start,
            length=self._base + end - self._discard_start,
            tag_prefix=self._discard_prefix,
        )


_AGAIN = object()
_BATCH_BYTES = 1 << 11  # ~40 segments cut at a time: few Python steps each, little held
_BETWEEN_SEGMENTS_STR = _BETWEEN_SEGMENTS.decode("ascii")


def _tag_prefix(head: bytes, elem: str) -> str:
    return head.decode("latin-1").split(elem)[0]


def _mostly_binary(sample: bytes) -> bool:
    if not sample:
        return False
    text = sum(1 for b in sample if 32 <= b < 127 or b in (9, 10, 13))
    return text / len(sample) < 0.85
