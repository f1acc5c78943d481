"""How far back does the gradient reach? Gradient norms through a core's recurrence.

For a loss on the core's output at the last step ``T`` of a rollout, the norm of its gradient
with respect to the state ``k`` steps earlier, ``k = 1..T``: autograd's numbers, taken by running
the core one step at a time and keeping every state in the graph (``retain_grad``). For an LSTM
the state is ``h`` and ``c`` together and the gradient comes from its hand-written BPTT.

Plus a cheap look at gradient clipping: short training runs of one agent with and without
``max_grad_norm``, recording the gradient norms the optimizer saw. The figure and the
``rlrnn gradflow`` report: :mod:`rlrnn.tools.gradflow.report`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from agents import LSTM, ActorCritic, Core, RecurrentState, make_core
from agents.registry import AGENTS, AgentError
from envs import make_batched_env
from rlrnn.errors import UsageError
from rlrnn.learning.acting import Step, step_policy
from rlrnn.learning.evaluation import evaluate
from rlrnn.learning.hyperparams import default_config
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.loading import build_agent


@dataclass(frozen=True)
class FlowCurve:
    label: str
    norms: np.ndarray  # (T,): mean over the batch of |dL/d state_{T-k}|, index k - 1

    def to_dict(self) -> dict[str, Any]:
        T = len(self.norms)
        return {
            "label": self.label,
            "norms": [float(v) for v in self.norms],
            # Geometric mean change of the norm per step back.
            "per_step_factor": float((self.norms[-1] / self.norms[0]) ** (1 / max(T - 1, 1))),
        }


@torch.no_grad()
def rollout_observations(
    env_id: str,
    batch: int,
    steps: int,
    seed: int = 0,
    driver: ActorCritic | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Observations ``(steps, batch, D)`` of real rollouts, acted by ``driver`` (sampling from
    its policy) or, without one, by uniformly random actions. Episodes that end restart."""
    env = make_batched_env(env_id, batch, device)
    observations = []

    def keep(step: Step) -> bool:
        observations.append(step.obs)
        return True

    bounds = (env.action_low, env.action_high) if env.continuous else None
    policy = driver if driver is not None else RandomActions(env.num_actions, seed, bounds)
    try:
        step_policy(policy, env, keep, seed, deterministic=False, max_steps=steps)
    finally:
        env.close()
    return torch.stack(observations)


class RandomActions:
    """A policy without state that picks uniformly random actions (seeded, on the CPU): one of
    ``num_actions``, or with Box ``bounds`` (low, high) a vector of ``num_actions`` in them."""

    def __init__(self, num_actions: int, seed: int = 0, bounds: tuple | None = None) -> None:
        self.num_actions, self.bounds = num_actions, bounds
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def initial_state(self, batch_size: int, device: torch.device | str) -> None:
        return None

    def act(
        self, obs: Tensor, state: None, episode_starts: Tensor, deterministic: bool
    ) -> tuple[Tensor, None]:
        if self.bounds is not None:
            low, high = (torch.as_tensor(b, dtype=torch.float32) for b in self.bounds)
            unit = torch.rand(obs.shape[0], self.num_actions, generator=self.generator)
            return (low + (high - low) * unit).to(obs.device), None
        actions = torch.randint(self.num_actions, (obs.shape[0],), generator=self.generator)
        return actions.to(obs.device), None


def standardise(x: Tensor) -> Tensor:
    """Zero mean, unit variance per input (what a trained agent's observation norm does)."""
    flat = x.reshape(-1, x.shape[-1])
    return (x - flat.mean(0)) / flat.std(0).clamp_min(1e-8)


def gradient_norms(core: Core, inputs: Tensor, seed: int = 0) -> np.ndarray:
    """``(T,)``: at index ``k - 1`` the batch mean of ``|dL/ds_{T-k}|`` for ``inputs (T, B, D)``.

    ``s_t`` is the core's whole state after ``t`` inputs (``s_0`` the zero initial state) and
    ``L = sum_b u_b . y_T[b]`` with ``y_T`` the output at the last step and ``u_b`` fixed random
    unit vectors. Episode starts are never signalled, so no reset cuts the path.
    """
    if not core.is_recurrent:
        raise UsageError("a feedforward core has no recurrent state to send gradients through")
    T, B, _ = inputs.shape
    generator = torch.Generator(device="cpu").manual_seed(seed)
    direction = torch.randn(B, core.output_size, generator=generator).to(inputs.device)
    direction = direction / direction.norm(dim=1, keepdim=True)
    no_starts = torch.zeros(1, B, device=inputs.device)
    initial = core.initial_state(B, inputs.device)
    state = RecurrentState(initial.h.requires_grad_(), initial.c.requires_grad_())
    states = [state]  # states[t] = s_t
    with torch.enable_grad():
        for t in range(T):
            output, state = core(inputs[t : t + 1], state, no_starts)
            if t < T - 1:
                state.h.retain_grad()
                state.c.retain_grad()
                states.append(state)
        (output[0] * direction).sum().backward()

    def per_sample_norm(s: RecurrentState) -> Tensor:
        total = torch.zeros(B, device=inputs.device)
        for g in (s.h.grad, s.c.grad):
            if g is not None and g.numel():
                total += g.square().sum(dim=(0, 2))  # (L, B, H) -> (B,)
        return total.sqrt()

    norms = torch.stack([per_sample_norm(states[T - k]).mean() for k in range(1, T + 1)])
    return norms.detach().cpu().numpy().astype(np.float64)


