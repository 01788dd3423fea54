"""Checks the benchmark's 834 generator: envelope counts, balancing, streaming, pyx12 validity."""

from __future__ import annotations

import importlib.util
import io
import sys
import tempfile
import tracemalloc
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, cast

import pytest

HERE = Path(__file__).resolve().parent


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_834", HERE / "generate_834.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_834", module)
    spec.loader.exec_module(module)
    return module


gen834 = _load_generator()


def _generate(members: int, *, seed: int = 0, sets: int = 1) -> tuple[bytes, int, int]:
    buffer = io.BytesIO()
    written, segments = gen834.write_834(buffer, members, seed=seed, sets=sets)
    return buffer.getvalue(), written, segments


def _segments(data: bytes) -> list[list[str]]:
    return [seg.split("*") for seg in data.decode("ascii").split("~") if seg]


class _NullSink:
    """Counts bytes and keeps none, so memory measures the generator alone."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


class TestWrite834:
    @pytest.mark.parametrize(("members", "sets"), [(1, 1), (200, 1), (200, 3), (997, 7)])
    def test_counts_match_envelopes_and_qty(self, members: int, sets: int) -> None:
        data, written, segment_count = _generate(members, sets=sets)
        segments = _segments(data)
        assert written == members
        assert segment_count == len(segments)
        assert data.index(b"~") + 1 == 106
        assert segments[0][6] == "VA0FFM         "
        assert segments[0][8] == "EDI834GATEWAY  "
        assert (segments[0][7], segments[0][14], segments[0][15]) == ("ZZ", "1", "P")
        assert segments[1][1] == "BE"
        assert segments[1][8] == "005010X220A1"
        assert segments[-1] == ["IEA", "1", segments[0][13]]
        assert segments[-2] == ["GE", str(sets), segments[1][6]]

        st_count = 0
        total_ins = 0
        for index, seg in enumerate(segments):
            if seg[0] != "ST":
                continue
            st_count += 1
            end = next(i for i in range(index, len(segments)) if segments[i][0] == "SE")
            body = segments[index : end + 1]
            assert body[-1] == ["SE", str(len(body)), seg[2]]
            qty = {s[1]: int(s[2]) for s in body if s[0] == "QTY"}
            ins = Counter(s[1] for s in body if s[0] == "INS")
            assert qty == {"TO": ins["Y"] + ins["N"], "ET": ins["Y"], "DT": ins["N"]}
            total_ins += qty["TO"]
        assert st_count == sets
        assert total_ins == members
        sizes = [int(s[2]) for s in segments if s[0] == "QTY" and s[1] == "TO"]
        assert max(sizes) - min(sizes) <= 1

    def test_reporting_categories_balance_per_family(self) -> None:
        segments = _segments(_generate(500, seed=3)[0])
        families: dict[str, dict[str, Decimal]] = {}
        premiums: defaultdict[str, Decimal] = defaultdict(Decimal)
        subscriber = ""
        category = ""
        for seg in segments:
            if seg[0] == "REF" and seg[1] == "0F":
                subscriber = seg[2]
            elif seg[0] == "N1" and seg[1] == "75":
                category = seg[2]
            elif seg[0] == "REF" and category and category != "RATING AREA":
                if category == "PRE AMT 1":
                    premiums[subscriber] += Decimal(seg[2])
                else:
                    families.setdefault(subscriber, {})[category] = Decimal(seg[2])
                category = ""
        assert families
        for subscriber_id, amounts in families.items():
            assert amounts["PRE AMT TOT"] == premiums[subscriber_id]
            assert amounts["TOT RES AMT"] == amounts["PRE AMT TOT"] - amounts["APTC AMT"]
            assert 0 <= amounts["APTC AMT"] <= amounts["PRE AMT TOT"]

    def test_identifiers_look_real(self) -> None:
        segments = _segments(_generate(500, seed=11)[0])
        for seg in segments:
            if seg[0] == "NM1" and len(seg) > 9:
                assert len(seg[9]) == 9
                assert len(set(seg[9])) > 1
            elif seg[0] == "PER":
                for number in seg[4::2]:
                    assert len(number) == 10
                    assert len(set(number)) > 1
            elif seg[0] == "N4":
                assert len(set(seg[3])) > 1
            elif seg[0] == "REF" and seg[1] == "CE":
                assert len(seg[2]) == 16
        member_ids = [s[2] for s in segments if s[0] == "REF" and s[1] == "17"]
        assert len(member_ids) == len(set(member_ids)) == 500

    def test_same_seed_same_bytes(self) -> None:
        assert _generate(300, seed=5)[0] == _generate(300, seed=5)[0]
        assert _generate(300, seed=5)[0] != _generate(300, seed=6)[0]

    def test_memory_does_not_grow_with_members(self) -> None:
        def peak(members: int) -> int:
            sink = cast(BinaryIO, _NullSink())
            tracemalloc.start()
            try:
                gen834.write_834(sink, members)
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

        small, large = peak(500), peak(5_000)
        assert large < small * 2

    @pytest.mark.parametrize("sets", [1, 3])
    def test_pyx12_accepts_file(self, sets: int) -> None:
        pyx12_document = pytest.importorskip("pyx12.x12n_document")
        import pyx12.params

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "members.834"
            path.write_bytes(_generate(200, seed=1, sets=sets)[0])
            ack = io.StringIO()
            ok = pyx12_document.x12n_document(
                param=pyx12.params.params(),
                src_file=str(path),
                fd_997=ack,
                fd_html=None,
                fd_xmldoc=None,
            )
        assert ok
        assert f"AK9*A*{sets}*{sets}*{sets}~" in ack.getvalue()
