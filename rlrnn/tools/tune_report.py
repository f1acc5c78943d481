"""What ``rlrnn tune`` leaves in its output folder, made from the whole study (the trials of
every process and machine): ``trials.csv`` and ``trials.md`` (one row per trial),
``history.png`` and ``importance.png`` (Optuna's optimisation-history and parameter-importance
figures) and ``best.json``, the best trial's config, which ``train.py --config`` trains from."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import optuna
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

from rlrnn.core.plots import plt
from rlrnn.files import atomic_write_text, save_figure
from rlrnn.tools.tune import best_trial
from rlrnn.tools.tune_setup import OBJECTIVES, Setup

FILES = ("trials.md", "trials.csv", "history.png", "importance.png", "best.json")
RESULTS = (
    "solved_at_steps",
    "solved_at_seconds",
    "final_eval_mean",
    "stays_solved",
    "auc",
    "env_steps",
    "train_seconds",
)


def state_of(trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:
        return trial.user_attrs.get("status", "failed")  # interrupted, diverged
    return trial.state.name.lower()


def rows(study: optuna.Study, setup: Setup) -> list[dict[str, Any]]:
    """One dict per trial, in trial order (trials that never ran left out)."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if "skipped" in t.user_attrs:
            continue
        # A pruned trial's value is its last intermediate one (a return), not a score.
        value = t.value if t.state == TrialState.COMPLETE else None
        row: dict[str, Any] = {"trial": t.number, "state": state_of(t), "score": value}
        row |= {key: t.user_attrs.get(key) for key in RESULTS}
        if setup.min_stays_solved:
            constraint = t.user_attrs.get("constraint")
            row["feasible"] = None if constraint is None else constraint <= 0
        row["host"] = t.user_attrs.get("host")
        row |= {key.rpartition(".")[2]: t.params.get(key) for key in setup.space}
        out.append(row)
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_csv(table: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if table:
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table[0])
        writer.writerows([[_cell(v) for v in row.values()] for row in table])
    return buffer.getvalue()


def table_markdown(table: list[dict[str, Any]], heading: list[str]) -> str:
    lines = [*heading, ""]
    if table:
        lines.append("| " + " | ".join(table[0]) + " |")
        lines.append("|" + "---|" * len(table[0]))
        lines += ["| " + " | ".join(_cell(v) for v in row.values()) + " |" for row in table]
    return "\n".join(lines) + "\n"


def heading(study: optuna.Study, setup: Setup, best: FrozenTrial | None) -> list[str]:
    direction, measure = OBJECTIVES[setup.objective]
    lines = [
        f"# Study {study.study_name}: {setup.base.agent.agent} on {setup.base.env_id}",
        "",
        f"Objective: {setup.objective} ({measure}; {direction}d),"
        f" {setup.base.ppo.total_timesteps:,} env steps per trial, seed {setup.base.seed}.",
    ]
    if setup.objective in ("seconds", "steps"):
        whole = "the longest run so far" if setup.objective == "seconds" else "its whole run"
        lines.append(f"An unsolved run scores {setup.unsolved_penalty:g} x {whole}.")
    if setup.stays_solved_weight:
        lines.append(
            f"Stays-solved weight {setup.stays_solved_weight:g}: the score is worsened by"
            " weight x (1 - stays_solved) of itself."
        )
    if setup.min_stays_solved:
        lines.append(f"Constraint: stays_solved >= {setup.min_stays_solved:g}.")
    if best is not None:
        lines.append(f"Best: trial {best.number}, score {best.value:.4g}.")
    defaults = defaults_trial(study)
    if defaults is not None:
        lines.append(f"The defaults: trial {defaults.number}, score {defaults.value:.4g}.")
    return lines


def defaults_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial of the agent's defaults (the study's first), if any."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return next((t for t in trials if t.user_attrs.get("defaults")), None)


def best_config(study: optuna.Study, setup: Setup, best: FrozenTrial, storage: str) -> str:
    """``best.json``: the trial's config (as a run's config.json) and where it came from."""
    data = dict(best.user_attrs["config"])
    data["tuned"] = {
        "study": study.study_name,
        "storage": storage,
        "trial": best.number,
        "objective": setup.objective,
        "score": best.value,
        "params": best.params,
    }
    return json.dumps(data, indent=2)


def _figure(
    plot: Any, study: optuna.Study, path: Path, title: str, log: bool = False, **kwargs: Any
) -> None:
    ax = plot(study, **kwargs)
    ax.set_title(title)
    if log:  # unsolved runs' penalties would squash the solved ones at the bottom
        ax.set_yscale("log")
    fig = ax.figure
    fig.set_size_inches(7, 4.2)
    fig.set_dpi(120)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def write_report(study: optuna.Study, setup: Setup, out_dir: Path, storage: str) -> list[str]:
    """Write the report files; returns notes on what could not be made."""
    best = best_trial(study, setup)
    table = rows(study, setup)
    atomic_write_text(out_dir / "trials.csv", table_csv(table))
    atomic_write_text(out_dir / "trials.md", table_markdown(table, heading(study, setup, best)))
    notes = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    target = OBJECTIVES[setup.objective][1]
    if complete:
        log = setup.objective in ("seconds", "steps") and all(t.value > 0 for t in complete)
        title = f"{study.study_name}: {setup.base.agent.agent} on {setup.base.env_id}"
        path = out_dir / "history.png"
        _figure(plot_optimization_history, study, path, title, log, target_name=target)
    varied = {k for k in setup.space if len({repr(t.params.get(k)) for t in complete}) > 1}
    if len(complete) >= 2 and varied:
        # PED-ANOVA (Optuna's default): which values the best 10% of trials share.
        evaluator = PedAnovaImportanceEvaluator()
        title = f"{study.study_name}: parameter importance (PED-ANOVA)"
        path = out_dir / "importance.png"
        _figure(plot_param_importances, study, path, title, evaluator=evaluator)
    else:
        notes.append("importance.png needs 2 complete trials that differ")
    if best is not None:
        atomic_write_text(out_dir / "best.json", best_config(study, setup, best, storage))
    else:
        notes.append("no best.json: no complete trial meets the objective's constraint yet")
    return notes


def describe(
    study: optuna.Study, setup: Setup, out_dir: Path, storage: str, notes: list[str]
) -> str:
    """What the command prints at its end."""
    trials = [t for t in study.get_trials(deepcopy=False) if "skipped" not in t.user_attrs]
    count = {s: sum(t.state == s for t in trials) for s in TrialState}
    lines = [
        f"Study {study.study_name} ({storage}): {count[TrialState.COMPLETE]} complete,"
        f" {count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed or interrupted,"
        f" {count[TrialState.RUNNING]} running elsewhere."
    ]
    best, defaults = best_trial(study, setup), defaults_trial(study)
    measure = OBJECTIVES[setup.objective][1]
    if best is not None:
        than = f" (the defaults, trial {defaults.number}: {defaults.value:.4g})" if defaults else ""
        lines.append(f"Best: trial {best.number}, {measure} {best.value:.4g}{than}.")
        lines.append(
            "  " + ", ".join(f"{k.rpartition('.')[2]}={_cell(v)}" for k, v in best.params.items())
        )
    files = [p.name for p in (out_dir / n for n in FILES) if p.is_file()]
    lines.append(f"Report: {out_dir}/ ({', '.join(files)})")
    lines += [f"Note: {n}" for n in notes]
    if best is not None:
        lines.append(f"Train it: python train.py --config {out_dir / 'best.json'}")
    return "\n".join(lines)