def fresh_core(
    name: str, input_size: int, hidden_size: int, num_layers: int, seed: int = 0
) -> Core:
    """A newly initialised core of agent ``name`` (a UsageError if it has no recurrent state)."""
    torch.manual_seed(seed)
    try:
        core = make_core(name, input_size, hidden_size, num_layers)
    except AgentError as e:
        raise UsageError(str(e)) from None
    if not core.is_recurrent:
        recurrent = [n for n in AGENTS if make_core(n, 1, 1, 1).is_recurrent]
        raise UsageError(
            f"agent {name!r} has no recurrent state; choose from {', '.join(recurrent)}"
        )
    return core


def set_forget_bias(core: Core, bias: float) -> Core:
    """``core`` (one of rlrnn's LSTMs) with every layer's forget-gate bias set to ``bias``."""
    if not isinstance(core, LSTM):
        raise UsageError(f"a forget-gate bias needs an lstm core, not {type(core).__name__}")
    core.set_forget_bias(bias)
    return core


def gradient_flow(
    cores: Sequence[tuple[str, Core, nn.Module | None]],
    env_id: str,
    steps: int = 64,
    batch: int = 64,
    seed: int = 0,
    driver: ActorCritic | None = None,
    device: torch.device | str = "cpu",
) -> list[FlowCurve]:
    """One curve per ``(label, core, obs_norm)``; every core reads the same rollouts.

    A core with an ``obs_norm`` (a trained agent's) reads observations through it; one without
    reads them standardised over the batch.
    """
    obs = rollout_observations(env_id, batch, steps, seed, driver, device)
    curves = []
    for label, core, obs_norm in cores:
        if core.input_size != obs.shape[-1]:
            raise UsageError(
                f"{label} reads {core.input_size} inputs; {env_id} observations have"
                f" {obs.shape[-1]}"
            )
        with torch.no_grad():
            inputs = obs_norm(obs) if obs_norm is not None else standardise(obs)
        curves.append(FlowCurve(label, gradient_norms(core.to(device), inputs, seed)))
    return curves


# ---------------------------------------------------------------- gradient clipping


@dataclass
class ClipRun:
    agent: str
    max_grad_norm: float
    seed: int
    pre_clip: list[float] = field(default_factory=list)  # mean per iteration, before clipping
    applied: list[float] = field(default_factory=list)  # mean per iteration, at optimizer.step
    clipped_fraction: float = 0.0  # of all updates
    eval_mean: float = 0.0
    eval_std: float = 0.0
    env_steps: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "max_grad_norm": self.max_grad_norm,
            "seed": self.seed,
            "env_steps": self.env_steps,
            "seconds": round(self.seconds, 2),
            "eval_mean_return": self.eval_mean,
            "eval_std_return": self.eval_std,
            "median_pre_clip_norm": float(np.median(self.pre_clip)),
            "max_pre_clip_norm": float(np.max(self.pre_clip)),
            "clipped_fraction": self.clipped_fraction,
        }


def _grad_norm(parameters: Sequence[Tensor]) -> float:
    grads = [p.grad.detach().flatten() for p in parameters if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0


def clipping_run(
    agent: str,
    max_grad_norm: float,
    seed: int,
    total_timesteps: int,
    env_id: str = "PositionOnlyCartPole-v1",
    eval_episodes: int = 20,
    device: torch.device | str = "cpu",
) -> ClipRun:
    """A short PPO run of ``agent`` (one of rlrnn's, its tuned defaults otherwise) and its
    gradient norms.

    The norm the optimizer applies is read by a step pre-hook; the norm before clipping is the
    one ``clip_grad_norm_`` reports (without clipping the two are the same).
    """
    base = default_config(agent, env_id)
    ppo_config = replace(
        base.ppo,
        total_timesteps=max(total_timesteps, base.ppo.batch_size),
        max_grad_norm=max_grad_norm,
    )
    config = replace(base, seed=seed, env_id=env_id, eval_interval=0, ppo=ppo_config)
    torch.manual_seed(seed)
    env = make_batched_env(env_id, config.ppo.num_envs, device)
    policy = build_agent(config, env.obs_dim, env.num_actions, env.continuous).to(device)
    ppo = PPOLearner(policy, env, config.ppo, seed)
    parameters = list(policy.parameters())
    applied: list[float] = []
    ppo.optimizer.register_step_pre_hook(lambda *_: applied.append(_grad_norm(parameters)))
    run = ClipRun(agent, max_grad_norm, seed)
    clipped = updates = 0
    start = time.perf_counter()
    for _ in range(config.ppo.num_iterations):
        applied.clear()
        stats, _ = ppo.iterate()
        run.applied.append(float(np.mean(applied)))
        run.pre_clip.append(float(stats["grad_norm"]) if max_grad_norm else run.applied[-1])
        updates += len(applied)
        if max_grad_norm:
            clipped += sum(a >= max_grad_norm * (1 - 1e-3) for a in applied)
    run.seconds = time.perf_counter() - start
    run.env_steps = ppo.env_steps
    run.clipped_fraction = clipped / max(updates, 1)
    result = evaluate(policy, env_id, eval_episodes, device=device)
    run.eval_mean, run.eval_std = result.mean, result.std
    return run


def clipping_runs(
    agent: str = "rnn",
    max_grad_norms: Sequence[float] = (0.0, 0.5),
    total_timesteps: int = 32_768,
    seeds: Sequence[int] = (0,),
    env_id: str = "PositionOnlyCartPole-v1",
    eval_episodes: int = 20,
    device: torch.device | str = "cpu",
) -> list[ClipRun]:
    """:func:`clipping_run` for every seed and clip value (0 disables clipping)."""
    return [
        clipping_run(agent, clip, seed, total_timesteps, env_id, eval_episodes, device)
        for seed in seeds
        for clip in max_grad_norms
    ]
