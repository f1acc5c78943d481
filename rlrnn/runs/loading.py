"""Building agents and loading them from checkpoints (:mod:`rlrnn.runs.checkpoint` reads the
files): :func:`build_agent` makes the agent a config describes, :func:`load_checkpoint` and
:func:`load_agent` give back a trained policy, checked against its file before anything is
allocated (the weights' shapes are compared on PyTorch's meta device).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch

from agents import ActorCritic, make_agent
from envs.batched import EnvError, check_env_id
from rlrnn.errors import UsageError
from rlrnn.learning.acting import Policy
from rlrnn.learning.config import SB3_AGENTS, RunConfig
from rlrnn.learning.fields import check_argument, check_device
from rlrnn.runs.checkpoint import (
    check_env,
    checkpoint_config,
    checkpoint_path,
    describe_mismatch,
    env_id_from_file,
    read_checkpoint,
)
from rlrnn.runs.folder import RunFolder


def build_agent(
    config: RunConfig, obs_dim: int, num_actions: int, continuous: bool = False
) -> ActorCritic:
    """A fresh agent as ``config`` describes it, for ``obs_dim`` observations and ``num_actions``
    actions (a Box of that many dimensions when ``continuous``; seeded by the caller:
    ``torch.manual_seed``)."""
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
        continuous=continuous,
        gsde=config.ppo.sde_sample_freq > 0,
        log_std_init=a.log_std_init,
    )


def expected_weights(
    config: RunConfig, obs_dim: int, num_actions: int, continuous: bool = False
) -> dict[str, torch.Size]:
    """The name and shape of every tensor of the agent ``config`` describes, allocating nothing
    (the agent is built on the meta device)."""
    with torch.device("meta"):
        agent = build_agent(config, obs_dim, num_actions, continuous)
    return {k: v.shape for k, v in agent.state_dict().items()}


def load_checkpoint(
    path: Path, device: torch.device | str = "cpu", env_id: str | None = None
) -> tuple[Policy, RunConfig, dict[str, Any]]:
    """Load a checkpoint file into a fresh policy; every way it can be wrong is a UsageError.

    ``env_id`` is the env the caller will play on, from its command line (trusted); None plays
    on the checkpoint's own, which must be registered (:func:`env_id_from_file`). Either way the
    env must fit the weights. The returned config is the file's (its ``env_id`` is what the
    agent was trained on).

    The policy is an :class:`ActorCritic` for rlrnn's agents and an
    :class:`rlrnn.runs.sb3.SB3Policy` for the reference agents; both act through ``initial_state``
    / ``act``
    and ``predict``.
    """
    payload = read_checkpoint(path)
    config = checkpoint_config(payload, path)
    try:
        env = payload["env"]
        obs_dim, num_actions = int(env["obs_dim"]), int(env["num_actions"])
        continuous = env.get("continuous", False) is True
        weights = payload["model"]
        if not isinstance(weights, dict) or not all(
            isinstance(v, torch.Tensor) for v in weights.values()
        ):
            raise UsageError(f"checkpoint {path} is damaged: its weights are not tensors")
        extra = json.loads(payload.get("extra", "{}"))
        play_env = env_id or env_id_from_file(config.env_id, path)
        check_env(path, env, play_env, config.env_id)
        if config.agent.agent in SB3_AGENTS:
            from rlrnn.runs.sb3 import load_sb3_policy  # SB3 takes seconds to import: when used

            played = dataclasses.replace(config, env_id=play_env)
            policy = load_sb3_policy(played, weights, payload.get("obs_rms"), device, path)
            return policy, config, extra
        expected = expected_weights(config, obs_dim, num_actions, continuous)
        if set(weights) != set(expected) or any(weights[k].shape != v for k, v in expected.items()):
            a = config.agent
            raise UsageError(
                f"checkpoint {path} does not match its agent {a.agent} (hidden_size"
                f" {a.hidden_size}, num_layers {a.num_layers}, {obs_dim} observations):"
                f" {describe_mismatch(expected, weights)}"
            )
        agent = build_agent(config, obs_dim, num_actions, continuous)  # as big as the file's
        agent.load_state_dict(weights)
    except (UsageError, EnvError):
        raise
    except RecursionError:  # JSON nested too deeply
        raise UsageError(f"checkpoint {path} is damaged: its JSON is nested too deeply") from None
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"checkpoint {path} does not match its agent: {first_line}") from None
    return agent.to(device), config, extra


CHECKPOINTS = tuple(RunFolder.CHECKPOINTS)  # a run folder's checkpoints, by name


def load_agent(
    run: Path | str,
    which: str = "best",
    device: torch.device | str = "cpu",
    env_id: str | None = None,
) -> tuple[Policy, RunConfig]:
    """The trained policy of a run directory (its ``<which>.pt``: best, final or last) or of a
    checkpoint file, and the run's config; ``env_id`` as in :func:`load_checkpoint` (an id
    given here is trusted, as ``--env`` is: its module may be imported)."""
    if not isinstance(run, str | os.PathLike):
        raise UsageError(f"run must be a path, got {type(run).__name__}")
    if which not in CHECKPOINTS:
        raise UsageError(f"which must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
    device = check_device(device)
    if env_id is not None:
        check_env_id(check_argument(env_id, str, "env_id"))
    policy, config, _ = load_checkpoint(checkpoint_path(Path(run), which), device, env_id)
    return policy, config


def load_actor_critic(
    run: Path | str,
    which: str = "best",
    device: torch.device | str = "cpu",
    env_id: str | None = None,
) -> tuple[ActorCritic, RunConfig]:
    """:func:`load_agent` for the tools that read an agent's state: an rlrnn agent (an SB3
    policy is a UsageError)."""
    agent, config = load_agent(run, which, device, env_id)
    if not isinstance(agent, ActorCritic):
        path = checkpoint_path(Path(run), which)
        raise UsageError(f"{path}: a {config.agent.agent} policy keeps no state rlrnn can read")
    return agent, config
