"""Figures written next to a run's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt

from rlrnn.files import save_figure


def plot_learning_curve(summary: dict[str, Any], path: Path) -> None:
    """Deterministic evaluation return against env steps, with the solve threshold."""
    evals = summary["evaluations"]
    steps = [e["env_steps"] for e in evals]
    mean = [e["mean_return"] for e in evals]
    std = [e["std_return"] for e in evals]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.plot(
        steps, mean, marker="o", markersize=3, label=f"{summary['agent']} (seed {summary['seed']})"
    )
    low = [m - s for m, s in zip(mean, std, strict=True)]
    high = [m + s for m, s in zip(mean, std, strict=True)]
    ax.fill_between(steps, low, high, alpha=0.2)
    if summary.get("reward_threshold") is not None:
        ax.axhline(
            summary["reward_threshold"], color="grey", linestyle="--", linewidth=1, label="solved"
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return (deterministic)")
    ax.set_title(summary["env_id"])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
