"""What ``rlrnn tune`` leaves in its output folder, made from the whole study (the trials of
every process and machine): ``trials.csv`` and ``trials.md`` (one row per trial),
``history.png`` (each complete trial's score and the best so far; runs that never solved drawn
apart, at the top) and ``importance.png`` (PED-ANOVA parameter importances, Optuna's default
evaluator) and ``best.json``, the best trial's config, which ``train.py --config`` trains from."""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
import warnings
from pathlib import Path
from typing import Any

import optuna
from matplotlib import ticker
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.trial import FrozenTrial, TrialState

from rlrnn.files import atomic_write_text, save_figure, shell_path
from rlrnn.runs.plots import plt
from rlrnn.tools.tune.setup import OBJECTIVES, TO_SOLVE, Setup
from rlrnn.tools.tune.tune import best_trial

FILES = ("trials.md", "trials.csv", "history.png", "importance.png", "best.json")
RESULTS = (
    "solved_at_steps",
    "cpu_seconds_to_solve",
    "final_eval_mean",
    "stays_solved",
    "auc",
    "env_steps",
    "cpu_seconds",
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


def _number(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) and abs(value) >= 1e4 else f"{value:.4g}"


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
    if setup.objective == "seconds":
        lines.append(
            "Seconds are CPU seconds of the trial's process up to the evaluation that first"
            " solved it (evaluations included; not wall-clock, so other load on the machine does"
            " not change them). A run that never solves scores inf: below every run that solves."
        )
    elif setup.objective == "steps":
        lines.append(
            f"A run that never solves scores {setup.unsolved_score:,.0f}"
            f" ({setup.unsolved_penalty:g} x the most a solved run can score): below every run"
            " that solves."
        )
    if setup.stays_solved_weight:
        lines.append(
            f"Stays-solved weight {setup.stays_solved_weight:g}: the score is worsened by"
            " weight x (1 - stays_solved) of itself."
        )
    if setup.min_stays_solved:
        lines.append(f"Constraint: stays_solved >= {setup.min_stays_solved:g}.")
    if best is not None:
        lines.append(f"Best: trial {best.number}, score {best.value:.4g}.")
    elif setup.objective in TO_SOLVE:
        lines.append("Best: none yet (no complete trial has solved).")
    defaults = defaults_trial(study)
    if defaults is not None:
        lines.append(f"The defaults: trial {defaults.number}, score {defaults.value:.4g}.")
    return lines


def defaults_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial of the agent's defaults (the study's first), if any."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return next((t for t in trials if t.user_attrs.get("defaults")), None)


def best_config(study: optuna.Study, setup: Setup, best: FrozenTrial, storage: str) -> str:
    """``best.json``: the trial's config (as a run saves its config) and where it came from."""
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


def _title(ax: Any, lines: list[str]) -> None:
    """One title, left-aligned and kept inside the figure (long lines wrapped)."""
    wrapped = [part for line in lines for part in textwrap.wrap(line, 80)]
    ax.set_title("\n".join(wrapped), loc="left", fontsize=10)


