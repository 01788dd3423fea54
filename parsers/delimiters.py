"""Pure; no I/O. The four X12 delimiters, read from an ISA segment's fixed offsets."""

from __future__ import annotations

from dataclasses import dataclass

ISA_LENGTH = 106
"""An ISA is 106 characters: 'ISA', 16 fixed-width elements and the segment terminator."""

# Offsets in a correctly padded ISA (X12.5 / 005010 ISA layout).
ELEMENT_SEPARATOR_OFFSET = 3
COMPONENT_SEPARATOR_OFFSET = 104
SEGMENT_TERMINATOR_OFFSET = 105
ISA_ELEMENT_COUNT = 16


@dataclass(frozen=True, slots=True)
class Delimiters:
    """Element, repetition (ISA11), component (ISA16) separators and the segment terminator."""

    element: str = "*"
    repetition: str = "^"
    component: str = ":"
    segment: str = "~"

    def problems(self) -> list[str]:
        """Which delimiters are unusable, by name: letters, digits, or two delimiters equal."""
        bad: list[str] = []
        seen: dict[str, str] = {}
        for name in ("element", "component", "segment", "repetition"):
            value: str = getattr(self, name)
            if len(value) != 1 or value.isalnum() or value == " " or value in seen:
                bad.append(name)
            else:
                seen[value] = name
        return bad

    @property
    def repetition_separator(self) -> str | None:
        """ISA11 as the repetition separator (X12.6, 00501), or None when it cannot be one: a
        letter or digit (00401's 'U' is the standards identifier), a space, or another
        delimiter. The validator and the extractor split repetitions with this alone."""
        return None if "repetition" in self.problems() else self.repetition


DEFAULT_DELIMITERS = Delimiters()


def is_delimiter_char(value: str) -> bool:
    """A character that may serve as a delimiter: one printable, non-alphanumeric, non-space."""
    return len(value) == 1 and not value.isalnum() and value != " "
