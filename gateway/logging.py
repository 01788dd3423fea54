"""structlog JSON logging, configured once. Log lines carry ids and codes, never member data:
exception messages and notes and frame locals are dropped from tracebacks (chains and exception
groups included) because any of them may hold PHI, and the access log shows no member key,
policy number or query value."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, WrappedLogger

_configured = False


def _redact_stack(stack: dict[str, Any]) -> None:
    """One exception of structlog's dict form (a chain is a list of these): drop what carries
    values — message, notes (PEP 678), a SyntaxError's source line, frame locals — and go into an
    ExceptionGroup's members (lists of stacks)."""
    stack["exc_value"] = "<redacted>"
    if stack.get("exc_notes"):
        stack["exc_notes"] = ["<redacted>"] * len(stack["exc_notes"])
    if isinstance(stack.get("syntax_error"), dict):
        stack["syntax_error"].pop("line", None)
    for frame in stack.get("frames", ()):
        frame.pop("locals", None)
    for member in stack.get("exceptions", ()) or ():
        for inner in member if isinstance(member, list) else [member]:
            if isinstance(inner, dict):
                _redact_stack(inner)


def _redact_exception_values(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Keep the exception type and the stack (file, line, function); drop messages and locals."""
    for trace in event_dict.get("exception", ()) or ():
        if isinstance(trace, dict):
            _redact_stack(trace)
    return event_dict


# The rest of the path after /members/ (a sender's REF*17 may hold a `/`); a policy number up
# to /months or /months.csv, or to the end.
_MEMBER_PATH = re.compile(r"(/members/)[^?#]+|(/policies/)[^?#]+?(/months(?:\.csv)?)?(?=[?#]|$)")
_QUERY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
REDACTED = "<redacted>"


def redact_target(target: str) -> str:
    """A request's path and query as the access log may show them: a member's key or a policy
    number in the path (`/v1/members/{member_key}`, `/v1/policies/{policy}/months`) and every
    query value (the dashboard's `?member=`, `?subscriber=` searches) are member data."""
    path, sep, query = target.partition("?")
    path = _MEMBER_PATH.sub(lambda m: f"{m[1] or m[2]}{REDACTED}{m[3] or ''}", path)
    if not sep:
        return path
    keys = [p.partition("=")[0] for p in query.split("&") if p]
    shown = [k if _QUERY_KEY.fullmatch(k) else REDACTED for k in keys]
    return f"{path}?" + "&".join(f"{k}={REDACTED}" for k in shown)


class _AccessLogRedaction(logging.Filter):
    """uvicorn's access lines carry (client, method, path with query, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            target = args[2]
            if args[4] == 404:  # no such route or object: the path is whatever the client made up
                target = _first_segment(target)
            record.args = (args[0], args[1], redact_target(target), args[3], args[4])
        return True


def _first_segment(target: str) -> str:
    """`/v1/<redacted>` for `/v1/OKAFOR-914273856` (found by an on-call drill: an unknown
    route's path, which a client can fill with anything, was logged as sent)."""
    path, sep, query = target.partition("?")
    head, _, rest = path.lstrip("/").partition("/")
    shown = f"/{head}/{REDACTED}" if rest else "/" + REDACTED if head else "/"
    return shown + sep + query


def configure_logging(level: str = "info", stream: Any = None) -> None:
    """JSON lines on stderr (or `stream`); the stdlib loggers of uvicorn and asyncssh go the same
    way through structlog's formatter."""
    global _configured
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer_chain: list[Any] = [
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
        _redact_exception_values,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer_chain],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_edi834", False):
            root.removeHandler(old)
    handler._edi834 = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party loggers: their own handlers off, through ours; chatty ones quieter.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _AccessLogRedaction) for f in access.filters):
        access.addFilter(_AccessLogRedaction())
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    logging.getLogger("pyx12").setLevel(logging.CRITICAL)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs each request's full URL at INFO: a webhook's, the core's or the alert URL's
    # user:password@ or ?token= with it. Our own events say what was posted, and to whom.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    _configured = True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
