"""Query parameter types the partner API shares: times and dates as ISO 8601 text only.

pydantic reads a number as a Unix time (`since=0`, `as_of=1.4e-45` was 1970-01-01), which the
README's rule — a time needs a zone, else 422 — did not cover: a number is refused as well."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator

_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")


def _iso_text(value: object) -> object:
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("ISO 8601 text (2027-01-01T00:00:00Z, 2027-01-01), not a number")
    return value


ZonedTime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
"""A date and time with its zone (Z or +hh:mm; `+` percent-encoded as %2B in a query)."""
IsoDate = Annotated[dt.date, BeforeValidator(_iso_text)]
"""A calendar date, YYYY-MM-DD."""
