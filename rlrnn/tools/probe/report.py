"""The probe's figure and the ``rlrnn probe`` report: load runs, probe them along the same
trajectories (:mod:`rlrnn.tools.probe.probe`), plot predicted against true velocities, describe.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agents import ActorCritic
from rlrnn.errors import UsageError
from rlrnn.files import check_output_path, save_figure
from rlrnn.learning.config import RunConfig
from rlrnn.learning.memory import check_fits
from rlrnn.learning.threads import torch_threads
from rlrnn.runs.checkpoint import checkpoint_path
from rlrnn.runs.folder import RunFolder
from rlrnn.runs.loading import build_agent, load_actor_critic
from rlrnn.tools.probe.probe import ProbeResult, require_hidden_state, run_probe


def plot_probe(
    results: list[ProbeResult], labels: list[str], path: Path, title: str, max_steps: int = 200
) -> None:
    """Predicted against true velocities over the first ``max_steps`` steps of the first
    held-out episode, one panel per velocity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = results[0]
    rows = len(main.hidden)
    fig, axes = plt.subplots(
        rows, 1, figsize=(9, 1.2 + 2.1 * rows), dpi=120, sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    shown = main.example_steps < max_steps
    for k, (ax, velocity) in enumerate(zip(axes, main.hidden, strict=True)):
        ax.plot(
            main.example_steps[shown],
            main.example_true[shown, k],
            color="black",
            lw=1.8,
            label="true",
        )
        for j, (result, label) in enumerate(zip(results, labels, strict=True)):
            r2 = result.r2[velocity.key]
            ax.plot(
                result.example_steps[shown],
                result.example_predicted[shown, k],
                color=f"C{j}",
                lw=1.3,
                ls=("--", ":", "-.")[min(j, 2)],
                label=f"{label} probe (R² {r2:.3f})",
            )
        ax.set_ylabel(f"{velocity.label}\n({velocity.unit})")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes[-1].set_xlabel("step of a held-out episode")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def untrained_copy(agent: ActorCritic, config: RunConfig, seed: int = 0) -> ActorCritic:
    """The same architecture with fresh weights, reading observations through the trained
    agent's normalisation (so the two differ only in what training did to the weights)."""
    torch.manual_seed(seed)
    fresh = build_agent(config, agent.obs_dim, agent.num_actions)
    fresh.obs_norm.load_state_dict(agent.obs_norm.state_dict())
    device = next(agent.parameters()).device
    return fresh.to(device)


def probe_runs(
    run: Path,
    checkpoint: str = "best",
    episodes: int = 40,
    seed: int = 20_000,
    test_fraction: float = 0.25,
    alpha: float | None = None,
    deterministic: bool = True,
    untrained: bool = False,
    compare: Sequence[Path] = (),
    out: Path | None = None,
    device: torch.device | str = "cpu",
    env_id: str | None = None,
) -> dict[str, Any]:
    """``rlrnn probe``: probe a run (and baselines along its trajectories), plot, report;
    ``env_id`` replaces the run's own env (one with hidden velocities, of the same sizes). The
    settings are :func:`rlrnn.tools.probe.probe.run_probe`'s, checked by the command. It runs on
    the run config's ``torch_threads`` (:mod:`rlrnn.learning.threads`) and leaves torch's setting
    as it found it."""
    path = checkpoint_path(run, checkpoint)
    out = Path(out) if out is not None else path.parent / RunFolder.PROBE
    check_output_path(out, (".png",), "figure")
    if env_id is not None:
        require_hidden_state(env_id)
    given = env_id
    agent, config = load_actor_critic(run, checkpoint, device, given)
    env_id = given or config.env_id
    # Every step's features and velocities are kept (float64, a few copies while fitting), up to
    # 500 steps per episode (the cart-pole's limit, the longest), for the agent and each one
    # compared with it.
    features = sum(t.numel() for t in agent.initial_state(1)) + agent.actor_core.output_size
    check_fits(
        episodes * 500 * (features + 8) * 8 * 4 * (1 + int(untrained) + len(compare)),
        "cpu",
        f"probing {episodes:,} episodes",
        "lower --episodes",
    )
    labels = [f"{config.agent.agent} ({path})"]
    baselines = []
    if untrained:
        baselines.append(untrained_copy(agent, config, config.seed + 1))
        labels.append(f"untrained {config.agent.agent}")
    for other in compare:
        other_agent, other_config = load_actor_critic(other, checkpoint, device, given or env_id)
        if other_agent.obs_dim != agent.obs_dim or (
            given is None and other_config.env_id != env_id
        ):
            raise UsageError(f"{other} was trained on {other_config.env_id}, not {env_id}")
        baselines.append(other_agent)
        labels.append(f"{other_config.agent.agent} ({checkpoint_path(other, checkpoint)})")
    with torch_threads(config.torch_threads):  # the probed run's own setting, as it trained
        results = run_probe(
            agent,
            env_id,
            episodes=episodes,
            seed=seed,
            test_fraction=test_fraction,
            alpha=alpha,
            deterministic=deterministic,
            device=device,
            baselines=tuple(baselines),
        )
    short = [label.split(" (")[0] for label in labels]
    plot_probe(
        results,
        short,
        out,
        f"Linear probe of the {short[0]} agent's {results[0].features} on {env_id};"
        f"\nfitted on {results[0].train_episodes} episodes; R² over {results[0].test_episodes}"
        " held-out episodes, the first of them shown",
    )
    return {
        "env_id": env_id,
        "episodes": episodes,
        "seed": seed,
        "deterministic": deterministic,
        "figure": str(out),
        "probes": [
            {"label": label, **result.to_dict()}
            for label, result in zip(labels, results, strict=True)
        ],
    }


def describe_report(report: dict[str, Any]) -> str:
    """The probe report in a few lines."""
    hidden = require_hidden_state(report["env_id"])

    def r2(values: dict[str, float | None]) -> str:
        return "  ".join(
            f"{v.label} {'n/a' if values[v.key] is None else format(values[v.key], '.3f')}"
            for v in hidden
        )

    first = report["probes"][0]
    lines = [
        f"Linear probe of hidden velocities on {report['env_id']}: fitted on"
        f" {first['train_episodes']} episodes, R² on {first['test_episodes']} held-out ones.",
    ]
    for p in report["probes"]:
        lines += [
            f"{p['label']}: {p['features']}, {p['train_samples'] + p['test_samples']} steps",
            f"  R² now           {r2(p['r2'])}",
            f"  R² a step before {r2(p['r2_previous_step'])}",
        ]
    lines.append(f"Figure: {report['figure']}")
    return "\n".join(lines)
