"""Checking a set in blocks of members (validators.parallel) gives the findings of checking it
in one go: the same Issue records in the same order, the same member and segment counts — on
the samples, on generated files with findings planted at block boundaries, and on mutated
files cut into one-member blocks (the most boundaries a file can have)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from tests.benchmarks.generate_834 import write_834
from tests.conftest import sample_files
from tests.validators.mutate import corpus_case
from validators.interchange import (
    InterchangeResult,
    UnusableResult,
    ValidationOptions,
    validate_stream,
)
from validators.parallel import (
    LocalSetChecks,
    Part,
    PartResult,
    PlannedSet,
    plan_sets,
)


def summary(data: bytes, options: ValidationOptions) -> list[object]:
    out: list[object] = []
    for result in validate_stream([data[i : i + 4096] for i in range(0, len(data), 4096)], options):
        if isinstance(result, UnusableResult):
            out.append(result)
            continue
        assert isinstance(result, InterchangeResult)
        for g in result.groups:
            for s in g.sets:
                out.append(
                    (
                        s.st02,
                        s.member_count,
                        s.segment_count,
                        s.issues_truncated,
                        [dataclasses.astuple(i) for i in s.issues],
                    )
                )
    return out


def assert_split_equals_whole(data: bytes, members_per_part: int) -> int:
    """Compares the two; returns how many sets were split."""
    checks = LocalSetChecks(data, members_per_part=members_per_part)
    whole = summary(data, ValidationOptions())
    split = summary(data, ValidationOptions(set_checks=checks))
    assert split == whole
    return len(checks._plans)


def generated(members: int, seed: int = 3) -> bytes:
    buf = io.BytesIO()
    write_834(buf, members, seed=seed)
    return buf.getvalue()


def test_plan_cuts_at_members_and_counts_positions() -> None:
    data = generated(23)
    (planned,) = plan_sets([data], members_per_part=5)
    assert len(planned.parts) == 5  # members 1-5 with the header, 6-10, ..., 21-23 with SE
    assert [p.resume for p in planned.parts] == [False, True, True, True, True]
    assert [p.lookahead for p in planned.parts] == [True, True, True, True, False]
    text = data.decode("latin-1")
    for part in planned.parts[1:]:
        assert text[part.start : part.start + 4] == "INS*"
        # first_index is the IK302 position: count the segments from the ST
        assert text[planned.st_offset : part.start].count("~") + 1 == part.first_index
    assert text[planned.se_offset : planned.se_offset + 3] == "SE*"
    assert text[planned.se_offset :].split("*")[1] == str(planned.segment_count)


@pytest.mark.parametrize("size", [1, 3, 64, 1000, 65_536])
def test_plan_is_the_same_whatever_the_chunks(size: int) -> None:
    data = generated(23, seed=5) + generated(17, seed=6)  # two interchanges
    whole = list(plan_sets([data], members_per_part=4))
    assert len(whole) == 2
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert list(plan_sets(chunks, members_per_part=4)) == whole


def test_small_sets_are_not_split() -> None:
    assert list(plan_sets([generated(5)], members_per_part=5)) == []


@pytest.mark.parametrize("members_per_part", [1, 2, 7])
def test_generated_file(members_per_part: int) -> None:
    assert assert_split_equals_whole(generated(40), members_per_part) == 1


def plant(data: bytes, find: bytes, replace: bytes, nth: int) -> bytes:
    at = -1
    for _ in range(nth):
        at = data.index(find, at + 1)
    return data[:at] + replace + data[at + len(find) :]


@pytest.mark.parametrize(
    ("find", "replace", "nth"),
    [
        (b"~NM1*IL*", b"~NM1*XX*", 5),  # the last member of a block: its NM1 is unrecognised
        (b"~DMG*D8*", b"~DMGX*D8*", 6),  # the first member of the next block
        (b"~REF*0F*", b"~REF*0F*", 6),  # nothing: the control
        (b"~HD*", b"~HDX*", 5),  # a required 2300 HD missing, reported at the next INS
        (b"~INS*Y*18*", b"~INS*Q*18*", 6),  # the INS a block starts with has an element error
        (b"~LE*2700", b"~LX*2700", 5),  # an LS never closed before the next member
    ],
)
def test_findings_across_a_block_boundary(find: bytes, replace: bytes, nth: int) -> None:
    data = plant(generated(12), find, replace, nth)
    assert assert_split_equals_whole(data, 5) == 1


def test_an_ls_left_open_by_a_blocks_last_member_is_found_by_that_block() -> None:
    """The missing LE (issue 16) is reported at the next block's INS, by the block that walks
    that INS as its lookahead."""
    data = plant(generated(12), b"~LE*2700", b"", 5)
    whole = summary(data, ValidationOptions())
    missing = [i for i in whole[0][4] if i[1] == "3" and i[3] == "LE"]  # type: ignore[index]
    assert len(missing) == 1
    assert assert_split_equals_whole(data, 5) == 1


def test_required_missing_at_the_boundary_names_the_next_member() -> None:
    """X231 CTX: the 'missing' a member's successor reveals carries that successor's REF*0F,
    in one go and in blocks alike."""
    data = generated(12)
    start = data.index(b"~INS*", data.index(b"~INS*") + 1)  # the second member
    stop = data.index(b"~INS*", start + 1)
    member = data[start:stop]
    nm1 = member.index(b"~NM1*IL*")
    member = member[:nm1] + member[member.index(b"~", nm1 + 1) :]
    data = data[:start] + member + data[stop:]
    whole = summary(data, ValidationOptions())
    assert any("missing" in str(i) for i in whole[0][4])  # type: ignore[index]
    assert assert_split_equals_whole(data, 2) == 1


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_samples(path: Path) -> None:
    assert_split_equals_whole(path.read_bytes(), 1)


SOURCES = [(p.name, p.read_bytes()) for p in sample_files()] + [
    (f"generated-{n}", generated(n, seed=n)) for n in (4, 6, 9)
]


@pytest.mark.parametrize("batch", range(10))
def test_mutated_files(batch: int) -> None:
    split = 0
    for seed in range(batch * 100, batch * 100 + 100):
        case = corpus_case(10_000 + seed, SOURCES)
        try:
            split += assert_split_equals_whole(case.data, 1)
        except AssertionError:
            pytest.fail(f"seed {case.seed} ({case.source}): {'; '.join(case.steps)}")
    assert split > 0  # the batch exercised the split path at all


class NotJoining(LocalSetChecks):
    """As if a lookahead INS had not opened a member where the next block assumed it."""

    def run(self, planned: PlannedSet, parts: tuple[Part, ...]) -> list[PartResult]:
        results = super().run(planned, parts)
        if parts == planned.parts:
            results[0].joined = False
        return results


def test_blocks_that_do_not_join_fall_back_to_one_go() -> None:
    data = plant(generated(12), b"~HD*", b"~HDX*", 5)
    checks = NotJoining(data, members_per_part=5)
    assert summary(data, ValidationOptions(set_checks=checks)) == summary(data, ValidationOptions())
