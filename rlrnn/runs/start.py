"""The checks a training run passes before anything is written: what the command line checks
before it makes a run folder, :func:`rlrnn.runs.training.train` checks again for the Python API
(and for compare and tune), so a wrong call is one typed error and leaves no folder behind.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envs.batched import check_env_id
from rlrnn.learning.config import SB3_AGENTS, RunConfig, check_argument, resolve_device
from rlrnn.learning.memory import check_training_memory
from rlrnn.runs.resume import check_resume, saved_run
from rlrnn.runs.folder import rlrnn_files
from rlrnn.errors import UsageError
from rlrnn.files import path_status


def check_training_call(
    config: Any,
    run_dir: Any,
    show_progress: Any,
    resume: Any,
    on_evaluation: Callable[..., Any] | None,
) -> Path:
    """:func:`rlrnn.runs.training.train`'s arguments, checked as the command line checks its
    options (a UsageError, or an :class:`envs.EnvError` for an env rlrnn cannot use); returns
    ``run_dir`` as a path. A folder that holds a run is trained into only to resume it."""
    if not isinstance(config, RunConfig):
        named = isinstance(config, str)  # an agent's name: say how to get its config
        hint = f"; for its tuned defaults: default_config({config!r})" if named else ""
        raise UsageError(f"train() takes a RunConfig, got {type(config).__name__}{hint}")
    if not isinstance(run_dir, str | os.PathLike) or not isinstance(os.fspath(run_dir), str):
        raise UsageError(f"run_dir must be a path, got {type(run_dir).__name__}")
    if not os.fspath(run_dir):
        raise UsageError("run_dir must be a path, got an empty string")
    check_argument(show_progress, bool, "show_progress")
    check_argument(resume, bool, "resume")
    if on_evaluation is not None and not callable(on_evaluation):
        raise UsageError(f"on_evaluation must be callable, got {type(on_evaluation).__name__}")
    run_dir = Path(run_dir)
    if resume:
        if config.agent.agent in SB3_AGENTS:
            raise UsageError(f"--resume is for rlrnn's agents; {config.agent.agent} runs restart")
        saved, status = saved_run(run_dir)
        check_resume(run_dir, saved, status, config)
    elif _is_dir(run_dir) and (held := rlrnn_files(run_dir)):
        names = ", ".join(str(p.relative_to(run_dir)) for p in held[:3])
        more = ", ..." if len(held) > 3 else ""
        raise UsageError(
            f"run directory {run_dir} already holds a run ({names}{more}): train into a new"
            " folder, or continue that run with resume=True (--resume)"
        )
    check_env_id(config.env_id)
    check_training_memory(config, resolve_device(config.device))
    return run_dir


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a folder; a name the system cannot look up is a UsageError."""
    status = path_status(path, "run directory")
    return status is not None and stat.S_ISDIR(status.st_mode)
