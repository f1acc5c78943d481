"""How far back does the gradient reach? Gradient norms through a core's recurrence.

For a loss on the core's output at the last step ``T`` of a rollout, the norm of its gradient
with respect to the state ``k`` steps earlier, ``k = 1..T``: autograd's numbers, taken by running
the core one step at a time and keeping every state in the graph (``retain_grad``). For an LSTM
the state is ``h`` and ``c`` together and the gradient comes from its hand-written BPTT.

Plus a cheap look at gradient clipping: short training runs of one agent with and without
``max_grad_norm``, recording the gradient norms the optimizer saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from agents import LSTM, ActorCritic, Core, RecurrentState, make_core
from agents.registry import AGENTS, AgentError
from envs import make_batched_env
from rlrnn.core.checkpoint import build_agent, checkpoint_path
from rlrnn.core.evaluation import evaluate
from rlrnn.core.hyperparams import default_config
from rlrnn.core.ppo import RecurrentPPO
from rlrnn.errors import UsageError
from rlrnn.files import check_output_path, save_figure
from rlrnn.tools.probe import load_agent


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
    generator = torch.Generator(device="cpu").manual_seed(seed)
    obs = env.reset(seed)
    starts = torch.ones(batch, device=device)
    state = driver.initial_state(batch, device) if driver is not None else None
    observations = []
    for _ in range(steps):
        observations.append(obs)
        if driver is not None:
            actions, state = driver.act(obs, state, starts, deterministic=False)
        else:
            actions = torch.randint(env.num_actions, (batch,), generator=generator).to(device)
        result = env.step(actions)
        obs, starts = result.obs, (result.terminated | result.truncated).float()
    close = getattr(env, "close", None)
    if close is not None:
        close()
    return torch.stack(observations)


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
    if core.state_layers == 0:
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
    if core.state_layers == 0:
        recurrent = [n for n in AGENTS if make_core(n, 1, 1, 1).state_layers > 0]
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
    if steps < 1:
        raise UsageError(f"steps must be >= 1, got {steps}")
    if batch < 1:
        raise UsageError(f"batch must be >= 1, got {batch}")
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
    """A short PPO run of ``agent`` (its tuned defaults otherwise) and its gradient norms.

    The norm the optimizer applies is read by a step pre-hook; the norm before clipping is the
    one ``clip_grad_norm_`` reports (without clipping the two are the same).
    """
    import time
    from dataclasses import replace

    if agent not in AGENTS:
        raise UsageError(
            f"the clipping runs train rlrnn agents ({', '.join(AGENTS)}), not {agent!r}"
        )
    base = default_config(agent)
    ppo_config = replace(
        base.ppo,
        total_timesteps=max(total_timesteps, base.ppo.batch_size),
        max_grad_norm=max_grad_norm,
    )
    config = replace(base, seed=seed, env_id=env_id, eval_interval=0, ppo=ppo_config)
    torch.manual_seed(seed)
    env = make_batched_env(env_id, config.ppo.num_envs, device)
    policy = build_agent(config, env.obs_dim, env.num_actions).to(device)
    ppo = RecurrentPPO(policy, env, config.ppo, seed)
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
    if total_timesteps < 1:
        raise UsageError(f"clip steps must be >= 1, got {total_timesteps}")
    return [
        clipping_run(agent, clip, seed, total_timesteps, env_id, eval_episodes, device)
        for seed in seeds
        for clip in max_grad_norms
    ]


# ---------------------------------------------------------------- figure


def _style(label: str, index: int, names: list[str]) -> dict[str, Any]:
    """One colour per core type (trained solid, fresh dashed); extra variants get their own."""
    name = label.split()[0]
    if "forget bias" in label or name not in names:
        return {"color": f"C{len(names) + index % 7}", "ls": "-."}
    return {"color": f"C{names.index(name)}", "ls": "-" if "trained" in label else "--"}


def plot_gradient_flow(
    curves: Sequence[FlowCurve], path: Path, clip_runs: Sequence[ClipRun] = (), title: str = ""
) -> None:
    """Gradient norm against steps back (log y), and the clipping runs beside it if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if clip_runs else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.4 * panels, 4.4), dpi=120, squeeze=False)
    ax = axes[0, 0]
    names = list(dict.fromkeys(c.label.split()[0] for c in curves if "forget bias" not in c.label))
    for k, curve in enumerate(curves):
        steps_back = np.arange(1, len(curve.norms) + 1)
        ax.plot(steps_back, curve.norms, lw=1.6, label=curve.label, **_style(curve.label, k, names))
    ax.set_yscale("log")
    ax.set_xlabel("k (steps back from the loss)")
    ax.set_ylabel("mean |dL / d state$_{T-k}$|")
    ax.set_title(title or "gradient reaching the state k steps back", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if clip_runs:
        ax = axes[0, 1]
        for j, clip in enumerate(sorted({r.max_grad_norm for r in clip_runs})):
            runs = [r for r in clip_runs if r.max_grad_norm == clip]
            norms = np.array([r.pre_clip for r in runs])  # (seeds, iterations)
            iterations = np.arange(1, norms.shape[1] + 1)
            returns = [r.eval_mean for r in runs]
            name = f"max_grad_norm {clip:g}" if clip else "no clipping"
            if clip:
                clipped = np.mean([r.clipped_fraction for r in runs])
                name += f", {clipped:.0%} of updates clipped"
            name += f"\nfinal return {np.mean(returns):.0f} (seeds: "
            name += ", ".join(f"{v:.0f}" for v in returns) + ")"
            ax.plot(iterations, norms.mean(0), color=f"C{j}", lw=1.6, label=name)
            ax.fill_between(iterations, norms.min(0), norms.max(0), color=f"C{j}", alpha=0.15)
            if clip:
                ax.axhline(clip, color=f"C{j}", ls="--", lw=0.9)
        ax.set_xlabel("PPO iteration")
        ax.set_ylabel("gradient norm before clipping\n(mean per iteration; band: min-max of seeds)")
        ax.set_title(
            f"{clip_runs[0].agent} trained {clip_runs[0].env_steps:,} env steps,"
            f" {len({r.seed for r in clip_runs})} seeds, with and without clipping",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------- command


def gradflow_command(
    runs: Sequence[Path] = (),
    checkpoint: str = "best",
    cores: Sequence[str] | None = None,
    hidden_size: int = 32,
    num_layers: int = 1,
    forget_biases: Sequence[float] = (),
    steps: int = 64,
    batch: int = 64,
    seed: int = 0,
    env_id: str | None = None,
    clip_steps: int = 32_768,
    clip_seeds: Sequence[int] = (0, 1, 2),
    clip_norms: Sequence[float] = (0.0, 0.5),
    clip_agent: str = "rnn",
    out: Path = Path("gradflow.png"),
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """``rlrnn gradflow``: curves for trained runs' cores and fresh ones, the clipping runs,
    a figure and a report. ``cores=None`` means rnn, gru and lstm when no run is given;
    ``env_id=None``: the runs' env, else PositionOnlyCartPole-v1."""
    from rlrnn.core.memory import check_fits

    check_output_path(out, (".png",), "figure")
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)  # small nets run fastest on one thread (as training does)
    for name, value in (("steps", steps), ("batch", batch), ("hidden size", hidden_size)):
        if value < 1:
            raise UsageError(f"{name} must be >= 1, got {value}")
    if num_layers < 1:
        raise UsageError(f"num layers must be >= 1, got {num_layers}")
    if clip_steps < 0:
        raise UsageError(f"clip steps must be >= 0 (0 skips the clipping runs), got {clip_steps}")
    if clip_steps and (not clip_seeds or not clip_norms):
        raise UsageError("the clipping runs need at least one seed and one max grad norm")
    if any(c < 0 for c in clip_norms):
        raise UsageError(f"max grad norms must be >= 0, got {list(clip_norms)}")
    if clip_steps and clip_agent not in AGENTS:
        raise UsageError(
            f"the clipping runs train rlrnn agents ({', '.join(AGENTS)}), not {clip_agent!r}"
        )
    if cores is None:
        cores = () if runs else ("rnn", "gru", "lstm")
    entries: list[tuple[str, Core, nn.Module | None]] = []
    driver = None
    given = env_id
    for run in runs:
        agent, config = load_agent(run, checkpoint, device, given)
        if agent.actor_core.state_layers == 0:
            raise UsageError(f"{run} is a {config.agent.agent} agent: it has no recurrent state")
        if given is None and entries and config.env_id != env_id:
            raise UsageError(f"{run} was trained on {config.env_id}, not {env_id}")
        env_id = given or config.env_id
        driver = driver or agent
        name = checkpoint_path(run, checkpoint)
        label = f"{config.agent.agent} trained ({name.parent.name or name.name})"
        entries.append((label, agent.actor_core, agent.obs_norm))
    env_id = env_id or "PositionOnlyCartPole-v1"
    obs_dim = int(make_batched_env(env_id, 1).obs_dim)
    size = f"H={hidden_size}" + (f", {num_layers} layers" if num_layers > 1 else "")
    for name in cores:
        core = fresh_core(name, obs_dim, hidden_size, num_layers, seed)
        entries.append((f"{name} fresh ({size})", core, None))
    for bias in forget_biases:
        core = set_forget_bias(fresh_core("lstm", obs_dim, hidden_size, num_layers, seed), bias)
        entries.append((f"lstm fresh ({size}, forget bias {bias:g})", core, None))
    if not entries:
        raise UsageError("nothing to measure: give runs or --cores")
    units = sum(core.hidden_size * core.num_layers for _, core, _ in entries)
    check_fits(  # autograd keeps every step's activations (gates, states) of every core
        4 * batch * steps * (16 * units + 8 * obs_dim * len(entries)),
        device,
        f"gradient flow over {batch:,} rollouts of {steps:,} steps",
        "lower --batch or --steps",
    )
    curves = gradient_flow(entries, env_id, steps, batch, seed, driver, device)
    clip = []
    if clip_steps:
        clip = clipping_runs(clip_agent, clip_norms, clip_steps, clip_seeds, env_id, device=device)
    plot_gradient_flow(
        curves,
        out,
        clip,
        f"gradient reaching the state k steps back ({batch} rollouts of {env_id})",
    )
    return {
        "env_id": env_id,
        "steps": steps,
        "batch": batch,
        "observations": "rollouts of the first run's agent (sampled actions)"
        if driver is not None
        else "rollouts with uniformly random actions",
        "figure": str(out),
        "curves": [c.to_dict() for c in curves],
        "clipping": [r.to_dict() for r in clip],
    }


def describe_report(report: dict[str, Any]) -> str:
    """The gradient-flow report in a few lines."""
    T = report["steps"]
    marks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= T]
    if T not in marks:
        marks.append(T)
    lines = [
        f"Mean |dL/d state| k steps back from a loss at step {T}, over {report['batch']}"
        f" {report['observations']} on {report['env_id']}:",
        f"  {'':34}" + "".join(f"{'k=' + str(k):>10}" for k in marks) + "  per step",
    ]
    for c in report["curves"]:
        values = "".join(f"{c['norms'][k - 1]:10.2e}" for k in marks)
        lines.append(f"  {c['label']:34}{values}  x{c['per_step_factor']:.3f}")
    if report["clipping"]:
        first = report["clipping"][0]
        lines.append(
            f"Clipping: {first['agent']} trained {first['env_steps']:,} env steps per run,"
            " gradient norm before clipping (median / max over iterations):"
        )
        for r in report["clipping"]:
            clip = f"max_grad_norm {r['max_grad_norm']:g}" if r["max_grad_norm"] else "no clipping"
            lines.append(
                f"  seed {r['seed']} {clip:18} median {r['median_pre_clip_norm']:.2f}"
                f"  max {r['max_pre_clip_norm']:.2f}  clipped {r['clipped_fraction']:4.0%}"
                f" of updates  eval return {r['eval_mean_return']:.1f}"
                f" +/- {r['eval_std_return']:.1f}"
            )
    lines.append(f"Figure: {report['figure']}")
    return "\n".join(lines)
