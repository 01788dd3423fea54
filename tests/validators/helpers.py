from __future__ import annotations

from validators.interchange import (
    InterchangeResult,
    UnusableResult,
    ValidationOptions,
    validate_stream,
)
from validators.issues import Issue


def results(data: bytes, **options: object) -> list[InterchangeResult | UnusableResult]:
    return list(validate_stream([data], ValidationOptions(**options)))  # type: ignore[arg-type]


def one(data: bytes, **options: object) -> InterchangeResult:
    out = results(data, **options)
    assert len(out) == 1
    assert isinstance(out[0], InterchangeResult)
    return out[0]


def all_issues(result: InterchangeResult) -> list[Issue]:
    found = list(result.issues)
    for g in result.groups:
        found.extend(g.issues)
        for s in g.sets:
            found.extend(s.issues)
    return found


def codes(result: InterchangeResult) -> set[str]:
    return {f"{i.family}:{i.code}" for i in all_issues(result)}
