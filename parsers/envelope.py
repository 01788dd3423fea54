"""Pure, sans-IO. The envelope state machine: tokens in, envelope events out.

Every transition lives in `TRANSITIONS`. A trailer that never came is reported as an end
event whose trailer is None (the validators turn that into TA105 023 / AK905 3 / IK502 2);
segments where the envelope allows none come out as `StraySegment`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Iterator

from parsers.delimiters import Delimiters
from parsers.events import (
    NEED_DATA,
    Event,
    GroupEnd,
    GroupStart,
    InterchangeEnd,
    InterchangeStart,
    Isa,
    OversizedSegment,
    Segment,
    StraySegment,
    TrailingData,
    TransactionSetEnd,
    TransactionSetStart,
    Unusable,
    _NeedData,
)
from parsers.tokenizer import DEFAULT_MAX_SEGMENT_BYTES, SegmentReader


class State(enum.Enum):
    OUTSIDE = "outside an interchange"
    INTERCHANGE = "between ISA and GS"
    GROUP = "between GS and ST"
    TRANSACTION = "inside a transaction set"


class Action(enum.Enum):
    END_SET_MISSING = "end_set_missing"
    END_GROUP_MISSING = "end_group_missing"
    END_INTERCHANGE_MISSING = "end_interchange_missing"
    START_INTERCHANGE = "start_interchange"
    END_INTERCHANGE = "end_interchange"
    START_GROUP = "start_group"
    END_GROUP = "end_group"
    START_SET = "start_set"
    END_SET = "end_set"
    BODY = "body"
    CONTROL = "control"
    STRAY = "stray"


_ENVELOPE_TAGS = ("ISA", "IEA", "GS", "GE", "ST", "SE")
_A = Action
_S = State
_CLOSE_ALL = (_A.END_SET_MISSING, _A.END_GROUP_MISSING, _A.END_INTERCHANGE_MISSING)

# (state, segment tag or "*" for any other) -> (actions, next state)
TRANSITIONS: dict[tuple[State, str], tuple[tuple[Action, ...], State]] = {
    (_S.OUTSIDE, "ISA"): ((_A.START_INTERCHANGE,), _S.INTERCHANGE),
    (_S.INTERCHANGE, "ISA"): ((_A.END_INTERCHANGE_MISSING, _A.START_INTERCHANGE), _S.INTERCHANGE),
    (_S.INTERCHANGE, "IEA"): ((_A.END_INTERCHANGE,), _S.OUTSIDE),
    (_S.INTERCHANGE, "GS"): ((_A.START_GROUP,), _S.GROUP),
    # X12.5: a TA1 (acknowledging an earlier interchange) may follow the ISA, before any GS.
    (_S.INTERCHANGE, "TA1"): ((_A.CONTROL,), _S.INTERCHANGE),
    (_S.GROUP, "ISA"): (
        (_A.END_GROUP_MISSING, _A.END_INTERCHANGE_MISSING, _A.START_INTERCHANGE),
        _S.INTERCHANGE,
    ),
    (_S.GROUP, "IEA"): ((_A.END_GROUP_MISSING, _A.END_INTERCHANGE), _S.OUTSIDE),
    (_S.GROUP, "GS"): ((_A.END_GROUP_MISSING, _A.START_GROUP), _S.GROUP),
    (_S.GROUP, "GE"): ((_A.END_GROUP,), _S.INTERCHANGE),
    (_S.GROUP, "ST"): ((_A.START_SET,), _S.TRANSACTION),
    (_S.TRANSACTION, "ISA"): ((*_CLOSE_ALL, _A.START_INTERCHANGE), _S.INTERCHANGE),
    (_S.TRANSACTION, "IEA"): (
        (_A.END_SET_MISSING, _A.END_GROUP_MISSING, _A.END_INTERCHANGE),
        _S.OUTSIDE,
    ),
    (_S.TRANSACTION, "GS"): ((_A.END_SET_MISSING, _A.END_GROUP_MISSING, _A.START_GROUP), _S.GROUP),
    (_S.TRANSACTION, "GE"): ((_A.END_SET_MISSING, _A.END_GROUP), _S.INTERCHANGE),
    (_S.TRANSACTION, "ST"): ((_A.END_SET_MISSING, _A.START_SET), _S.TRANSACTION),
    (_S.TRANSACTION, "SE"): ((_A.END_SET,), _S.GROUP),
    (_S.TRANSACTION, "*"): ((_A.BODY,), _S.TRANSACTION),
}
# At the end of input, whatever is still open ends without its trailer.
AT_END: dict[State, tuple[Action, ...]] = {
    _S.OUTSIDE: (),
    _S.INTERCHANGE: (_A.END_INTERCHANGE_MISSING,),
    _S.GROUP: (_A.END_GROUP_MISSING, _A.END_INTERCHANGE_MISSING),
    _S.TRANSACTION: _CLOSE_ALL,
}


def transition(state: State, tag: str) -> tuple[tuple[Action, ...], State]:
    """The actions and next state for a segment; anything not in the table is stray."""
    found = TRANSITIONS.get((state, tag))
    if found is None and tag not in _ENVELOPE_TAGS:
        found = TRANSITIONS.get((state, "*"))
    return found if found is not None else ((_A.STRAY,), state)


class EnvelopeReader:
    """Bytes in, envelope events out (sans-IO, after h11).

    reader = EnvelopeReader()
    reader.feed(chunk) ...; reader.feed(b"")
    while (event := reader.next_event()) is not NEED_DATA and event is not None: ...
    """

    def __init__(self, *, max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES) -> None:
        self._tokens = SegmentReader(max_segment_bytes=max_segment_bytes)
        self._pending: deque[Event] = deque()
        self.state = State.OUTSIDE
        self._set_count = 0  # segments in the open transaction set, ST included
        self._group_sets = 0  # transaction sets in the open group
        self._finished = False
        self._last_offset = 0

    @property
    def delimiters(self) -> Delimiters:
        """The delimiters of the interchange being read."""
        return self._tokens.delimiters

    def feed(self, data: bytes) -> None:
        self._tokens.feed(data)

    def skip_body(self, offset: int, segments: int) -> None:
        """Inside a transaction set: the next `segments` body segments, up to `offset`, are
        read by someone else; count them, don't read them."""
        if self.state is not State.TRANSACTION:
            raise RuntimeError("skip_body outside a transaction set")
        self._tokens.skip_to(offset)
        self._set_count += segments

    def next_event(self) -> Event | _NeedData | None:
        """The next event, NEED_DATA, or None when the input is exhausted."""
        while not self._pending:
            if self._finished:
                return None
            token = self._tokens.next_token()
            if token is NEED_DATA:
                return NEED_DATA
            if token is None:
                self._apply(AT_END[self.state], None)
                self.state = State.OUTSIDE
                self._finished = True
                continue
            self._on_token(token)  # type: ignore[arg-type]
        return self._pending.popleft()

    def _on_token(self, token: Segment | Isa | OversizedSegment | Unusable | TrailingData) -> None:
        if (
            self.state is State.TRANSACTION
            and type(token) is Segment
            and token.tag not in _ENVELOPE_TAGS
        ):
            # The table's (TRANSACTION, "*") row — a body segment — without the table walk.
            self._last_offset = token.offset
            self._set_count += 1
            # The tokenizer made this segment for us alone and nobody has seen it yet: give it
            # its position in place instead of copying it (a frozen dataclass, so by
            # object.__setattr__).
            object.__setattr__(token, "index", self._set_count)
            self._pending.append(token)
            return
        if isinstance(token, Unusable):
            self._apply(AT_END[self.state], None)
            self.state = State.OUTSIDE
            self._pending.append(token)
            return
        if isinstance(token, TrailingData):
            self._pending.append(token)
            return
        if isinstance(token, OversizedSegment):
            if self.state is State.TRANSACTION:
                self._set_count += 1
                self._pending.append(
                    OversizedSegment(token.offset, token.length, token.tag_prefix, self._set_count)
                )
            else:
                self._pending.append(token)
            return
        segment = token.segment if isinstance(token, Isa) else token
        self._last_offset = segment.offset
        actions, next_state = transition(self.state, segment.tag)
        if Action.START_INTERCHANGE in actions and not isinstance(token, Isa):
            # A segment tagged ISA that the tokenizer did not read as a header: stray data.
            actions, next_state = (Action.STRAY,), self.state
        prior = self.state
        self._apply(actions, token)
        if Action.STRAY not in actions:
            self.state = next_state
        else:
            self.state = prior

    def _apply(
        self,
        actions: Iterable[Action],
        token: Segment | Isa | None,
    ) -> None:
        segment = token.segment if isinstance(token, Isa) else token
        offset = segment.offset if segment is not None else self._last_offset
        for action in actions:
            if action is Action.END_SET_MISSING:
                self._pending.append(TransactionSetEnd(se=None, segment_count=self._set_count))
            elif action is Action.END_GROUP_MISSING:
                self._pending.append(GroupEnd(ge=None, transaction_set_count=self._group_sets))
            elif action is Action.END_INTERCHANGE_MISSING:
                self._pending.append(InterchangeEnd(iea=None, offset=offset))
            elif action is Action.START_INTERCHANGE:
                if not isinstance(token, Isa):
                    raise RuntimeError("START_INTERCHANGE needs an ISA")  # a table bug
                self._pending.append(
                    InterchangeStart(
                        isa=token.segment,
                        delimiters=token.delimiters,
                        fixed_width=token.fixed_width,
                        leading_bytes=token.leading_bytes,
                    )
                )
            elif action is Action.END_INTERCHANGE:
                self._pending.append(InterchangeEnd(iea=segment, offset=offset))
            elif action is Action.START_GROUP:
                segment = _required(segment)
                self._group_sets = 0
                self._pending.append(GroupStart(gs=segment))
            elif action is Action.END_GROUP:
                self._pending.append(GroupEnd(ge=segment, transaction_set_count=self._group_sets))
            elif action is Action.START_SET:
                segment = _required(segment)
                self._set_count = 1
                self._group_sets += 1
                self._pending.append(TransactionSetStart(st=_at(segment, 1)))
            elif action is Action.END_SET:
                segment = _required(segment)
                self._set_count += 1
                self._pending.append(
                    TransactionSetEnd(
                        se=_at(segment, self._set_count), segment_count=self._set_count
                    )
                )
            elif action is Action.BODY:
                segment = _required(segment)
                self._set_count += 1
                self._pending.append(_at(segment, self._set_count))
            elif action is Action.CONTROL:
                self._pending.append(_required(segment))
            elif action is Action.STRAY:
                segment = _required(segment)
                self._pending.append(StraySegment(segment=segment, context=self.state.value))


