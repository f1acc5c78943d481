"""The cells of a comparison (agent x seed), claimed through a shared study storage, so that
several machines that share the report folder split one ``rlrnn compare`` and run each cell once.

The first command to arrive creates the study and enqueues one waiting trial per cell; a command
claims a cell by moving its trial from waiting to running, which the storage grants to exactly
one process (a row lock in a database, the order of the log in a journal file), and marks it
complete when the run and its evaluations are written. A cell whose process stopped (Ctrl-C,
SIGTERM) goes back in the queue; one whose process on this machine was killed goes back the next
time a command runs here. The run folders are shared, so whoever runs a cell next resumes it.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from rlrnn.tools.common.storage import (
    check_study,
    create_study,
    describe,
    open_storage,
    owner,
    release_dead,
)
from rlrnn.tools.compare.compare import RunSpec, prepare_runs, run_all, run_one

CELL = "cell"  # the trial attribute that names a cell ("lstm s0")
POLL_S = 5.0  # how often a process with nothing left to claim looks whether all are done


def study_name(attrs: dict[str, Any]) -> str:
    """A default name that the same comparison gets on every machine."""
    digest = hashlib.sha1(json.dumps(attrs, sort_keys=True).encode()).hexdigest()
    return f"compare-{digest[:10]}"


class Claims:
    """This process's view of the shared queue of cells ``labels``."""

    def __init__(self, url: str, name: str | None, attrs: dict[str, Any], labels: list[str]):
        self.shown = describe(url, Path(url))
        self.name = name or study_name(attrs)
        storage = open_storage(url, Path(url))
        if not check_study(storage, self.name, attrs, self.shown):

            def enqueue(study: optuna.Study) -> None:
                for label in labels:
                    study.enqueue_trial({}, user_attrs={CELL: label})

            create_study(storage, self.name, "maximize", attrs, self.shown, enqueue)
        self.study = optuna.load_study(study_name=self.name, storage=storage)
        self.storage = storage
        self.labels = labels
        self.mine: dict[str, int] = {}  # label -> trial id, claimed and not yet finished here

    def _trials(self, *states: TrialState) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def claim(self) -> str | None:
        """A cell for this process to run, or None when none is waiting."""
        for trial in release_dead(self.study):  # killed here: back in the queue
            self.study.enqueue_trial({}, user_attrs={CELL: trial.user_attrs[CELL]})
        for trial in sorted(self._trials(TrialState.WAITING), key=lambda t: t.number):
            if self.storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                for key, value in owner().items():
                    self.storage.set_trial_user_attr(trial._trial_id, key, value)
                self.mine[trial.user_attrs[CELL]] = trial._trial_id
                return trial.user_attrs[CELL]
        return None

    def done(self, label: str, value: float) -> None:
        """The cell's run and evaluations are written."""
        self.storage.set_trial_state_values(self.mine.pop(label), TrialState.COMPLETE, [value])

    def release_mine(self) -> None:
        """Put the cells this process holds back in the queue (it is stopping)."""
        for label, trial_id in list(self.mine.items()):
            self.study.enqueue_trial({}, user_attrs={CELL: label})  # first: a crash loses none
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            del self.mine[label]

    def completed(self) -> set[str]:
        return {t.user_attrs[CELL] for t in self._trials(TrialState.COMPLETE)}

    def all_done(self) -> bool:
        return self.completed() >= set(self.labels)


def run_claimed(
    specs: list[RunSpec],
    episodes: int,
    workers: int,
    claims: Claims,
    show_progress: bool,
    resume_command: str = "rlrnn compare",
) -> list[dict[str, Any]]:
    """:func:`rlrnn.tools.compare.compare.run_all` over the cells this process claims, ``workers``
    at a
    time, until every cell is complete here or elsewhere; records in ``specs`` order (those
    run elsewhere read from the shared run folders)."""
    index = {spec.label: i for i, spec in enumerate(specs)}
    records: dict[int, dict[str, Any]] = {}
    waiting = False
    try:
        while True:
            batch: list[str] = []
            while len(batch) < workers and (label := claims.claim()) is not None:
                batch.append(label)
            if batch:
                batch_specs = [specs[index[b]] for b in batch]
                prepare_runs(batch_specs)  # only the runs this process claimed
                ran = run_all(batch_specs, episodes, len(batch), show_progress, resume_command)
                for label, record in zip(batch, ran, strict=True):
                    records[index[label]] = record
                    claims.done(label, statistics.mean(record["final_returns"]))
                continue
            if claims.all_done():
                break
            if show_progress and not waiting:
                left = len(set(claims.labels) - claims.completed())
                print(f"compare: waiting for {left} cells that other processes run", flush=True)
                waiting = True
            time.sleep(POLL_S)
    finally:
        claims.release_mine()  # stopped before finishing them: back in the queue
    for i, spec in enumerate(specs):
        if i not in records:
            records[i] = run_one(spec, episodes, train_if_needed=False)
    return [records[i] for i in range(len(specs))]
