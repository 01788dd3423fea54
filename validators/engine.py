"""Pure; no I/O. Which engine checks a transaction set's inside: a module of its own, so that a
caller naming one (the `edi834` parser's `--engine` choices) loads nothing else."""

from __future__ import annotations

import enum


class Engine(enum.Enum):
    """How a transaction set's inside is checked against 005010X220A1: pyx12's walker (the
    reference) or the compiled tables (`validators.compiled`) with the same findings."""

    FAST = "fast"
    PYX12 = "pyx12"
