"""Pure. The sender's characters behind the tokenizer's text. Segments are decoded as Latin-1 —
one character a byte, so every byte survives and an ack echoes a bad value byte for byte — but
many senders' translators write UTF-8, whose non-ASCII characters then read as two or three
Latin-1 ones (`maría` as `marÃ­a`). Shown to a person, a value is read back as UTF-8 when its
bytes are UTF-8, else left as it is (a Latin-1 sender's `í` stays `í`)."""

from __future__ import annotations

from typing import overload


@overload
def as_sent(value: str) -> str: ...
@overload
def as_sent(value: None) -> None: ...
def as_sent(value: str | None) -> str | None:
    """`value`'s bytes read as UTF-8 when they are UTF-8 (and not plain ASCII), else `value`
    (None and "" as they are)."""
    if not value or value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value
