"""``rlrnn tune``: an Optuna study over one agent's hyperparameters on one env.

Each trial trains one run (``<out>/trials/trial-NNNN/``) with values drawn from the agent's search
space (:data:`rlrnn.core.hyperparams.SEARCH_SPACES`); the study's first trial is the agent's
defaults.
Every periodic evaluation's return is reported to Optuna as an intermediate value, so a pruner can
stop a run that is behind the others at the same env step.

What a study is for and how a run is scored: :mod:`rlrnn.tools.tune_setup`.

Workers are processes: :func:`run_worker` is one, on any machine; they share the study through
its storage (:mod:`rlrnn.tools.storage`). SIGINT / SIGTERM end a worker's current trial after the
current update (the trial is marked failed, so the same command later runs it again) and leave
the storage consistent.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from rlrnn.core.hyperparams import Choice, LogRange, Variants
from rlrnn.core.safety import StopSignals
from rlrnn.core.training import train
from rlrnn.errors import TrainingDiverged, TrainingInterrupted
from rlrnn.tools.storage import open_storage, owner, quiet_optuna, release_dead
from rlrnn.tools.tune_setup import Setup, intermediate_value, score

ALIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


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


# ---------------------------------------------------------------- one worker


def suggest(trial: optuna.Trial, key: str, values: LogRange | Choice | Variants) -> Any:
    if isinstance(values, LogRange):
        return trial.suggest_float(key, values.low, values.high, log=True)
    options = list(values.named) if isinstance(values, Variants) else list(values.options)
    return trial.suggest_categorical(key, options)


def fill(job: Job) -> Callable[[optuna.Study], None]:
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


class _Stopped(Exception):
    """SIGINT / SIGTERM stopped the trial. An Exception, unlike :class:`TrainingInterrupted`,
    so that Optuna records the trial as failed before passing it on."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"stopped by {signal.Signals(exit_code - 128).name}")
        self.exit_code = exit_code


class Objective:
    """Trains one trial's run and returns its score (see the module docstring)."""

    def __init__(self, job: Job, stop: StopSignals, on_evaluation: Any = None) -> None:
        self.job, self.setup, self.stop, self.on_evaluation = job, job.setup, stop, on_evaluation

    def __call__(self, trial: optuna.Trial) -> float:
        if self.stop.requested is not None:  # the signal came between two trials
            trial.set_user_attr("status", "interrupted")
            raise _Stopped(128 + self.stop.requested.value)
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

        def report(record: dict[str, float]) -> bool:
            trial.report(intermediate_value(self.setup, record), int(record["env_steps"]))
            if self.on_evaluation is not None:
                self.on_evaluation(trial.number, record)
            return not trial.should_prune()

        try:
            summary = train(config, run_dir, show_progress=False, on_evaluation=report)
        except TrainingInterrupted as e:
            trial.set_user_attr("status", "interrupted")
            raise _Stopped(e.exit_code) from None
        except TrainingDiverged:  # a too-high learning rate is a result, not an error
            summary = json.loads((run_dir / "summary.json").read_text())
            if not summary["evaluations"]:
                trial.set_user_attr("status", "diverged")
                raise _NoResult from None
        done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        longest = max((t.user_attrs.get("train_seconds", 0.0) for t in done), default=0.0)
        value, attrs = score(self.setup, summary, longest)
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
        except _Stopped as e:
            return e.exit_code, str(e)
        except KeyboardInterrupt:
            return 130, "stopped by SIGINT"
    if stop.requested is not None:
        return 128 + stop.requested.value, f"stopped by {stop.requested.name}"
    return 0, ""
