"""The run folder: every file name of a run (:class:`RunFolder`), and who owns the folder.

- :class:`RunFolder` names each file a run keeps (its config, summary, checkpoints, learning
  curve, TensorBoard logs, compare's evaluations, the probe's figure) and writes the text ones;
  nothing else in rlrnn spells them.
- ``.rlrnn-run`` is written when rlrnn creates a run folder (or starts a run in an empty one).
  Only a folder with it is one rlrnn can prove it made, and even there :func:`clear_run` removes
  only the files rlrnn writes (``RUN_FILES``), never a user's notes, and says what it removed.
  A run refused before it wrote anything (:func:`rlrnn.runs.lock.writing_run`) removes the marker
  again, and the folders rlrnn made for it: a refused run leaves nothing behind.
- ``.rlrnn-lock`` is held by the one process writing a run (:mod:`rlrnn.runs.lock`).
- A run folder may come from someone else (shared, downloaded): its files are data. rlrnn never
  follows a symbolic link in it to write or delete (:func:`check_no_links`, ``O_NOFOLLOW`` on the
  lock, ``lstat`` before every removal); the folder itself may be a link the user chose.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from rlrnn.errors import UsageError
from rlrnn.files import atomic_write_text, link_refused, make_writable_dir, path_status

MARKER = ".rlrnn-run"
LOCK = ".rlrnn-lock"
WHAT = "run folder"


class RunFolder:
    """A run's folder and the name of every file in it; the one place that spells them."""

    CONFIG = "config.json"  # the run's RunConfig (rlrnn.learning.config), as JSON
    SUMMARY = "summary.json"  # how the run went: every periodic evaluation, speed, status
    # last: the resume checkpoint, weights plus the whole training state
    CHECKPOINTS: ClassVar[dict[str, str]] = {
        "best": "best.pt",
        "final": "final.pt",
        "last": "last.pt",
    }
    CURVE = "learning_curve.png"
    EVALUATIONS = "compare_eval.json"  # rlrnn compare's evaluations of the final weights
    PROBE = "probe.png"  # rlrnn probe's figure, beside the checkpoint it read
    TENSORBOARD = "tb"  # event files (``events.out.tfevents.*``); older SB3 runs: ``tb/sb3_<n>/``

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def checkpoint(self, which: str) -> Path:
        """The ``best``, ``final`` or ``last`` checkpoint's path."""
        if which not in self.CHECKPOINTS:
            choices = ", ".join(self.CHECKPOINTS)
            raise UsageError(f"unknown checkpoint {which!r}; choose from {choices}")
        return self.path / self.CHECKPOINTS[which]

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def last(self) -> Path:
        return self.checkpoint("last")

    @property
    def curve(self) -> Path:
        return self.path / self.CURVE

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def evaluations(self) -> Path:
        return self.path / self.EVALUATIONS

    def write_config(self, config_json: str) -> None:
        atomic_write_text(self.config, config_json)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary, json.dumps(summary, indent=2))

    def read_summary(self) -> dict[str, Any]:
        """The summary as written (a file that is not one raises ValueError or OSError)."""
        return json.loads(self.summary.read_text())


# What rlrnn writes in a run folder (and may remove from a folder with its marker).
RUN_FILES = (
    RunFolder.CONFIG,
    RunFolder.SUMMARY,
    *RunFolder.CHECKPOINTS.values(),
    RunFolder.CURVE,
    RunFolder.EVALUATIONS,
    RunFolder.PROBE,
)
TENSORBOARD = RunFolder.TENSORBOARD
# rlrnn.files.TempOutput's names: ".<target>.<8 random characters>.tmp<suffix>"
_TEMP = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?")


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


def marker_info(run_dir: Path) -> dict[str, Any] | None:
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


def remove_folders(run_dir: Path, count: int) -> None:
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
        remove_folders(run_dir, made)
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


def made_by_rlrnn(run_dir: Path) -> bool:
    return marker_info(run_dir) is not None


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
