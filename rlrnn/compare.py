"""``rlrnn compare``: several agents over several seeds on one env, judged the same way.

Each (agent, seed) trains into ``<out>/runs/<agent>-s<seed>/`` with the agent's tuned defaults
(:mod:`rlrnn.hyperparams`), in worker processes side by side (:mod:`rlrnn.workers`: a Ctrl-C or
SIGTERM stops them all cleanly); a finished run whose config matches is re-used and a stopped one
resumed, so re-running a comparison only trains what is missing. A run folder that stopped before
its first checkpoint is cleared of the files rlrnn wrote there, only if rlrnn's marker shows it
made the folder, and saying so (:mod:`rlrnn.rundir`). Every run's final and best checkpoints are
then evaluated on the same ``episodes`` fresh episodes, and the report folder gets
``learning_curves.png``, ``results.csv``, ``results.md``, ``report.json`` and ``configs/``.

Statistics across seeds: the mean with a 95% percentile-bootstrap confidence interval over seeds,
and the interquartile mean (IQM) of all final-evaluation episodes pooled over seeds.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import math
import os
import platform
import signal
import statistics
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rlrnn.checkpoint import load_checkpoint
from rlrnn.config import AGENT_NAMES, SB3_AGENTS, RunConfig, config_differences
from rlrnn.errors import Interrupted, UsageError
from rlrnn.evaluation import evaluate
from rlrnn.files import (
    atomic_write_text,
    check_can_create,
    make_writable_dir,
    read_json,
    save_figure,
)
from rlrnn.hyperparams import default_config
from rlrnn.rundir import RunLock, claim_run_dir, clear_run, made_by_rlrnn, rlrnn_files
from rlrnn.stability import pooled_stays_solved, stability
from rlrnn.training import LAST, train
from rlrnn.workers import Stopped, run_tasks

DEFAULT_AGENTS = ("mlp", "framestack", "lstm")
FULL_AGENTS = AGENT_NAMES
EVAL_FILE = "compare_eval.json"


@dataclass(frozen=True)
class RunSpec:
    """One (agent, seed) run of a comparison."""

    config: RunConfig
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.config.agent.agent} s{self.config.seed}"


def plan_runs(
    agents: list[str],
    seeds: list[int],
    env_id: str,
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
    frame_stack: int | None = None,
) -> list[RunSpec]:
    """The runs of a comparison: each agent's tuned config with ``overrides`` (dotted keys such
    as ``"ppo.total_timesteps"``) for each seed; ``frame_stack`` sets the framestack agent's k."""
    unknown = [a for a in agents if a not in AGENT_NAMES]
    if unknown:
        raise UsageError(f"unknown agent {unknown[0]!r}; choose from {', '.join(AGENT_NAMES)}")
    if not seeds:
        raise UsageError("a comparison needs at least one seed")
    if len(set(agents)) != len(agents):
        raise UsageError("each agent may appear only once in --agents")
    if frame_stack is not None and frame_stack < 1:
        raise UsageError(f"frame_stack (k) must be >= 1, got {frame_stack}")
    specs = []
    for agent in agents:
        data = default_config(agent).to_dict()
        data["env_id"] = env_id
        for key, value in (overrides or {}).items():
            section, _, name = key.rpartition(".")
            (data[section] if section else data)[name] = value
        if agent == "framestack" and frame_stack is not None:
            data["agent"]["frame_stack"] = frame_stack
        config = RunConfig.from_dict(data)
        for seed in seeds:
            specs.append(RunSpec(replace(config, seed=seed), out_dir / "runs" / f"{agent}-s{seed}"))
    return specs


def read_summary(path: Path) -> dict[str, Any]:
    """A run's ``summary.json`` with what a comparison reads from it (else a UsageError)."""
    summary = read_json(path, "move the run folder away, or delete it to train it again")

    def number(value: Any, optional: bool = False) -> bool:
        if optional and value is None:
            return True
        return isinstance(value, int | float) and not isinstance(value, bool)

    evaluations = summary.get("evaluations")
    ok = (
        isinstance(summary.get("status", "finished"), str)
        and number(summary.get("reward_threshold"), True)
        and number(summary.get("solved_at_steps"), True)
        and number(summary.get("solved_at_seconds"), True)
        and number(summary.get("steps_per_second"))
        and number(summary.get("parameters"))
        and isinstance(evaluations, list)
        and len(evaluations) > 0
        and all(
            isinstance(e, dict)
            and all(number(e.get(k)) for k in ("env_steps", "train_seconds", "mean_return"))
            for e in evaluations
        )
    )
    if not ok:
        raise UsageError(
            f"{path} is damaged (not a summary of a finished run): move the run folder away,"
            " or delete it to train it again"
        )
    return summary


def read_config(run_dir: Path) -> RunConfig:
    """The config a run folder holds (``config.json``), checked."""
    path = Path(run_dir) / "config.json"
    hint = "move the run folder away, or delete it to train it again"
    try:
        return RunConfig.from_dict(read_json(path, hint))
    except UsageError as e:
        if str(e).startswith(str(path)):
            raise
        raise UsageError(f"{path} is damaged ({e}); {hint}") from None


