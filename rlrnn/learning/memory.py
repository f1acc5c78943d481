"""Memory estimates, checked before anything large is allocated.

A size a user types (environments, episodes, hidden units) or a file claims becomes tensors; one
that cannot fit would allocate gigabytes before failing with a traceback, or push the machine into
swap. Each estimate is compared with ``LIMIT`` of the memory available now (``MemAvailable`` on
the CPU, free memory on a CUDA device) and refused in one line that gives both numbers.

The estimates are deliberately generous (measured on the CPU: 1 to 2 times the real peak of a PPO
iteration), so a refused size is wrong by a wide margin, and an accepted one leaves room.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import torch

from rlrnn.errors import MemoryBudgetExceeded, UsageError
from rlrnn.learning.config import RunConfig

LIMIT = 0.8  # of the memory available when the command starts
FLOAT = 4  # bytes
GYM_ENV_BYTES = 16_384  # a gymnasium env object in a vector env (about 5 KB for Acrobot)
TENSOR_ENV_BYTES = 256  # one tensor cart-pole: a few floats and counters


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory free for new tensors on ``device`` now; None where it cannot be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def gigabytes(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


def limit_bytes(device: torch.device | str, available: int | None = None) -> int | None:
    """``LIMIT`` of the memory available on ``device`` now (None where it cannot be read)."""
    available = available_bytes(device) if available is None else available
    return None if available is None else int(LIMIT * available)


def check_fits(
    estimate: float,
    device: torch.device | str,
    what: str,
    hint: str,
    available: int | None = None,
    fields: tuple[str, ...] = (),
) -> None:
    """:class:`MemoryBudgetExceeded` naming ``what``, the estimate and the limit unless
    ``estimate`` bytes fit; ``fields``: the sizes the ``hint`` says to lower."""
    available = available_bytes(device) if available is None else available
    if available is None:
        return
    limit = LIMIT * available
    if estimate > limit:
        raise MemoryBudgetExceeded(
            f"{what} needs about {gigabytes(estimate)} of memory, more than the limit of"
            f" {gigabytes(limit)} ({LIMIT:.0%} of the {gigabytes(available)} available on"
            f" {torch.device(device).type}); {hint}",
            fields,
        )


def _widths(config: RunConfig, obs_dim: int) -> tuple[int, int, int]:
    """Recurrent units over all layers and cores, head units, and the core's input width."""
    a = config.agent
    cores = 1 if a.shared_core else 2
    inputs = obs_dim * (a.frame_stack if a.agent == "framestack" else 1)
    return a.hidden_size * a.num_layers * cores, sum(a.pi_hidden) + sum(a.vf_hidden), inputs


def parameter_count(config: RunConfig, obs_dim: int, num_actions: int) -> int:
    """An upper bound on the agent's parameters (a gated cell has 4 blocks of weights)."""
    a = config.agent
    cores = 1 if a.shared_core else 2
    inputs = obs_dim * (a.frame_stack if a.agent == "framestack" else 1)
    h = a.hidden_size
    core = 4 * h * (inputs + h + 1) + (a.num_layers - 1) * 4 * h * (2 * h + 1)
    heads = 0
    for widths, out in ((a.pi_hidden, num_actions), (a.vf_hidden, 1)):
        sizes = [h, *widths, out]
        heads += sum((i + 1) * o for i, o in itertools.pairwise(sizes))
    return cores * core + heads


def training_bytes(config: RunConfig, obs_dim: int, num_actions: int, tensor_env: bool) -> int:
    """One PPO iteration: the rollout buffers and the activations of a minibatch replay (per
    env step; with ``bptt_len`` also the rollout cut into chunks and each chunk's start state),
    the envs, and weights with their gradients, Adam moments and a rollback copy."""
    recurrent, heads, inputs = _widths(config, obs_dim)
    per_step = 4 * heads + 16 * recurrent + 8 * inputs + 4 * num_actions + 128  # floats
    p = config.ppo
    chunk_states = 0
    if p.bptt_len is not None:  # the rollout cut into chunks: a copy of it, and h and c per chunk
        per_step += inputs + 8
        chunk_states = FLOAT * 2 * recurrent * p.num_sequences
    envs = p.num_envs * (TENSOR_ENV_BYTES if tensor_env else GYM_ENV_BYTES)
    weights = 5 * FLOAT * parameter_count(config, obs_dim, num_actions)
    return FLOAT * per_step * p.num_envs * p.num_steps + chunk_states + envs + weights


def acting_bytes(
    config: RunConfig, obs_dim: int, num_actions: int, envs: int, tensor_env: bool
) -> int:
    """Playing ``envs`` environments at once without gradients (evaluation, rendering)."""
    recurrent, heads, inputs = _widths(config, obs_dim)
    per_env = 4 * recurrent + 2 * heads + 3 * inputs + 2 * num_actions + 64  # floats
    overhead = TENSOR_ENV_BYTES if tensor_env else GYM_ENV_BYTES
    return envs * (FLOAT * per_env + overhead) + FLOAT * parameter_count(
        config, obs_dim, num_actions
    )


