"""Exceptions the CLI turns into one line on stderr (and the exit code each one gets)."""


class UsageError(Exception):
    """A mistake in what the user asked for: a bad id, value, path or file (exit code 2)."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped a run after a checkpoint was saved (exit code 128 + signal)."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number


class TrainingDiverged(Exception):
    """Updates kept producing non-finite numbers; the run stopped at its last good state."""
