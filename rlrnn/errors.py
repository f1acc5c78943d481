"""Exceptions the CLI turns into one line on stderr, and the exit code each one gets.

The library speaks of what it was given: a config field (``total_timesteps``), an argument
(``resume``), never a command-line flag. A :class:`UsageError` names in ``fields`` the fields and
arguments its message speaks of; the command line shows each as its option (``--total-timesteps``,
``--resume``): :func:`rlrnn.cli.describe_error`.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_USAGE = 2  # UsageError, and argparse's own errors
EXIT_DIVERGED = 1  # TrainingDiverged
EXIT_WRITE_FAILED = 74  # WriteFailed: sysexits' EX_IOERR


class NamesFields(Exception):
    """An error whose message names config fields or arguments: ``fields``, by their own names."""

    def __init__(self, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.fields = tuple(fields)

    def __reduce__(self) -> tuple:  # keeps the fields across processes (compare's workers)
        return type(self), (str(self), self.fields)


class UsageError(NamesFields):
    """A mistake in what the user asked for: a bad id, value, path or file (exit code 2)."""


class RunFolderRefused(UsageError):
    """A folder a run cannot be trained into: it holds another run (and no resume was asked
    for), files of someone else, or a file where the folder goes."""


class ResumeRefused(UsageError):
    """A resume that finds no run to continue, a damaged one, one it would change into another
    run, or one with nothing left to do; the run is left as it was."""


class MemoryBudgetExceeded(UsageError):
    """Sizes asked for that do not fit in this machine's memory; ``fields`` are those to lower."""


class EnvNotTrusted(UsageError):
    """An env id read from a file names a module to import: rlrnn imports only the modules its
    caller names (``env_id``)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped a command cleanly: what it wrote is whole (exit code
    128 + signal). Like KeyboardInterrupt, not an Exception: a library's ``except Exception``
    (imageio's, around the pipe to ffmpeg) must not turn it into an error."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number

    def __reduce__(self) -> tuple:  # keeps both arguments across processes
        return type(self), (str(self), self.signal_number)


class TrainingInterrupted(Interrupted):
    """SIGINT or SIGTERM stopped a run after a checkpoint was saved (exit code 128 + signal);
    ``run_dir`` is the run to resume."""

    def __init__(self, message: str, signal_number: int, run_dir: str = "") -> None:
        super().__init__(message, signal_number)
        self.run_dir = run_dir

    def __reduce__(self) -> tuple:
        return type(self), (str(self), self.signal_number, self.run_dir)


class TrainingDiverged(NamesFields):
    """Updates kept producing non-finite numbers; the run stopped at its last good state."""


class WriteFailed(Exception):
    """A file could not be written (a full disk, a read-only folder): the old file, if any, is
    kept whole (exit code 74, sysexits' EX_IOERR)."""
