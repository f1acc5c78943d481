"""Exceptions the CLI turns into one line on stderr, and the exit code each one gets."""

EXIT_USAGE = 2  # UsageError, and argparse's own errors
EXIT_DIVERGED = 1  # TrainingDiverged
EXIT_WRITE_FAILED = 74  # WriteFailed: sysexits' EX_IOERR


class UsageError(Exception):
    """A mistake in what the user asked for: a bad id, value, path or file (exit code 2)."""


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
    """SIGINT or SIGTERM stopped a run after a checkpoint was saved (exit code 128 + signal)."""


class TrainingDiverged(Exception):
    """Updates kept producing non-finite numbers; the run stopped at its last good state."""


class WriteFailed(Exception):
    """A file could not be written (a full disk, a read-only folder): the old file, if any, is
    kept whole (exit code 74, sysexits' EX_IOERR)."""
