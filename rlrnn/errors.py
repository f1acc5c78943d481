"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """A mistake in what the user asked for: a bad id, value, path or file."""
