"""The front door of a run: every check a training run passes before anything is written, made
here once for every caller (the command line, the Python API's :func:`rlrnn.train`, compare and
tune), so a wrong call is one typed error and leaves no folder behind:

- the arguments' types;
- the folder: a new run goes into a folder that holds no run (:class:`RunFolderRefused`); a
  resume finds a run there whose config the resume keeps (:class:`ResumeRefused`);
- the env id (:class:`envs.EnvError`) and the memory budget (:class:`MemoryBudgetExceeded`).

The messages name fields and arguments (``total_timesteps``, ``resume``), never flags: the
command line words them as its options (:func:`rlrnn.cli.describe_error`).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envs.batched import check_env_id, has_box_actions
from rlrnn.errors import ResumeRefused, RunFolderRefused, UsageError
from rlrnn.files import path_status
from rlrnn.learning.config import SB3_AGENTS, RunConfig
from rlrnn.learning.fields import check_argument, resolve_device
from rlrnn.learning.memory import check_training_memory
from rlrnn.runs.checkpoint import env_id_from_file
from rlrnn.runs.folder import RunFolder, rlrnn_files
from rlrnn.runs.resume import check_resume, saved_run


def check_run(
    config: Any,
    run_dir: Any,
    show_progress: Any = True,
    resume: Any = False,
    on_evaluation: Callable[..., Any] | None = None,
) -> RunFolder:
    """:func:`rlrnn.runs.training.train`'s arguments, checked; returns the run's folder."""
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
    folder = RunFolder(os.fspath(run_dir))
    if resume:
        if config.agent.agent in SB3_AGENTS:
            raise ResumeRefused(
                f"resume is for rlrnn's agents; {config.agent.agent} runs restart", ("resume",)
            )
        saved, status = saved_run(folder.path)
        check_resume(folder.path, saved, status, config)
    else:
        check_new_run(folder)
    check_env_id(config.env_id)
    if not has_box_actions(config.env_id):
        for name, value in (
            ("sde_sample_freq", config.ppo.sde_sample_freq),
            ("bound_coef", config.ppo.bound_coef),
            ("log_std_init", config.agent.log_std_init),
        ):
            if value:
                raise UsageError(
                    f"{name} is for Box actions; {config.env_id} takes Discrete ones", (name,)
                )
    check_training_memory(config, resolve_device(config.device))
    return folder


def check_new_run(folder: RunFolder) -> None:
    """A new run goes into a missing or empty folder, or one with a user's own files in it
    (kept): never into a folder that holds a run, nor onto a file."""
    status = path_status(folder.path, "run directory")  # a name it cannot look up: UsageError
    if status is None:
        return
    if not stat.S_ISDIR(status.st_mode):
        raise RunFolderRefused(f"run directory {folder.path} is a file")
    if held := rlrnn_files(folder.path):
        names = ", ".join(str(p.relative_to(folder.path)) for p in held[:3])
        more = ", ..." if len(held) > 3 else ""
        raise RunFolderRefused(
            f"run directory {folder.path} already holds a run ({names}{more}): train into a new"
            " folder, or continue that run with resume=True",
            ("resume",),
        )


def saved_config(run_dir: Path | str, trust_env: bool = False) -> RunConfig:
    """The config of the run saved in ``run_dir``: what a resume starts from. Its env id must
    be registered unless ``trust_env`` (the caller names the env itself): rlrnn imports no
    module that a file names."""
    saved, _ = saved_run(run_dir)
    if not trust_env:
        env_id_from_file(saved.env_id, RunFolder(run_dir).last)
    return saved


def run_name(config: RunConfig) -> str:
    """A new run's folder name: ``<agent>-<env>-s<seed>-<time>``."""
    env = config.env_id.replace("/", "_").replace(":", "_")
    return f"{config.agent.agent}-{env}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
