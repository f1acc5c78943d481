"""Where an Optuna study lives, so that processes on one machine or on many can share it.

A storage is given as a URL: a database SQLAlchemy can reach (``postgresql://user@host/db``,
``mysql://...``, ``sqlite:///file.db``) or an Optuna journal file, ``journal:PATH`` or a plain
path ending in ``.log`` as rl-baselines3-zoo takes it (one file that processes append to under a
lock, also across machines on a shared filesystem). Without one, a command keeps its study in a
journal file in its own output folder: nothing to set up. An in-memory SQLite database is refused:
each process (and each reopening) would see a database of its own.

A journal file is read and written by :class:`JournalFile`, Optuna's file format with two
guarantees more: the file is made by the first record written, not when it is opened (a command
refused after opening it leaves nothing), and no record is ever appended onto a last line that a
killed process left cut (Optuna's reader skips such a line while it is last, but a record written
onto it would make the whole study unreadable): under the journal's lock, that unfinished record,
which no reader has ever applied, is dropped first.

A study made by rlrnn carries a study attribute, ``rlrnn``, that says what it is for (agent, env,
search space, ...); a command that joins a study checks it matches, so two commands that mean
different things never mix their trials under one name.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import optuna
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileSymlinkLock
from optuna.trial import TrialState

from rlrnn.errors import UsageError, WriteFailed
from rlrnn.learning.config import config_differences

JOURNAL = "journal:"
JOURNAL_SUFFIX = ".log"  # a plain path with it is a journal file (as rl-baselines3-zoo takes it)
ATTR = "rlrnn"  # the study attribute that says what a study is for
SCORING_KEY = "scoring"  # the key of ATTR's value that says how trials were scored (tune)
# Every record Optuna writes to a journal starts so (its operation code comes first; Optuna 3
# wrote a space after the colons).
_RECORD_START = re.compile(rb'\{\s*"op_code"\s*:')
_COMPACT_START = b'{"op_code":'


def _record_start(line: bytes) -> bool:
    """Whether ``line`` begins like a journal record, or is the start of one cut short."""
    return bool(_RECORD_START.match(line)) or _COMPACT_START.startswith(line)


HOST, PID = "host", "pid"  # trial attributes: which process runs the trial
# Database servers: a dead connection is seen within seconds instead of hanging a command.
_CONNECT_TIMEOUT_S = 10
_SETUP_WAIT_S = 60  # how long a joiner waits for a new study's creator to describe it


def quiet_optuna() -> None:
    """Optuna's own log lines and experimental-feature warnings stay out of rlrnn's output."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=ExperimentalWarning)


def journal_path(url: str | None, default: Path) -> Path | None:
    """The journal file ``url`` names (``default`` for None), or None for a database URL."""
    if url is None:
        return default
    if url.startswith(JOURNAL):
        return Path(url[len(JOURNAL) :])
    if url.endswith(JOURNAL_SUFFIX) and "://" not in url:
        return Path(url)
    return None


def describe(url: str | None, default: Path) -> str:
    """``url`` for messages, its password hidden."""
    if url is None:
        return f"{default} (journal)"
    if journal_path(url, default) is not None:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a malformed URL is reported where it is opened
        return url


def open_storage(url: str | None, default: Path) -> BaseStorage:
    """The storage at ``url`` (the journal file ``default`` when None), or a UsageError that
    says in one line why it cannot be used."""
    quiet_optuna()
    path = journal_path(url, default)
    if path is not None:
        return _journal(path, url or str(default))
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(
            f"--storage {url!r} is not a storage URL; give a database URL such as"
            " postgresql://user@host/db or sqlite:///study.db, or journal:PATH"
        ) from None
    if parsed.get_backend_name() == "sqlite" and _in_memory(parsed.database, dict(parsed.query)):
        raise UsageError(
            f"--storage {url!r} is an in-memory database, which no other process (nor this one"
            " later) can see; give a file, such as sqlite:///study.db, or journal:PATH"
        )
    if parsed.drivername == "postgresql":  # SQLAlchemy 2.0 would pick psycopg2; the extra has 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    shown = parsed.render_as_string(hide_password=True)
    engine: dict[str, Any] = {"pool_pre_ping": True}  # long trials outlive idle connections
    if parsed.get_backend_name() in ("postgresql", "mysql"):
        engine["connect_args"] = {"connect_timeout": _CONNECT_TIMEOUT_S}
    try:
        return RDBStorage(
            parsed.render_as_string(hide_password=False),
            engine_kwargs=engine,
            # A process killed mid-trial stops beating; the next trial started anywhere marks
            # its trial failed instead of leaving it running for ever.
            heartbeat_interval=60,
            grace_period=180,
        )
    except ImportError:
        raise UsageError(
            f"cannot open storage {shown}: its database driver is not installed"
            " (PostgreSQL: pip install 'rlrnn[postgres]'; MySQL: pip install pymysql and use"
            " mysql+pymysql://)"
        ) from None
    except (SQLAlchemyError, ValueError, RuntimeError) as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()
        raise UsageError(f"cannot open storage {shown}: {reason[0] if reason else e}") from None


