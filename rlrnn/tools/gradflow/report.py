"""The gradient-flow figure and the ``rlrnn gradflow`` report: trained runs' cores and fresh
ones measured on the same rollouts (:mod:`rlrnn.tools.gradflow.gradflow`), the clipping runs beside
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents import Core
from envs import make_batched_env
from rlrnn.errors import UsageError
from rlrnn.files import check_output_path, save_figure
from rlrnn.learning.config import RunConfig
from rlrnn.learning.memory import check_fits
from rlrnn.learning.threads import torch_threads
from rlrnn.runs.checkpoint import checkpoint_path
from rlrnn.runs.loading import load_actor_critic
from rlrnn.tools.gradflow.gradflow import (
    ClipRun,
    FlowCurve,
    clipping_runs,
    fresh_core,
    gradient_flow,
    set_forget_bias,
)


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


def gradflow_runs(
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
    a figure and a report. ``cores=None`` means rnn, gru, mingru and lstm when no run is given;
    ``env_id=None``: the runs' env, else PositionOnlyCartPole-v1; ``clip_steps=0`` skips the
    clipping runs. The sizes are checked by the command. It runs on the first run's
    ``torch_threads`` (the default config's without runs, as the clipping runs train;
    :mod:`rlrnn.learning.threads`) and leaves torch's setting as it found it."""
    check_output_path(out, (".png",), "figure")
    threads = RunConfig().torch_threads
    if cores is None:
        cores = () if runs else ("rnn", "gru", "mingru", "lstm")
    entries: list[tuple[str, Core, nn.Module | None]] = []
    driver = None
    given = env_id
    for run in runs:
        agent, config = load_actor_critic(run, checkpoint, device, given)
        if not agent.is_recurrent:
            raise UsageError(f"{run} is a {config.agent.agent} agent: it has no recurrent state")
        if given is None and entries and config.env_id != env_id:
            raise UsageError(f"{run} was trained on {config.env_id}, not {env_id}")
        env_id = given or config.env_id
        if driver is None:
            driver, threads = agent, config.torch_threads
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
    with torch_threads(threads):
        curves = gradient_flow(entries, env_id, steps, batch, seed, driver, device)
        clip = []
        if clip_steps:
            clip = clipping_runs(
                clip_agent, clip_norms, clip_steps, clip_seeds, env_id=env_id, device=device
            )
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
