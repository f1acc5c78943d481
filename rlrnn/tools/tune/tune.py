"""``rlrnn tune``: an Optuna study over one agent's hyperparameters on one env.

Each trial trains one run (``<out>/trials/trial-NNNN/``) with values drawn from the agent's search
space (:data:`rlrnn.learning.hyperparams.SEARCH_SPACES`); the study's first trial is the agent's
defaults.
Every periodic evaluation's return is reported to Optuna as an intermediate value, so a pruner can
stop a run that is behind the others at the same env step.

What a study is for and how a run is scored: :mod:`rlrnn.tools.tune.setup`.

Workers are processes: :func:`run_worker` is one, on any machine; they share the study through
its storage (:mod:`rlrnn.tools.common.storage`). SIGINT / SIGTERM end a worker's current trial
after the
current update (the trial is marked failed, so the same command later runs it again; one pruned or
finished at that update keeps its result) and no trial starts after them; the storage stays
consistent. The worker's signal handling and its trial's run share what they received
(:class:`rlrnn.runs.safety.StopSignals`), so no signal is lost between them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from rlrnn.errors import TrainingDiverged, TrainingInterrupted, UsageError
from rlrnn.files import check_no_link_below
from rlrnn.learning.config import SB3_AGENTS
from rlrnn.learning.fields import check_seed
from rlrnn.learning.hyperparams import Choice, LogRange, Variants
from rlrnn.runs.folder import RunFolder
from rlrnn.runs.safety import StopSignals
from rlrnn.runs.training import train
from rlrnn.tools.common.storage import open_storage, owner, quiet_optuna, release_dead
from rlrnn.tools.tune.setup import Setup, intermediate_value, score

ALIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
TAKEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # ALIVE, not queued
PRUNERS = ("median", "none")
SAMPLERS = ("tpe", "random", "grid")


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

    def __post_init__(self) -> None:
        for name in ("trials", "max_trials"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pruner not in PRUNERS:
            raise UsageError(f"unknown pruner {self.pruner!r}; choose from {', '.join(PRUNERS)}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.sampler_seed is not None:
            check_seed(self.sampler_seed, "sampler_seed")

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
    # Worker ``index`` draws its own sequence; wrapped to stay a valid seed.
    seed = None if job.sampler_seed is None else (job.sampler_seed + index) % 2**32
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
    """Nothing left for a worker: the cap reached, or (grid) no point left in the queue. A
    queued trial (the defaults) does not fill a place: it is the next one to run."""
    if job.sampler == "grid":
        return not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return len(study.get_trials(deepcopy=False, states=TAKEN)) >= job.max_trials


def best_trial(study: optuna.Study, setup: Setup) -> optuna.trial.FrozenTrial | None:
    """The complete trial with the best score among those that may be best: under ``seconds``
    and ``steps`` only one that solved, and only one that meets the constraint. None if none."""
    eligible = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if setup.may_be_best(t.user_attrs)
    ]
    sign = 1 if setup.direction == "minimize" else -1
    return min(eligible, key=lambda t: (sign * t.value, t.number), default=None)


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
    """Trains one trial's run and returns its score (see the module docstring).

    It counts the run's CPU seconds (:mod:`rlrnn.tools.tune.setup`): the process's CPU time from
    the start of the run to each periodic evaluation, less the time spent in this tuner's own
    work at the evaluations (reporting to the storage, the display), which grows with the study.
    """

    def __init__(self, job: Job, stop: StopSignals, on_evaluation: Any = None) -> None:
        self.job, self.setup, self.stop, self.on_evaluation = job, job.setup, stop, on_evaluation

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except KeyboardInterrupt:  # a second signal: stopped at once
            signum = self.stop.requested or signal.SIGINT
            trial.set_user_attr("status", "interrupted")
            raise _Stopped(128 + signum.value) from None

    def _run(self, trial: optuna.Trial) -> float:
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
        cpu = {"start": time.process_time(), "tuner": 0.0}
        cpu_at: dict[int, float] = {}  # env steps of an evaluation -> the run's CPU seconds
        signalled: list[bool] = []  # the run was ended at an evaluation by a signal

        def report(record: dict[str, float]) -> bool:
            entered = time.process_time()
            cpu_at[int(record["env_steps"])] = entered - cpu["start"] - cpu["tuner"]
            try:
                trial.report(intermediate_value(self.setup, record), int(record["env_steps"]))
                if self.on_evaluation is not None:
                    self.on_evaluation(trial.number, record)
                if trial.should_prune():
                    return False
                if self.stop.requested is not None:  # ends the run here: SB3's runs take no
                    signalled.append(True)  # signal themselves
                    return False
                return True
            finally:
                cpu["tuner"] += time.process_time() - entered

        try:
            summary = train(config, run_dir, show_progress=False, on_evaluation=report)
        except TrainingInterrupted as e:
            trial.set_user_attr("status", "interrupted")
            raise _Stopped(e.exit_code) from None
        except TrainingDiverged:  # a too-high learning rate is a result, not an error
            summary = RunFolder(run_dir).read_summary()
            if not summary["evaluations"]:
                trial.set_user_attr("status", "diverged")
                raise _NoResult from None
        if signalled and summary["status"] == "stopped":
            trial.set_user_attr("status", "interrupted")
            raise _Stopped(128 + (self.stop.requested or signal.SIGINT).value)
        # The evaluation of the final weights is not reported: its CPU time is the run's end.
        whole = time.process_time() - cpu["start"] - cpu["tuner"]
        solved_at = summary["solved_at_steps"]
        value, attrs = score(self.setup, summary, cpu_at.get(solved_at, whole))
        attrs["cpu_seconds"] = whole
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        if summary["status"] == "stopped":
            raise optuna.TrialPruned(f"pruned at {summary['env_steps']:,} env steps")
        return value

    def _run_dir(self, number: int) -> Path:
        base = self.job.out_dir / "trials" / f"trial-{number:04d}"
        run_dir, n = base, 1
        while os.path.lexists(run_dir):  # left by an older study of the same name: keep it
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
        check_no_link_below(self.job.out_dir, run_dir, "report folder")  # a trials/ link
        return run_dir


def _preload(job: Job) -> None:
    """Import what a trial's run imports on first use (matplotlib for its learning curve, SB3),
    so that the first trial of a process does not pay it in its CPU seconds."""
    import rlrnn.runs.plots

    if job.setup.base.agent.agent in SB3_AGENTS:
        import rlrnn.runs.sb3  # noqa: F401


def run_worker(job: Job, index: int = 0, progress: Any = None) -> tuple[int, str]:
    """Run trials of ``job`` in this process until ``job.trials`` are done, the study holds
    ``job.max_trials`` or a signal stops it; returns (exit code, message for the user)."""
    quiet_optuna()
    with StopSignals() as stop:
        try:
            return _work(job, index, progress, stop)
        except _Stopped as e:
            return e.exit_code, str(e)
        except KeyboardInterrupt:  # a second signal, outside a trial
            signum = stop.requested or signal.SIGINT
            return 128 + signum.value, f"stopped by {signum.name}"


def _work(job: Job, index: int, progress: Any, stop: StopSignals) -> tuple[int, str]:
    study = load(job, index)
    released = release_dead(study)
    if released and progress is not None:
        numbers = ", ".join(str(t.number) for t in released)
        progress.write(f"trials {numbers} of killed processes marked failed")
    _preload(job)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if progress is not None:
            progress.refresh(study)
        if stop.requested is not None or full(job, study):
            study.stop()

    if stop.requested is None and not full(job, study):
        hook = progress.evaluation if progress is not None else None
        study.optimize(
            Objective(job, stop, hook),
            n_trials=job.trials,
            callbacks=[after_trial],
            catch=(_OverCap, _NoResult),
            gc_after_trial=False,
        )
    if stop.requested is not None:
        return 128 + stop.requested.value, f"stopped by {stop.requested.name}"
    return 0, ""
