"""The ledger's extraction on both cores: a large set's members read in blocks by other
processes (`gateway.parallel.FileSetMembers`) are the members `extract_members` reads in one
go — same events, same order, the set's header shared — and the ledger applies them alike."""

from __future__ import annotations

import contextlib
import gc
import io
import json
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway.context import Gateway
from gateway.db.migrate import upgrade
from gateway.db.models import CoreDelivery, LedgerMember
from gateway.enrollment import MemberEvent, apply, extract_members
from gateway.parallel import FileSetMembers, pool
from gateway.settings import Settings
from tests.conftest import sample_files
from tests.gateway.harness import add_va, in_process_gateway
from tests.gateway.test_extract import _BODY_TAGS, _BODY_VALUES, _segments, gen834
from tests.gateway.test_ledger import feed, outcomes
from tests.x12build import HEADER, MEMBER, TS, Group, x12

GOOD = sorted(p for p in sample_files() if p.name.startswith("good_"))


class Counting(Executor):
    """Runs each block at once in this thread; counts them and what was cancelled."""

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def in_one_go(data: bytes) -> list[MemberEvent]:
    return list(extract_members([data]))


def in_blocks(
    tmp: Path, data: bytes, per_part: int, executor: Executor | None = None
) -> tuple[list[MemberEvent], FileSetMembers]:
    path = tmp / "file.834"
    path.write_bytes(data)
    parts = FileSetMembers(
        path, executor or Counting(), max_segment_bytes=65536, members_per_part=per_part
    )
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    return list(extract_members(pieces, parts=parts)), parts


def generated(members: int, *, sets: int = 1, seed: int = 7) -> bytes:
    buf = io.BytesIO()
    gen834.write_834(buf, members, seed=seed, sets=sets)
    return buf.getvalue()


def headers_shared(events: list[MemberEvent]) -> bool:
    """One header object per set, as in one go (a million members share it, not copy it)."""
    by_set: dict[tuple[int, int, int], int] = {}
    for e in events:
        key = (e.source.envelope, e.source.group, e.source.transaction_set)
        by_set.setdefault(key, id(e.header))
        if by_set[key] != id(e.header):
            return False
    return True


@pytest.mark.parametrize("per_part", [1, 2, 3, 7])
@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_samples_read_in_blocks_are_read_as_in_one_go(
    tmp_path: Path, path: Path, per_part: int
) -> None:
    data = path.read_bytes()
    events, _ = in_blocks(tmp_path, data, per_part)
    assert events == in_one_go(data)
    assert headers_shared(events)


@pytest.mark.parametrize(("members", "sets", "per_part"), [(300, 1, 40), (301, 3, 17), (50, 2, 1)])
def test_generated_files_in_blocks(tmp_path: Path, members: int, sets: int, per_part: int) -> None:
    data = generated(members, sets=sets)
    executor = Counting()
    events, parts = in_blocks(tmp_path, data, per_part, executor)
    assert parts.split
    assert executor.submitted > sets  # the bodies were read in blocks, not here
    expected = in_one_go(data)
    assert len(events) == members
    assert events == expected
    assert headers_shared(events)


def test_real_process_pool(tmp_path: Path) -> None:
    """Blocks cross a process boundary (pickled) and come back in order."""
    data = generated(3000, sets=2, seed=11)
    events, parts = in_blocks(tmp_path, data, 400, pool(2))
    assert parts.split
    assert events == in_one_go(data)
    assert headers_shared(events)


def test_a_set_left_out_is_not_read_at_all(tmp_path: Path) -> None:
    data = generated(300, sets=3)
    path = tmp_path / "f.834"
    path.write_bytes(data)
    executor = Counting()
    parts = FileSetMembers(path, executor, max_segment_bytes=65536, members_per_part=30)
    events = list(extract_members([data], parts=parts, include=lambda key: key[2] == 1))
    assert {e.source.transaction_set for e in events} == {1}
    assert events == list(extract_members([data], include=lambda key: key[2] == 1))
    assert executor.submitted == len(parts.sets[1].parts)


def test_stopping_half_way_cancels_the_blocks_not_yet_read(tmp_path: Path) -> None:
    data = generated(400)
    path = tmp_path / "f.834"
    path.write_bytes(data)
    with ThreadPoolExecutor(1) as executor:
        parts = FileSetMembers(
            path, executor, max_segment_bytes=65536, members_per_part=20, ahead=3
        )
        events = extract_members([data], parts=parts)
        first = [next(events) for _ in range(25)]
        events.close()
    assert first == in_one_go(data)[:25]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=st.lists(_segments(_BODY_TAGS, _BODY_VALUES), min_size=2, max_size=6),
    per_part=st.integers(min_value=1, max_value=4),
)
def test_arbitrary_members_in_blocks(
    tmp_path_factory: pytest.TempPathFactory, members: list[list[str]], per_part: int
) -> None:
    """Any member segments, in any order, with any values, behind each INS: the blocks give
    what one go gives (a block starts at an INS; nothing a member holds is lost at a cut)."""
    body = [s for member in members for s in (MEMBER[0], *member)]
    data = x12(Group(sets=[TS(body=[*HEADER, *body])]))
    events, _ = in_blocks(tmp_path_factory.mktemp("p"), data, per_part)
    assert events == in_one_go(data)


