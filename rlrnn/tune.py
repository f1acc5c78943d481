"""``rlrnn tune``: an Optuna study over one agent's hyperparameters on one env.

Each trial trains one run (``<out>/trials/trial-NNNN/``) with values drawn from the agent's search
space (:data:`rlrnn.hyperparams.SEARCH_SPACES`); the study's first trial is the agent's defaults.
Every periodic evaluation is reported to Optuna as an intermediate value, so a pruner can stop a
run that is behind the others at the same env step.

Objectives (``score``): ``seconds`` or ``steps`` to solve (minimised; a run that never solves
scores ``unsolved_penalty`` times its whole run), the ``final`` evaluation return or the ``auc``,
the area under the evaluation curve divided by its span (the mean return over the run; both
maximised). The "stays solved" fraction (:mod:`rlrnn.stability`) enters the score with a weight
``w`` (the score is worsened by ``w * (1 - stays_solved)`` of itself) or as a constraint (runs
below ``min_stays_solved`` are infeasible: TPE learns from it, and the best trial is feasible).

Workers are processes: :func:`run_worker` is one, on any machine; they share the study through
its storage (:mod:`rlrnn.storage`). SIGINT / SIGTERM end a worker's current trial after the
current update (the trial is marked failed, so the same command later runs it again) and leave
the storage consistent.
"""

from __future__ import annotations

import json
import math
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from rlrnn.config import RunConfig
from rlrnn.errors import TrainingDiverged, TrainingInterrupted, UsageError
from rlrnn.hyperparams import (
    Choice,
    LogRange,
    SearchSpace,
    Variants,
    space_as_dict,
    value_of,
    with_values,
)
from rlrnn.safety import StopSignals
from rlrnn.stability import stability
from rlrnn.storage import open_storage, owner, quiet_optuna, release_dead
from rlrnn.training import train

# objective -> (direction, what it measures)
OBJECTIVES = {
    "seconds": ("minimize", "training seconds to solve"),
    "steps": ("minimize", "env steps to solve"),
    "final": ("maximize", "final evaluation return"),
    "auc": ("maximize", "mean evaluation return over the run (area under the curve / span)"),
}
ALIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class Setup:
    """What a study is for: trials of ``base`` with values from ``space``, scored by
    ``objective``. Every process of a study must have the same setup."""

    base: RunConfig
    space: SearchSpace
    objective: str = "seconds"
    threshold: float | None = None  # the env's reward threshold (solved at or above it)
    unsolved_penalty: float = 2.0
    stays_solved_weight: float = 0.0
    min_stays_solved: float = 0.0

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective][0]

    def attrs(self) -> dict[str, Any]:
        """The study attribute that identifies the setup (the device may differ per machine)."""
        base = self.base.to_dict()
        del base["device"], base["torch_threads"]
        return {
            "command": "tune",
            "objective": self.objective,
            "unsolved_penalty": self.unsolved_penalty,
            "stays_solved_weight": self.stays_solved_weight,
            "min_stays_solved": self.min_stays_solved,
            "space": space_as_dict(self.space),
            "base": base,
        }

    def defaults(self) -> dict[str, Any]:
        """The base config's values of the searched keys: the study's first trial."""
        return {key: value_of(self.base, key) for key in self.space}

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the space's values (a UsageError for a range)."""
        points: list[dict[str, Any]] = [{}]
        for key, r in self.space.items():
            if isinstance(r, LogRange):
                raise UsageError(f"a grid needs a finite set of values; {key} is a range")
            options = list(r.named) if isinstance(r, Variants) else list(r.options)
            points = [{**p, key: v} for p in points for v in options]
        return points

    def config(self, params: dict[str, Any]) -> RunConfig:
        """The config of a trial with ``params`` (a Variants key holds the variant's name)."""
        values: dict[str, Any] = {}
        for key, value in params.items():
            r = self.space[key]
            values.update(r.named[value] if isinstance(r, Variants) else {key: value})
        return with_values(self.base, values)


@dataclass(frozen=True)
class Job:
    """One process's share of a study (picklable, for spawned workers)."""

    setup: Setup
    storage: str | None  # URL; None: the journal file in out_dir
    study: str
    out_dir: Path
    trials: int  # at most this many trials in this process
    max_trials: int  # stop once the study holds this many (failed ones do not count)
    pruner: str = "median"
    sampler: str = "tpe"  # tpe, random, or grid: every point enqueued once, run once
    sampler_seed: int | None = None

    @property
    def journal(self) -> Path:
        return self.out_dir / "study.log"


# ---------------------------------------------------------------- scoring


