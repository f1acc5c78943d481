"""A throwaway PostgreSQL server for the shared-storage tests, in a folder of its own.

    python tests/pg_cluster.py start DIR   # prints the server's URL
    python tests/pg_cluster.py stop DIR

It listens on a unix socket in DIR only (no TCP port), trusts local connections and runs as the
``postgres`` user (else ``nobody``) when started by root, since initdb refuses to run as root.
``.ci/run`` starts one for the whole test run; the ``postgres_url`` fixture starts one when no
``RLRNN_TEST_POSTGRES_URL`` is given.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path


class ClusterError(Exception):
    """No server could be started here (the reason in one line)."""


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version)
    path = found[-1] if found else shutil.which(name)
    if path is None:
        raise ClusterError(f"no PostgreSQL server programs ({name}) on this machine")
    return path


def _version(path: str) -> float:
    try:
        return float(Path(path).parents[1].name)
    except ValueError:
        return 0.0


def _user() -> str | None:
    """The user the server runs as: None (this one) unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ClusterError("running as root and there is no postgres or nobody user to run as")


def _run(args: list[str], user: str | None) -> None:
    result = subprocess.run(args, user=user, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise ClusterError(f"{Path(args[0]).name} failed: {lines[-1] if lines else '?'}")


def start(folder: Path) -> str:
    """Start a server with its data and socket in ``folder``; returns its SQLAlchemy URL."""
    folder = Path(folder).resolve()
    user = _user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data = folder / "data"
    _run([_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], user)
    options = f"-k {folder} -c listen_addresses='' -F"  # socket only; no fsync: it is throwaway
    log = folder / "server.log"
    _run([_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"], user)
    return f"postgresql://postgres@/postgres?host={folder}"


def stop(folder: Path) -> None:
    data = Path(folder).resolve() / "data"
    if (data / "postmaster.pid").is_file():
        _run([_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], _user())


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    try:
        print(start(folder) if command == "start" else stop(folder) or "stopped")
    except ClusterError as e:
        sys.exit(f"pg_cluster: {e}")
