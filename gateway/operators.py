"""Operator accounts for the dashboard: argon2 password hashes, roles, lockout with back-off,
and server-side sessions (only a hash of the cookie's token is stored)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from typing import NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.db.base import utcnow
from gateway.db.models import Operator, OperatorSession, Role
from gateway.db.session import unit_of_work
from gateway.errors import GatewayError

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 12
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so timing does not tell who exists.
    Made on first use, not on import: hashing costs ~0.12 s of every process's start."""
    return _hasher.hash("not a real password, only for timing")


def add_operator(session: Session, username: str, password: str, role: str) -> Operator:
    if not USERNAME.match(username):
        raise GatewayError("username: letters, digits, '.', '_', '@' or '-', up to 64")
    if role not in (Role.VIEWER, Role.ADMIN):
        raise GatewayError("role: viewer or admin")
    if len(password) < MIN_PASSWORD:
        raise GatewayError(f"password: at least {MIN_PASSWORD} characters")
    if session.scalar(select(Operator).where(Operator.username == username)) is not None:
        raise GatewayError(f"an operator named {username!r} exists")
    op = Operator(username=username, password_hash=_hasher.hash(password), role=role)
    session.add(op)
    session.flush()
    return op


def _operator(session: Session, username: str) -> Operator:
    op = session.scalar(select(Operator).where(Operator.username == username))
    if op is None:
        raise GatewayError(f"no operator named {username!r}", 404)
    return op


def end_sessions(session: Session, op: Operator) -> int:
    """Log the operator out everywhere: its open dashboard sessions end now."""
    result = session.execute(delete(OperatorSession).where(OperatorSession.operator_id == op.id))
    return int(getattr(result, "rowcount", 0) or 0)


def set_password(session: Session, username: str, password: str) -> None:
    """A new password ends the operator's open sessions: a password changed because it leaked
    must not leave a session opened with it alive."""
    op = _operator(session, username)
    if len(password) < MIN_PASSWORD:
        raise GatewayError(f"password: at least {MIN_PASSWORD} characters")
    op.password_hash = _hasher.hash(password)
    op.failed_logins = 0
    op.locked_until = None
    end_sessions(session, op)


def set_enabled(session: Session, username: str, enabled: bool) -> Operator:
    """Disable (its sessions end at once, its logins are refused) or enable an operator."""
    op = _operator(session, username)
    op.enabled = enabled
    if not enabled:
        end_sessions(session, op)
    return op


def set_role(session: Session, username: str, role: str) -> Operator:
    """viewer or admin, from the operator's next request on."""
    if role not in (Role.VIEWER, Role.ADMIN):
        raise GatewayError("role: viewer or admin")
    op = _operator(session, username)
    op.role = role
    return op


class LoginRefused(Exception):
    def __init__(self, message: str, retry_after: int = 0, *, operator: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        # False when the name is no (enabled) operator's: the caller must not record what was
        # typed (it can be anything — a member's name, a password in the wrong box).
        self.operator = operator


def authenticate(
    sessions: sessionmaker[Session], username: str, password: str, *, max_failures: int
) -> int:
    """The operator's id, or LoginRefused. Repeated failures lock the account with a back-off.

    The attempt is counted as a failure before the password is verified, in a transaction of
    its own (the row read FOR UPDATE, held only for that): a burst of attempts on one account
    is counted one by one, and past `max_failures` refused unverified. Read without the lock,
    40 wrong passwords sent at once on PostgreSQL were all verified and their counts overwrote
    each other; held through the verification, the lock made a real account's burst answer
    later than an unknown name's (which names exist). A right password then clears the count."""
    now = utcnow()
    with unit_of_work(sessions) as session:
        op = session.scalar(select(Operator).where(Operator.username == username).with_for_update())
        if op is None or not op.enabled:
            op_id = None
        else:
            if op.locked_until is not None and op.locked_until > now:
                wait = int((op.locked_until - now).total_seconds()) + 1
                raise LoginRefused(f"Too many failed attempts. Try again in {wait} seconds.", wait)
            op.failed_logins += 1
            op.locked_until = _locked_until(op.failed_logins, max_failures, now, op.locked_until)
            op_id, password_hash = op.id, op.password_hash
    if op_id is None:
        _refuse_unknown(username, password, now, max_failures)
    try:
        _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError) as exc:
        raise LoginRefused("Invalid username or password.") from exc
    with unit_of_work(sessions) as session:
        op = session.get(Operator, op_id)
        if op is None or not op.enabled:  # removed or disabled meanwhile
            raise LoginRefused("Invalid username or password.")
        op.failed_logins = 0
        op.locked_until = None
        if _hasher.check_needs_rehash(op.password_hash):
            op.password_hash = _hasher.hash(password)
    return op_id


def _locked_until(
    failures: int, max_failures: int, now: dt.datetime, current: dt.datetime | None
) -> dt.datetime | None:
    """From the `max_failures`th failure on, locked for 30 s doubling each time (15 min at
    most); before it, as it was."""
    if failures < max_failures:
        return current
    return now + dt.timedelta(seconds=min(900, 30 * 2 ** (failures - max_failures)))


_UNKNOWN: OrderedDict[str, tuple[int, dt.datetime | None]] = OrderedDict()
_UNKNOWN_MAX = 10_000
_unknown_lock = threading.Lock()


def _refuse_unknown(username: str, password: str, now: dt.datetime, max_failures: int) -> NoReturn:
    """A name that is no (enabled) operator fails exactly as a real one does — the same time
    (a dummy hash is verified), the same message, and after `max_failures` the same lockout
    with the same back-off — so the login form cannot tell which names exist. Counted per
    process, for at most `_UNKNOWN_MAX` names (the oldest forgotten first)."""
    # The failure is counted before the dummy hash is verified, in one step under the lock:
    # counted after, a burst of attempts all read the same count and none locked the name.
    with _unknown_lock:
        failures, locked_until = _UNKNOWN.pop(username, (0, None))
        locked = locked_until is not None and locked_until > now
        if not locked:
            failures += 1
            locked_until = _locked_until(failures, max_failures, now, locked_until)
        _UNKNOWN[username] = (failures, locked_until)
        while len(_UNKNOWN) > _UNKNOWN_MAX:
            _UNKNOWN.popitem(last=False)
    if locked and locked_until is not None:
        wait = int((locked_until - now).total_seconds()) + 1
        raise LoginRefused(
            f"Too many failed attempts. Try again in {wait} seconds.", wait, operator=False
        )
    with contextlib.suppress(VerificationError):
        _hasher.verify(_dummy_hash(), password)
    raise LoginRefused("Invalid username or password.", operator=False)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, operator: Operator) -> tuple[str, OperatorSession]:
    token = secrets.token_urlsafe(32)
    row = OperatorSession(
        token_hash=_token_hash(token), operator_id=operator.id, csrf_token=secrets.token_hex(32)
    )
    session.add(row)
    session.flush()
    return token, row


def find_session(session: Session, token: str, *, idle_minutes: int) -> OperatorSession | None:
    """The live session for a cookie token; idle sessions expire (and are deleted)."""
    row = session.scalar(
        select(OperatorSession).where(OperatorSession.token_hash == _token_hash(token))
    )
    if row is None:
        return None
    now = utcnow()
    if now - row.last_seen_at > dt.timedelta(minutes=idle_minutes) or not row.operator.enabled:
        session.delete(row)
        return None
    row.last_seen_at = now
    return row


def close_session(session: Session, token: str) -> None:
    session.execute(delete(OperatorSession).where(OperatorSession.token_hash == _token_hash(token)))
