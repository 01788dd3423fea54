"""Seeds a database with N receipts shaped like production and times the operators' dashboard
over real HTTP; prints markdown tables and the plans of the rejects list's queries.

The schema comes from `upgrade()` (Alembic head), rows go in with `session.execute(insert(M),
rows)` in batches (never through the worker), and the real dashboard app (`create_dashboard`)
serves them from uvicorn on loopback in a thread, logged in as an operator through /login.

Usage: python tests/benchmarks/bench_dashboard.py [--receipts 100000] [--postgres]
                                                   [--repeat 10] [--csv-repeat 3] [--seed S]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import random
import re
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from sqlalchemy import Engine, event, insert, text

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.context import Gateway  # noqa: E402 - after the sys.path line above
from gateway.dashboard.app import create_dashboard  # noqa: E402
from gateway.db import reports  # noqa: E402
from gateway.db.migrate import upgrade  # noqa: E402
from gateway.db.models import (  # noqa: E402
    Finding,
    Group,
    Interchange,
    Partner,
    Receipt,
    Role,
    Status,
    TransactionSet,
)
from gateway.db.session import unit_of_work  # noqa: E402
from gateway.logging import configure_logging  # noqa: E402
from gateway.operators import add_operator  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from validators.issues import meaning  # noqa: E402

BATCH = 5_000  # receipts per insert batch (their envelopes, groups, sets, findings with them)
DAYS = 90
OPERATOR = ("bench", "bench-password-0123")
PARTNERS = (  # name, share of the traffic
    ("acme-health", 0.22),
    ("bluepeak-benefits", 0.16),
    ("cascade-hr", 0.12),
    ("delta-payroll", 0.10),
    ("evergreen-admin", 0.09),
    ("fairway-tpa", 0.08),
    ("granite-employers", 0.08),
    ("harbor-unions", 0.06),
    ("ironwood-schools", 0.05),
    ("juniper-county", 0.04),
)
# Processed outcomes (share of processed files), then the few that never finished.
OUTCOME_WEIGHTS = (
    ("accepted", 0.70),
    ("accepted_with_errors", 0.10),
    ("partially_accepted", 0.05),
    ("rejected", 0.15),
)
UNFINISHED = ((Status.FAILED, 0.003), (Status.RECEIVED, 0.002), (Status.PARTIAL, 0.001))
# (family, code, level, segment_id, loop_id, element_position, element_ref): the codes our
# validators emit most, by the level they are reported at (X231 999 IK3/IK4, TA1 TA105).
SEGMENT_CODES = (
    ("IK304", "2", "segment", "DTP", "2300", None, None),  # unexpected segment
    ("IK304", "3", "segment", "REF", "2000", None, None),  # required segment missing
    ("IK304", "8", "segment", "NM1", "2100A", None, None),  # segment has data element errors
)
ELEMENT_CODES = (
    ("IK403", "1", "element", "INS", "2000", 8, "1069"),  # required data element missing
    ("IK403", "7", "element", "HD", "2300", 3, "1205"),  # invalid code value
    ("IK403", "8", "element", "DMG", "2100A", 2, "1251"),  # invalid date
    ("IK403", "8", "element", "DTP", "2300", 3, "1251"),
)
WARNING_CODES = (
    ("IK403", "7", "element", "REF", "2000", 1, "128"),
    ("IK403", "I6", "element", "HD", "2300", 5, "1203"),
    ("IK304", "I4", "segment", "LUI", "2100A", None, None),
)
BAD_VALUES = {"1069": "", "1205": "XYZ", "1251": "20250231", "128": "ZZ", "1203": "XX"}


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


@dataclass
class Seeder:
    """Builds rows for the receipts tables, with our own integer ids so children can point at
    their parents in the same batch (sequences are moved past them afterwards on PostgreSQL)."""

    rng: random.Random
    now: dt.datetime
    partner_ids: dict[str, int]
    isa_ids: dict[str, str]
    next_envelope: int = 1
    next_group: int = 1
    next_set: int = 1
    control: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def batch(self, ages: list[float]) -> dict[type, list[dict[str, Any]]]:
        """One receipt per age (seconds before now), in the order given."""
        rows: dict[type, list[dict[str, Any]]] = {
            Receipt: [],
            Interchange: [],
            Group: [],
            TransactionSet: [],
            Finding: [],
        }
        names = [p for p, _ in PARTNERS]
        weights = [w for _, w in PARTNERS]
        for partner, age in zip(self.rng.choices(names, weights, k=len(ages)), ages, strict=True):
            self._receipt(partner, self.now - dt.timedelta(seconds=age), rows)
        for model, items in rows.items():
            self.counts[model.__tablename__] = self.counts.get(model.__tablename__, 0) + len(items)
        return rows

    def _receipt(
        self, partner: str, received: dt.datetime, rows: dict[type, list[dict[str, Any]]]
    ) -> None:
        rng = self.rng
        rid = _hex(rng, 128)
        sha = _hex(rng, 256)
        channel = "sftp" if rng.random() < 0.4 else "http"
        receipt: dict[str, Any] = {
            "id": rid,
            "partner_id": self.partner_ids[partner],
            "channel": channel,
            "filename": f"{partner}_{received:%Y%m%d_%H%M%S}.834",
            "sha256": sha,
            "dedup_sha256": sha,
            "size": int(rng.lognormvariate(11, 1.2)),
            "blob_path": f"{sha[:2]}/{sha[2:4]}/{sha}",
            "status": Status.PROCESSED.value,
            "outcome": None,
            "received_at": received,
            "started_at": received + dt.timedelta(seconds=1),
            "processed_at": received + dt.timedelta(seconds=rng.uniform(1.5, 30)),
            "attempts": 1,
            "lease_owner": None,
            "lease_expires_at": None,
            "error": None,
            "unusable_reason": None,
            "resolved_at": None,
            "resolved_by": None,
            "resolution_note": None,
            "sets_received": 0,
            "sets_accepted": 0,
            "sets_rejected": 0,
            "members_received": 0,
            "members_accepted": 0,
            "members_rejected": 0,
        }
        rows[Receipt].append(receipt)
        roll = rng.random()
        for status, share in UNFINISHED:
            if roll < share:
                receipt.update(status=status.value, processed_at=None, dedup_sha256=None)
                if status is Status.FAILED:
                    receipt.update(attempts=3, error="RuntimeError in validate (worker bug)")
                elif status is Status.PARTIAL:
                    receipt.update(started_at=None, filename=receipt["filename"] + ".part")
                else:  # waiting for a worker: recent
                    receipt.update(
                        started_at=None,
                        attempts=0,
                        received_at=self.now - dt.timedelta(seconds=rng.uniform(5, 600)),
                    )
                return
            roll -= share
        outcome = rng.choices(*zip(*OUTCOME_WEIGHTS, strict=True))[0]
        receipt["outcome"] = outcome
        old = received < self.now - dt.timedelta(days=7)
        if outcome in ("rejected", "partially_accepted") and old and rng.random() < 0.3:
            receipt.update(
                resolved_at=received + dt.timedelta(hours=rng.uniform(1, 72)),
                resolved_by="ops-lead",
                resolution_note="partner resent a corrected file",
            )
        self._interchange(partner, receipt, outcome, rows)

    def _interchange(
        self,
        partner: str,
        receipt: dict[str, Any],
        outcome: str,
        rows: dict[type, list[dict[str, Any]]],
    ) -> None:
        rng = self.rng
        rid = receipt["id"]
        ctrl = self.control.get(partner, 0) + 1
        self.control[partner] = ctrl
        received: dt.datetime = receipt["received_at"]
        ta1_rejected = outcome == "rejected" and rng.random() < 0.3
        group_rejected = outcome == "rejected" and not ta1_rejected and rng.random() < 0.15
        env_id, group_id = self.next_envelope, self.next_group
        self.next_envelope += 1
        self.next_group += 1
        rows[Interchange].append(
            {
                "id": env_id,
                "receipt_id": rid,
                "seq": 0,
                "offset": 0,
                "isa13": f"{ctrl:09d}",
                "sender_qualifier": "ZZ",
                "sender_id": self.isa_ids[partner],
                "receiver_qualifier": "ZZ",
                "receiver_id": "EDI834GATEWAY",
                "isa09": f"{received:%y%m%d}",
                "isa10": f"{received:%H%M}",
                "usage": "P",
                "ta1_code": "R" if ta1_rejected else "A",
                "ta1_note": rng.choice(("006", "025")) if ta1_rejected else "000",
                "outcome": outcome,
            }
        )
        findings: list[dict[str, Any]] = []

        def finding(
            spec: tuple[str, str, str, str | None, str | None, int | None, str | None],
            *,
            severity: str = "reject",
            group: int | None = None,
            set_id: int | None = None,
        ) -> None:
            family, code, level, seg, loop, element, ref = spec
            findings.append(
                {
                    "receipt_id": rid,
                    "envelope_id": env_id,
                    "group_id": group,
                    "set_id": set_id,
                    "seq": len(findings),
                    "level": level,
                    "family": family,
                    "code": code,
                    "message": meaning(family, code),
                    "severity": severity,
                    "segment_id": seg,
                    "segment_position": rng.randint(4, 4_000) if seg else None,
                    "loop_id": loop,
                    "element_position": element,
                    "component_position": None,
                    "repetition_position": None,
                    "element_ref": ref,
                    "bad_value": BAD_VALUES.get(ref or ""),
                    "business_unit": f"SUB{rng.randint(100_000, 999_999)}" if seg else None,
                }
            )

        if ta1_rejected:
            note = rows[Interchange][-1]["ta1_note"]
            finding(("TA105", note, "interchange", None, None, None, None))
        n_sets = 2 if outcome == "partially_accepted" else rng.choice((1, 1, 1, 2))
        group_ack = {"accepted": "A", "accepted_with_errors": "E", "partially_accepted": "P"}
        sets_accepted = 0
        for seq in range(n_sets):
            set_id = self.next_set
            self.next_set += 1
            members = max(1, min(20_000, int(rng.lognormvariate(4, 1.5))))
            rejected = outcome == "rejected" or (outcome == "partially_accepted" and seq == 1)
            ack = "R" if rejected else ("E" if outcome == "accepted_with_errors" else "A")
            in_error = rejected and not ta1_rejected and not group_rejected
            rows[TransactionSet].append(
                {
                    "id": set_id,
                    "group_id": group_id,
                    "receipt_id": rid,
                    "seq": seq,
                    "st01": "834",
                    "st02": f"{seq + 1:04d}",
                    "st03": "005010X220A1",
                    "ack_code": ack,
                    "error_codes": "5" if in_error else "",
                    "member_count": members,
                    "segment_count": members * 14 + 6,
                    "accepted": not rejected,
                    "findings_truncated": False,
                }
            )
            sets_accepted += not rejected
            receipt["sets_received"] += 1
            receipt["sets_accepted" if not rejected else "sets_rejected"] += 1
            receipt["members_received"] += members
            receipt["members_accepted" if not rejected else "members_rejected"] += members
            if in_error:
                finding(
                    ("IK502", "5", "transaction", None, None, None, None),
                    group=group_id,
                    set_id=set_id,
                )
                for _ in range(rng.randint(1, 5 - (n_sets - 1) * 2)):
                    finding(
                        rng.choice(SEGMENT_CODES + ELEMENT_CODES + ELEMENT_CODES),
                        group=group_id,
                        set_id=set_id,
                    )
            elif outcome == "accepted_with_errors":
                for _ in range(rng.randint(1, 2)):
                    finding(
                        rng.choice(WARNING_CODES), severity="warn", group=group_id, set_id=set_id
                    )
        if group_rejected:
            finding(("AK905", "5", "group", None, None, None, None), group=group_id)
        rows[Group].append(
            {
                "id": group_id,
                "envelope_id": env_id,
                "receipt_id": rid,
                "seq": 0,
                "gs01": "BE",
                "gs02": self.isa_ids[partner],
                "gs03": "EDI834GATEWAY",
                "gs06": str(ctrl),
                "gs08": "005010X220A1",
                "ack_code": group_ack.get(outcome, "R"),
                "sets_included": n_sets,
                "sets_received": n_sets,
                "sets_accepted": sets_accepted,
            }
        )
        rows[Finding].extend(findings[:6])


def seed(gw: Gateway, receipts: int, seed_value: int) -> dict[str, int]:
    """Partners then receipts in batches of BATCH; returns rows per table."""
    rng = random.Random(seed_value)
    now = dt.datetime.now(dt.UTC)
    with unit_of_work(gw.sessions) as s:
        s.execute(
            insert(Partner),
            [
                {
                    "id": n,
                    "name": name,
                    "isa_qualifier": "ZZ",
                    "isa_id": f"SENDER{n:02d}",
                    "api_key_hash": _hex(rng, 256),
                    "sftp_keys": "",
                    "enabled": True,
                    "webhook_url": None,
                    "webhook_secret": None,
                    "created_at": now - dt.timedelta(days=400),
                }
                for n, (name, _) in enumerate(PARTNERS, start=1)
            ],
        )
    seeder = Seeder(
        rng=rng,
        now=now,
        partner_ids={name: n for n, (name, _) in enumerate(PARTNERS, start=1)},
        isa_ids={name: f"SENDER{n:02d}" for n, (name, _) in enumerate(PARTNERS, start=1)},
    )
    # Oldest first, as a live gateway inserts them (rowid order follows received_at).
    ages = sorted((rng.uniform(60, DAYS * 86_400) for _ in range(receipts)), reverse=True)
    done = 0
    while done < receipts:
        n = min(BATCH, receipts - done)
        rows = seeder.batch(ages[done : done + n])
        with unit_of_work(gw.sessions) as s:
            for model in (Receipt, Interchange, Group, TransactionSet, Finding):
                # render_nulls: every row has the same columns, so each table is one executemany
                # (the ORM otherwise drops None values and splits the batch at every change).
                if rows[model]:
                    s.execute(insert(model).execution_options(render_nulls=True), rows[model])
        done += n
        sys.stderr.write(f"\rseeded {done:,}/{receipts:,} receipts")
    sys.stderr.write("\n")
    if gw.engine.dialect.name == "postgresql":
        with gw.engine.begin() as conn:
            for table in ("partners", "envelopes", "groups", "transaction_sets"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - our table names
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    return {"partners": len(PARTNERS), **seeder.counts}


# --- the dashboard over HTTP ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dashboard(gw: Gateway) -> Iterator[str]:
    """The real dashboard app on uvicorn, loopback, in a thread; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(
        create_dashboard(gw),
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="off",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def log_in(client: httpx.Client) -> None:
    page = client.get("/login")
    page.raise_for_status()
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    if found is None:
        raise RuntimeError("no csrf_token field on /login")
    username, password = OPERATOR
    reply = client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": found.group(1),
            "next": "/dashboard",
        },
    )
    if reply.status_code != 303 or "edi834_session" not in client.cookies:
        raise RuntimeError(f"login failed: HTTP {reply.status_code}")


