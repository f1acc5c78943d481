"""The worker processes of one study on this machine, and the progress display.

``--workers N`` starts N processes of :func:`rlrnn.tools.tune.tune.run_worker`; they share the study
through its storage, as workers on other machines do (``--workers 1`` runs in this process). Each
child runs in a session of its own, so a Ctrl-C at the terminal reaches only this process, which
passes each signal on once to every child: the first ends every worker's trial after its current
update, a second stops them at once. A child starts with both signals blocked and unblocks them
once its handlers are in place, so a signal passed on while it starts up (importing torch) waits
for it instead of killing it with a traceback; this process takes signals from before it starts
the first child until the last one has exited, so none is left running without it. Meanwhile it
reads the study to show trials done, the best score and the number pruned.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import signal
import subprocess
import sys
import time
from types import FrameType

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from envs.batched import EnvError
from rlrnn.errors import EXIT_USAGE, EXIT_WRITE_FAILED, UsageError, WriteFailed
from rlrnn.runs.safety import STOP_SIGNALS, StopSignals
from rlrnn.tools.tune.tune import Job, best_trial, load, run_worker

POLL_S = 1.0  # how often the display reads the study
# A worker process before its trial's run: Python with torch, Optuna and rlrnn imported (measured
# 265 MB), taken generously.
WORKER_BYTES = 400_000_000
FORWARD_S = 0.05  # how soon a signal this process received reaches the children


def check_workers(job: Job, workers: int) -> None:
    """A UsageError unless ``workers`` processes, each running one trial, fit in memory."""
    from envs.batched import env_sizes
    from rlrnn.learning.memory import check_fits, training_bytes

    obs_dim, num_actions = env_sizes(job.setup.base.env_id)
    trial = max(
        training_bytes(job.setup.config(p), obs_dim, num_actions, tensor_env=False)
        for p in job.setup.corners()
    )
    check_fits(
        workers * (WORKER_BYTES + trial),
        "cpu",
        f"starting {workers:,} worker processes",
        "lower --workers",
    )


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


class _Child:
    """One worker process and how many of the received signals it has been sent."""

    def __init__(self, job: Job, index: int) -> None:
        # Blocked in the child from its first instruction (a child keeps its parent's mask
        # across exec) until it has its handlers: see _child.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rlrnn.tools.tune.workers", str(index)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,  # terminal signals come through this process, once
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.sent = 0
        try:
            self.process.stdin.write(pickle.dumps(job))
            self.process.stdin.close()
        except BrokenPipeError:  # it died at once; its exit code says so
            pass

    def catch_up(self, received: list[int]) -> None:
        while self.sent < len(received):
            signum = received[self.sent]
            self.sent += 1
            if self.process.poll() is None:
                self.process.send_signal(signum)

    def result(self) -> tuple[int, str]:
        lines = self.process.stdout.read().decode().strip().splitlines()
        if lines:
            try:
                code, message = json.loads(lines[-1])
                return int(code), str(message)
            except (ValueError, TypeError):
                pass
        code = self.process.returncode
        if code < 0:  # killed by a signal
            return 128 - code, f"a worker was killed by {signal.Signals(-code).name}"
        return code or 1, "a worker died"


def _run_children(job: Job, workers: int, progress: Progress) -> tuple[int, list[str]]:
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)  # passed on by the loop below, never from inside a handler

    previous = {s: signal.signal(s, note) for s in STOP_SIGNALS}
    children: list[_Child] = []
    try:
        for index in range(workers):
            if received:  # stopped before all were started: start no more
                break
            children.append(_Child(job, index))
            for child in children:
                child.catch_up(received)
        study = load(job)
        shown = 0.0
        while any(child.process.poll() is None for child in children):
            for child in children:
                child.catch_up(received)
            if time.monotonic() - shown >= POLL_S:
                shown = time.monotonic()
                _refresh(progress, study)
            time.sleep(FORWARD_S)
    except BaseException:
        for child in children:  # this process is failing: its workers stop with it
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in children:
            child.process.wait()
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    codes, messages = [], []
    for child in children:
        code, message = child.result()
        codes.append(code)
        if message and message not in messages:
            messages.append(message)
    if received and not children:
        signum = signal.Signals(received[0])
        return 128 + signum.value, [f"stopped by {signum.name}"]
    return max(codes, key=lambda c: (c != 0, c == 2, c)), messages


def _refresh(progress: Progress, study: optuna.Study) -> None:
    # The display only: a storage that does not answer now must not stop the workers (the
    # next refresh tries again).
    with contextlib.suppress(Exception):
        progress.refresh(study)


def _child(index: int) -> int:
    """A worker process: reads its job from stdin, prints (exit code, message) as JSON."""
    with StopSignals() as stop:  # shared with run_worker's, see rlrnn.runs.safety
        # Signals passed on while this process started are delivered now, to the handler.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        try:
            job: Job = pickle.load(sys.stdin.buffer)  # written by our own parent process
            code, message = run_worker(job, index)
        except (UsageError, EnvError) as e:
            code, message = EXIT_USAGE, f"error: {e}"
        except WriteFailed as e:
            code, message = EXIT_WRITE_FAILED, f"error: {e}"
        except KeyboardInterrupt:  # a second signal before run_worker took over
            signum = stop.requested or signal.SIGINT
            code, message = 128 + signum.value, f"stopped by {signum.name}"
        if stop.requested is not None and code == 0:
            code, message = 128 + stop.requested.value, f"stopped by {stop.requested.name}"
        print(json.dumps([code, message]), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1])))