def _check_observation_size(
    config: RunConfig, env_id: str, obs_dim: int, num_actions: int, device: torch.device | str
) -> None:
    """Refuse an env whose encoded observations alone make the agent too large, whatever the
    other sizes: a Discrete(N) observation is a one-hot of N numbers."""
    limit = limit_bytes(device)
    if limit is None:
        return
    alone = 5 * FLOAT * parameter_count(config, obs_dim, num_actions)  # one env, one step
    if alone > limit and 5 * FLOAT * parameter_count(config, 1, num_actions) <= limit:
        raise UsageError(
            f"env {env_id!r} has observations of {obs_dim:,} numbers (a Discrete or"
            f" MultiDiscrete observation is one-hot encoded): its observation space is too large"
            f" for rlrnn's agents ({gigabytes(alone)} of weights against a limit of"
            f" {gigabytes(limit)}); use an env with a smaller observation space"
        )


def check_training_memory(config: RunConfig, device: torch.device | str) -> None:
    """Refuse a training run whose sizes cannot fit (before its env or agent is made): the
    PPO iteration, and beside it the periodic evaluation of ``eval_episodes`` episodes at
    once."""
    from envs.batched import TENSOR_CARTPOLES, env_sizes

    obs_dim, num_actions = env_sizes(config.env_id)
    tensor_env = config.env_id in TENSOR_CARTPOLES
    _check_observation_size(config, config.env_id, obs_dim, num_actions, device)
    training = training_bytes(config, obs_dim, num_actions, tensor_env)
    evaluating = acting_bytes(config, obs_dim, num_actions, config.eval_episodes, tensor_env)
    if evaluating > training:
        what = f"evaluating {config.eval_episodes:,} episodes at once (eval_episodes) in training"
        fields: tuple[str, ...] = ("eval_episodes",)
    else:
        what = (
            f"training {config.ppo.num_envs:,} envs x {config.ppo.num_steps:,} steps with"
            f" {config.agent.agent} (hidden size {config.agent.hidden_size:,})"
        )
        fields = ("num_envs", "num_steps", "hidden_size")
    hint = (
        f"lower {fields[0]}"
        if len(fields) == 1
        else f"lower {', '.join(fields[:-1])} or {fields[-1]}"
    )
    check_fits(training + evaluating, device, what, hint, fields=fields)


def check_acting_memory(
    config: RunConfig, env_id: str, envs: int, device: torch.device | str, option: str
) -> None:
    """Refuse to play ``envs`` environments at once with ``config``'s agent if it cannot fit;
    ``option``: the argument that asked for them (``episodes``)."""
    from envs.batched import TENSOR_CARTPOLES, env_sizes

    obs_dim, num_actions = env_sizes(env_id)
    _check_observation_size(config, env_id, obs_dim, num_actions, device)
    check_fits(
        acting_bytes(config, obs_dim, num_actions, envs, env_id in TENSOR_CARTPOLES),
        device,
        f"playing {envs:,} episodes at once with {config.agent.agent}",
        f"lower {option}",
        fields=(option,),
    )


def check_policy_memory(
    policy: Any, env_id: str, envs: int, device: torch.device | str, option: str
) -> None:
    """:func:`check_acting_memory` for a policy already in memory (``evaluate``, which the
    Python API, the tools and training's evaluations call): :func:`acting_bytes`' estimate, with
    the widths read from the policy (its state, its linear layers) instead of a config."""
    from envs.batched import TENSOR_CARTPOLES

    state = policy.initial_state(1, "cpu")
    h = state[0] if isinstance(state, tuple) and state else None
    recurrent = h.numel() if isinstance(h, torch.Tensor) else 0  # units over layers and cores
    module = policy if isinstance(policy, torch.nn.Module) else getattr(policy, "model", None)
    module = getattr(module, "policy", module)  # an SB3 model's network
    heads = 0
    if isinstance(module, torch.nn.Module):
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                heads += m.out_features
            elif isinstance(m, torch.nn.RNNBase) and h is None:  # SB3 keeps its state itself
                recurrent += m.hidden_size * m.num_layers
    obs_dim = int(getattr(policy, "obs_dim", 1))
    num_actions = int(getattr(policy, "num_actions", 1))
    per_env = 4 * recurrent + 2 * heads + 3 * obs_dim + 2 * num_actions + 64  # floats
    overhead = TENSOR_ENV_BYTES if env_id in TENSOR_CARTPOLES else GYM_ENV_BYTES
    check_fits(
        envs * (FLOAT * per_env + overhead),
        device,
        f"playing {envs:,} episodes at once",
        f"lower {option}",
        fields=(option,),
    )