@dataclass
class Timing:
    label: str
    url: str
    seconds: list[float]
    size: int
    matched: str  # what the page says it found ("total" on the rejects list)
    rows: int = 0  # CSV data rows
    cpu: list[float] = field(default_factory=list)  # this process's CPU seconds per request

    @property
    def cpu_ms(self) -> str:
        return f"{statistics.median(self.cpu) * 1000:,.1f}" if self.cpu else ""

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.seconds)  # nearest rank: the max for 10 samples
        return ordered[math.ceil(0.95 * len(ordered)) - 1] * 1000


def time_page(client: httpx.Client, label: str, url: str, repeat: int) -> Timing:
    client.get(url).raise_for_status()  # warm-up: templates compiled, pages cached
    seconds: list[float] = []
    cpu: list[float] = []
    reply = None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        reply = client.get(url)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        reply.raise_for_status()
        if reply.url.path == "/login":
            raise RuntimeError(f"{url}: sent to /login")
    assert reply is not None
    total = re.search(r'<span id="total">(\d+)</span>', reply.text)
    matched = total.group(1) if total else ""
    return Timing(label, url, seconds, len(reply.content), matched, cpu=cpu)


def time_csv(client: httpx.Client, label: str, url: str, repeat: int) -> Timing:
    seconds: list[float] = []
    cpu: list[float] = []
    size = rows = 0
    for _ in range(repeat):
        size = lines = 0
        start, start_cpu = time.perf_counter(), time.process_time()
        with client.stream("GET", url) as reply:
            reply.raise_for_status()
            for chunk in reply.iter_bytes():
                size += len(chunk)
                lines += chunk.count(b"\n")
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        rows = lines - 1  # the header
    return Timing(label, url, seconds, size, f"{rows:,} rows", rows, cpu)


