"""Where an Optuna study lives, so that processes on one machine or on many can share it.

A storage is given as a URL: a database SQLAlchemy can reach (``postgresql://user@host/db``,
``mysql://...``, ``sqlite:///file.db``) or an Optuna journal file, ``journal:PATH`` or a plain
path ending in ``.log`` as rl-baselines3-zoo takes it (one file that processes append to under a
lock, also across machines on a shared filesystem). Without one, a command keeps its study in a
journal file in its own output folder: nothing to set up. An in-memory SQLite database is refused:
each process (and each reopening) would see a database of its own.

A journal file is read and written by :class:`rlrnn.tools.common.journal.JournalFile`, which
never leaves a record cut in it.

A study made by rlrnn carries a study attribute, ``rlrnn``, that says what it is for (agent, env,
search space, ...); a command that joins a study checks it matches, so two commands that mean
different things never mix their trials under one name.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import TrialState

from rlrnn.errors import UsageError
from rlrnn.learning.fields import config_differences
from rlrnn.tools.common.journal import DamagedJournal, JournalFile

JOURNAL = "journal:"
JOURNAL_SUFFIX = ".log"  # a plain path with it is a journal file (as rl-baselines3-zoo takes it)
ATTR = "rlrnn"  # the study attribute that says what a study is for
SCORING_KEY = "scoring"  # the key of ATTR's value that says how trials were scored (tune)
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