def plot_history(study: optuna.Study, setup: Setup, path: Path) -> None:
    """Each complete trial's score against its number and the best so far. Under ``seconds``
    and ``steps`` the axis is logarithmic and the runs that never solved are drawn apart, in a
    strip above it (their score, inf or a penalty, is off the scale or would squash it)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    eligible = [t for t in complete if setup.may_be_best(t.user_attrs)]
    to_solve = setup.objective in TO_SOLVE
    apart = [t for t in complete if to_solve and t.user_attrs.get("solved_at_steps") is None]
    drawn = [t for t in complete if t not in apart and math.isfinite(t.value)]
    others = [t for t in drawn if t not in eligible]
    if apart:  # a strip for them above the scores, sharing the trial axis
        fig, (strip, ax) = plt.subplots(
            2, 1, figsize=(7, 4.4), dpi=120, sharex=True, height_ratios=(1, 9)
        )
        strip.scatter(
            [t.number for t in apart], [0] * len(apart), marker="x", s=22, color="tab:orange"
        )
        strip.set_yticks([])
        label = f"never solved\nscore {_number(setup.unsolved_score)}"
        strip.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        strip.grid(alpha=0.3, axis="x")
        top = strip
    else:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
        top = ax
    ax.scatter(
        [t.number for t in drawn if t in eligible],
        [t.value for t in drawn if t in eligible],
        s=18,
        color="tab:blue",
        label="solved" if to_solve else "complete",
        zorder=3,
    )
    if others:
        ax.scatter(
            [t.number for t in others],
            [t.value for t in others],
            s=18,
            facecolors="none",
            edgecolors="grey",
            label=f"stays solved below {setup.min_stays_solved:g} (infeasible)",
            zorder=3,
        )
    best, line_x, line_y = None, [], []
    sign = 1 if setup.direction == "minimize" else -1
    for t in sorted(eligible, key=lambda t: t.number):
        if best is None or sign * t.value < sign * best:
            best = t.value
        line_x.append(t.number)
        line_y.append(best)
    if line_x:
        ax.step(line_x, line_y, where="post", color="tab:red", linewidth=1.2, label="best so far")
    values = [t.value for t in drawn]
    log = to_solve and bool(values) and min(values) > 0
    if log:
        ax.set_yscale("log")
        plain = ticker.FuncFormatter(lambda v, _: _number(v))  # 20,000 and 3, not 2x10^4
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if max(values) < 10 * min(values) else "")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(OBJECTIVES[setup.objective][1])
    ax.grid(alpha=0.3, which="both" if log else "major")
    pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    lines = [f"Study {study.study_name}: {setup.base.agent.agent} on {setup.base.env_id}"]
    counts = f"{len(complete)} complete trials ({setup.direction}d), {pruned} pruned (not drawn)"
    if apart:
        counts += f", {len(apart)} never solved"
    _title(top, [*lines, counts])
    if drawn:
        ax.legend(loc="best", fontsize=8)
    else:
        ax.set_yticks([])
        empty = "no trial has solved yet" if to_solve else "no finite score yet"
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", color="grey")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _ranked_copy(study: optuna.Study, setup: Setup) -> optuna.Study:
    """The complete trials, in memory, with the score of runs that never solved made finite
    (worse than every other, as it is): what an importance evaluator can take."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    finite = [t.value for t in complete if math.isfinite(t.value)]
    worst = (max if setup.direction == "minimize" else min)(finite, default=0.0)
    worse = worst + (abs(worst) or 1.0) * (1 if setup.direction == "minimize" else -1)
    copy = optuna.create_study(direction=setup.direction)
    for t in complete:
        value = t.value if math.isfinite(t.value) else worse
        copy.add_trial(
            optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=value)
        )
    return copy


def plot_importance(study: optuna.Study, setup: Setup, path: Path) -> None:
    """PED-ANOVA (Optuna's default): which values the best 10% of trials share."""
    with warnings.catch_warnings():  # with few trials the best 10% and the rest coincide
        warnings.simplefilter("ignore", UserWarning)
        importances = get_param_importances(
            _ranked_copy(study, setup), evaluator=PedAnovaImportanceEvaluator()
        )
    names = [key.rpartition(".")[2] for key in importances][::-1]  # the largest on top
    values = list(importances.values())[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.32 * max(len(names), 3)), dpi=120)
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)
    ax.set_xlim(0, max([*values, 1e-9]) * 1.15)
    ax.set_xlabel("importance (PED-ANOVA, the parameters' share)")
    ax.grid(alpha=0.3, axis="x")
    _title(ax, [f"Study {study.study_name}: parameter importance", OBJECTIVES[setup.objective][1]])
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
    if complete:
        plot_history(study, setup, out_dir / "history.png")
    varied = {k for k in setup.space if len({repr(t.params.get(k)) for t in complete}) > 1}
    scores = {t.value for t in complete}  # all never solved: nothing to tell them apart by
    if varied and len(scores) > 1:
        plot_importance(study, setup, out_dir / "importance.png")
    else:
        notes.append("importance.png needs 2 complete trials that differ in parameters and score")
    if best is not None:
        atomic_write_text(out_dir / "best.json", best_config(study, setup, best, storage))
    elif setup.objective in TO_SOLVE:
        notes.append("no best.json: no complete trial has solved yet")
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
        lines.append(f"Train it: python train.py --config {shell_path(out_dir / 'best.json')}")
    return "\n".join(lines)
