"""What every command shares: the parser, its help formatter, argument types, and one ``--flag``
per config field (:func:`add_config_arguments`) read back into a config (:func:`config_from_args`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

from rlrnn.errors import EXIT_USAGE, UsageError
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.learning.fields import check_seed, show_value
from rlrnn.learning.hyperparams import config_from_file_data
from rlrnn.runs.checkpoint import env_id_from_file
from rlrnn.runs.folder import RunFolder


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once: not when it is None (its help then says what happens)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def finite_float(text: str) -> float:
    """argparse type: a float that is a number (nan and inf are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def optional_int(text: str) -> int | None:
    """argparse type: an integer, or ``none`` for a field whose None means "not set"."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def seed_int(text: str) -> int:
    """argparse type: a seed (an integer in [0, 2**32 - 1])."""
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_SECTIONS = (("agent", AgentConfig), ("ppo", PPOConfig), (None, RunConfig))
# Config fields with more options than ``--field-name`` (field name -> the others).
ALIASES = {"env_id": ("--env",)}


def flag(field: str) -> str:
    """The option of a config field or library argument (``num_envs``: ``--num-envs``; the
    shorter alias where one exists: ``env_id``: ``--env``)."""
    return ALIASES.get(field, ("--" + field.replace("_", "-"),))[0]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field (``--no-flag`` for booleans), defaults shown in help."""
    for section, cls in _SECTIONS:
        group = parser.add_argument_group(cls.__doc__.strip().rstrip("."))
        hints = get_type_hints(cls)
        for f in fields(cls):
            if cls is RunConfig and f.name in ("agent", "ppo"):
                continue
            kind = hints[f.name]
            shown = "" if f.default is None else f" (default: {show_value(f.default)})"
            kwargs: dict[str, Any] = {  # argparse keyword arguments
                "dest": f"{section}.{f.name}" if section else f.name,
                "default": argparse.SUPPRESS,
                "help": f"{f.metadata['help']}{shown}",  # a None default: the help says it
                "metavar": f.name.upper(),
            }
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
                del kwargs["metavar"]
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
                kwargs.pop("metavar", None)
            elif kind == tuple[int, ...]:
                kwargs.update(type=int, nargs="+")
            elif kind is float:
                kwargs["type"] = finite_float
            elif kind == int | None:
                kwargs["type"] = optional_int
            else:
                kwargs["type"] = kind
            flags = ["--" + f.name.replace("_", "-"), *ALIASES.get(f.name, ())]
            group.add_argument(*flags, **kwargs)


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """Apply the options the user gave on top of ``base`` (the defaults when None)."""
    base = base or RunConfig()
    sections: dict[str | None, dict[str, Any]] = {None: {}, "agent": {}, "ppo": {}}
    top_level = {f.name for f in fields(RunConfig)} - {"agent", "ppo"}
    for key, value in vars(args).items():
        section, _, name = key.rpartition(".")
        if section or name in top_level:
            sections[section or None][name] = tuple(value) if isinstance(value, list) else value
    agent = dataclasses.replace(base.agent, **sections["agent"])
    ppo = dataclasses.replace(base.ppo, **sections["ppo"])
    return dataclasses.replace(base, agent=agent, ppo=ppo, **sections[None])


# A config file is a few kilobytes; more is not a config (and would be read into memory).
CONFIG_FILE_LIMIT = 1_000_000  # bytes


def load_config_file(path: Path, trust_env: bool = True) -> RunConfig:
    """The config in ``path``: a run's saved config (``RunFolder.config``), or a tuned file
    (``rlrnn tune``'s ``best.json``: the same with a ``"tuned"`` entry saying where it came
    from), or a partial config applied on top of its agent's defaults
    (:func:`rlrnn.learning.hyperparams.config_from_file_data`). ``path`` may be a pipe
    (``/dev/stdin``). Unless ``trust_env`` (the user names the env), its env id must be
    registered: rlrnn imports no module that a file names."""
    path = Path(path)
    try:
        with open(path, "rb") as f:  # not is_file(): /dev/stdin and <(...) are pipes
            raw = f.read(CONFIG_FILE_LIMIT + 1)
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--config {path}: is a folder, not a config file") from None
    except OSError as e:
        raise UsageError(f"--config {path}: cannot read it: {e.strerror}") from None
    if len(raw) > CONFIG_FILE_LIMIT:
        raise UsageError(
            f"--config {path}: more than {CONFIG_FILE_LIMIT:,} bytes, too large for a config file"
        )
    try:
        data = json.loads(raw.decode())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"--config {path}: not a JSON file") from None
    except RecursionError:  # deeply nested arrays or objects
        raise UsageError(f"--config {path}: damaged (JSON nested too deeply)") from None
    if not isinstance(data, dict):
        form = f"a JSON object of {RunFolder.CONFIG}'s form"
        raise UsageError(f"--config {path}: not a config ({form})")
    data.pop("tuned", None)
    try:
        config = config_from_file_data(data)
    except UsageError as e:
        raise UsageError(f"--config {path}: {e}") from None
    if not trust_env:
        env_id_from_file(config.env_id, path)
    return config