# --- the ledger, end to end -------------------------------------------------------------------


@pytest.fixture
def two_gateways(tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    """One that reads members in its own process only, one with a pool of two."""
    one = Gateway.open(Settings(data_dir=tmp_path / "one", validation_processes=1))
    upgrade(one.settings.sqlalchemy_url)
    other = in_process_gateway(tmp_path / "other")
    yield one, next(other)
    one.close()
    next(other, None)


def ledger_state(gw: Gateway) -> tuple[list[tuple[object, ...]], list[dict[str, object]]]:
    with gw.reads() as s:
        members = [
            (m.member_key, m.status, m.subscriber, m.policy_key, m.birth_date, m.last_name)
            for m in s.scalars(select(LedgerMember).order_by(LedgerMember.member_key))
        ]
        core = []
        for d in s.scalars(select(CoreDelivery).order_by(CoreDelivery.id)):
            payload = json.loads(d.payload)
            del payload["receipt_id"], payload["event_id"]
            core.append(payload)
    return members, core


def test_the_ledger_applies_blocks_as_it_applies_one_go(
    two_gateways: tuple[Gateway, Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same file applied with its members read here (one process) and read by the pool in
    blocks: the same outcomes, findings, ledger and core events — and the pool was used."""
    sequential, split = two_gateways
    data = generated(600, sets=2, seed=5)
    used: list[int] = []
    real = FileSetMembers.members

    def counting(self: FileSetMembers, planned: Any) -> Iterator[Any]:
        used.append(len(planned.parts))
        return real(self, planned)

    monkeypatch.setattr(FileSetMembers, "members", counting)
    monkeypatch.setattr(apply, "SPLIT_FROM_BYTES", 0)
    monkeypatch.setattr(apply, "MEMBERS_PER_BLOCK", 45)
    got = []
    for gw in (sequential, split):
        if gw is split:
            assert not used  # one process: the blocks are not used
        partner = add_va(gw)
        receipt = feed(gw, partner, data)
        got.append((sorted(outcomes(gw, receipt).items()), ledger_state(gw)))
    assert used and all(n > 1 for n in used)
    assert got[0] == got[1]
    assert len(got[1][0]) == 600
    assert len(got[1][1][1]) == 600  # every member reached the core's outbox


def test_fewer_collections_while_files_apply_and_the_thresholds_come_back() -> None:
    before = gc.get_threshold()
    assert before != apply.LEDGER_GC_THRESHOLDS
    with apply.fewer_collections():
        assert gc.get_threshold() == apply.LEDGER_GC_THRESHOLDS
        with pytest.raises(RuntimeError), apply.fewer_collections():  # a second file, failing
            raise RuntimeError
        assert gc.get_threshold() == apply.LEDGER_GC_THRESHOLDS  # the first still applies
    assert gc.get_threshold() == before


def test_a_file_is_applied_under_the_ledgers_thresholds(tmp_path: Path) -> None:
    seen: list[tuple[int, int, int]] = []
    with contextlib.ExitStack() as stack:
        gw = stack.enter_context(contextlib.closing(Gateway.open(Settings(data_dir=tmp_path))))
        upgrade(gw.settings.sqlalchemy_url)
        partner = add_va(gw)
        real = apply._commit_chunk

        def spying(*args: Any, **kwargs: Any) -> int:
            seen.append(gc.get_threshold())
            return real(*args, **kwargs)

        stack.enter_context(pytest.MonkeyPatch.context()).setattr(apply, "_commit_chunk", spying)
        feed(gw, partner, generated(20))
    assert seen and set(seen) == {apply.LEDGER_GC_THRESHOLDS}
    assert gc.get_threshold() != apply.LEDGER_GC_THRESHOLDS


def _apply_peak(tmp: Path, members: int) -> int:
    """tracemalloc's peak while a file of `members` members is applied (validated first,
    outside the measure), on SQLite, one process, the stage's own GC thresholds."""
    import tracemalloc

    from gateway.worker.run import Worker
    from tests.gateway.test_worker import _receipt

    with contextlib.closing(Gateway.open(Settings(data_dir=tmp, validation_processes=1))) as gw:
        upgrade(gw.settings.sqlalchemy_url)
        partner = add_va(gw)
        _receipt(gw, partner, generated(members, seed=9))
        worker = Worker(gw)
        assert worker.run_once()
        gc.collect()
        tracemalloc.start()
        try:
            while worker.apply_ledger_once():
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_applying_a_file_holds_a_chunk_not_the_file(tmp_path: Path) -> None:
    """Four times the members (two chunks of 500 and five), about the same peak: what a chunk
    held is freed when the next one starts, not when the cyclic collector gets to it."""
    small = _apply_peak(tmp_path / "small", 600)
    large = _apply_peak(tmp_path / "large", 2400)
    assert large < small * 1.6, (small, large)
