"""Pure. Error codes as operators type and read them: `IK403 8`, `IK403:8`, `ik403-8`,
`TA105 6` (= 006) or a family alone (`AK905`) are one filter; an unknown code is said to be
unknown (never silently ignored); every code is shown with its meaning."""

from __future__ import annotations

import re
from dataclasses import dataclass

from parsers.events import UNUSABLE_MESSAGES, UnusableReason
from validators.issues import MEANINGS, meaning

FAMILIES = ("TA105", "AK905", "IK502", "IK304", "IK403", "FILE")
EXAMPLES = "IK403 8, IK403:8, TA105 006 or a family alone such as AK905"
_CODE = re.compile(
    r"^([A-Z]{2,3}\d{1,3}|FILE)(?:\s*[\s:/_.-]\s*([A-Z0-9_]{1,16}))?$", re.IGNORECASE
)
_KNOWN = {(family, code) for family, code in MEANINGS} | {("FILE", r.value) for r in UnusableReason}


@dataclass(frozen=True, slots=True)
class CodeFilter:
    family: str | None = None
    code: str | None = None
    problem: str | None = None  # why the text is not a code we know (then it matches nothing)

    @property
    def label(self) -> str:
        return f"{self.family} {self.code}" if self.code else (self.family or "")


def parse_code(text: str) -> CodeFilter:
    """What the rejects list filters on for the text typed in its box."""
    text = " ".join(text.split())
    found = _CODE.fullmatch(text)
    if not found:
        return CodeFilter(problem=f"“{text}” is not an error code. Codes look like {EXAMPLES}.")
    family, code = found.group(1).upper(), found.group(2)
    if family not in FAMILIES:
        return CodeFilter(
            problem=f"{family} is not an error code family: the families are "
            f"{', '.join(FAMILIES)} (e.g. {EXAMPLES})."
        )
    if code is None:
        return CodeFilter(family=family)
    code = code.lower() if family == "FILE" else code.upper()
    if family == "TA105" and code.isdigit():
        code = code.zfill(3)  # TA105 codes are three digits: 6 is 006
    elif code.isdigit():
        code = str(int(code))  # IK403 08 is 8
    if (family, code) not in _KNOWN:
        return CodeFilter(
            family=family,
            code=code,
            problem=f"{family} {code} is not a code the gateway sends. Codes look like {EXAMPLES}.",
        )
    return CodeFilter(family=family, code=code)


def code_meaning(family: str, code: str) -> str:
    """What a code means, in plain English (a FILE code: why the file is not X12)."""
    if family == "FILE":
        try:
            return UNUSABLE_MESSAGES[UnusableReason(code)]
        except ValueError:
            return "Not an X12 interchange."
    return meaning(family, code)