def _required(segment: Segment | None) -> Segment:
    if segment is None:  # only at end of input, where the table ends things, never starts them
        raise RuntimeError("envelope action needs a segment")
    return segment


def _at(segment: Segment, index: int) -> Segment:
    return Segment(
        tag=segment.tag,
        elements=segment.elements,
        offset=segment.offset,
        length=segment.length,
        index=index,
        terminated=segment.terminated,
    )


def read_events(
    chunks: Iterable[bytes],
    *,
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
    reader: EnvelopeReader | None = None,
) -> Iterator[Event]:
    """Convenience driver: every event of an iterable of byte chunks, streaming. Pass your own
    `reader` to act on it between events (e.g. `skip_body` a set read elsewhere)."""
    if reader is None:
        reader = EnvelopeReader(max_segment_bytes=max_segment_bytes)
    for chunk in chunks:
        if not chunk:
            continue
        reader.feed(chunk)
        while True:
            event = reader.next_event()
            if event is NEED_DATA or event is None:
                break
            yield event  # type: ignore[misc]
    reader.feed(b"")
    while True:
        event = reader.next_event()
        if event is None:
            return
        if event is NEED_DATA:  # pragma: no cover - cannot happen after end of input
            raise RuntimeError("reader wants data after end of input")
        yield event  # type: ignore[misc]
