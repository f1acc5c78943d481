"""The ``rlrnn`` command: ``train``, ``evaluate``, ``compare``, ``tune``, ``agents``, ``probe``,
``gradflow`` and ``export``, one module each in this package. A command parses its options,
and calls the library (:mod:`rlrnn.runs`, :mod:`rlrnn.tools`) with keyword arguments; the
library makes every check, and :func:`describe_error` words its refusals in the command's terms.

A user mistake (bad id, value, path or file) ends in one line on stderr and exit code 2; a
write the system refuses (a full disk) in one line and exit code 74; SIGINT / SIGTERM in one line
and exit code 130 / 143; a run that diverged in one line and exit code 1.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
import threading

from rlrnn.errors import (
    EXIT_DIVERGED,
    EXIT_USAGE,
    EXIT_WRITE_FAILED,
    Interrupted,
    TrainingDiverged,
    UsageError,
    WriteFailed,
)

# OSErrors that mean a write was refused (the disk, not rlrnn): one line, not a traceback.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO)
PATH_ERRNOS = (errno.ENAMETOOLONG, errno.ELOOP)  # a name too long, links in a circle


def describe_error(error: Exception) -> str:
    """A library error in the command line's words: the last mention of each field it names
    (``UsageError.fields``: the hint, "lower num_envs") as its option, ``resume=True`` as
    ``--resume``; earlier mentions are the library's prose ("playing 100 episodes")."""
    from rlrnn.cli.options import flag

    text = str(error)
    for field in getattr(error, "fields", ()):
        mentions = list(re.finditer(rf"(?<![\w.-]){re.escape(field)}(=True)?(?![\w-])", text))
        if mentions:
            last = mentions[-1]
            text = text[: last.start()] + flag(field) + text[last.end() :]
    return text


def build_parser() -> argparse.ArgumentParser:
    # The commands import torch: here, not at the top (see _main).
    from rlrnn.cli import agents, compare, evaluate, export, gradflow, options, probe, train, tune

    parser = options.Parser(prog="rlrnn", description="Recurrent-policy reinforcement learning.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=options.Parser)
    for command in (train, evaluate, compare, tune, agents, probe, gradflow, export):
        command.add_parser(sub)
    return parser


def _quiet_thread_write_errors(hook: threading.ExceptHookArgs) -> None:
    """A background writer (TensorBoard's) that hits a full disk dies quietly: the main thread
    meets the same error at its next write and reports it in one line."""
    if isinstance(hook.exc_value, OSError) and hook.exc_value.errno in WRITE_ERRNOS:
        return
    threading.__excepthook__(hook)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # a Ctrl-C while the command starts (imports, parsing)
        print("rlrnn: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    # Imported here, not at the top: a Ctrl-C while importing torch is one line (see main).
    from envs.batched import EnvError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    hook, threading.excepthook = threading.excepthook, _quiet_thread_write_errors
    try:
        return args.handler(args)
    except (UsageError, EnvError) as e:
        print(f"rlrnn {args.command}: error: {describe_error(e)}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as e:
        print(f"rlrnn {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except TrainingDiverged as e:
        print(f"rlrnn {args.command}: error: {describe_error(e)}", file=sys.stderr)
        return EXIT_DIVERGED
    except WriteFailed as e:
        print(f"rlrnn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except OSError as e:
        if e.errno in PATH_ERRNOS:  # a path the user gave that no file system takes
            where = f" {e.filename}" if e.filename else " a path"
            print(f"rlrnn {args.command}: error: cannot use{where}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
        if e.errno not in WRITE_ERRNOS:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"rlrnn {args.command}: error: cannot write{where}: {e.strerror}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        print(f"rlrnn {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        threading.excepthook = hook
