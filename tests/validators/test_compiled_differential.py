"""Differential (issue 7): the compiled engine (`Engine.FAST`) finds exactly what pyx12's walker
(`Engine.PYX12`, the reference) finds — every `Issue` record, field for field and in the same
order, with the same set, group and interchange verdicts, and the same `UnusableResult`s — on
every sample and peer file, on a seeded corpus of mutated 834s, and on hypothesis' inputs.

A corpus failure names its seed and its mutations; rebuild the file with `corpus(seed)` (or
`python -m tests.validators.test_compiled_differential SEED > file.834`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import io
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, peer_files, peer_params, sample_files
from tests.validators.mutate import Mutant, corpus_case, guide, parse
from validators.interchange import (
    Engine,
    InterchangeResult,
    UnusableResult,
    ValidationOptions,
    validate_stream,
)

BATCHES = 50
BATCH_SIZE = 100  # 50 x 100 = 5,000 mutated files
# Generated sources: (members, seed) for tests/benchmarks/generate_834.py.
GENERATED = ((3, 1), (3, 2), (5, 3))
# Too large to mutate thousands of times within the suite's time; still compared whole below
# (and the mutator repeats 2300 loops past 99 by itself).
NOT_MUTATED = frozenset({"good_large_200_members.834", "bad_ik304_4_2300_over_99.834"})

# Cases where the engines must differ because pyx12 is wrong: name -> why. Each has a focused
# test named test_known_difference_<name>. Never an entry to hide a bug in the fast engine.
KNOWN_DIFFERENCES: dict[str, str] = {}

Record = tuple[object, ...]


# -- running both engines ----------------------------------------------------------------------


def records(data: bytes, engine: Engine) -> list[Record]:
    """Everything a result says, flattened in file order: verdicts, counts, every Issue."""
    out: list[Record] = []
    for result in validate_stream([data], ValidationOptions(engine=engine)):
        if isinstance(result, UnusableResult):
            out.append(("unusable", result))
            continue
        assert isinstance(result, InterchangeResult)
        out.append(("interchange", result.isa13, result.ta1_code, result.outcome, result.counts()))
        out.extend(("interchange issue", dataclasses.astuple(i)) for i in result.issues)
        for g in result.groups:
            out.append(("group", g.gs.element(6), g.ack_code, g.sets_included, g.sets_accepted))
            out.extend(("group issue", dataclasses.astuple(i)) for i in g.issues)
            for s in g.sets:
                out.append(
                    (
                        "set",
                        s.st02,
                        s.ack_code,
                        tuple(s.set_error_codes),
                        s.segment_count,
                        s.member_count,
                        s.issues_truncated,
                    )
                )
                out.extend(("set issue", s.st02, dataclasses.astuple(i)) for i in s.issues)
    return out


def difference(data: bytes) -> str | None:
    """None when both engines agree; else the first differing record pair, for a human."""
    try:
        fast = records(data, Engine.FAST)
    except Exception as exc:  # the fast engine must never raise
        return f"Engine.FAST raised {exc!r}"
    reference = records(data, Engine.PYX12)
    if fast == reference:
        return None
    at = next(
        (k for k, (a, b) in enumerate(zip(fast, reference, strict=False)) if a != b),
        min(len(fast), len(reference)),
    )
    missing = "(none)"
    return (
        f"first difference at record {at} of {len(fast)} (fast) / {len(reference)} (pyx12):\n"
        f"  fast:  {fast[at] if at < len(fast) else missing}\n"
        f"  pyx12: {reference[at] if at < len(reference) else missing}"
    )


# -- sources and the corpus --------------------------------------------------------------------


def _load_generator() -> ModuleType:
    path = ROOT / "tests" / "benchmarks" / "generate_834.py"
    spec = importlib.util.spec_from_file_location("generate_834", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_834", module)
    spec.loader.exec_module(module)
    return module


@functools.cache
def sources() -> tuple[tuple[str, bytes], ...]:
    """The files the corpus mutates: samples, peer files and a few small generated 834s."""
    found = [
        (p.name, p.read_bytes()) for p in sample_files() + peer_files() if p.name not in NOT_MUTATED
    ]
    gen834 = _load_generator()
    for members, seed in GENERATED:
        buffer = io.BytesIO()
        gen834.write_834(buffer, members, seed=seed)
        found.append((f"generate_834(members={members}, seed={seed})", buffer.getvalue()))
    return tuple(found)


def corpus(seed: int) -> Mutant:
    """Corpus file number `seed` (0 <= seed < BATCHES * BATCH_SIZE)."""
    return corpus_case(seed, sources())


class TestWholeFiles:
    @pytest.mark.parametrize(
        "path", [pytest.param(p, id=p.name) for p in sample_files()] + peer_params()
    )
    def test_same_findings(self, path: Path) -> None:
        found = difference(path.read_bytes())
        assert found is None, f"{path.name}: {found}"


class TestMutatedCorpus:
    def test_corpus_is_deterministic_and_mutated(self) -> None:
        for seed in (0, 1, 4999):
            assert corpus(seed) == corpus(seed)
        mutants = [corpus(seed) for seed in range(200)]
        assert all(1 <= len(m.steps) <= 4 for m in mutants)
        originals = dict(sources())
        changed = sum(1 for m in mutants if m.data != originals[m.source])
        assert changed >= 190

    def test_sources_read_back_whole(self) -> None:
        # The mutator's view of a file (delimiters, segments, line breaks) writes it back as it
        # was, so every change in a mutant is a mutation's.
        exact = [name for name, data in sources() if (d := parse(data)) and d.render() == data]
        assert len(exact) >= len(sources()) - 10

    @pytest.mark.parametrize("batch", range(BATCHES))
    def test_same_findings(self, batch: int) -> None:
        failures = []
        for seed in range(batch * BATCH_SIZE, (batch + 1) * BATCH_SIZE):
            mutant = corpus(seed)
            found = difference(mutant.data)
            if found is not None:
                failures.append(f"{mutant.describe()}\n{found}")
        assert not failures, f"{len(failures)} of {BATCH_SIZE} differ:\n" + "\n\n".join(
            failures[:3]
        )


# -- hypothesis --------------------------------------------------------------------------------

_SMALL = ("good_add_family.834", "good_cob_other_insurance.834", "good_termination.834")
_X12ISH = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 *:^~|>-.\r\n\x07\t\x00ab\xe9\xff\xb2"


@functools.cache
def _small_files() -> tuple[bytes, ...]:
    return tuple((ROOT / "samples" / name).read_bytes() for name in _SMALL)


def _body_span(data: bytes) -> tuple[int, int]:
    """Byte offsets of the first ST and the SE's end, where splices hit the set's inside."""
    start = data.find(b"ST*")
    end = data.find(b"GE*")
    return start, end


def _assert_same(data: bytes) -> None:
    found = difference(data)
    assert found is None, f"{data!r}\n{found}"


_HYPOTHESIS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestHypothesis:
    @_HYPOTHESIS
    @given(st.binary(max_size=400))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        _assert_same(data)

    @_HYPOTHESIS
    @given(st.integers(0, len(_SMALL) - 1), st.binary(max_size=400))
    def test_bytes_after_an_isa(self, which: int, data: bytes) -> None:
        _assert_same(_small_files()[which][:106] + data)

    @_HYPOTHESIS
    @given(
        st.integers(0, len(_SMALL) - 1),
        st.floats(0, 1),
        st.integers(0, 40),
        st.text(alphabet=_X12ISH, max_size=60),
    )
    def test_text_spliced_into_a_body(self, which: int, where: float, cut: int, text: str) -> None:
        data = _small_files()[which]
        start, end = _body_span(data)
        at = start + int(where * (end - start))
        _assert_same(data[:at] + text.encode("latin-1") + data[at + cut :])

    @_HYPOTHESIS
    @given(
        st.integers(0, len(_SMALL) - 1),
        st.floats(0, 1),
        st.lists(
            st.tuples(
                st.sampled_from(guide().tags),
                st.lists(st.text(alphabet=_X12ISH.replace("~", ""), max_size=8), max_size=8),
            ),
            min_size=1,
            max_size=6,
        ),
    )
    def test_guide_segments_spliced_into_a_body(
        self, which: int, where: float, segments: list[tuple[str, list[str]]]
    ) -> None:
        data = _small_files()[which]
        start, end = _body_span(data)
        # at a segment boundary inside the set
        at = data.index(b"~", start + int(where * (end - start - 1))) + 1
        text = "".join("*".join((tag, *elements)) + "~" for tag, elements in segments)
        _assert_same(data[:at] + text.encode("latin-1") + data[at:])


# -- found by the sweeps: both engines raise ---------------------------------------------------


def _with_element(tag: str, position: int, value: str) -> bytes:
    doc = parse((ROOT / "samples" / "good_termination.834").read_bytes())
    assert doc is not None
    seg = next(s for s in doc.segments if s[0] == tag)
    seg[position] = value
    return doc.render()


class TestNonAsciiDigits:
    """Latin-1 superscript digits (bytes B2, B3, B9 read as '²', '³', '¹') pass str.isdigit()
    but not int(): the envelope checks once raised on them (found by this file's hypothesis
    tests). Now a count or time made of them is a finding like any other bad one."""

    @pytest.mark.parametrize(
        ("tag", "position", "value"),
        [("ISA", 10, "\xb2359"), ("IEA", 1, "\xb2"), ("GE", 1, "\xb2"), ("SE", 1, "\xb2")],
        ids=["ISA10", "IEA01", "GE01", "SE01"],
    )
    @pytest.mark.parametrize("engine", list(Engine), ids=lambda e: e.value)
    def test_a_finding_not_a_crash(
        self, tag: str, position: int, value: str, engine: Engine
    ) -> None:
        (result,) = validate_stream(
            [_with_element(tag, position, value)], ValidationOptions(engine=engine)
        )
        assert isinstance(result, InterchangeResult)
        assert [(g.ack_code, g.sets_included) for g in result.groups]
        findings = result.issues + [
            i for g in result.groups for i in [*g.issues, *(x for s in g.sets for x in s.issues)]
        ]
        assert findings, "a non-ASCII digit in a count or time must be reported"


class TestIsaTagAtEndOfInput:
    """Input that ends with the three bytes 'ISA' inside an open interchange once reached the
    envelope reader as a plain segment tagged ISA and raised (found by
    TestHypothesis.test_bytes_after_an_isa). Now it is a truncated ISA: the open interchange
    is reported without its IEA, then the input as unusable."""

    @pytest.mark.parametrize("cut", ["after the ISA", "after the GS"])
    @pytest.mark.parametrize("engine", list(Engine), ids=lambda e: e.value)
    def test_a_truncated_isa(self, cut: str, engine: Engine) -> None:
        data = (ROOT / "samples" / "good_termination.834").read_bytes()
        head = data[:106] if cut == "after the ISA" else data[: data.index(b"ST*")]
        results = list(validate_stream([head + b"ISA"], ValidationOptions(engine=engine)))
        assert isinstance(results[0], InterchangeResult)
        assert results[0].issues  # the IEA never came
        assert isinstance(results[-1], UnusableResult)


# -- known differences -------------------------------------------------------------------------


def test_known_differences_have_focused_tests() -> None:
    tests: dict[str, Callable[[], None]] = {
        name.removeprefix("test_known_difference_"): fn
        for name, fn in globals().items()
        if name.startswith("test_known_difference_")
    }
    assert set(KNOWN_DIFFERENCES) == set(tests)


if __name__ == "__main__":  # write corpus file SEED to stdout, its mutations to stderr
    mutant = corpus(int(sys.argv[1]))
    sys.stderr.write(mutant.describe() + "\n")
    sys.stdout.buffer.write(mutant.data)
