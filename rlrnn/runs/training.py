"""A training run: the front door's checks, the folder locked, and the loop.

Writes into the run folder (:class:`rlrnn.runs.folder.RunFolder`): the config, the best and
final checkpoints, the resume checkpoint, TensorBoard logs, the summary and the learning curve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlrnn.errors import TrainingDiverged, TrainingInterrupted
from rlrnn.learning.config import SB3_AGENTS, RunConfig
from rlrnn.learning.threads import torch_threads
from rlrnn.runs.lock import writing_run
from rlrnn.runs.runlog import EvaluationHook
from rlrnn.runs.safety import StopSignals
from rlrnn.runs.start import check_run
from rlrnn.runs.trainer import Trainer


def train(
    config: RunConfig,
    run_dir: Path | str,
    show_progress: bool = True,
    resume: bool = False,
    on_evaluation: EvaluationHook | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (created if missing); returns the run's summary and
    draws its learning curve.

    ``resume`` continues the run saved in ``run_dir``: on a CPU, interrupting and resuming gives
    the same weights as an uninterrupted run. SIGINT / SIGTERM stop the run after the current
    update with the resume checkpoint and the summary written (:class:`TrainingInterrupted`).
    ``on_evaluation`` sees every periodic evaluation (a tuner reports it and may prune the run):
    when it returns False the run ends there with ``"status": "stopped"``.

    Every check is made first, by the front door (:func:`rlrnn.runs.start.check_run`), before
    any folder is made. The run holds the folder's lock throughout
    (:class:`rlrnn.runs.lock.RunLock`): a second writer is refused, and a run refused before it
    wrote anything leaves no folder or marker behind (:func:`rlrnn.runs.lock.writing_run`).
    """
    folder = check_run(config, run_dir, show_progress, resume, on_evaluation)
    with writing_run(folder.path), torch_threads(config.torch_threads):
        if config.agent.agent in SB3_AGENTS:
            from rlrnn.runs.sb3_training import (
                train_sb3,  # SB3 takes seconds to import: only when used
            )

            summary = train_sb3(config, folder, show_progress, on_evaluation)
        else:
            summary = _train(Trainer(config, folder, resume), show_progress, on_evaluation)
        from rlrnn.runs.plots import plot_learning_curve  # matplotlib: 1-2 s, so only now

        plot_learning_curve(summary, folder.curve)
    return summary


def _train(
    run: Trainer, show_progress: bool, on_evaluation: EvaluationHook | None
) -> dict[str, Any]:
    """The loop: iterate, evaluate now and then, keep a resume checkpoint, stop when asked."""
    log = run.start_logging(show_progress)
    with StopSignals() as stop:
        while not run.done:
            try:
                kept = run.iterate()
            except TrainingDiverged:
                run.finish("diverged")
                raise
            if kept and run.evaluation_due():
                record = run.evaluate()
                if on_evaluation is not None and not on_evaluation(record):
                    return run.finish("stopped")
            log.progress(run.config.ppo.batch_size, run.ppo.env_steps, run.clock["train_seconds"])
            if stop.requested is not None:
                run.finish("interrupted")
                raise TrainingInterrupted(
                    f"stopped by {stop.requested.name} at {run.ppo.env_steps:,} env steps;"
                    f" saved {run.folder.last} and {run.folder.summary}",
                    stop.requested.value,
                    str(run.folder.path),
                )
            if run.checkpoint_due():
                run.save_last("running")
    run.save_final()
    return run.finish("finished")