def score(setup: Setup, summary: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """The score of a finished run and what it was made from (trial attributes)."""
    records = summary["evaluations"]
    st = stability(records, setup.threshold)
    solved = summary["solved_at_steps"] is not None
    # Solved at the last evaluation only: nothing shows it stays solved.
    stays = (st.stays_solved if st.stays_solved is not None else 0.0) if solved else None
    if setup.objective in ("seconds", "steps"):
        key = "solved_at_seconds" if setup.objective == "seconds" else "solved_at_steps"
        whole = summary["train_seconds"] if setup.objective == "seconds" else summary["env_steps"]
        value = summary[key] if solved else setup.unsolved_penalty * whole
    elif setup.objective == "final":
        value = summary["final_eval_mean"]
    else:
        value = area_under_curve(records)
    if setup.stays_solved_weight and solved:
        worse = setup.stays_solved_weight * (1 - stays)
        value *= 1 + worse if setup.direction == "minimize" else 1 - worse
    attrs = {
        "status": summary["status"],
        "solved_at_steps": summary["solved_at_steps"],
        "solved_at_seconds": summary["solved_at_seconds"],
        "final_eval_mean": summary["final_eval_mean"],
        "stays_solved": stays,
        "auc": area_under_curve(records),
        "env_steps": summary["env_steps"],
        "train_seconds": summary["train_seconds"],
    }
    if setup.min_stays_solved:  # <= 0: feasible (Optuna's convention)
        attrs["constraint"] = setup.min_stays_solved - (stays or 0.0)
    return float(value), attrs


def area_under_curve(records: list[dict[str, Any]]) -> float:
    """Trapezoid area under evaluation return against env steps, over its span."""
    if not records:
        return math.nan
    x = np.array([r["env_steps"] for r in records], dtype=np.float64)
    y = np.array([r["mean_return"] for r in records], dtype=np.float64)
    span = x[-1] - x[0]
    area = ((y[1:] + y[:-1]) / 2 * np.diff(x)).sum()  # the trapezoid rule
    return float(y[0]) if span == 0 else float(area / span)


def running_value(setup: Setup, records: list[dict[str, Any]]) -> float:
    """The intermediate value after ``records``: for the time objectives the solve time once
    solved, before that the time so far (a lower bound on the final score)."""
    last = records[-1]
    if setup.objective in ("seconds", "steps"):
        key = "train_seconds" if setup.objective == "seconds" else "env_steps"
        reached = [r for r in records if setup.threshold and r["mean_return"] >= setup.threshold]
        return float((reached[0] if reached else last)[key])
    if setup.objective == "final":
        return float(last["mean_return"])
    return area_under_curve(records)


# ---------------------------------------------------------------- one worker


def suggest(trial: optuna.Trial, key: str, values: LogRange | Choice | Variants) -> Any:
    if isinstance(values, LogRange):
        return trial.suggest_float(key, values.low, values.high, log=True)
    options = list(values.named) if isinstance(values, Variants) else list(values.options)
    return trial.suggest_categorical(key, options)


def fill(job: Job) -> Any:
    """What the creator of a study enqueues: the defaults first, or (grid) every point. A queued
    trial is popped by exactly one worker, which is why a grid is enqueued rather than left to
    Optuna's GridSampler (whose parallel workers may draw the same point twice)."""

    def enqueue(study: optuna.Study) -> None:
        if job.sampler == "grid":
            for params in job.setup.grid():
                study.enqueue_trial(params, user_attrs={"queued": True})
        else:
            study.enqueue_trial(job.setup.defaults(), user_attrs={"queued": True, "defaults": True})

    return enqueue


def make_sampler(job: Job, index: int) -> optuna.samplers.BaseSampler:
    seed = None if job.sampler_seed is None else job.sampler_seed + index
    if job.sampler in ("random", "grid"):  # a grid's trials are all enqueued
        return optuna.samplers.RandomSampler(seed=seed)

    def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
        return [trial.user_attrs.get("constraint", 0.0)]

    return optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,
        constant_liar=True,  # parallel workers: running trials count as bad, so others look away
        constraints_func=constraints if job.setup.min_stays_solved else None,
    )


def make_pruner(job: Job) -> optuna.pruners.BasePruner:
    if job.pruner == "none":
        return optuna.pruners.NopPruner()
    # No pruning in the first fifth of a run, nor before 5 trials have finished.
    warmup = job.setup.base.ppo.total_timesteps // 5
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)


def load(job: Job, index: int = 0) -> optuna.Study:
    storage = open_storage(job.storage, job.journal)
    return optuna.load_study(
        study_name=job.study,
        storage=storage,
        sampler=make_sampler(job, index),
        pruner=make_pruner(job),
    )


def held(study: optuna.Study, below: int | None = None) -> int:
    """Trials the study holds, failed ones left out (those numbered below ``below``)."""
    trials = study.get_trials(deepcopy=False, states=ALIVE)
    return sum(below is None or t.number < below for t in trials)


def full(job: Job, study: optuna.Study) -> bool:
    """Nothing left for a worker: the cap reached, or (grid) no point left in the queue."""
    if job.sampler == "grid":
        return not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return held(study) >= job.max_trials


