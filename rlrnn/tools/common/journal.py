"""An Optuna journal file (:class:`JournalFile`): Optuna's file format, which Optuna's own
backend reads too, with two guarantees more. The file is made by the first record written, not
when it is opened (a command refused after opening it leaves nothing), and no record is ever
appended onto a last line that a killed process left cut (Optuna's reader skips such a line while
it is last, but a record written onto it would make the whole study unreadable): under the
journal's lock, that unfinished record, which no reader has ever applied, is dropped first.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from optuna.storages.journal import BaseJournalBackend, JournalFileSymlinkLock

from rlrnn.errors import UsageError, WriteFailed

# Every record Optuna writes to a journal starts so (its operation code comes first; Optuna 3
# wrote a space after the colons).
_RECORD_START = re.compile(rb'\{\s*"op_code"\s*:')
_COMPACT_START = b'{"op_code":'


def _record_start(line: bytes) -> bool:
    """Whether ``line`` begins like a journal record, or is the start of one cut short."""
    return bool(_RECORD_START.match(line)) or _COMPACT_START.startswith(line)


class DamagedJournal(UsageError):
    """A journal file that cannot be read as one (the message says where and why)."""


class JournalFile(BaseJournalBackend):
    """An Optuna journal file (the format of :class:`optuna.storages.journal.JournalFileBackend`,
    which reads it too), with the guarantees of the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = JournalFileSymlinkLock(str(self.path))
        self._offsets = {0: 0}  # record number -> where its line starts

    def check(self) -> None:
        """A DamagedJournal unless the file is missing, empty or begins with a record."""
        try:
            with open(self.path, "rb") as f:
                start = f.read(64)
        except FileNotFoundError:
            return
        if not _record_start(start):
            raise DamagedJournal(f"{self.path} is not an Optuna journal file")

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        try:
            f = self.path.open("rb")
        except FileNotFoundError:  # made by the first record
            return
        with f:
            yield from self._read(f, log_number_from)

    def _read(self, f: BinaryIO, log_number_from: int) -> Iterator[dict[str, Any]]:
        # Only what is there now: another process may be appending meanwhile.
        left = os.fstat(f.fileno()).st_size
        number = 0
        if log_number_from in self._offsets:
            f.seek(self._offsets[log_number_from])
            number = log_number_from
            left -= self._offsets[log_number_from]
        damaged: str | None = None
        for line in f:
            left -= len(line)
            if left < 0:
                break
            if damaged is not None:  # a damaged line with records after it
                raise DamagedJournal(
                    f"{self.path} is damaged at record {number} ({damaged}), so the study"
                    " cannot be read; restore the file or use another journal"
                )
            if not line.endswith(b"\n"):  # being written, or cut: skipped while last
                damaged = "a cut line"
                continue
            try:
                log = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                damaged = "not a journal record"
                continue
            self._offsets[number + 1] = self._offsets[number] + len(line)
            if number >= log_number_from:
                yield log
            number += 1

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        self._lock.acquire()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
            try:
                _drop_cut_record(fd, self.path)
                _write_all(fd, text)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:  # a full disk, a file made read-only meanwhile
            raise WriteFailed(f"cannot write {self.path}: {e.strerror or e}") from None
        finally:
            self._lock.release()


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: a write the disk cuts short (it filled up) is finished, or raises
    (ENOSPC) on the next call, never taken for a whole record."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _drop_cut_record(fd: int, path: Path) -> None:
    """Under the journal's lock: drop an unfinished last record (a line without its newline,
    or, as an older rlrnn left it, with a record written onto it: not JSON), which no reader
    has applied; anything else at the end is not ours to drop."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    tail = b""
    start = size
    while start > 0 and tail.count(b"\n") < 2:  # the last line and the newline before it
        step = min(start, 65536)
        start -= step
        tail = os.pread(fd, step, start) + tail
    if tail.endswith(b"\n"):
        last_start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
        try:
            json.loads(tail[last_start:])
            return  # whole
        except (ValueError, UnicodeDecodeError):
            pass
    else:
        last_start = tail.rfind(b"\n") + 1
    if not _record_start(tail[last_start:]):
        raise DamagedJournal(f"{path} ends in a line that is not a journal record")
    os.ftruncate(fd, start + last_start)
