"""The throwaway PostgreSQL server used by database tests starts, serves, and goes away."""

from __future__ import annotations

import socket
import time

import psycopg
import pytest
from sqlalchemy import create_engine, text

from tests.pgserver import PostgresServer, find_postgres_bin


def assert_port_closed(port: int) -> None:
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass


def test_find_postgres_bin_picks_an_installed_server() -> None:
    bindir = find_postgres_bin()
    assert (bindir / "postgres").is_file()
    assert bindir.parent.name == "15"


def test_server_lifecycle() -> None:
    server = PostgresServer()
    began = time.monotonic()
    server.start()
    elapsed = time.monotonic() - began
    try:
        print(f"postgres started in {elapsed:.2f}s on port {server.port}")
        port = server.port
        base = server.base_dir
        assert port is not None
        assert base is not None
        assert base.is_dir()
        assert server.url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/edi834"

        conninfo = f"host=127.0.0.1 port={port} user=postgres dbname=edi834"
        with psycopg.connect(conninfo) as conn:
            row = conn.execute("select version()").fetchone()
            assert row is not None
            assert row[0].startswith("PostgreSQL 15")
            settings = dict(
                conn.execute(
                    "select name, setting from pg_settings where name in "
                    "('fsync', 'synchronous_commit', 'full_page_writes', 'max_connections')"
                ).fetchall()
            )
            assert settings == {
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "200",
            }

        other = server.create_database("edi834_other")
        assert other == f"postgresql+psycopg://postgres@127.0.0.1:{port}/edi834_other"
        engine = create_engine(other)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("select current_database()")).scalar() == "edi834_other"
                tables = conn.execute(
                    text("select count(*) from pg_tables where schemaname = 'public'")
                ).scalar()
                assert tables == 0
        finally:
            engine.dispose()

        with pytest.raises(ValueError, match="database name"):
            server.create_database("bad; name")
    finally:
        server.stop()

    assert_port_closed(port)
    assert not base.exists()
    server.stop()  # idempotent


def test_context_manager_stops_server() -> None:
    with PostgresServer() as server:
        port = server.port
        assert port is not None
        with psycopg.connect(server.conninfo()) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    assert_port_closed(port)
