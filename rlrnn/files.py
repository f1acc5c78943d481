"""Every file rlrnn writes goes through here: checked before any work, written to a temporary
file beside its target and renamed, so a crash leaves the old file or the new one, never half.
A write the system refuses (a full disk, a read-only folder) is a :class:`WriteFailed` naming the
file; every JSON file rlrnn reads back goes through :func:`read_json`.

A folder the user names may be a symbolic link (their choice); inside it rlrnn never follows one
to write or delete: a shared or downloaded folder is data, and a link in it must not make rlrnn
write over or delete a file elsewhere. New files are made with ``O_EXCL`` (which never follows a
link) and renamed over their target (which replaces a link, not what it points to), and
:func:`check_no_link_below` refuses a link on the way to a folder rlrnn makes inside another."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from rlrnn.errors import UsageError, WriteFailed


def check_output_path(path: Path, suffixes: Sequence[str], what: str = "output") -> Path:
    """``path`` if a file with one of ``suffixes`` can be written there, else a UsageError."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UsageError(
            f"{what} {path}: unknown file type {path.suffix or '(none)'!r};"
            f" use {' or '.join(suffixes)}"
        )
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {what} {path}: directory {parent} is not writable")
    return path


def path_status(path: Path, what: str, follow: bool = True) -> os.stat_result | None:
    """``path``'s status (of a link itself when not ``follow``), None when nothing is there; a
    path the system cannot look up (a name too long, a loop of links) is a UsageError naming
    it, not a traceback."""
    try:
        return os.stat(path, follow_symlinks=follow)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise UsageError(f"cannot use {what} {path}: {e.strerror}") from None


def link_refused(path: Path, what: str) -> UsageError:
    return UsageError(
        f"{path} is a symbolic link, and rlrnn follows no link inside a {what} (it would write or"
        f" delete outside it): remove the link, or use another {what}"
    )


def check_no_link_below(root: Path, path: Path, what: str) -> None:
    """Refuse when ``path``, or a folder between ``root`` and it, is a symbolic link: ``root``
    is the folder the user named (a link there is their choice), ``path`` one that rlrnn makes
    or writes inside it."""
    root, path = Path(root), Path(path)
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        status = path_status(current, what, follow=False)
        if status is None:
            return  # made by rlrnn when needed: not a link
        if stat.S_ISLNK(status.st_mode):
            raise link_refused(current, what)


def check_can_create(path: Path, what: str) -> Path:
    """``path`` if it is a writable folder or one that can be made there; creates nothing."""
    path = Path(path)
    status = path_status(path, what)
    if status is not None and not stat.S_ISDIR(status.st_mode):
        raise UsageError(f"{what} {path} is a file, not a folder")
    existing = path
    while path_status(existing, what) is None and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"cannot write {what} {path}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {what} {path}: {existing} is not writable")
    return path


def make_writable_dir(path: Path, what: str) -> Path:
    """Create the folder ``path`` (and parents) and check a file can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A new file of a name of its own (O_EXCL): a file or link already there is never touched.
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"cannot write {what} {path}: {e.strerror}") from None
    return path


def os_error(error: BaseException) -> OSError | None:
    """The OSError behind ``error``, if any: torch and PIL wrap a failed write in their own."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def write_failed(path: Path, error: OSError) -> WriteFailed:
    return WriteFailed(f"cannot write {path}: {error.strerror or error}")


class TempOutput:
    """A temporary file beside ``path`` (same suffix, so writers pick the format by name) that
    ``commit`` renames to ``path`` with the permissions of a normally created file. The rename
    replaces whatever ``path`` is, a symbolic link included: nothing it points to is written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            fd, tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp" + self.path.suffix
            )
        except OSError as e:
            raise write_failed(self.path, e) from None
        umask = os.umask(0)
        os.umask(umask)
        try:
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from others
        finally:
            os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        try:
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.discard()
            raise write_failed(self.path, e) from None

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path that becomes ``path`` if the block succeeds and vanishes if not."""
    output = TempOutput(path)
    try:
        yield output.tmp
    except BaseException as e:
        output.discard()
        failed = os_error(e) if isinstance(e, Exception) else None
        if failed is not None and not isinstance(e, WriteFailed):
            raise write_failed(output.path, failed) from None
        raise
    output.commit()


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, sync it, rename it."""
    with atomic_output(path) as tmp, open(os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW), "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: Path, what: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; a missing, unreadable or damaged file is a UsageError naming
    it (``what`` says what to do about it)."""
    path = Path(path)
    hint = f"; {what}" if what else ""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} not found{hint}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{path} is damaged (not JSON){hint}") from None
    except RecursionError:
        raise UsageError(f"{path} is damaged (JSON nested too deeply){hint}") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}{hint}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is damaged (not a JSON object){hint}")
    return data


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks (a checkpoint can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as a PNG, atomically."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")


def shell_path(path: Path | str) -> str:
    """``path`` as a command line a user can paste takes it: quoted, and a relative path that
    starts with ``-`` as ``./-name`` (else it reads as an option)."""
    text = os.fspath(path)
    return shlex.quote("./" + text if text.startswith("-") else text)
