"""Checkpoints a user can download and share safely.

A checkpoint is one ``torch.save`` file holding only tensors, strings and numbers: the weights,
the run config as JSON, and the env signature. It is loaded with ``weights_only=True``, so
opening it never runs code from the file. Every file is written to a temporary name and renamed,
so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from agents import ActorCritic, make_agent
from rlrnn.config import SB3_AGENTS, RunConfig
from rlrnn.errors import UsageError
from rlrnn.evaluation import Policy
from rlrnn.files import atomic_write

FORMAT = "rlrnn-checkpoint"
FORMAT_VERSION = 1


def env_signature(obs_dim: int, num_actions: int, env_id: str) -> dict[str, Any]:
    return {"env_id": env_id, "obs_dim": obs_dim, "num_actions": num_actions}


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


def checkpoint_path(run: Path, which: str = "best") -> Path:
    """``run`` itself for a checkpoint file, ``run/<which>.pt`` for a run directory."""
    run = Path(run)
    return run / f"{which}.pt" if run.is_dir() else run


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checked contents of a checkpoint file; every way it can be wrong is a UsageError."""
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
    version = payload.get("version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise UsageError(
            f"{path} has checkpoint format version {version}; this rlrnn reads version"
            f" {FORMAT_VERSION}" + (" (it was written by a newer rlrnn: upgrade)" if newer else "")
        )
    return payload


def describe_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """What differs between the weights an agent has and the weights a file holds."""

    def listed(items: list[str], sep: str = ", ", limit: int = 3) -> str:
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return sep.join(items[:limit]) + more

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} is {tuple(found[k].shape)} in the file, {tuple(expected[k].shape)} in the agent"
        for k in expected
        if k in found and found[k].shape != expected[k].shape
    ]
    parts = []
    if shapes:
        parts.append(listed(shapes, "; ", 2))
    if missing:
        parts.append(f"missing {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {listed(unexpected)}")
    return "; ".join(parts) or "same names and shapes"


def check_env(path: Path, saved: dict[str, Any], env_id: str) -> None:
    """Refuse to play a checkpoint on an env whose observations or actions differ in size."""
    from envs import make_batched_env

    env = make_batched_env(env_id, 1)
    here = {"obs_dim": env.obs_dim, "num_actions": env.num_actions}
    close = getattr(env, "close", None)
    if close is not None:
        close()
    differs = [
        f"{key.replace('_', ' ')} {int(saved[key])} there, {here[key]} in {env_id}"
        for key in here
        if int(saved[key]) != here[key]
    ]
    if differs:
        raise UsageError(
            f"{path} was trained on {saved['env_id']}, which does not fit {env_id}:"
            f" {', '.join(differs)}"
        )


def load_checkpoint(
    path: Path, device: torch.device | str = "cpu"
) -> tuple[Policy, RunConfig, dict[str, Any]]:
    """Load a checkpoint file into a fresh policy; every way it can be wrong is a UsageError.

    The policy is an :class:`ActorCritic` for rlrnn's agents and an :class:`rlrnn.sb3.SB3Policy`
    for the reference agents; both act through ``initial_state`` / ``act`` and ``predict``.
    """
    payload = read_checkpoint(path)
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
        expected = agent.state_dict()
        weights = payload["model"]
        if set(weights) != set(expected) or any(
            weights[k].shape != v.shape for k, v in expected.items()
        ):
            a = config.agent
            raise UsageError(
                f"checkpoint {path} does not match its agent {a.agent} (hidden_size"
                f" {a.hidden_size}, num_layers {a.num_layers}, {obs_dim} observations):"
                f" {describe_mismatch(expected, weights)}"
            )
        agent.load_state_dict(weights)
    except UsageError:
        raise
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"checkpoint {path} does not match its agent: {first_line}") from None
    return agent.to(device), config, extra
