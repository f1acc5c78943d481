"""Who writes a run folder: the lock one process holds while it writes (``RunFolder.LOCK``).

It is an exclusive ``flock`` on the lock file, which the kernel releases when the process ends
however it ends, and in it the holder's PID and host, so a second writer is refused with one
line naming them. A lock file whose lock is free is stale (its process died): the next writer
takes it over. :func:`writing_run` claims a folder (:mod:`rlrnn.runs.folder`) and locks it for a
block, and takes the claim back when the block fails before it wrote anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from rlrnn.errors import UsageError
from rlrnn.files import link_refused
from rlrnn.runs.folder import (
    LOCK,
    MARKER,
    WHAT,
    check_no_links,
    claim_run_dir,
    marker_info,
    remove_folders,
)


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
        remove_folders(run_dir, made)


def _forget_unused(run_dir: Path) -> int:
    """Remove the marker of a run folder that holds nothing else (the lock aside); returns how
    many folders rlrnn made for it (0: keep them, or nothing was removed)."""
    try:
        names = set(os.listdir(run_dir))
    except OSError:
        return 0
    info = marker_info(run_dir)
    made = info.get("made_folders") if info else None
    if names - {MARKER, LOCK} or not isinstance(made, int) or isinstance(made, bool) or made < 0:
        return 0  # a run that wrote something, a user's folder, or an older rlrnn's marker
    try:
        (run_dir / MARKER).unlink()
    except OSError:
        return 0
    return made
