"""A file's 834 sets for the ledger stage (gateway.enrollment.filesets): the same answers as
the dict of decisions and counts it replaces, in a few bytes a set."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enrollment.filesets import FileSets
from gateway.gate import Decision, Disposition

DECISIONS = [
    Decision(Disposition.APPLY),
    Decision(Disposition.DRY_RUN, "onboarding"),
    Decision(Disposition.NOT_APPLIED, "the 999 rejected the set"),
    Decision(Disposition.NOT_APPLIED, "test data (ISA15 T)"),
]
UNDECIDED = Decision(Disposition.NOT_APPLIED, "no gate decision recorded")

keys = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 40))
entries = st.lists(
    st.tuples(
        keys,
        st.sampled_from(DECISIONS),
        st.one_of(st.none(), st.tuples(st.integers(0, 9), st.integers(0, 9))),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(entries=entries, probes=st.lists(keys, max_size=10))
def test_the_same_answers_as_dicts(entries, probes):
    sets = FileSets()
    decisions: dict[tuple[int, int, int], Decision] = {}
    counts: dict[tuple[int, int, int], tuple[int, int]] = {}
    counted = True
    for key, decision, count in entries:
        sets.add(key, decision, count)
        decisions[key] = decision
        if count is None:
            counted = False
        else:
            counts[key] = count
    assert len(sets) == len(decisions)
    assert sorted(map(DECISIONS.index, sets.values())) == sorted(
        map(DECISIONS.index, decisions.values())
    )
    for key in [*probes, *decisions]:
        assert (key in sets) == (key in decisions)
        assert sets.get(key, UNDECIDED) == decisions.get(key, UNDECIDED)
        expected = counts.get(key, (0, 0)) if counted else (0, 0)
        assert sets.counts.get(key, (0, 0)) == expected
    assert bool(sets.counts) == (counted and bool(decisions))
    assert "not a key" not in sets and (0, 0) not in sets


def test_a_million_sets_cost_megabytes():
    sets = FileSets()
    for n in range(1_000_000):
        sets.add((0, 0, n), DECISIONS[n % 2], (1, n % 3))
    group = sets._groups[(0, 0)]
    size = sum(a.itemsize * len(a) for a in (group.decision, group.subscribers, group.dependents))
    assert size <= 9_000_000 and len(sets) == 1_000_000
    assert sets.get((0, 0, 999_999), UNDECIDED) is DECISIONS[1]
    assert sets.counts.get((0, 0, 999_998), (0, 0)) == (1, 999_998 % 3)