def best_trial(study: optuna.Study, setup: Setup) -> optuna.trial.FrozenTrial | None:
    """The complete trial with the best score among those that meet the constraint."""
    feasible = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("constraint", 0.0) <= 0
    ]
    sign = 1 if setup.direction == "minimize" else -1
    return min(feasible, key=lambda t: (sign * t.value, t.number), default=None)


class _OverCap(Exception):
    """Another process took the last place under the cap at the same moment."""


class _NoResult(Exception):
    """The run diverged before its first evaluation: nothing to score."""


class Objective:
    """Trains one trial's run and returns its score (see the module docstring)."""

    def __init__(self, job: Job, stop: StopSignals, on_evaluation: Any = None) -> None:
        self.job, self.setup, self.stop, self.on_evaluation = job, job.setup, stop, on_evaluation

    def __call__(self, trial: optuna.Trial) -> float:
        if self.stop.requested is not None:  # the signal came between two trials
            trial.set_user_attr("status", "interrupted")
            raise TrainingInterrupted("stopped", self.stop.requested.value)
        if self.job.sampler == "grid":
            over = not trial.user_attrs.get("queued")
        else:
            over = held(trial.study, below=trial.number) >= self.job.max_trials
        if over:
            trial.set_user_attr("skipped", "nothing left to run")
            trial.study.stop()
            raise _OverCap
        for key, value in owner().items():
            trial.set_user_attr(key, value)
        params = {key: suggest(trial, key, r) for key, r in self.setup.space.items()}
        config = self.setup.config(params)
        trial.set_user_attr("config", config.to_dict())
        run_dir = self._run_dir(trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        records: list[dict[str, Any]] = []

        def report(record: dict[str, float]) -> bool:
            records.append(record)
            trial.report(running_value(self.setup, records), int(record["env_steps"]))
            if self.on_evaluation is not None:
                self.on_evaluation(trial.number, record)
            return not trial.should_prune()

        try:
            summary = train(config, run_dir, show_progress=False, on_evaluation=report)
        except TrainingInterrupted:
            trial.set_user_attr("status", "interrupted")
            raise
        except TrainingDiverged:  # a too-high learning rate is a result, not an error
            summary = json.loads((run_dir / "summary.json").read_text())
            if not summary["evaluations"]:
                trial.set_user_attr("status", "diverged")
                raise _NoResult from None
        value, attrs = score(self.setup, summary)
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        if summary["status"] == "stopped":
            raise optuna.TrialPruned(f"pruned at {summary['env_steps']:,} env steps")
        return value

    def _run_dir(self, number: int) -> Path:
        base = self.job.out_dir / "trials" / f"trial-{number:04d}"
        run_dir, n = base, 1
        while run_dir.exists():  # left by an older study of the same name: keep it
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
        return run_dir


def run_worker(job: Job, index: int = 0, progress: Any = None) -> tuple[int, str]:
    """Run trials of ``job`` in this process until ``job.trials`` are done, the study holds
    ``job.max_trials`` or a signal stops it; returns (exit code, message for the user)."""
    quiet_optuna()
    study = load(job, index)
    released = release_dead(study)
    if released and progress is not None:
        numbers = ", ".join(str(t.number) for t in released)
        progress.write(f"trials {numbers} of killed processes marked failed")
    with StopSignals() as stop:

        def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if progress is not None:
                progress.refresh(study)
            if stop.requested is not None or full(job, study):
                study.stop()

        if full(job, study):
            return 0, ""
        hook = progress.evaluation if progress is not None else None
        try:
            study.optimize(
                Objective(job, stop, hook),
                n_trials=job.trials,
                callbacks=[after_trial],
                catch=(_OverCap, _NoResult),
                gc_after_trial=False,
            )
        except TrainingInterrupted as e:
            return e.exit_code, f"stopped by {signal.Signals(e.exit_code - 128).name}"
        except KeyboardInterrupt:
            return 130, "stopped by SIGINT"
    if stop.requested is not None:
        return 128 + stop.requested.value, f"stopped by {stop.requested.name}"
    return 0, ""


def check_space(setup: Setup) -> None:
    """Every corner of the search space, and every variant, must make a valid config (checked
    before any trial)."""
    ranges = {k: r for k, r in setup.space.items() if not isinstance(r, Variants)}
    low = {k: r.low if isinstance(r, LogRange) else min(r.options) for k, r in ranges.items()}
    high = {k: r.high if isinstance(r, LogRange) else max(r.options) for k, r in ranges.items()}
    tries = [low, high]
    for key, r in setup.space.items():
        if isinstance(r, Variants):
            tries += [{**low, key: name} for name in r.named]
    for params in tries:
        try:
            setup.config(params)
        except UsageError as e:
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            raise UsageError(f"the search space cannot run ({shown}): {e}") from None
