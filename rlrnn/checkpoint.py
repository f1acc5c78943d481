"""Checkpoints a user can download and share safely.

A checkpoint is one ``torch.save`` file holding only tensors, strings and numbers: the weights,
the run config as JSON, and the env signature. It is loaded with ``weights_only=True``, so
opening it never runs code from the file. Every file is written to a temporary name and renamed,
so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from agents import ActorCritic, make_agent
from rlrnn.config import SB3_AGENTS, RunConfig
from rlrnn.errors import UsageError
from rlrnn.evaluation import Policy

FORMAT = "rlrnn-checkpoint"
FORMAT_VERSION = 1


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def env_signature(obs_dim: int, num_actions: int, env_id: str) -> dict[str, Any]:
    return {"env_id": env_id, "obs_dim": obs_dim, "num_actions": num_actions}


def write_checkpoint(
    path: Path,
    config: RunConfig,
    env: dict[str, Any],
    model: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
    obs_rms: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a checkpoint: weights ``model``, the config, the env signature ``env`` and JSON
    ``extra``; ``obs_rms`` holds observation-normalisation statistics kept outside the model."""
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
    atomic_write(path, lambda f: torch.save(payload, f))


def save_checkpoint(
    path: Path, agent: ActorCritic, config: RunConfig, extra: dict[str, Any] | None = None
) -> None:
    env = env_signature(agent.obs_dim, agent.num_actions, config.env_id)
    write_checkpoint(path, config, env, agent.state_dict(), extra)


def build_agent(config: RunConfig, obs_dim: int, num_actions: int) -> ActorCritic:
    a = config.agent
    return make_agent(
        a.agent,
        obs_dim,
        num_actions,
        hidden_size=a.hidden_size,
        num_layers=a.num_layers,
        backend=a.backend,
        shared_core=a.shared_core,
        pi_hidden=a.pi_hidden,
        vf_hidden=a.vf_hidden,
        activation=a.activation,
        normalize_obs=a.normalize_obs,
        frame_stack=a.frame_stack,
    )


def load_checkpoint(
    path: Path, device: torch.device | str = "cpu"
) -> tuple[Policy, RunConfig, dict[str, Any]]:
    """Load a checkpoint file into a fresh policy; every way it can be wrong is a UsageError.

    The policy is an :class:`ActorCritic` for rlrnn's agents and an :class:`rlrnn.sb3.SB3Policy`
    for the reference agents; both act through ``initial_state`` / ``act`` and ``predict``.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise UsageError(f"checkpoint is not a file: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged or foreign file
        raise UsageError(
            f"cannot read checkpoint {path}: damaged or not an rlrnn checkpoint"
            f" ({type(e).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{path} is not an rlrnn checkpoint")
    if payload.get("version") != FORMAT_VERSION:
        raise UsageError(
            f"{path} has checkpoint format version {payload.get('version')}; this rlrnn reads"
            f" version {FORMAT_VERSION}"
        )
    try:
        config = RunConfig.from_dict(json.loads(payload["config"]))
        env = payload["env"]
        obs_dim, num_actions = int(env["obs_dim"]), int(env["num_actions"])
        extra = json.loads(payload.get("extra", "{}"))
        if config.agent.agent in SB3_AGENTS:
            from rlrnn.sb3 import load_sb3_policy  # SB3 is imported only when needed

            policy = load_sb3_policy(config, payload["model"], payload.get("obs_rms"), device)
            return policy, config, extra
        agent = build_agent(config, obs_dim, num_actions)
        agent.load_state_dict(payload["model"])
    except UsageError:
        raise
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"checkpoint {path} does not match its agent: {first_line}") from None
    return agent.to(device), config, extra