def time_page_during_export(
    client: httpx.Client, label: str, url: str, export: str, repeat: int
) -> Timing:
    """`url` while another client (same operator) streams `export`: what a second operator sees
    while someone downloads the CSV. Each request goes out once rows are flowing, so the
    export's database transaction is open. A failed request is counted, not raised: on
    SQLite it is the busy timeout running out while the export holds the lock."""
    seconds: list[float] = []
    exports: list[float] = []
    failed: list[str] = []
    for _ in range(repeat):
        flowing = threading.Event()

        def stream(flowing: threading.Event = flowing) -> None:
            with httpx.Client(base_url=client.base_url, cookies=client.cookies, timeout=600) as c:
                start = time.perf_counter()
                with c.stream("GET", export) as reply:
                    got = 0
                    for chunk in reply.iter_bytes():
                        got += len(chunk)
                        if got > 200_000:  # past the header and the first batch of rows
                            flowing.set()
                exports.append(time.perf_counter() - start)
                flowing.set()

        thread = threading.Thread(target=stream, name="export")
        thread.start()
        flowing.wait()
        start = time.perf_counter()
        status = client.get(url).status_code
        seconds.append(time.perf_counter() - start)
        if status != 200:
            failed.append(f"HTTP {status}")
        thread.join()
    matched = f"export {statistics.median(exports) * 1000:,.0f} ms"
    if failed:
        matched += f"; page failed {len(failed)}/{repeat}: {', '.join(sorted(set(failed)))}"
    return Timing(label, url, seconds, 0, matched)


