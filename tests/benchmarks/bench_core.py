"""Delivery to the core system: events a second and CPU per event, one POST an event
(`EDI834_CORE_POST=event`) against one POST a round (`batch`, JSON Lines), and the export
directory for comparison.

N outbox rows (payloads of ~2.8 KB, the size of the ledger's events) are written to a fresh
database, then `deliver_core` runs round after round in a child process, as the worker's outbox
loop does, until the outbox is empty. The receiver is a lean asyncio HTTP/1.1 server in a
process of its own (keep-alive, reads each body, answers 201 with no body) that counts the
events it got. Printed for each: wall seconds, events a second, and CPU microseconds per event
of the deliverer, of the receiver and of PostgreSQL (its postmaster and every backend).

Usage: python tests/benchmarks/bench_core.py [--events 20000] [--sqlite]
       [--modes event,batch,export]
The figures are printed, never asserted; note the load average (printed) beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert  # noqa: E402

from gateway.db.migrate import upgrade  # noqa: E402
from gateway.db.models import CoreDelivery, MemberEventRow, Partner, Receipt  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.benchmarks.procs import cpu_seconds, tree_cpu_seconds  # noqa: E402

RECEIVER = r"""
import asyncio, sys
events = 0
async def serve(reader, writer):
    global events
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length, ndjson = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"content-type":
                    ndjson = b"ndjson" in value
            body = await reader.readexactly(length)
            events += body.count(b"\n") if ndjson else 1
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(events, flush=True)
asyncio.run(main())
"""

DELIVER = r"""
import json, resource, sys, time
from gateway.context import Gateway
from gateway.enrollment.delivery import deliver_core
from gateway.settings import Settings
import httpx
gw = Gateway.open(Settings())
total, t0 = 0, time.monotonic()
with httpx.Client() as client:
    while n := deliver_core(gw, client):
        total += n
wall = time.monotonic() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"delivered": total, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime}))
"""


def payload(seq: int) -> str:
    """About the size of a ledger event's JSON (2.8 KB)."""
    member = {f"field_{i:02d}": f"value-{seq}-{i:02d}-" + "x" * 40 for i in range(40)}
    return json.dumps({"seq": seq, "member": member}, separators=(",", ":"))


def seed(url: str, events: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        partner_id = conn.execute(
            insert(Partner)
            .values(name="bench", isa_qualifier="ZZ", isa_id="BENCH", api_key_hash="x" * 64)
            .returning(Partner.id)
        ).scalar_one()
        conn.execute(
            insert(Receipt).values(
                id="r" * 32, partner_id=partner_id, channel="http", sha256="0" * 64, size=1,
                blob_path="x",
            )
        )  # fmt: skip
        for start in range(0, events, 5_000):
            seqs = range(start, min(events, start + 5_000))
            ids = conn.execute(
                insert(MemberEventRow).returning(MemberEventRow.id, sort_by_parameter_order=True),
                [
                    {
                        "partner_id": partner_id, "receipt_id": "r" * 32, "seq": seq,
                        "envelope_seq": 1, "group_seq": 1, "set_seq": 1, "isa13": "000000001",
                        "gs06": "1", "st02": "0001", "segment_position": 10 + seq,
                        "member_key": f"member-{seq}", "subscriber": True,
                        "relationship_code": "18", "maintenance_type": "021",
                        "maintenance_reason": "EC", "outcome": "applied", "payload": payload(seq),
                    }
                    for seq in seqs
                ],
            ).scalars().all()  # fmt: skip
            conn.execute(
                insert(CoreDelivery),
                [
                    {
                        "event_id": event_id, "partner_id": partner_id,
                        "idempotency_key": f"{seq:064d}", "payload": payload(seq),
                    }
                    for seq, event_id in zip(seqs, ids, strict=True)
                ],
            )  # fmt: skip
    engine.dispose()


def run(mode: str, events: int, url: str, data_dir: Path, postmaster: int | None) -> dict:
    data_dir.mkdir(parents=True)
    upgrade(Settings(data_dir=data_dir, database_url=url).sqlalchemy_url)
    seed(Settings(data_dir=data_dir, database_url=url).sqlalchemy_url, events)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDI834_")}
    env.update(
        EDI834_DATA_DIR=str(data_dir), EDI834_DATABASE_URL=url, EDI834_CORE_SECRET="bench",  # noqa: S106
        PYTHONPATH=str(ROOT),
    )  # fmt: skip
    receiver = None
    if mode == "export":
        env["EDI834_CORE_EXPORT_DIR"] = str(data_dir / "export")
    else:
        receiver = subprocess.Popen(
            [sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert receiver.stdout is not None and receiver.stdin is not None
        port = int(receiver.stdout.readline())
        env.update(EDI834_CORE_URL=f"http://127.0.0.1:{port}/events", EDI834_CORE_POST=mode)
    pg0 = tree_cpu_seconds(postmaster) if postmaster else 0.0
    done = subprocess.run(
        [sys.executable, "-c", DELIVER], env=env, capture_output=True, text=True, check=True
    )
    pg = tree_cpu_seconds(postmaster) - pg0 if postmaster else 0.0
    result = json.loads(done.stdout.strip().splitlines()[-1])
    received = events if mode == "export" else 0
    receiver_cpu = 0.0
    if receiver is not None:
        assert receiver.stdin is not None and receiver.stdout is not None
        receiver_cpu = cpu_seconds(receiver.pid)
        receiver.stdin.close()
        received = int(receiver.stdout.readline())
        receiver.wait(10)
    if mode == "export":
        received = sum(
            len(p.read_bytes().splitlines()) for p in (data_dir / "export").glob("*.jsonl")
        )
    per = 1e6 / events
    return {
        "mode": mode,
        "events": events,
        "delivered / received": f"{result['delivered']} / {received}",
        "seconds": round(result["wall"], 2),
        "events/s": f"{events / result['wall']:,.0f}",
        "deliverer µs/event": round(result["cpu"] * per),
        "receiver µs/event": round(receiver_cpu * per),
        "PostgreSQL µs/event": round(pg * per) if postmaster else "-",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--modes", default="event,batch,export")
    args = parser.parse_args()
    modes = args.modes.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.sqlite:
            engine = "SQLite"
            for mode in modes:
                rows.append(run(mode, args.events, "", Path(tmp) / mode, None))
        else:
            from tests.pgserver import PostgresServer

            engine = "PostgreSQL (throwaway cluster, fsync off)"
            with PostgresServer() as pg:
                postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
                for mode in modes:
                    url = pg.create_database(f"core_{mode}")
                    rows.append(run(mode, args.events, url, Path(tmp) / mode, postmaster))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {engine}, load average {os.getloadavg()[0]:.1f}"
    )
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
