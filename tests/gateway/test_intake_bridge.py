"""The SFTP server's partner look-ups when the database is away (gateway.intake.bridge): a
login goes on with the keys last read, within `sftp_key_cache_hours`, and only for a database
that cannot be reached. The whole path (a real server, PostgreSQL stopped, an upload held and
recorded) is test_faults' `test_partners_log_in_during_an_outage_with_the_keys_last_read`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from sqlalchemy.exc import OperationalError

from gateway.context import Gateway
from gateway.db.session import unit_of_work
from gateway.intake.bridge import GatewaySftpHooks
from gateway.partners import add_partner, set_enabled
from tests.gateway.harness import in_process_gateway

KEY = asyncssh.generate_private_key("ssh-ed25519")
PUBLIC = KEY.export_public_key().decode()


def _gateway(tmp_path: Path, hours: float) -> Iterator[Gateway]:
    yield from in_process_gateway(tmp_path / "var", sftp_key_cache_hours=hours)


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    yield from _gateway(tmp_path, 24.0)


def _add(gw: Gateway, name: str, isa_id: str, keys: str = PUBLIC) -> None:
    with unit_of_work(gw.sessions) as s:
        add_partner(s, name=name, isa_qualifier="ZZ", isa_id=isa_id, sftp_keys=keys)


def _database_away(hooks: GatewaySftpHooks, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(username: str) -> tuple[int, str] | None:
        raise OperationalError("SELECT", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(hooks, "_partner", unreachable)


def _keys(hooks: GatewaySftpHooks, name: str) -> list[bytes] | None:
    found = asyncio.run(hooks.authorized_keys(name))
    return None if found is None else [k.public_data for k in found]


def test_keys_read_at_start_let_a_partner_in_while_the_database_is_away(gw, monkeypatch):
    _add(gw, "va", "VA0FFM")
    _add(gw, "vn", "VN0FFM", keys="")  # no SFTP keys: nothing to remember
    hooks = GatewaySftpHooks(gw)
    assert hooks.read_keys() == 1
    _database_away(hooks, monkeypatch)
    assert _keys(hooks, "va") == [KEY.public_data]
    for never_read in ("vn", "vz"):
        with pytest.raises(OperationalError):
            asyncio.run(hooks.authorized_keys(never_read))


def test_a_partner_disabled_is_forgotten_by_its_next_login_or_the_next_read(gw, monkeypatch):
    _add(gw, "va", "VA0FFM")
    _add(gw, "vb", "VB0FFM")
    hooks = GatewaySftpHooks(gw)
    hooks.read_keys()
    with unit_of_work(gw.sessions) as s:
        set_enabled(s, "va", False)
        set_enabled(s, "vb", False)
    assert _keys(hooks, "va") is None  # the login, with the database there, refuses va
    _database_away(hooks, monkeypatch)
    with pytest.raises(OperationalError):
        asyncio.run(hooks.authorized_keys("va"))
    # vb never logged in: until the next read (a minute at most in serve) it is as read.
    assert _keys(hooks, "vb") == [KEY.public_data]
    monkeypatch.undo()
    hooks.read_keys()
    _database_away(hooks, monkeypatch)
    with pytest.raises(OperationalError):
        asyncio.run(hooks.authorized_keys("vb"))


def test_keys_older_than_the_setting_are_not_used(tmp_path, monkeypatch):
    for gw in _gateway(tmp_path, 0.0):
        _add(gw, "va", "VA0FFM")
        hooks = GatewaySftpHooks(gw)
        hooks.read_keys()
        _database_away(hooks, monkeypatch)
        with pytest.raises(OperationalError):
            asyncio.run(hooks.authorized_keys("va"))


def test_an_error_that_is_not_an_outage_is_not_covered_up(gw, monkeypatch):
    _add(gw, "va", "VA0FFM")
    hooks = GatewaySftpHooks(gw)
    hooks.read_keys()

    def broken(username: str) -> tuple[int, str] | None:
        raise ValueError("a bug, not an outage")

    monkeypatch.setattr(hooks, "_partner", broken)
    with pytest.raises(ValueError, match="not an outage"):
        asyncio.run(hooks.authorized_keys("va"))
