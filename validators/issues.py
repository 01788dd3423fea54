"""Pure; no I/O. Findings as data, and the X12 code lists they carry (TA105, AK905, IK502, IK304,
IK403), each with its plain-English meaning and what the sender must fix."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Level(enum.Enum):
    INTERCHANGE = "interchange"  # TA105
    GROUP = "group"  # AK905
    TRANSACTION = "transaction"  # IK502
    SEGMENT = "segment"  # IK304
    ELEMENT = "element"  # IK403


class Severity(enum.Enum):
    REJECT = "reject"
    WARN = "warn"


class InterchangeNoteCode(enum.Enum):
    """TA105 — interchange note code (X12 I18)."""

    NO_ERROR = "000"
    CONTROL_NUMBER_MISMATCH = "001"
    STANDARD_NOT_SUPPORTED = "002"
    VERSION_NOT_SUPPORTED = "003"
    INVALID_SEGMENT_TERMINATOR = "004"
    INVALID_SENDER_QUALIFIER = "005"
    INVALID_SENDER_ID = "006"
    INVALID_RECEIVER_QUALIFIER = "007"
    INVALID_RECEIVER_ID = "008"
    UNKNOWN_RECEIVER_ID = "009"
    INVALID_AUTHORIZATION_QUALIFIER = "010"
    INVALID_AUTHORIZATION_VALUE = "011"
    INVALID_SECURITY_QUALIFIER = "012"
    INVALID_SECURITY_VALUE = "013"
    INVALID_DATE = "014"
    INVALID_TIME = "015"
    INVALID_STANDARDS_IDENTIFIER = "016"
    INVALID_VERSION_ID = "017"
    INVALID_CONTROL_NUMBER = "018"
    INVALID_ACK_REQUESTED = "019"
    INVALID_TEST_INDICATOR = "020"
    INVALID_GROUP_COUNT = "021"
    INVALID_CONTROL_STRUCTURE = "022"
    PREMATURE_END_OF_FILE = "023"
    INVALID_CONTENT = "024"
    DUPLICATE_CONTROL_NUMBER = "025"
    INVALID_ELEMENT_SEPARATOR = "026"
    INVALID_COMPONENT_SEPARATOR = "027"


class GroupErrorCode(enum.Enum):
    """AK905 — functional group syntax error code (X12 716)."""

    NOT_SUPPORTED = "1"
    VERSION_NOT_SUPPORTED = "2"
    TRAILER_MISSING = "3"
    CONTROL_NUMBER_MISMATCH = "4"
    SET_COUNT_WRONG = "5"
    CONTROL_NUMBER_SYNTAX = "6"
    CONTROL_NUMBER_NOT_UNIQUE = "19"


class TransactionSetErrorCode(enum.Enum):
    """IK502 — transaction set syntax error code (X12 718)."""

    NOT_SUPPORTED = "1"
    TRAILER_MISSING = "2"
    CONTROL_NUMBER_MISMATCH = "3"
    SEGMENT_COUNT_WRONG = "4"
    SEGMENTS_IN_ERROR = "5"
    INVALID_IDENTIFIER = "6"
    INVALID_CONTROL_NUMBER = "7"
    NOT_IN_GROUP = "18"
    INVALID_CONVENTION_REFERENCE = "19"
    CONTROL_NUMBER_NOT_UNIQUE = "23"
    IMPLEMENTATION_SEGMENTS_IN_ERROR = "I5"
    CONVENTION_NOT_SUPPORTED = "I6"


class SegmentSyntaxError(enum.Enum):
    """IK304 — implementation segment syntax error code (X12 620)."""

    UNRECOGNIZED_SEGMENT_ID = "1"
    UNEXPECTED_SEGMENT = "2"
    REQUIRED_SEGMENT_MISSING = "3"
    LOOP_OVER_MAXIMUM = "4"
    SEGMENT_OVER_MAXIMUM_USE = "5"
    SEGMENT_NOT_IN_SET = "6"
    SEGMENT_OUT_OF_SEQUENCE = "7"
    DATA_ELEMENT_ERRORS = "8"
    NOT_USED_SEGMENT_PRESENT = "I4"
    DEPENDENT_SEGMENT_MISSING = "I6"
    LOOP_UNDER_MINIMUM = "I7"
    SEGMENT_UNDER_MINIMUM_USE = "I8"
    DEPENDENT_NOT_USED_SEGMENT_PRESENT = "I9"


class ElementSyntaxError(enum.Enum):
    """IK403 — implementation data element syntax error code (X12 621)."""

    REQUIRED_MISSING = "1"
    CONDITIONAL_REQUIRED_MISSING = "2"
    TOO_MANY_ELEMENTS = "3"
    TOO_SHORT = "4"
    TOO_LONG = "5"
    INVALID_CHARACTER = "6"
    INVALID_CODE_VALUE = "7"
    INVALID_DATE = "8"
    INVALID_TIME = "9"
    EXCLUSION_VIOLATED = "10"
    TOO_MANY_REPETITIONS = "12"
    TOO_MANY_COMPONENTS = "13"
    CODE_NOT_USED_IN_IMPLEMENTATION = "I6"
    DEPENDENT_ELEMENT_MISSING = "I9"
    NOT_USED_ELEMENT_PRESENT = "I10"
    TOO_FEW_REPETITIONS = "I11"
    PATTERN_MATCH_FAILURE = "I12"
    DEPENDENT_NOT_USED_ELEMENT_PRESENT = "I13"


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding. `bad_value` may be member data (PHI): store it, never log it."""

    level: Level
    code: str  # the TA105 / AK905 / IK502 / IK304 / IK403 value
    message: str  # plain English, for the dashboard and the JSON summary
    segment_id: str | None = None
    segment_position: int | None = None  # X231 IK302: 1-based, counted from ST
    loop_id: str | None = None
    element_position: int | None = None
    component_position: int | None = None
    repetition_position: int | None = None
    element_ref: str | None = None  # X231 IK402
    bad_value: str | None = None  # X231 IK404 — PHI: stored, never logged
    severity: Severity = Severity.REJECT
    business_unit: str | None = None  # X231 CTX: the member's subscriber number (REF*0F)

    @property
    def family(self) -> str:
        """The ack element this code belongs to: TA105, AK905, IK502, IK304 or IK403."""
        return _FAMILY[self.level]

    def as_dict(self, *, include_values: bool = True) -> dict[str, object]:
        """A JSON-ready dict; values that may be PHI are left out unless asked for."""
        out: dict[str, object] = {
            "level": self.level.value,
            "family": self.family,
            "code": self.code,
            "meaning": meaning(self.family, self.code),
            "message": self.message,
            "severity": self.severity.value,
        }
        for name in (
            "segment_id",
            "segment_position",
            "loop_id",
            "element_position",
            "component_position",
            "repetition_position",
            "element_ref",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if include_values:
            if self.bad_value is not None:
                out["bad_value"] = self.bad_value
            if self.business_unit is not None:
                out["business_unit"] = self.business_unit
        return out


_FAMILY = {
    Level.INTERCHANGE: "TA105",
    Level.GROUP: "AK905",
    Level.TRANSACTION: "IK502",
    Level.SEGMENT: "IK304",
    Level.ELEMENT: "IK403",
}

# Plain-English meaning of every code we emit, and what the sender must do about it.
MEANINGS: dict[tuple[str, str], tuple[str, str]] = {
    ("TA105", "000"): ("No error.", ""),
    ("TA105", "001"): (
        "The interchange control number in ISA13 and IEA02 do not match.",
        "Make IEA02 repeat ISA13 exactly.",
    ),
    ("TA105", "002"): ("The control standard is not supported.", "Send an X12 interchange."),
    ("TA105", "003"): (
        "This version of the interchange controls is not supported.",
        "Send ISA12 = 00501.",
    ),
    ("TA105", "004"): (
        "The segment terminator is invalid.",
        "Use a segment terminator that is not a letter, digit or another delimiter.",
    ),
    ("TA105", "005"): (
        "The interchange sender ID qualifier (ISA05) is invalid.",
        "Use a valid ISA05 qualifier, e.g. ZZ, as registered with us.",
    ),
    ("TA105", "006"): (
        "The interchange sender ID (ISA06) is invalid or not the authenticated trading partner.",
        "Send with your own registered sender ID, padded to 15 characters.",
    ),
    ("TA105", "007"): (
        "The interchange receiver ID qualifier (ISA07) is invalid.",
        "Use a valid ISA07 qualifier, e.g. ZZ.",
    ),
    ("TA105", "008"): (
        "The interchange receiver ID (ISA08) is invalid.",
        "Send our receiver ID in ISA08, padded to 15 characters.",
    ),
    ("TA105", "009"): (
        "The interchange receiver (ISA07/ISA08) is not ours: the file is addressed to another.",
        "Check the receiver ID in ISA07/ISA08 and send the file to the right receiver.",
    ),
    ("TA105", "010"): ("ISA01 authorization information qualifier is invalid.", "Send ISA01 = 00."),
    ("TA105", "011"): (
        "ISA02 authorization information is invalid.",
        "Send ten spaces in ISA02 when ISA01 is 00.",
    ),
    ("TA105", "012"): ("ISA03 security information qualifier is invalid.", "Send ISA03 = 00."),
    ("TA105", "013"): (
        "ISA04 security information is invalid.",
        "Send ten spaces in ISA04 when ISA03 is 00.",
    ),
    ("TA105", "014"): (
        "The interchange date (ISA09) is invalid.",
        "Send ISA09 as a real YYMMDD date.",
    ),
    ("TA105", "015"): (
        "The interchange time (ISA10) is invalid.",
        "Send ISA10 as a real HHMM time.",
    ),
    ("TA105", "016"): (
        "The repetition separator (ISA11) is invalid.",
        "Use a repetition separator that is not a letter, digit or another delimiter.",
    ),
    ("TA105", "017"): ("The interchange version (ISA12) is invalid.", "Send ISA12 = 00501."),
    ("TA105", "018"): (
        "The interchange control number (ISA13) is invalid.",
        "Send ISA13 as exactly nine digits.",
    ),
    ("TA105", "019"): (
        "The acknowledgment requested flag (ISA14) is invalid.",
        "Send ISA14 = 0 or 1.",
    ),
    ("TA105", "020"): ("The test indicator (ISA15) is invalid.", "Send ISA15 = P or T."),
    ("TA105", "021"): (
        "The number of included functional groups (IEA01) is wrong.",
        "Make IEA01 equal the number of GS/GE groups in the interchange.",
    ),
    ("TA105", "022"): (
        "The interchange control structure is invalid (data outside the ISA/IEA envelope).",
        "Send nothing before the ISA or after the IEA, and no segments outside the envelope.",
    ),
    ("TA105", "023"): (
        "The file ended before the interchange did: the IEA trailer is missing.",
        "Send the complete file, ending with IEA.",
    ),
    ("TA105", "024"): (
        "The interchange content is invalid: segments appear outside a functional group or "
        "transaction set.",
        "Put every segment inside GS/GE and ST/SE.",
    ),
    ("TA105", "025"): (
        "Duplicate interchange control number: this sender already sent this ISA13.",
        "Give every interchange a new ISA13; if this is a deliberate resend, send it with a new "
        "control number.",
    ),
    ("TA105", "026"): (
        "The data element separator is invalid.",
        "Use an element separator that is not a letter, digit, space or another delimiter.",
    ),
    ("TA105", "027"): (
        "The component element separator (ISA16) is invalid.",
        "Use a component separator that is not a letter, digit, space or another delimiter.",
    ),
    ("AK905", "1"): (
        "This functional group is not supported: we accept benefit enrollment groups (GS01 = BE).",
        "Send 834 enrollments in a GS01 = BE group.",
    ),
    ("AK905", "2"): (
        "This functional group version is not supported (GS08).",
        "Send GS08 = 005010X220A1.",
    ),
    ("AK905", "3"): ("The functional group trailer (GE) is missing.", "End every group with GE."),
    ("AK905", "4"): (
        "The group control number in GS06 and GE02 do not match.",
        "Make GE02 repeat GS06 exactly.",
    ),
    ("AK905", "5"): (
        "The number of included transaction sets (GE01) is wrong.",
        "Make GE01 equal the number of ST/SE sets in the group.",
    ),
    ("AK905", "6"): (
        "The group control number (GS06) violates its syntax (1-9 digits).",
        "Send GS06 as one to nine digits.",
    ),
    ("AK905", "19"): (
        "The group control number (GS06) is not unique within the interchange.",
        "Give every group in an interchange its own GS06.",
    ),
    ("IK502", "1"): ("This transaction set is not supported.", "Send 834 transaction sets."),
    ("IK502", "2"): ("The transaction set trailer (SE) is missing.", "End every set with SE."),
    ("IK502", "3"): (
        "The transaction set control number in ST02 and SE02 do not match.",
        "Make SE02 repeat ST02 exactly.",
    ),
    ("IK502", "4"): (
        "The number of included segments (SE01) is wrong.",
        "Make SE01 count every segment from ST to SE, both included.",
    ),
    ("IK502", "5"): (
        "One or more segments are in error.",
        "Correct the segments listed for this transaction set.",
    ),
    ("IK502", "6"): (
        "The transaction set identifier (ST01) is missing or invalid for this group.",
        "Send ST01 = 834 in a BE group.",
    ),
    ("IK502", "7"): (
        "The transaction set control number (ST02) is missing or invalid.",
        "Send ST02 as 4 to 9 characters.",
    ),
    ("IK502", "18"): ("The transaction set is not in a functional group.", "Wrap sets in GS/GE."),
    ("IK502", "19"): (
        "The implementation convention reference (ST03) is invalid.",
        "Send ST03 = 005010X220A1.",
    ),
    ("IK502", "23"): (
        "The transaction set control number (ST02) is not unique within the group.",
        "Give every set in a group its own ST02.",
    ),
    ("IK502", "I5"): (
        "One or more segments are in error against the implementation guide.",
        "Correct the segments listed for this transaction set.",
    ),
    ("IK502", "I6"): (
        "The implementation convention is not supported.",
        "Send ST03 = 005010X220A1.",
    ),
    ("IK304", "1"): (
        "Unrecognized segment ID: this is not a segment of the 834.",
        "Remove the segment or correct its ID.",
    ),
    ("IK304", "2"): (
        "Unexpected segment: it is not allowed at this point of the 834.",
        "Move or remove the segment as the 834 implementation guide orders it.",
    ),
    ("IK304", "3"): (
        "A required segment is missing.",
        "Add the missing segment where the implementation guide requires it.",
    ),
    ("IK304", "4"): (
        "A loop occurs more times than the implementation guide allows.",
        "Send no more repetitions of the loop than allowed.",
    ),
    ("IK304", "5"): (
        "A segment occurs more times than the implementation guide allows.",
        "Send no more repetitions of the segment than allowed.",
    ),
    ("IK304", "6"): (
        "The segment is not in the defined transaction set.",
        "Remove the segment.",
    ),
    ("IK304", "7"): (
        "The segment is not in its proper sequence.",
        "Reorder the segments as the implementation guide does.",
    ),
    ("IK304", "8"): (
        "The segment has data element errors.",
        "Correct the elements listed for this segment.",
    ),
    ("IK304", "I4"): (
        "A segment the implementation guide marks 'not used' is present.",
        "Remove the segment.",
    ),
    ("IK403", "1"): ("A required data element is missing.", "Send a value for this element."),
    ("IK403", "2"): (
        "A conditionally required data element is missing.",
        "Send this element: another element of the segment requires it.",
    ),
    ("IK403", "3"): (
        "The segment has too many data elements.",
        "Remove the extra elements at the end of the segment.",
    ),
    ("IK403", "4"): ("The data element is too short.", "Send at least the minimum length."),
    ("IK403", "5"): ("The data element is too long.", "Send no more than the maximum length."),
    ("IK403", "6"): (
        "The data element has invalid characters.",
        "Send only characters of the X12 character set for this data type.",
    ),
    ("IK403", "7"): (
        "The data element has an invalid code value.",
        "Send one of the codes the implementation guide allows for this element.",
    ),
    ("IK403", "8"): ("The date is invalid.", "Send a real calendar date as CCYYMMDD."),
    ("IK403", "9"): ("The time is invalid.", "Send a real time as HHMM[SS]."),
    ("IK403", "10"): (
        "An exclusion condition is violated: elements that must not appear together do.",
        "Send only one of the mutually exclusive elements.",
    ),
    ("IK403", "12"): (
        "The element repeats too many times (or repeats where the guide allows one value).",
        "Send no more repetitions than the guide allows, split with ISA11.",
    ),
    ("IK403", "13"): (
        "The element has too many components: a component separator in a simple element, or "
        "more components than its composite defines.",
        "Remove the extra components (or the component separator) from the value.",
    ),
    ("IK403", "I10"): (
        "An element the implementation guide marks 'not used' is present.",
        "Leave this element empty.",
    ),
    ("IK403", "I12"): ("The value does not match the required pattern.", "Correct the value."),
}


def meaning(family: str, code: str) -> str:
    """The plain-English meaning of a code, e.g. meaning("IK403", "7")."""
    entry = MEANINGS.get((family, code))
    return entry[0] if entry else f"{family} code {code}."


def remedy(family: str, code: str) -> str:
    """What the sender must fix for a code."""
    entry = MEANINGS.get((family, code))
    return entry[1] if entry else ""
