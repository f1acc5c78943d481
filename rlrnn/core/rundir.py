"""Who owns a run folder: the marker rlrnn leaves in the folders it makes, and the lock a writer
holds while it writes.

- ``.rlrnn-run`` is written when rlrnn creates a run folder (or starts a run in an empty one).
  Only a folder with it is one rlrnn can prove it made, and even there :func:`clear_run` removes
  only the files rlrnn writes (``RUN_FILES``), never a user's notes, and says what it removed.
- ``.rlrnn-lock`` is held by the one process writing a run (train, resume, compare's workers):
  an exclusive ``flock`` on it, which the kernel releases when the process ends however it ends,
  and in it the holder's PID and host, so a second writer is refused with one line naming them.
  A lock file whose lock is free is stale (its process died): the next writer takes it over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from rlrnn.errors import UsageError
from rlrnn.files import atomic_write_text, make_writable_dir

MARKER = ".rlrnn-run"
LOCK = ".rlrnn-lock"
# What rlrnn writes in a run folder (and may remove from a folder with its marker).
RUN_FILES = (
    "config.json",
    "summary.json",
    "best.pt",
    "final.pt",
    "last.pt",
    "learning_curve.png",
    "compare_eval.json",
    "probe.png",
)
TENSORBOARD = "tb"  # event files (``events.out.tfevents.*``), SB3's in ``tb/sb3_<n>/``
# rlrnn.files.TempOutput's names: ".<target>.<8 random characters>.tmp<suffix>"
_TEMP = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?")


def mark_created(run_dir: Path) -> None:
    """Leave the marker saying rlrnn made ``run_dir``."""
    info = {"created_by": "rlrnn", "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(run_dir / MARKER, json.dumps(info) + "\n")


def prepare_run_dir(run_dir: Path) -> Path:
    """Create an empty run directory (with rlrnn's marker) or explain in one line why not."""
    run_dir = Path(run_dir)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UsageError(f"run directory {run_dir} already exists and is not empty")
    make_writable_dir(run_dir, "run directory")
    mark_created(run_dir)
    return run_dir


def claim_run_dir(run_dir: Path) -> Path:
    """``run_dir``, created with the marker if it is missing or empty; an existing folder with
    files in it keeps what it has (no marker: rlrnn did not make it)."""
    run_dir = Path(run_dir)
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return prepare_run_dir(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} is a file")
    return run_dir


def made_by_rlrnn(run_dir: Path) -> bool:
    try:
        return json.loads((Path(run_dir) / MARKER).read_text()).get("created_by") == "rlrnn"
    except (OSError, ValueError, AttributeError):
        return False


def temp_files(run_dir: Path) -> list[Path]:
    """Temporary files that killed writes of rlrnn's files left in ``run_dir``."""
    return [
        p
        for p in Path(run_dir).glob(".*.tmp*")
        if p.is_file()
        and (m := _TEMP.fullmatch(p.name)) is not None
        and m["target"] in (*RUN_FILES, MARKER)
    ]


def rlrnn_files(run_dir: Path) -> list[Path]:
    """The files in ``run_dir`` that rlrnn writes, deepest first (temporary files of killed
    writes included); the marker and the lock are not among them."""
    run_dir = Path(run_dir)
    found = [run_dir / name for name in RUN_FILES if (run_dir / name).is_file()]
    found += temp_files(run_dir)
    tb = run_dir / TENSORBOARD
    if tb.is_dir():
        events = [p for p in tb.rglob("events.out.tfevents.*") if p.is_file()]
        found += sorted(events, key=lambda p: len(p.parts), reverse=True)
    return found


def clear_run(run_dir: Path) -> list[str]:
    """Remove what rlrnn wrote in ``run_dir`` (a run that stopped before its first checkpoint),
    keeping anything else; returns the removed paths, relative to ``run_dir``. A folder without
    rlrnn's marker is refused: rlrnn cannot prove it made it."""
    run_dir = Path(run_dir)
    if not made_by_rlrnn(run_dir):
        raise UsageError(
            f"{run_dir} holds a run that never reached a checkpoint, but rlrnn cannot tell that it"
            f" made that folder (no {MARKER} in it): move it away or delete it yourself"
        )
    removed = []
    for path in rlrnn_files(run_dir):
        path.unlink()
        removed.append(str(path.relative_to(run_dir)))
    tb = run_dir / TENSORBOARD
    if tb.is_dir():
        for folder in sorted((p for p in tb.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):  # still holds a file that is not rlrnn's
                folder.rmdir()
        with contextlib.suppress(OSError):
            tb.rmdir()
    return removed


# ---------------------------------------------------------------- the lock


def _describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process"
    since = f" since {info['time']}" if info.get("time") else ""
    command = f" ({info['command']})" if info.get("command") else ""
    return f"process {info.get('pid', '?')} on {info.get('host', '?')}{since}{command}"


def _alive(info: dict[str, Any]) -> bool:
    """Whether the process a lock file names may still run: it is on another host (which this
    machine cannot see), or alive here."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        pid = int(info.get("pid", 0))
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class RunLock:
    """Held while one process writes ``run_dir``; re-entrant within that process (compare's
    worker holds it around training, which takes it again).

    ``with RunLock(run_dir):`` raises a UsageError naming the holder when another process has
    it, and releases it (removing the file) on every way out of the block.
    """

    _held: ClassVar[dict[Path, tuple[int, int]]] = {}  # folder -> (file descriptor, depth)

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._key = self.run_dir.resolve()

    def __enter__(self) -> RunLock:
        if self._key in self._held:
            fd, depth = self._held[self._key]
            self._held[self._key] = (fd, depth + 1)
            return self
        self._held[self._key] = (self._acquire(), 1)
        return self

    def __exit__(self, *exc: object) -> None:
        fd, depth = self._held[self._key]
        if depth > 1:
            self._held[self._key] = (fd, depth - 1)
            return
        del self._held[self._key]
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked: a waiter then finds the file gone
        os.close(fd)

    def _acquire(self) -> int:
        for _ in range(10):  # retried only when a releasing holder removed the file under us
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise UsageError(
                    f"cannot write run directory {self.run_dir}: {e.strerror}"
                ) from None
            try:
                if self._lock(fd) and self._still_the_file(fd):
                    self._write_holder(fd)
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise UsageError(f"cannot lock run directory {self.run_dir}: its lock file keeps changing")

    def _lock(self, fd: int) -> bool:
        """Take the lock on ``fd`` or raise naming the holder; False: the file was replaced."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            contended = e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        holder = self._read_holder()
        if not contended and (holder is None or not _alive(holder)):
            return True  # no flock on this file system: the PID and host decide; dead is stale
        if contended and not self.path.exists():
            return False  # its holder has just released and removed it: try again
        raise UsageError(
            f"run directory {self.run_dir} is in use by {_describe_holder(holder)}: one process"
            f" writes a run at a time (lock file {self.path})"
        )

    def _still_the_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _read_holder(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _write_holder(self, fd: int) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])[:200],
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        except OSError as e:
            raise UsageError(f"cannot write run directory {self.run_dir}: {e.strerror}") from None
