"""Who owns a run folder: the marker rlrnn leaves in the folders it makes, and the lock a writer
holds while it writes.

- ``.rlrnn-run`` is written when rlrnn creates a run folder (or starts a run in an empty one).
  Only a folder with it is one rlrnn can prove it made, and even there :func:`clear_run` removes
  only the files rlrnn writes (``RUN_FILES``), never a user's notes, and says what it removed.
  A run refused before it wrote anything (:func:`writing_run`) removes the marker again, and the
  folders rlrnn made for it: a refused run leaves nothing behind.
- ``.rlrnn-lock`` is held by the one process writing a run (train, resume, compare's workers):
  an exclusive ``flock`` on it, which the kernel releases when the process ends however it ends,
  and in it the holder's PID and host, so a second writer is refused with one line naming them.
  A lock file whose lock is free is stale (its process died): the next writer takes it over.
- A run folder may come from someone else (shared, downloaded): its files are data. rlrnn never
  follows a symbolic link in it to write or delete (:func:`check_no_links`, ``O_NOFOLLOW`` on the
  lock, ``lstat`` before every removal); the folder itself may be a link the user chose.
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
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from rlrnn.errors import UsageError
from rlrnn.files import atomic_write_text, link_refused, make_writable_dir, path_status

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
TENSORBOARD = "tb"  # event files (``events.out.tfevents.*``); older SB3 runs: ``tb/sb3_<n>/``
# rlrnn.files.TempOutput's names: ".<target>.<8 random characters>.tmp<suffix>"
_TEMP = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?")
WHAT = "run folder"


def _plain_file(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (a symbolic link to one is not)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _entries(folder: Path) -> Iterator[tuple[Path, os.DirEntry]]:
    """Everything under ``folder``, parents before children, never entering a link. A stack,
    not recursion: a folder nested thousands deep is walked, not a RecursionError."""
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = current / entry.name
            yield path, entry
            if entry.is_dir(follow_symlinks=False):
                pending.append(path)


def check_no_links(run_dir: Path) -> None:
    """Refuse ``run_dir`` when one of the names rlrnn writes or removes there (its files, the
    marker, the lock, ``tb/`` and anything in it) is a symbolic link, before anything is
    written: following it would write over, or delete, a file outside the folder."""
    run_dir = Path(run_dir)
    for name in (MARKER, LOCK, *RUN_FILES, TENSORBOARD):
        status = path_status(run_dir / name, WHAT, follow=False)
        if status is not None and stat.S_ISLNK(status.st_mode):
            raise link_refused(run_dir / name, WHAT)
    tb = run_dir / TENSORBOARD
    status = path_status(tb, WHAT, follow=False)
    if status is not None and not stat.S_ISDIR(status.st_mode):
        raise UsageError(
            f"{tb} is a file where rlrnn keeps the run's TensorBoard logs: move it away"
        )
    for path, entry in _entries(tb):
        if entry.is_symlink():
            raise link_refused(path, WHAT)


def _marker(run_dir: Path) -> dict[str, Any] | None:
    """What rlrnn's marker in ``run_dir`` says (None: no marker of rlrnn's; a link is none)."""
    path = Path(run_dir) / MARKER
    if not _plain_file(path):  # nor a FIFO, whose reading would wait forever
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return info if isinstance(info, dict) and info.get("created_by") == "rlrnn" else None


def mark_created(run_dir: Path, made_folders: int = 0) -> None:
    """Leave the marker saying rlrnn made ``run_dir``; ``made_folders``: how many folders rlrnn
    created for it (the run folder, then its parents upward), removed again if the run is
    refused before it writes anything."""
    info = {
        "created_by": "rlrnn",
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "made_folders": made_folders,
    }
    atomic_write_text(run_dir / MARKER, json.dumps(info) + "\n")


def _missing_folders(path: Path) -> int:
    """How many of ``path``, its parent, ... do not exist (what ``mkdir -p`` would make)."""
    missing = 0
    while not os.path.lexists(path) and path != path.parent:
        missing, path = missing + 1, path.parent
    return missing


def _remove_folders(run_dir: Path, count: int) -> None:
    """Remove ``run_dir`` and then its parents, ``count`` folders in all, each only if empty."""
    for folder in [run_dir, *run_dir.parents][:count]:
        try:
            folder.rmdir()  # only an empty folder, and never through a link
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENAMETOOLONG):  # else: never made
                return


def _is_empty_dir(run_dir: Path) -> bool:
    try:
        with os.scandir(run_dir) as it:
            return next(it, None) is None
    except OSError as e:
        raise UsageError(f"cannot read run directory {run_dir}: {e.strerror}") from None


def prepare_run_dir(run_dir: Path) -> Path:
    """Create an empty run directory (with rlrnn's marker) or explain in one line why not."""
    run_dir = Path(run_dir)
    status = path_status(run_dir, "run directory")  # the folder named may be a link: followed
    if status is not None and (not stat.S_ISDIR(status.st_mode) or not _is_empty_dir(run_dir)):
        raise UsageError(f"run directory {run_dir} already exists and is not empty")
    made = _missing_folders(run_dir)
    try:  # a folder that cannot be used (a name too long, a full disk) is not left half-made
        make_writable_dir(run_dir, "run directory")
        mark_created(run_dir, made)
    except BaseException:
        _remove_folders(run_dir, made)
        raise
    return run_dir


def claim_run_dir(run_dir: Path) -> Path:
    """``run_dir``, created with the marker if it is missing or empty; an existing folder with
    files in it keeps what it has (no marker: rlrnn did not make it)."""
    run_dir = Path(run_dir)
    status = path_status(run_dir, "run directory")
    if status is None or (stat.S_ISDIR(status.st_mode) and _is_empty_dir(run_dir)):
        return prepare_run_dir(run_dir)
    if not stat.S_ISDIR(status.st_mode):
        raise UsageError(f"run directory {run_dir} is a file")
    return run_dir


@contextlib.contextmanager
def writing_run(run_dir: Path) -> Iterator[Path]:
    """``run_dir`` claimed (:func:`claim_run_dir`) and locked (:class:`RunLock`) for the block.
    When the block fails while the folder holds nothing but rlrnn's marker (a check refused the
    run before it wrote anything), the marker goes, and so do the folders rlrnn made for it."""
    run_dir = claim_run_dir(run_dir)
    made = 0
    try:
        with RunLock(run_dir) as lock:
            try:
                yield run_dir
            except BaseException:
                if lock.outermost:  # a nested holder (compare's worker) leaves it to the outer
                    made = _forget_unused(run_dir)
                raise
    finally:
        _remove_folders(run_dir, made)


def _forget_unused(run_dir: Path) -> int:
    """Remove the marker of a run folder that holds nothing else (the lock aside); returns how
    many folders rlrnn made for it (0: keep them, or nothing was removed)."""
    try:
        names = set(os.listdir(run_dir))
    except OSError:
        return 0
    info = _marker(run_dir)
    made = info.get("made_folders") if info else None
    if names - {MARKER, LOCK} or not isinstance(made, int) or isinstance(made, bool) or made < 0:
        return 0  # a run that wrote something, a user's folder, or an older rlrnn's marker
    try:
        (run_dir / MARKER).unlink()
    except OSError:
        return 0
    return made


def made_by_rlrnn(run_dir: Path) -> bool:
    return _marker(run_dir) is not None


def temp_files(run_dir: Path) -> list[Path]:
    """Temporary files that killed writes of rlrnn's files left in ``run_dir`` (plain files
    only: a link of that name is not followed, nor removed)."""
    return [
        p
        for p in Path(run_dir).glob(".*.tmp*")
        if (m := _TEMP.fullmatch(p.name)) is not None
        and m["target"] in (*RUN_FILES, MARKER)
        and _plain_file(p)
    ]


def rlrnn_files(run_dir: Path) -> list[Path]:
    """The files in ``run_dir`` that rlrnn writes, deepest first (temporary files of killed
    writes included); the marker and the lock are not among them, nor is any link."""
    run_dir = Path(run_dir)
    found = [run_dir / name for name in RUN_FILES if _plain_file(run_dir / name)]
    found += temp_files(run_dir)
    tb = run_dir / TENSORBOARD
    if not tb.is_symlink():
        events = [
            p
            for p, entry in _entries(tb)
            if p.name.startswith("events.out.tfevents.") and entry.is_file(follow_symlinks=False)
        ]
        found += sorted(events, key=lambda p: len(p.parts), reverse=True)
    return found


def clear_run(run_dir: Path) -> list[str]:
    """Remove what rlrnn wrote in ``run_dir`` (a run that stopped before its first checkpoint),
    keeping anything else; returns the removed paths, relative to ``run_dir``. A folder without
    rlrnn's marker is refused: rlrnn cannot prove it made it; so is one where a name rlrnn
    writes is a symbolic link (:func:`check_no_links`): nothing outside it is ever removed."""
    run_dir = Path(run_dir)
    if not made_by_rlrnn(run_dir):
        raise UsageError(
            f"{run_dir} holds a run that never reached a checkpoint, but rlrnn cannot tell that it"
            f" made that folder (no {MARKER} in it): move it away or delete it yourself"
        )
    check_no_links(run_dir)
    removed = []
    for path in rlrnn_files(run_dir):
        path.unlink()  # a plain file (rlrnn_files): unlink never follows a link anyway
        removed.append(str(path.relative_to(run_dir)))
    tb = run_dir / TENSORBOARD
    folders = [p for p, entry in _entries(tb) if entry.is_dir(follow_symlinks=False)]
    for folder in [*reversed(folders), tb]:  # children before their parents
        with contextlib.suppress(OSError):  # still holds a file that is not rlrnn's
            folder.rmdir()
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
    it, and releases it (removing the file) on every way out of the block. A folder where a
    name rlrnn writes is a symbolic link is refused first (:func:`check_no_links`): every
    writer of a run folder takes this lock.
    """

    _held: ClassVar[dict[Path, tuple[int, int]]] = {}  # folder -> (file descriptor, depth)

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._key = self.run_dir.resolve()

    @property
    def outermost(self) -> bool:
        """Whether this holder took the lock (not a nested one of the same process)."""
        return self._held.get(self._key, (0, 0))[1] == 1

    def __enter__(self) -> RunLock:
        if self._key in self._held:
            fd, depth = self._held[self._key]
            self._held[self._key] = (fd, depth + 1)
            return self
        check_no_links(self.run_dir)
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
                # O_NOFOLLOW: a link put in place of the lock must not make rlrnn write its target
                flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                fd = os.open(self.path, flags, 0o644)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise link_refused(self.path, WHAT) from None
                raise UsageError(
                    f"cannot write run directory {self.run_dir}: {e.strerror}"
                ) from None
            try:
                self._check_own_file(fd)
                if self._lock(fd) and self._still_the_file(fd):
                    self._write_holder(fd)
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise UsageError(f"cannot lock run directory {self.run_dir}: its lock file keeps changing")

    def _check_own_file(self, fd: int) -> None:
        """Refuse a lock file that is not a plain file of its own: writing the holder into a
        FIFO would block, into a file with another (hard-linked) name would change that file."""
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise UsageError(
                f"{self.path} is not a plain file, so rlrnn cannot lock the run folder with it:"
                " remove it"
            )
        if status.st_nlink > 1:
            raise UsageError(
                f"{self.path} is a hard link to another file, which taking the lock would"
                " overwrite: remove it"
            )

    def _lock(self, fd: int) -> bool:
        """Take the lock on ``fd`` or raise naming the holder; False: the file was replaced."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            contended = e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        holder = self._read_holder(fd)
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
            return os.lstat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    @staticmethod
    def _read_holder(fd: int) -> dict[str, Any] | None:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"null")
        except (OSError, ValueError, RecursionError):
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
