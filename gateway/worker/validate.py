"""Validate: a claimed receipt's blob streamed through the validator (pure, validators/), its
large 834 sets checked in blocks by a process pool; memory bounded by findings, not file size."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.faults import crashpoint, raisepoint
from gateway.parallel import SPLIT_FROM_BYTES, FileSetChecks, pool, processes_for
from gateway.spill import spill_to
from gateway.worker.job import Abandoned, Job
from validators.interchange import (
    Engine,
    InterchangeResult,
    Outcome,
    UnusableResult,
    ValidationOptions,
    validate_stream,
)

Result = InterchangeResult | UnusableResult
# What the ledger's order key reads of a file: its ISA13 and first BGN, which an 834 has in its
# first few hundred bytes. Not the first chunk (up to 1 MiB), which the key's reader cut into
# segments whole: half a millisecond of a small file's CPU (issue 19).
HEAD_BYTES = 8192


def validate_job(
    gw: Gateway,
    job: Job,
    *,
    cancel: threading.Event,
    heartbeat: Callable[[], None],
    heartbeat_seconds: float,
) -> Validated:
    """Stream the blob through the validator. Memory is bounded by findings, not file size.
    The file's first chunk is kept for the ledger's order key: nothing reads the file again
    until the ledger applies it."""

    def is_duplicate(qualifier: str, sender: str, isa13: str) -> bool:
        with gw.read_engine.connect() as conn:
            return repo.is_isa13_used(
                conn, job.partner_id, qualifier, sender, isa13, job.receipt_id
            )

    options = ValidationOptions(
        expected_sender=job.expected_sender,
        expected_receiver=gw.settings.identity,
        is_duplicate=is_duplicate,
        max_segment_bytes=gw.settings.max_segment_bytes,
        engine=Engine(gw.settings.validation_engine),
        # A group of many sets keeps its older results on disk, beside the file's own bytes.
        spill=spill_to(gw.blobs.tmp_dir),
    )
    last_beat = time.monotonic()
    head: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        nonlocal last_beat
        for chunk in gw.blobs.chunks(job.blob_path):
            if not head:
                head.append(chunk[:HEAD_BYTES])
            raisepoint("validating", chunk)  # tests: a bug whose message quotes the file
            if cancel.is_set():
                raise Abandoned
            if time.monotonic() - last_beat > heartbeat_seconds:
                heartbeat()
                last_beat = time.monotonic()
            yield chunk

    checks = _set_checks(gw, job, options, cancel, heartbeat, heartbeat_seconds)
    if checks is not None:
        options = dataclasses.replace(options, set_checks=checks)
    try:
        results = list(validate_stream(chunks(), options))
    finally:
        if checks is not None:
            checks.close()
    crashpoint("validated")
    return Validated(results, head[0] if head else b"")


def _set_checks(
    gw: Gateway,
    job: Job,
    options: ValidationOptions,
    cancel: threading.Event,
    heartbeat: Callable[[], None],
    heartbeat_seconds: float,
) -> FileSetChecks | None:
    """Large 834 sets of this file checked in blocks by a process pool (gateway.parallel)."""
    processes = processes_for(gw.settings.validation_processes)
    if processes <= 1 or options.engine is not Engine.FAST:
        return None
    path = gw.blobs.path(job.blob_path)
    if path.stat().st_size < SPLIT_FROM_BYTES:
        return None

    last_beat = time.monotonic()

    def waiting() -> None:
        nonlocal last_beat
        if cancel.is_set():
            raise Abandoned
        if time.monotonic() - last_beat > heartbeat_seconds:
            heartbeat()
            last_beat = time.monotonic()

    checks = FileSetChecks(
        path,
        pool(processes),
        max_segment_bytes=options.max_segment_bytes,
        max_issues=options.max_issues_per_set,
        on_wait=waiting,
        wait_seconds=0.5,
    )
    return checks if checks.split else None


@dataclass(frozen=True, slots=True)
class Validated:
    results: list[Result]
    head: bytes  # the file's first HEAD_BYTES (the ledger's order key reads its ISA13, BGN)

    def close(self) -> None:
        """Let go of the results' spill files once they are stored."""
        for r in self.results:
            if isinstance(r, InterchangeResult):
                r.close()


def outcome_of(results: list[Result]) -> Outcome:
    """The file's outcome from its interchanges'; an unusable part counts as a rejection."""
    kinds = {r.outcome if isinstance(r, InterchangeResult) else Outcome.REJECTED for r in results}
    if not kinds or kinds == {Outcome.REJECTED}:
        return Outcome.REJECTED
    if kinds == {Outcome.ACCEPTED}:
        return Outcome.ACCEPTED
    if Outcome.REJECTED in kinds or Outcome.PARTIALLY_ACCEPTED in kinds:
        return Outcome.PARTIALLY_ACCEPTED
    return Outcome.ACCEPTED_WITH_ERRORS
