"""Pure. How the dashboard shows things: ages, days, masked member data, failures in general
terms (never an exception's message, which may quote member data, a URL or a path), and safe
redirect targets and file names."""

from __future__ import annotations

import datetime as dt
import re

from gateway.dashboard.segments import MASK
from gateway.db.base import utcnow

# How a core delivery failed, by the exception's type: never its message, which can quote a
# URL or a path.
_TRANSPORT_ERRORS = {
    "ConnectError": "could not connect to the core system",
    "ConnectTimeout": "the core system did not answer in time",
    "ReadTimeout": "the core system did not answer in time",
    "WriteTimeout": "the core system did not answer in time",
    "PoolTimeout": "the core system did not answer in time",
    "InvalidURL": "the core system's URL is not valid",
    "UnsupportedProtocol": "the core system's URL is not valid",
    "ReadError": "the connection to the core system failed",
    "WriteError": "the connection to the core system failed",
    "CloseError": "the connection to the core system failed",
    "NetworkError": "the connection to the core system failed",
    "RemoteProtocolError": "the connection to the core system failed",
    "LocalProtocolError": "the connection to the core system failed",
    "ProxyError": "the connection to the core system failed",
    "OSError": "could not write the core export file",
    "PermissionError": "could not write the core export file",
    "FileNotFoundError": "could not write the core export file",
    "NotADirectoryError": "could not write the core export file",
    "IsADirectoryError": "could not write the core export file",
}
_EXCEPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,80}")


# The days a period may start or end on: a date beyond them (0001-01-01, 9999-12-31) is taken as
# the nearest of them, so no date arithmetic overflows and no query compares absurd moments.
FIRST_DAY = dt.date(1970, 1, 1)
LAST_DAY = dt.date(2999, 12, 31)


def parse_day(value: str | None, *, end: bool = False) -> dt.datetime | None:
    """The start of a UTC day (or, with `end`, of the next one); None when not a date."""
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value[:10])
    except ValueError:
        return None
    day = min(max(day, FIRST_DAY), LAST_DAY)
    moment = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return moment + dt.timedelta(days=1) if end else moment


def unreadable_days(q: dict[str, str], names: tuple[str, ...] = ("since", "until")) -> list[str]:
    """Date filters in `q` that are not dates, taken out of `q`, each said in a sentence: a
    list that silently showed everything would let an operator believe it was filtered; and a
    `since` after its `until`, which matches nothing, said too."""
    said = [
        f"“{q.pop(k)}” is not a date (YYYY-MM-DD); it was left out."
        for k in names
        if k in q and parse_day(q[k]) is None
    ]
    since, until = parse_day(q.get("since")), parse_day(q.get("until"))
    if since is not None and until is not None and since > until:
        said.append(f"“From” {q['since']} is after “To” {q['until']}: nothing can match.")
    return said


def clamp(value: int, low: int, high: int) -> int:
    """A page number or a count of days from the address, brought into range."""
    return min(max(value, low), max(low, high))


def age(moment: dt.datetime, now: dt.datetime | None = None) -> str:
    seconds = int(((now or utcnow()) - moment).total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172_800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def duration(seconds: float | None) -> str:
    """A latency for people: 42 s, 12 min, 3.5 h."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def member_id(value: str | None, reveal: bool, shown: str = "last4") -> str | None:
    """A member's id (REF*17, else REF*0F) as a viewer may see it (`dashboard_member_id`):
    whole when revealed or when the setting says "full", its last four characters with
    "last4" (enough to brief the exchange), else masked like other member data."""
    if reveal or not value or shown == "full":
        return value
    if shown == "last4" and len(value) > 4:
        return "…" + value[-4:]
    return MASK


def masked(value: str | None, reveal: bool) -> str | None:
    """Member data (a member key, a rule's message, a compared value) unless revealed."""
    return value if reveal or not value else MASK


def error_kind(error: str | None) -> str:
    """The exception's type from a stored error or traceback (its last line): what operators
    see before a reveal, as the message itself may quote member data."""
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    name = lines[-1].split(":", 1)[0].strip() if lines else ""
    return name.rsplit(".", 1)[-1] if _EXCEPTION_NAME.fullmatch(name) else "an internal error"


def in_general_terms(error: str | None) -> str | None:
    """A core delivery's last error (`Type: detail`) as a kind of failure."""
    if not error:
        return None
    kind = error_kind(error)
    status = re.fullmatch(r"CoreRefused: HTTP (\d{3})", error.strip())
    if status:
        return f"the core system refused the event (HTTP {status.group(1)})"
    return _TRANSPORT_ERRORS.get(kind, f"an internal error ({kind})")


def safe_next(target: str) -> str:
    """Only local paths: no open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/dashboard"
    return target


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:120] or "file"