def _in_memory(database: str | None, query: dict[str, Any]) -> bool:
    return not database or ":memory:" in database or query.get("mode") == "memory"


def _journal(path: Path, shown: str) -> JournalStorage:
    if path.is_dir():
        raise UsageError(f"storage {shown}: {path} is a folder, not a journal file")
    if not path.parent.is_dir():
        raise UsageError(f"storage {shown}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):  # the lock is a file beside the journal
        raise UsageError(f"storage {shown}: folder {path.parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(
            f"storage {shown}: {path} is read-only; make it writable (chmod u+w) or give another"
            " journal"
        )
    backend = JournalFile(path)
    try:
        backend.check()
        return JournalStorage(backend)
    except DamagedJournal as e:
        raise UsageError(f"storage {shown}: {e}") from None
    except OSError as e:
        raise UsageError(f"storage {shown}: cannot read {path}: {e.strerror or e}") from None


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


def has_study(storage: BaseStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def check_study(storage: BaseStorage, name: str, attrs: dict[str, Any], shown: str) -> bool:
    """True when the study ``name`` exists and is for ``attrs``; False when it does not exist;
    a UsageError when it exists for something else."""
    if not has_study(storage, name):
        return False
    study_id = storage.get_study_id_from_name(name)
    deadline = time.monotonic() + _SETUP_WAIT_S
    saved = storage.get_study_user_attrs(study_id).get(ATTR)
    # Its creator may be filling it right now (another process or machine): it writes the
    # description last.
    while saved is None and time.monotonic() < deadline:
        time.sleep(0.5)
        saved = storage.get_study_user_attrs(study_id).get(ATTR)
    if saved is None:
        raise UsageError(
            f"study {name!r} in {shown} was not made by this rlrnn command; choose another --study"
        )
    if SCORING_KEY in attrs and saved.get(SCORING_KEY) != attrs[SCORING_KEY]:
        raise UsageError(
            f"study {name!r} in {shown} was made by an older rlrnn that scored its trials"
            " another way, so its scores cannot be ranked with this version's; choose another"
            " --study (or --out)"
        )
    differs = config_differences(saved, json.loads(json.dumps(attrs)))  # tuples as lists
    if differs:
        raise UsageError(
            f"study {name!r} in {shown} was made for another setup (differs in"
            f" {', '.join(differs)}); choose another --study or repeat its settings"
        )
    return True


def create_study(
    storage: BaseStorage,
    name: str,
    direction: str,
    attrs: dict[str, Any],
    shown: str,
    fill: Callable[[optuna.Study], None] | None = None,
) -> bool:
    """Create the study ``name`` for ``attrs`` and ``fill`` it (e.g. enqueue trials); True when
    this call made it, False when another process made it first (and its attrs match)."""
    try:
        study_id = storage.create_new_study([optuna.study.StudyDirection[direction.upper()]], name)
    except DuplicatedStudyError:
        check_study(storage, name, attrs, shown)
        return False
    if fill is not None:
        fill(optuna.load_study(study_name=name, storage=storage))
    storage.set_study_user_attr(study_id, ATTR, attrs)  # last: joiners wait for it
    return True


def owner() -> dict[str, Any]:
    """Trial attributes that say which process runs a trial (see :func:`release_dead`)."""
    return {HOST: socket.gethostname(), PID: os.getpid()}


def release_dead(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Mark failed the running trials of processes of this machine that are gone (killed);
    returns them. On a database, Optuna's heartbeat does the same across machines."""
    host, released = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get(PID)
        if trial.user_attrs.get(HOST) != host or pid is None or _alive(pid):
            continue
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        released.append(trial)
    return released


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
