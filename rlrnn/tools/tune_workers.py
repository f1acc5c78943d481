"""The worker processes of one study on this machine, and the progress display.

``--workers N`` starts N processes of :func:`rlrnn.tools.tune.run_worker` (one runs in this
process); they share the study through its storage, as workers on other machines do. Each
child runs in a session of its own, so a Ctrl-C at the terminal reaches only this process, which
passes each
signal on once: the first ends every worker's trial after its current update, a second stops them
at once. Meanwhile this process reads the study to show trials done, the best score and the
number pruned.
"""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import time
from types import FrameType

import optuna
import torch
from optuna.trial import TrialState
from tqdm import tqdm

from envs.batched import EnvError
from rlrnn.errors import UsageError
from rlrnn.tools.tune import Job, best_trial, load, run_worker

POLL_S = 1.0  # how often the display reads the study


class Progress:
    """A bar of finished trials (complete or pruned) with the best score, the pruned count and
    what runs now; ``refresh`` reads it all from the study."""

    def __init__(self, job: Job, total: int, show: bool) -> None:
        self.job, self.show = job, show
        self.bar = tqdm(total=total, unit="trial", desc=job.study, disable=not show)
        self.status, self.latest = "", ""

    def refresh(self, study: optuna.Study) -> None:
        if not self.show:
            return
        trials = study.get_trials(deepcopy=False)
        count = {s: sum(t.state == s for t in trials) for s in TrialState}
        self.bar.n = min(self.bar.total, count[TrialState.COMPLETE] + count[TrialState.PRUNED])
        best = best_trial(study, self.job.setup)
        parts = [f"best {best.value:.4g} (#{best.number})" if best else "best -"]
        parts += [f"pruned {count[TrialState.PRUNED]}", f"running {count[TrialState.RUNNING]}"]
        self.status = ", ".join(parts)
        self._show()

    def evaluation(self, number: int, record: dict[str, float]) -> None:
        """Shown while one trial runs in this process."""
        self.latest = f"#{number} at {record['env_steps']:,} steps: {record['mean_return']:.0f}"
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix_str(", ".join(filter(None, (self.status, self.latest))))

    def write(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


def run_local(job: Job, workers: int, total: int, show: bool) -> tuple[int, list[str]]:
    """Run ``workers`` processes of ``job``; returns the exit code and the workers' messages."""
    progress = Progress(job, total, show)
    try:
        if workers == 1:
            code, message = run_worker(job, 0, progress)
            return code, [message] if message else []
        return _run_children(job, workers, progress)
    finally:
        progress.refresh(load(job))
        progress.close()


def _run_children(job: Job, workers: int, progress: Progress) -> tuple[int, list[str]]:
    children = []
    for index in range(workers):
        child = subprocess.Popen(
            [sys.executable, "-m", "rlrnn.tools.tune_workers", str(index)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # terminal signals come through this process, once
        )
        child.stdin.write(pickle.dumps(job))
        child.stdin.close()
        children.append(child)
    study = load(job)

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(child.poll() is None for child in children):
            progress.refresh(study)
            time.sleep(POLL_S)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    codes, messages = [], []
    for child in children:
        line = child.stdout.read().decode().strip().splitlines()
        code, message = json.loads(line[-1]) if line else (child.returncode or 1, "worker died")
        codes.append(code)
        if message and message not in messages:
            messages.append(message)
    return max(codes, key=lambda c: (c != 0, c == 2, c)), messages


def _child(index: int) -> int:
    """A worker process: reads its job from stdin, prints (exit code, message) as JSON."""
    job: Job = pickle.load(sys.stdin.buffer)  # written by our own parent process
    torch.set_num_threads(job.setup.base.torch_threads)
    try:
        code, message = run_worker(job, index)
    except (UsageError, EnvError) as e:
        code, message = 2, f"error: {e}"
    print(json.dumps([code, message]), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1])))
