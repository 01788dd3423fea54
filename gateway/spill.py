"""The disk side of validators.setlist: a long group's older transaction-set results, pickled
in batches to an unnamed temporary file. The file lives in the blob store's private tmp
directory (results quote member data, so they stay where the received bytes are, mode 0600),
has no name to leave behind, and is gone when closed or when the process dies."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from validators.interchange import TransactionSetResult


class FileSpill:
    """Appended in batches; read back in order, from the start, as often as asked. A reader
    keeps its own place, so reading while more is written (or two readers) is safe."""

    def __init__(self, directory: Path | None) -> None:
        self._file: IO[bytes] | None = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115

    def write(self, items: list[TransactionSetResult]) -> None:
        f = self._open()
        f.seek(0, os.SEEK_END)
        pickle.dump(items, f, protocol=pickle.HIGHEST_PROTOCOL)

    def read(self) -> Iterator[TransactionSetResult]:
        place = 0
        while True:
            f = self._open()
            f.seek(place)
            try:
                batch: list[TransactionSetResult] = pickle.load(f)  # noqa: S301 - our own file
            except EOFError:
                return
            place = f.tell()
            yield from batch

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> IO[bytes]:
        if self._file is None:
            raise ValueError("the spill is closed")
        return self._file


def spill_to(directory: Path | None) -> Callable[[], FileSpill]:
    """A factory for ValidationOptions.spill: one temporary file per long group."""
    return lambda: FileSpill(directory)
