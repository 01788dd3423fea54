"""Operators' logins, in process: what the lockout holds while a password is verified."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

import gateway.operators as operators
from gateway.db.models import Operator
from gateway.db.session import unit_of_work
from gateway.operators import LoginRefused, add_operator, authenticate
from tests.gateway.harness import OPERATOR_PASSWORD, in_process_gateway


@pytest.fixture
def gw(tmp_path, database_url):
    yield from in_process_gateway(tmp_path / "var", database_url)


def test_no_lock_is_held_while_a_password_is_verified(gw, monkeypatch) -> None:
    """The attempt is counted, and committed, before the slow verification: nothing of the
    operator's row is locked meanwhile, so a burst on a real account answers as fast as one on
    an unknown name (the lock held through the verification made real names answer later: the
    login form told which names exist). The count and the lockout still hold."""
    with unit_of_work(gw.sessions) as s:
        add_operator(s, "olga", OPERATOR_PASSWORD, "admin")
    seen: list[int] = []
    real = operators._hasher

    class Watching:  # PasswordHasher's methods cannot be replaced on it (slots)
        hash = staticmethod(real.hash)
        check_needs_rehash = staticmethod(real.check_needs_rehash)

        @staticmethod
        def verify(hash_: str, password: str) -> bool:
            return verify(hash_, password)

    def verify(hash_: str, password: str) -> bool:
        with gw.sessions() as other, other.begin():
            if other.bind.dialect.name == "postgresql":
                other.execute(text("SET LOCAL lock_timeout = '1ms'"))
            row = other.scalar(
                select(Operator).where(Operator.username == "olga").with_for_update()
            )  # raises (lock timeout) while another transaction holds the row
            assert row is not None
            seen.append(row.failed_logins)
        return real.verify(hash_, password)

    monkeypatch.setattr(operators, "_hasher", Watching())
    for _ in range(2):
        with pytest.raises(LoginRefused, match="Invalid"):
            authenticate(gw.sessions, "olga", "wrong password!", max_failures=5)
    assert seen == [1, 2]  # counted, and committed, before the verification
    assert authenticate(gw.sessions, "olga", OPERATOR_PASSWORD, max_failures=5)
    with gw.reads() as s:
        assert s.scalar(select(Operator.failed_logins).where(Operator.username == "olga")) == 0