def existing_run(run_dir: Path, env_id: str) -> RunSpec:
    """A finished run folder (from ``rlrnn train`` or an earlier comparison) to include, read
    and checked in full now, before anything is trained or written."""
    run_dir = Path(run_dir)
    for name in ("config.json", "summary.json", "final.pt", "best.pt"):
        if not (run_dir / name).is_file():
            raise UsageError(f"{run_dir} is not a finished run folder (no {name})")
    config = read_config(run_dir)
    if config.env_id != env_id:  # the file's env is never made: only --env's is
        raise UsageError(f"run folder {run_dir} is from env {config.env_id}, not {env_id}")
    read_summary(run_dir / "summary.json")
    return RunSpec(config, run_dir)


def check_reusable(spec: RunSpec) -> None:
    """Refuse to train over a run folder that holds a run of another config."""
    if not (spec.run_dir / "config.json").is_file():
        return
    saved = read_config(spec.run_dir)
    differs = config_differences(saved.to_dict(), spec.config.to_dict())
    if differs:
        raise UsageError(
            f"{spec.run_dir} holds a run with another config (differs in {', '.join(differs)});"
            " choose another --out or delete it"
        )


def next_step(spec: RunSpec) -> str:
    """``reuse`` a finished run of the same config, ``resume`` a stopped one, ``train`` a new
    one, or ``clear`` first a run that stopped before its first checkpoint (see
    :func:`prepare_runs`)."""
    if not spec.run_dir.exists():
        return "train"
    check_reusable(spec)
    summary = spec.run_dir / "summary.json"
    status = read_json(summary).get("status", "finished") if summary.is_file() else ""
    if status == "finished":
        read_summary(summary)
        return "reuse"
    if (spec.run_dir / LAST).is_file() and spec.config.agent.agent not in SB3_AGENTS:
        return "resume"
    return "clear" if rlrnn_files(spec.run_dir) else "train"


def prepare_runs(specs: list[RunSpec]) -> None:
    """Before any training: check every existing run folder (readable files, not in use) and
    clear the runs that stopped before their first checkpoint, saying what was removed. A run
    folder rlrnn cannot prove it made is refused before anything is removed."""
    steps = [next_step(spec) for spec in specs]
    for spec, step in zip(specs, steps, strict=True):
        if step == "clear" and not made_by_rlrnn(spec.run_dir):
            clear_run(spec.run_dir)  # raises: it explains why
    for spec, step in zip(specs, steps, strict=True):
        if not spec.run_dir.exists():
            continue
        with RunLock(spec.run_dir):  # refused now, not in a worker, if a run is in use
            if step == "clear":
                removed = clear_run(spec.run_dir)
                print(
                    f"rlrnn compare: cleared {spec.run_dir} (it stopped before its first"
                    f" checkpoint): removed {len(removed)} files rlrnn wrote there"
                    f" ({', '.join(removed[:4])}{', ...' if len(removed) > 4 else ''})",
                    file=sys.stderr,
                )


def run_one(spec: RunSpec, episodes: int, train_if_needed: bool = True) -> dict[str, Any]:
    """Train ``spec`` if needed, evaluate its final and best checkpoints; returns its record.
    The run folder is locked meanwhile (a run folder of someone else's that cannot be written
    is only read)."""
    torch.set_num_threads(spec.config.torch_threads)
    writable = train_if_needed or os.access(spec.run_dir, os.W_OK)
    if train_if_needed:
        claim_run_dir(spec.run_dir)
    with RunLock(spec.run_dir) if writable else contextlib.nullcontext():
        step = next_step(spec) if train_if_needed else "reuse"
        if step == "clear":  # prepare_runs cleared it; files appeared since
            raise UsageError(f"{spec.run_dir} changed while the comparison started; run it again")
        trained = step != "reuse"
        if trained:
            train(spec.config, spec.run_dir, show_progress=False, resume=step == "resume")
        summary = read_summary(spec.run_dir / "summary.json")
        evals = {} if trained else _cached_evaluations(spec.run_dir / EVAL_FILE, episodes)
        if not evals:
            evals = {"episodes": episodes}
            for which in ("final", "best"):
                path = spec.run_dir / f"{which}.pt"
                policy, _, _ = load_checkpoint(path, env_id=spec.config.env_id)
                evals[which] = evaluate(policy, spec.config.env_id, episodes).returns.tolist()
            if writable:
                atomic_write_text(spec.run_dir / EVAL_FILE, json.dumps(evals))
    return {
        "agent": spec.config.agent.agent,
        "seed": spec.config.seed,
        "run_dir": str(spec.run_dir),
        "trained": trained,
        "summary": summary,
        "final_returns": evals["final"],
        "best_returns": evals["best"],
    }


