"""What a config field may hold, checked: every field of a config section holds a value of its
declared type (an int that is not a bool, a finite float, ...), stored as a builtin value, and the
Python API's arguments get the same checks (:func:`check_argument`, :func:`check_seed`,
:func:`check_device`); a failed check is a :class:`~rlrnn.errors.UsageError` naming the field.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, get_type_hints

import numpy as np
import torch

from rlrnn.errors import UsageError


def option(default: Any, doc: str, **extra: Any) -> Any:
    """A dataclass field carrying its help text (and argparse extras such as ``choices``)."""
    if isinstance(default, list | tuple):
        return dataclasses.field(default=tuple(default), metadata={"help": doc, **extra})
    return dataclasses.field(default=default, metadata={"help": doc, **extra})


def require(condition: bool, message: str, fields: tuple[str, ...] = ()) -> None:
    """A UsageError saying ``message`` unless ``condition``; ``fields``: the fields it names
    when the command line should show them as its options (:class:`~rlrnn.errors.UsageError`)."""
    if not condition:
        raise UsageError(message, fields=fields)


SEED_MAX = 2**32 - 1  # numpy's legacy seeds; the tensor cart-pole hashes 32 bits of a seed


def check_seed(value: int, name: str = "seed") -> int:
    """``value`` if it is a usable seed (0 to 2**32 - 1), else a UsageError."""
    check_argument(value, int, name)
    require(0 <= value <= SEED_MAX, f"{name} must be in [0, 2**32 - 1], got {value}")
    return value


def check_argument(value: Any, kind: Any, name: str) -> Any:
    """``value`` if it holds a ``kind`` as a config field would (an int that is not a bool, a
    finite float, ...), else a UsageError naming ``name``: the Python API checks what it is
    given as the command line's parser does."""
    want = _type_problem(kind, value)
    require(want is None, f"{name} must be {want}, got {_shown(value)}")
    return value


def check_device(device: Any, name: str = "device") -> torch.device:
    """The torch device ``device`` names (a ``torch.device``, ``"cpu"``, ``"cuda:0"``,
    ``"auto"``), usable on this machine; else a UsageError."""
    if isinstance(device, str) and device == "auto":
        return resolve_device("auto")
    require(
        isinstance(device, str | torch.device),
        f"{name} must be a torch device or its name, got {_shown(device)}",
    )
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown {name} {device!r}; use cpu or cuda") from None
    require(parsed.type in ("cpu", "cuda"), f"unknown {name} {device!r}; use cpu or cuda")
    if parsed.type == "cpu" or parsed.index is None:  # cpu:0 is the CPU, not a CUDA device
        return resolve_device(parsed.type)
    return _cuda_here(parsed)


def _cuda_here(device: torch.device) -> torch.device:
    require(
        torch.cuda.is_available() and device.index < torch.cuda.device_count(),
        f"device {str(device)!r} asked for, but this machine has no such CUDA device",
    )
    return device


def resolve_device(name: str) -> torch.device:
    """The torch device a config's ``device`` names (``auto``: CUDA when present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' asked for, but CUDA is not available on this machine")
    return torch.device(name)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def _is_int(value: Any) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def _type_problem(kind: Any, value: Any) -> str | None:
    """What is wrong with ``value`` as a field of type ``kind`` (None: nothing)."""
    if kind is bool:
        return None if _is_bool(value) else "true or false"
    if kind is int:
        return None if _is_int(value) else "an integer"
    if kind == int | None:
        return None if value is None or _is_int(value) else "an integer or none"
    if kind is float:
        number = _is_int(value) or (isinstance(value, numbers.Real) and not _is_bool(value))
        return None if number and math.isfinite(value) else "a finite number"
    if kind is str:
        return None if isinstance(value, str) else "a string"
    if kind == tuple[int, ...]:
        ok = isinstance(value, tuple | list) and all(_is_int(v) for v in value)
        return None if ok else "a list of integers"
    if dataclasses.is_dataclass(kind):  # a nested section (it checked its own fields)
        return None if isinstance(value, kind) else f"an instance of {kind.__name__}"
    return None


def _plain(kind: Any, value: Any) -> Any:
    """``value`` as the builtin type of ``kind`` (numpy's numbers and lists in, JSON's out)."""
    if kind is bool:
        return bool(value)
    if kind is int:
        return int(value)
    if kind == int | None:
        return None if value is None else int(value)
    if kind is float:
        return value if type(value) in (int, float) else float(value)  # np.float64 too
    if kind == tuple[int, ...]:
        return tuple(int(v) for v in value)
    return value


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def check_types(cls: type, values: dict[str, Any], prefix: str) -> None:
    """Every field in ``values`` holds a value of its declared type in ``cls`` (floats finite):
    a config read from a file may hold anything, and inf passes a "> 0" check."""
    hints = _hints(cls)
    for name, value in values.items():
        if name in hints:
            want = _type_problem(hints[name], value)
            require(want is None, f"{prefix}{name} must be {want}, got {_shown(value)}")


def check_fields(section: Any) -> None:
    """A config section's fields all hold their declared types (:func:`check_types`), stored
    as builtin values: a section is made from files, the command line and Python callers."""
    hints = _hints(type(section))
    values = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
    check_types(type(section), values, "")
    for name, value in values.items():
        object.__setattr__(section, name, _plain(hints[name], value))  # frozen: set once here


def section_from_json(cls: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """JSON stores tuples as lists; turn them back (after checking every value's type)."""
    if not isinstance(data, dict):
        raise UsageError(f"config section for {cls.__name__} is not an object")
    check_types(cls, data, prefix)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def show_value(value: Any) -> str:
    """A config value as the command line writes it (a tuple as its items, space-separated)."""
    return " ".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``section.field (old -> new)`` for every field in which two config dicts differ."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({show_value(a)} -> {show_value(b)})")
    return out
