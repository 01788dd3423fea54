"""parsers.charset.as_sent: the sender's characters behind the tokenizer's Latin-1 text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from parsers.charset import as_sent


def test_utf8_bytes_read_back_as_utf8_and_latin1_ones_left_alone() -> None:
    assert as_sent("MARÍA".encode().decode("latin-1")) == "MARÍA"
    assert as_sent("MARÍA".encode("latin-1").decode("latin-1")) == "MARÍA"  # a Latin-1 sender
    assert as_sent("O'BRIEN") == "O'BRIEN"
    assert as_sent("\u20ac") == "\u20ac"  # not a Latin-1 text at all: as it is


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_any_utf8_text_survives_the_tokenizers_decoding(text: str) -> None:
    assert as_sent(text.encode("utf-8").decode("latin-1")) == text
