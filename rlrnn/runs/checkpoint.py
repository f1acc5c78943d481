"""Checkpoints a user can download and share safely: the file format and its checks.

A checkpoint is one ``torch.save`` file holding only tensors, strings and numbers: the weights,
the run config as JSON, and the env signature. It is loaded with ``weights_only=True``, so
opening it never runs code from the file, and the env its config names is made only if that runs
no module the user did not choose (:func:`env_id_from_file`). Its sizes are checked before
anything is allocated: the file against the memory available here, the weights' shapes against
the config beside it (:mod:`rlrnn.runs.loading`, which builds and loads agents). Every file is
written to a temporary name and renamed, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import torch

from agents import ActorCritic
from envs.batched import env_sizes, has_box_actions, is_registered
from rlrnn.errors import EnvNotTrusted, UsageError
from rlrnn.files import atomic_write
from rlrnn.learning.config import RunConfig
from rlrnn.learning.memory import check_fits
from rlrnn.runs.folder import RunFolder

FORMAT = "rlrnn-checkpoint"
FORMAT_VERSION = 1


def env_signature(
    obs_dim: int, num_actions: int, env_id: str, continuous: bool = False
) -> dict[str, Any]:
    """What a checkpoint's weights were made for; ``continuous`` (Box actions) only when so."""
    signature = {"env_id": env_id, "obs_dim": obs_dim, "num_actions": num_actions}
    return signature | ({"continuous": True} if continuous else {})


def write_checkpoint(
    path: Path,
    config: RunConfig,
    env: dict[str, Any],
    model: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
    obs_rms: dict[str, torch.Tensor] | None = None,
    trainer: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint: weights ``model``, the config, the env signature ``env`` and JSON
    ``extra``; ``obs_rms`` holds observation-normalisation statistics kept outside the model,
    ``trainer`` the training state a resume needs (tensors, numbers and strings only)."""
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": config.to_json(),
        "env": env,
        "model": {k: v.detach().cpu() for k, v in model.items()},
        "extra": json.dumps(extra or {}),
    }
    if obs_rms is not None:
        payload["obs_rms"] = obs_rms
    if trainer is not None:
        payload["trainer"] = trainer
    atomic_write(path, lambda f: torch.save(payload, f))


def save_checkpoint(
    path: Path, agent: ActorCritic, config: RunConfig, extra: dict[str, Any] | None = None
) -> None:
    env = env_signature(agent.obs_dim, agent.num_actions, config.env_id, agent.continuous)
    write_checkpoint(path, config, env, agent.state_dict(), extra)


def checkpoint_path(run: Path | str, which: str = "best") -> Path:
    """``run`` itself for a checkpoint file, its ``which`` checkpoint for a run folder."""
    run = Path(run)
    return RunFolder(run).checkpoint(which) if run.is_dir() else run


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checked contents of a checkpoint file; every way it can be wrong is a UsageError."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise UsageError(f"checkpoint is not a file: {path}")
    check_fits(2 * path.stat().st_size, "cpu", f"reading {path}", "is it a checkpoint?")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged or foreign file
        raise UsageError(
            f"cannot read checkpoint {path}: damaged or not an rlrnn checkpoint"
            f" ({type(e).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{path} is not an rlrnn checkpoint")
    version = payload.get("version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise UsageError(
            f"{path} has checkpoint format version {version}; this rlrnn reads version"
            f" {FORMAT_VERSION}" + (" (it was written by a newer rlrnn: upgrade)" if newer else "")
        )
    return payload


def checkpoint_config(payload: dict[str, Any], path: Path) -> RunConfig:
    """The run config a checkpoint holds; a damaged one is a UsageError naming the file."""
    try:
        return RunConfig.from_dict(json.loads(payload["config"]))
    except UsageError as e:
        raise UsageError(f"checkpoint {path} holds a config rlrnn cannot use: {e}") from None
    except (KeyError, TypeError, ValueError, RecursionError):  # no config, not JSON, too deep
        raise UsageError(
            f"checkpoint {path} is damaged: its config is missing or not JSON"
        ) from None


def env_id_from_file(env_id: str, source: Path) -> str:
    """``env_id`` as ``source`` (a checkpoint or run folder) names it, if making it imports no
    module the user did not choose (:func:`envs.batched.is_registered`); a ``module:EnvId`` from
    a file is never imported: the user names it on the command line to trust it."""
    if is_registered(env_id):
        return env_id
    raise EnvNotTrusted(
        f"{source} names env {env_id!r}, which is not registered; rlrnn does not import a module"
        f" that a file names: if you trust it, pass env_id {shlex.quote(env_id)}",
        ("env_id",),
    )


def describe_mismatch(expected: dict[str, torch.Size], found: dict[str, torch.Tensor]) -> str:
    """What differs between the weights an agent has (name -> shape) and the weights a file
    holds."""

    def listed(items: list[str], sep: str = ", ", limit: int = 3) -> str:
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return sep.join(items[:limit]) + more

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} is {tuple(found[k].shape)} in the file, {tuple(expected[k])} in the agent"
        for k in expected
        if k in found and found[k].shape != expected[k]
    ]
    parts = []
    if shapes:
        parts.append(listed(shapes, "; ", 2))
    if missing:
        parts.append(f"missing {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {listed(unexpected)}")
    return "; ".join(parts) or "same names and shapes"


def check_env(
    path: Path, saved: dict[str, Any], env_id: str, trained_on: str | None = None
) -> None:
    """Refuse to play a checkpoint on an env whose observations or actions differ in size from
    those its weights were made for (``saved``: the env signature); ``env_id`` must be trusted."""
    here = dict(zip(("obs_dim", "num_actions"), env_sizes(env_id), strict=True))
    box = has_box_actions(env_id)
    if (saved.get("continuous", False) is True) != box:
        kind = {True: "Box (continuous) actions", False: "Discrete actions"}
        raise UsageError(f"{path} was made for {kind[not box]}; {env_id} takes {kind[box]}")
    wrong = [key for key in here if int(saved[key]) != here[key]]
    if not wrong:
        return
    trained_on = trained_on or str(saved.get("env_id"))
    names = {k: k.replace("_", " ") for k in wrong}
    if trained_on == env_id:  # the file contradicts itself
        has = ", ".join(f"{names[k]} {here[k]}" for k in wrong)
        fits = ", ".join(f"{names[k]} {int(saved[k])}" for k in wrong)
        raise UsageError(
            f"checkpoint {path} is damaged: its config names env {env_id} ({has}), but its"
            f" weights are for {fits}"
        )
    differs = [f"{names[k]} {int(saved[k])} there, {here[k]} in {env_id}" for k in wrong]
    raise UsageError(
        f"{path} was trained on {trained_on}, which does not fit {env_id}: {', '.join(differs)}"
    )