def _cached_evaluations(path: Path, episodes: int) -> dict[str, Any]:
    """The evaluations an earlier comparison saved, if they are of ``episodes`` episodes and
    whole ({} otherwise: they are made again)."""
    try:
        evals = read_json(path)
    except UsageError:
        return {}
    whole = all(
        isinstance(evals.get(k), list)
        and len(evals[k]) == episodes
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in evals[k])
        for k in ("final", "best")
    )
    return evals if whole and evals.get("episodes") == episodes else {}


def run_all(
    specs: list[RunSpec],
    episodes: int,
    workers: int,
    show_progress: bool = True,
    resume_command: str = "rlrnn compare",
) -> list[dict[str, Any]]:
    """Run ``specs`` on ``workers`` processes (in this one when 1); records in ``specs`` order.

    SIGINT / SIGTERM stop every run cleanly (:mod:`rlrnn.workers`) and raise
    :class:`Interrupted` saying what finished and that ``resume_command`` goes on from there.
    """
    records: dict[int, dict[str, Any]] = {}
    bar = tqdm(total=len(specs), unit="run", desc="compare", disable=not show_progress)

    def done(index: int, record: dict[str, Any]) -> None:
        records[index] = record
        s = record["summary"]
        solved = (
            f"solved at {s['solved_at_steps']:,} steps"
            if s["solved_at_steps"] is not None
            else "not solved"
        )
        reused = "" if record["trained"] else " (re-used)"
        if show_progress:
            bar.write(
                f"{specs[index].label}: {solved},"
                f" final {statistics.mean(record['final_returns']):.1f}{reused}"
            )
        bar.update()

    bar.set_postfix_str(f"running on {min(workers, len(specs))} workers")
    try:
        run_tasks(functools.partial(run_one, episodes=episodes), specs, workers, done)
    except Stopped as e:
        bar.close()

        def labels(indices: list[int]) -> str:
            return ", ".join(specs[i].label for i in sorted(indices)) or "none"

        raise Interrupted(
            f"stopped by {signal.Signals(e.signal_number).name}: {len(e.finished)} of"
            f" {len(specs)} runs finished ({labels(e.finished)}); stopped: {labels(e.stopped)}"
            f" (rlrnn's runs keep their last.pt); not started: {labels(e.not_started)}; no"
            f" report written. Resume: {resume_command}",
            e.signal_number,
        ) from None
    bar.close()
    return [records[i] for i in range(len(specs))]


# ---------------------------------------------------------------- statistics


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


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of ``values``."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = len(values)
    cut = n // 4
    return float(values[cut : n - cut].mean()) if n - 2 * cut > 0 else float(values.mean())


@dataclass(frozen=True)
class AgentResult:
    """One row of the results table."""

    agent: str
    seeds: int
    final_mean: float
    final_ci_low: float
    final_ci_high: float
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
        final_ci_low=float(low[0]),
        final_ci_high=float(high[0]),
        final_iqm=iqm(finals),
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


def by_agent(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["agent"], []).append(r)
    return groups


# ---------------------------------------------------------------- report


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
        f"| agent | seeds | final return, mean [95% CI] | IQM | best.pt return"
        f" | success (best.pt >= {th}) | solved in training | median steps to solve"
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
            f"| {r.agent} | {r.seeds} | {r.final_mean:.1f} [{r.final_ci_low:.1f},"
            f" {r.final_ci_high:.1f}] | {r.final_iqm:.1f} | {r.best_mean:.1f} | "
            + " | ".join(solved)
            + f" | {r.steps_per_second:,.0f} | {r.parameters:,} |"
        )
    lines += [
        "",
        "Final return: the final weights (final.pt), deterministic actions; the 95% CI is a"
        " percentile bootstrap over seeds; IQM pools all episodes of all seeds. best.pt: the"
        " weights of the best periodic evaluation. Solved in training: a periodic evaluation"
        f" mean reached {th}; steps and seconds to solve are medians over those seeds"
        " (seconds are training time, evaluations excluded). Stays solved: the share of"
        " periodic evaluations after a seed's first solve that stayed solved, pooled over"
        " seeds, and the worst of them."
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


def plot_learning_curves(
    groups: dict[str, list[dict[str, Any]]], env_id: str, threshold: float | None, path: Path
) -> None:
    """Evaluation return vs env steps and vs training seconds: mean and 95% bootstrap band."""
    from rlrnn.plots import plt

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
            mean, low, high = bootstrap_ci(curves(records, key, grid))
            ax.plot(grid, mean, color=color, label=f"{agent} ({len(records)} seeds)")
            ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
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
    configs = make_writable_dir(out_dir / "configs", "report folder")
    for r in records:
        config = (Path(r["run_dir"]) / "config.json").read_text()
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


def check_out_dir(out_dir: Path) -> Path:
    """``out_dir`` if the report (and runs) can be written there; creates nothing yet."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    return check_can_create(out_dir, "report folder")


def default_workers(runs: int) -> int:
    return max(1, min(runs, os.cpu_count() or 1))
