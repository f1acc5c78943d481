"""The report of ``rlrnn compare``: statistics across seeds, the results table (CSV and
Markdown), the learning curves figure and ``report.json``.

Statistics across seeds: the mean with a 95% percentile-bootstrap confidence interval over seeds
(none for one seed: a bootstrap of one value is that value), and the interquartile mean (IQM) of
the seeds' final returns: the run is the unit, as rliable counts it
(:mod:`rlrnn.tools.common.seed_stats`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlrnn.files import atomic_write_text, check_no_link_below, make_writable_dir, save_figure
from rlrnn.runs.folder import RunFolder
from rlrnn.tools.common.seed_stats import iqm
from rlrnn.tools.common.stability import pooled_stays_solved, stability

BEST, FINAL = RunFolder.CHECKPOINTS["best"], RunFolder.CHECKPOINTS["final"]


def bootstrap_ci(
    samples: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 of ``samples`` ``(S, G)`` and its percentile-bootstrap interval.

    NaNs (a seed without a value at that point) are left out of each mean.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, samples.shape[0], size=(resamples, samples.shape[0]))
    with warnings.catch_warnings():  # all-NaN columns (no seed there yet) stay NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(samples[picks], axis=1)  # (R, S, G) -> (R, G)
        tail = (1 - confidence) / 2 * 100
        low, high = np.nanpercentile(means, [tail, 100 - tail], axis=0)
        return np.nanmean(samples, axis=0), low, high


@dataclass(frozen=True)
class AgentResult:
    """One row of the results table."""

    agent: str
    seeds: int
    final_mean: float
    final_ci_low: float | None  # None for one seed: no interval
    final_ci_high: float | None
    final_iqm: float
    best_mean: float
    success_rate: float | None  # seeds whose best checkpoint reaches the threshold
    solved_seeds: int  # seeds whose periodic evaluation reached the threshold in training
    median_steps_to_solve: float | None
    median_seconds_to_solve: float | None
    stays_solved: float | None  # periodic evaluations after the first solve still solved, pooled
    worst_after_solve: float | None  # the lowest periodic evaluation after a first solve
    steps_per_second: float
    parameters: int


def summarize(agent: str, records: list[dict[str, Any]]) -> AgentResult:
    finals = np.array([r["final_returns"] for r in records])  # (S, episodes)
    bests = np.array([r["best_returns"] for r in records])
    mean, low, high = bootstrap_ci(finals.mean(axis=1))
    summaries = [r["summary"] for r in records]
    threshold = summaries[0]["reward_threshold"]
    solved = [s for s in summaries if s["solved_at_steps"] is not None]

    def median(key: str) -> float | None:
        return statistics.median(s[key] for s in solved) if solved else None

    held = [stability(s["evaluations"], threshold) for s in summaries]
    worst = [h.worst_after_solve for h in held if h.worst_after_solve is not None]

    return AgentResult(
        agent=agent,
        seeds=len(records),
        final_mean=float(mean[0]),
        final_ci_low=float(low[0]) if len(records) > 1 else None,
        final_ci_high=float(high[0]) if len(records) > 1 else None,
        final_iqm=iqm(finals.mean(axis=1)),  # over runs, not pooled episodes
        best_mean=float(bests.mean()),
        success_rate=None if threshold is None else float((bests.mean(1) >= threshold).mean()),
        solved_seeds=len(solved),
        median_steps_to_solve=median("solved_at_steps"),
        median_seconds_to_solve=median("solved_at_seconds"),
        stays_solved=pooled_stays_solved(held),
        worst_after_solve=min(worst) if worst else None,
        steps_per_second=statistics.median(s["steps_per_second"] for s in summaries),
        parameters=summaries[0]["parameters"],
    )


def mean_and_interval(row: AgentResult) -> str:
    """``mean [low, high]``, or the mean and why there is no interval (one seed)."""
    if row.final_ci_low is None or row.final_ci_high is None:
        return f"{row.final_mean:.1f} (1 seed, no interval)"
    return f"{row.final_mean:.1f} [{row.final_ci_low:.1f}, {row.final_ci_high:.1f}]"


def by_agent(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["agent"], []).append(r)
    return groups


def results_csv(rows: list[AgentResult]) -> str:
    buffer = io.StringIO()
    names = list(AgentResult.__dataclass_fields__)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)

    def cell(value: float | int | str | None) -> str:
        if value is None:
            return ""
        return str(round(value, 4) if isinstance(value, float) else value)

    for row in rows:
        writer.writerow([cell(getattr(row, n)) for n in names])
    return buffer.getvalue()


def results_markdown(
    rows: list[AgentResult], env_id: str, episodes: int, threshold: float | None
) -> str:
    def number(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    th = "threshold" if threshold is None else f"{threshold:g}"
    lines = [
        f"# {env_id}: final return over {episodes} fresh episodes per seed",
        "",
        f"| agent | seeds | final return, mean [95% CI] | IQM | {BEST} return"
        f" | success ({BEST} >= {th}) | solved in training | median steps to solve"
        " | median seconds to solve | stays solved | worst eval after solve | steps/s"
        " | parameters |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        success = "-" if r.success_rate is None else f"{r.success_rate:.0%}"
        solved = [
            success,
            f"{r.solved_seeds}/{r.seeds}",
            number(r.median_steps_to_solve, ",.0f"),
            number(r.median_seconds_to_solve, ".1f"),
            number(r.stays_solved, ".0%"),
            number(r.worst_after_solve, ".0f"),
        ]
        if threshold is None:  # nothing to solve: not applicable rather than "none"
            solved = ["–"] * len(solved)
        lines.append(
            f"| {r.agent} | {r.seeds} | {mean_and_interval(r)} | {r.final_iqm:.1f}"
            f" | {r.best_mean:.1f} | "
            + " | ".join(solved)
            + f" | {r.steps_per_second:,.0f} | {r.parameters:,} |"
        )
    lines += [
        "",
        f"Final return: the final weights ({FINAL}), deterministic actions; the 95% CI is a"
        " percentile bootstrap over seeds (one seed has none); IQM: the interquartile mean of"
        f" the seeds' final returns. {BEST}: the weights of the best periodic evaluation. Solved"
        f" in training: a periodic evaluation mean reached {th}; steps and seconds to solve are"
        " medians over those seeds (seconds are training time, evaluations excluded). Stays"
        " solved: the share of periodic evaluations after a seed's first solve that stayed"
        " solved, pooled over seeds, and the worst of them."
        + (
            " –: the env has no reward threshold, so nothing to solve." if threshold is None else ""
        ),
    ]
    return "\n".join(lines) + "\n"


def curves(records: list[dict[str, Any]], key: str, grid: np.ndarray) -> np.ndarray:
    """Each seed's evaluation returns on ``grid`` of ``key`` (env_steps or train_seconds):
    linear between evaluations, NaN before the first, held after the last."""
    rows = []
    for r in records:
        evals = r["summary"]["evaluations"]
        x = np.array([e[key] for e in evals], dtype=np.float64)
        y = np.array([e["mean_return"] for e in evals], dtype=np.float64)
        rows.append(np.interp(grid, x, y, left=np.nan, right=y[-1]))
    return np.array(rows)  # (S, G)


# Up to this many evaluations a curve marks each one (fewer points than this stay readable).
MARKED_POINTS = 30


def plot_curve(ax: Any, grid: np.ndarray, samples: np.ndarray, color: Any, label: str) -> None:
    """The mean of ``samples`` ``(S, G)`` over seeds on ``grid`` with its 95% bootstrap band,
    each point marked when there are few; a single point (one evaluation per run) as a marker
    with the interval as its error bar, since a line through one point draws nothing."""
    mean, low, high = bootstrap_ci(samples)
    shown = np.isfinite(mean)
    if len(np.unique(grid[shown])) <= 1:
        first = np.flatnonzero(shown)[:1]
        spread = np.stack([mean[first] - low[first], high[first] - mean[first]])  # (2, 1)
        ax.errorbar(
            grid[first],
            mean[first],
            yerr=np.maximum(spread, 0.0),
            fmt="o",
            color=color,
            capsize=4,
            markersize=6,
            label=label,
        )
        return
    marker = "o" if len(np.unique(grid[shown])) <= MARKED_POINTS else None
    ax.plot(grid, mean, color=color, marker=marker, markersize=3.5, label=label)
    ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)


def plot_learning_curves(
    groups: dict[str, list[dict[str, Any]]], env_id: str, threshold: float | None, path: Path
) -> None:
    """Evaluation return vs env steps and vs training seconds: mean and 95% bootstrap band."""
    from rlrnn.runs.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=120)
    colors = plt.get_cmap("tab10").colors
    for color, (agent, records) in zip(colors, groups.items(), strict=False):
        steps = sorted({e["env_steps"] for r in records for e in r["summary"]["evaluations"]})
        end = max(r["summary"]["evaluations"][-1]["train_seconds"] for r in records)
        start = min(r["summary"]["evaluations"][0]["train_seconds"] for r in records)
        seconds = np.geomspace(max(start, 1e-3), max(end, 2e-3), 200)
        for ax, key, grid in (
            (axes[0], "env_steps", np.array(steps, dtype=np.float64)),
            (axes[1], "train_seconds", seconds),
        ):
            seeds = f"{len(records)} seed{'s' * (len(records) != 1)}"
            plot_curve(ax, grid, curves(records, key, grid), color, f"{agent} ({seeds})")
    for ax, label in zip(axes, ("env steps", "training seconds (log scale)"), strict=True):
        if threshold is not None:
            ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
            ax.annotate(
                f"solved ({threshold:g})",
                (1, threshold),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                color="grey",
                fontsize=8,
            )
        ax.set_xlabel(label)
        ax.set_ylabel("evaluation return (deterministic)")
        ax.grid(alpha=0.3)
    axes[1].set_xscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9)
    if all(len(records) == 1 for records in groups.values()):
        fig.suptitle(f"{env_id}: one seed per agent (no confidence band)")
    else:
        fig.suptitle(f"{env_id}: mean over seeds, 95% bootstrap confidence band")
    fig.tight_layout(rect=(0, 0.06 * math.ceil(len(labels) / 4), 1, 1))
    save_figure(fig, path)
    plt.close(fig)


def machine() -> str:
    return (
        f"{platform.machine()} {platform.processor() or platform.system()},"
        f" {os.cpu_count()} CPUs, torch {torch.__version__}, Python {platform.python_version()}"
    )


def write_report(
    out_dir: Path, records: list[dict[str, Any]], env_id: str, episodes: int, command: str
) -> list[AgentResult]:
    """Write the report files into ``out_dir``; returns the table rows."""
    groups = by_agent(records)
    rows = [summarize(agent, recs) for agent, recs in groups.items()]
    threshold = records[0]["summary"]["reward_threshold"]
    check_no_link_below(out_dir, out_dir / "configs", "report folder")  # else writes land outside
    configs = make_writable_dir(out_dir / "configs", "report folder")
    for r in records:
        config = RunFolder(r["run_dir"]).config.read_text()
        atomic_write_text(configs / f"{r['agent']}-s{r['seed']}.json", config)
    plot_learning_curves(groups, env_id, threshold, out_dir / "learning_curves.png")
    atomic_write_text(out_dir / "results.csv", results_csv(rows))
    markdown = results_markdown(rows, env_id, episodes, threshold)
    footer = f"\nCommand: `{command}`  \nMachine: {machine()}\n"
    atomic_write_text(out_dir / "results.md", markdown + footer)
    report = {
        "env_id": env_id,
        "episodes": episodes,
        "command": command,
        "machine": machine(),
        "results": [r.__dict__ for r in rows],
        "runs": [{k: v for k, v in r.items() if k != "summary"} for r in records],
    }
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=1))
    return rows