# --- query plans ---------------------------------------------------------------------------


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every query (and its parameters) sent to the database inside the block."""
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if not many and statement.lstrip().upper().startswith("SELECT"):  # not BEGIN
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", keep)


def explain(engine: Engine, statement: str, params: Any) -> tuple[float, list[str]]:
    """(seconds to run the statement, its plan): EXPLAIN QUERY PLAN on SQLite, EXPLAIN
    (ANALYZE) on PostgreSQL."""
    with engine.connect() as conn:
        start = time.perf_counter()
        conn.exec_driver_sql(statement, params).fetchall()
        seconds = time.perf_counter() - start
        if engine.dialect.name == "sqlite":
            depth: dict[int, int] = {0: -1}
            lines = []
            for node, parent, _, detail in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, params
            ):
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + detail)
        else:
            lines = [
                row[0]
                for row in conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS OFF) " + statement, params
                )
            ]
    return seconds, lines


def _one_line(statement: str, limit: int = 160) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _section(engine: Engine, label: str, named: list[tuple[str, str, Any]]) -> list[str]:
    out = [f"### {label}", ""]
    for name, statement, params in named:
        seconds, plan = explain(engine, statement, params)
        out.append(f"{name}: {seconds * 1000:.1f} ms — `{_one_line(statement)}`")
        out.append("```")
        out.extend(_one_line(line, 200) if len(line) > 200 else line for line in plan)
        out.append("```")
    out.append("")
    return out


def show_plans(
    engine: Engine, gw: Gateway, cases: list[tuple[str, reports.RejectFilter, str, int]]
) -> list[str]:
    """The count and list queries of each rejects case, every other statement one page of the
    list issues (relationship loads, codes, ISA13s), and the 90-day overview's queries, with
    their plans."""
    out = ["## Query plans", ""]
    for label, f, sort, offset in cases:
        with gw.sessions() as s, captured(engine) as seen:
            reports.count_rejects(s, f)
            count_at = len(seen)
            rows = reports.list_rejects(s, f, sort=sort, offset=offset, limit=50)
            list_at = len(seen)
            ids = [r.id for r, _ in rows]
            reports.codes_for(s, ids)
            reports.envelope_ids_for(s, ids)
        named = [("count_rejects", *seen[0]), ("list_rejects", *seen[count_at])]
        named.extend(("list_rejects (related load)", *x) for x in seen[count_at + 1 : list_at])
        if label == cases[0][0]:
            named.extend(("codes_for / envelope_ids_for", *x) for x in seen[list_at:])
        out.extend(_section(engine, label, named))
    # The dashboard's own period: whole UTC days, ending with today.
    end = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
    end += dt.timedelta(days=1)
    start = end - dt.timedelta(days=DAYS)
    with gw.sessions() as s, captured(engine) as seen:
        reports.overview_counts(s, start, end)
        reports.rejects_per_day(s, start, end)
        reports.top_codes(s, start, end)
        reports.waiting_or_failed(s)
    names = ("overview_counts", "rejects_per_day", "top_codes", "waiting_or_failed")
    named = [(name, *x) for name, x in zip(names, seen, strict=False)]
    out.extend(_section(engine, f"overview, {DAYS} days", named))
    return out


# --- report --------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores (load {load}), Python {platform.python_version()}"


def table(timings: list[Timing]) -> list[str]:
    out = [
        "| request | matched | median ms | p95 ms | CPU ms | bytes | rows/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in timings:
        rate = f"{t.rows / statistics.median(t.seconds):,.0f}" if t.rows else ""
        out.append(
            f"| {t.label} (`{t.url}`) | {t.matched} | {t.median_ms:,.1f} | {t.p95_ms:,.1f} "
            f"| {t.cpu_ms} | {f'{t.size:,}' if t.size else ''} | {rate} |"
        )
    return out


def sample_values(gw: Gateway) -> tuple[str, str]:
    """A partner name and the ISA13 of one of its rejected files, for the filter cases."""
    with gw.sessions() as s:
        name, isa13 = s.execute(
            text(
                "SELECT p.name, e.isa13 FROM receipts r JOIN partners p ON p.id = r.partner_id "
                "JOIN envelopes e ON e.receipt_id = r.id WHERE r.outcome = 'rejected' "
                "ORDER BY r.received_at DESC LIMIT 1"
            )
        ).one()
    return str(name), str(isa13)


def run(url: str, data_dir: Path, args: argparse.Namespace, engine_note: str) -> list[str]:
    upgrade(url)
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        worker_enabled=False,
        sftp_enabled=False,
        log_level="warning",
    )
    gw = Gateway.open(settings)
    try:
        start = time.perf_counter()
        counts = seed(gw, args.receipts, args.seed)
        seeding = time.perf_counter() - start
        if gw.engine.dialect.name == "postgresql":
            # What autovacuum would have done by the time anyone looks at the dashboard.
            with gw.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
                engine_note += " " + str(conn.exec_driver_sql("SHOW server_version").scalar())
        with unit_of_work(gw.sessions) as s:
            add_operator(s, *OPERATOR, role=Role.VIEWER)
        partner, isa13 = sample_values(gw)
        pages: list[tuple[str, str]] = [
            ("overview, 7 days", "/dashboard?days=7"),
            ("overview, 90 days", "/dashboard?days=90"),
            ("rejects, default", "/dashboard/rejects"),
            ("rejects, partner", "/dashboard/rejects?" + urlencode({"partner": partner})),
            ("rejects, code", "/dashboard/rejects?code=IK403:8"),
            ("rejects, isa13", f"/dashboard/rejects?isa13={isa13}"),
            ("rejects, sorted by partner", "/dashboard/rejects?sort=partner"),
            ("rejects, page 500", "/dashboard/rejects?page=500"),
        ]
        exports = [
            ("CSV export, default", "/dashboard/rejects.csv"),
            ("CSV export, all results", "/dashboard/rejects.csv?result=all"),
        ]
        timings: list[Timing] = []
        with dashboard(gw) as base, httpx.Client(base_url=base, timeout=600) as client:
            log_in(client)
            for label, page in pages:
                sys.stderr.write(f"timing {label}\n")
                timings.append(time_page(client, label, page, args.repeat))
            for label, page in exports:
                sys.stderr.write(f"timing {label}\n")
                timings.append(time_csv(client, label, page, args.csv_repeat))
            sys.stderr.write("timing a page during an export\n")
            timings.append(
                time_page_during_export(
                    client,
                    "overview, 7 days, during the all-results CSV export",
                    "/dashboard?days=7",
                    exports[1][1],
                    args.csv_repeat,
                )
            )
        plans = show_plans(
            gw.engine,
            gw,
            [
                ("rejects, default", reports.RejectFilter(), "received", 0),
                ("rejects, partner", reports.RejectFilter(partner=partner), "received", 0),
                ("rejects, code", reports.RejectFilter(family="IK403", code="8"), "received", 0),
                ("rejects, isa13", reports.RejectFilter(isa13=isa13), "received", 0),
                ("rejects, sorted by partner", reports.RejectFilter(), "partner", 0),
                ("rejects, page 500", reports.RejectFilter(), "received", 499 * 50),
            ],
        )
    finally:
        gw.close()
    rows = ", ".join(f"{name} {n:,}" for name, n in counts.items())
    return [
        f"## {engine_note}, N = {args.receipts:,} receipts",
        "",
        f"Machine: {machine()}. Seed {args.seed}; {args.repeat} timed requests per page after "
        f"one warm-up, {args.csv_repeat} per export; p95 is nearest-rank. CPU ms: this "
        "process's CPU time per request (client, app and, on SQLite, the database; not the "
        "PostgreSQL server), a check on wall times when the machine is shared.",
        "",
        f"Seeding: {seeding:.1f} s ({args.receipts / seeding:,.0f} receipts/s); rows: {rows}.",
        "",
        *table(timings),
        "",
        *plans,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgresServer")
    parser.add_argument("--repeat", type=int, default=10, help="timed requests per page")
    parser.add_argument("--csv-repeat", type=int, default=3, help="timed CSV exports")
    parser.add_argument("--seed", type=int, default=834)
    args = parser.parse_args(argv)
    configure_logging("warning")
    with tempfile.TemporaryDirectory(prefix="edi834-bench-") as tmp:
        data_dir = Path(tmp) / "var"
        if args.postgres:
            from tests.pgserver import PostgresServer

            with PostgresServer() as pg:
                out = run(pg.url, data_dir, args, "PostgreSQL")
        else:
            url = f"sqlite:///{data_dir.resolve() / 'edi834.sqlite3'}"
            data_dir.mkdir(parents=True)
            out = run(url, data_dir, args, f"SQLite {sqlite3.sqlite_version}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
