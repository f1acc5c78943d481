"""Tasks run in worker processes that stop cleanly when the command is stopped.

:func:`run_tasks` runs ``function(task)`` for every task, in up to ``workers`` spawned processes
(in this one when ``workers`` is 1), and hands each result to ``on_result`` as it arrives.

SIGINT or SIGTERM (a Ctrl-C, ``kill``, ``timeout``) stops the whole command cleanly: no task
starts after it, the signal is forwarded once to every worker (rlrnn's training then saves
its resume checkpoint and stops after its current update; other work stops at once), the parent
waits until every worker has exited, and :class:`Stopped` says which tasks finished, which were
stopped and which never started. A second signal is forwarded too (training then stops at
once, its previous resume checkpoint kept).

Workers start with both signals blocked, drop the ones the terminal sent meanwhile, and leave the
terminal's process group before they take a task: a Ctrl-C in the terminal reaches them only
through the parent, once, and never while they start up (no traceback from a half-started
worker). A worker whose parent dies finishes its task
and exits when it finds the parent's end of its pipe closed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

from envs.batched import EnvError
from rlrnn.errors import Interrupted, UsageError, WriteFailed

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Errors a task reports as one line (the parent raises the same type with the same message).
TASK_ERRORS = (UsageError, EnvError, WriteFailed)


class Stopped(Exception):
    """A signal stopped :func:`run_tasks`: task indices that finished, were stopped midway and
    never started."""

    def __init__(
        self, signal_number: int, finished: list[int], stopped: list[int], not_started: list[int]
    ) -> None:
        super().__init__(f"stopped by {signal.Signals(signal_number).name}")
        self.signal_number = signal_number
        self.finished, self.stopped, self.not_started = finished, stopped, not_started


def run_tasks(
    function: Callable[[Any], Any],
    tasks: Sequence[Any],
    workers: int,
    on_result: Callable[[int, Any], None],
) -> None:
    """Run ``function`` on every task (``function`` must be picklable: a module-level function
    or a ``functools.partial`` of one). A task's UsageError, EnvError or WriteFailed is raised
    here as itself, after the other workers have been stopped cleanly."""
    if workers <= 1:
        _run_here(function, tasks, on_result)
    else:
        _Pool(function, tasks, workers, on_result).run()


def _run_here(
    function: Callable[[Any], Any], tasks: Sequence[Any], on_result: Callable[[int, Any], None]
) -> None:
    received: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:  # training installs its own
        received.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    finished: list[int] = []
    try:
        for index, task in enumerate(tasks):
            try:
                result = function(task)
            except Interrupted as e:
                raise Stopped(e.signal_number, finished, [index], _after(index, tasks)) from None
            except KeyboardInterrupt:
                signum = received[0] if received else signal.SIGINT
                raise Stopped(signum, finished, [index], _after(index, tasks)) from None
            on_result(index, result)
            finished.append(index)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _after(index: int, tasks: Sequence[Any]) -> list[int]:
    return list(range(index + 1, len(tasks)))


def _worker_main(conn: Connection, function: Callable[[Any], Any]) -> None:
    """A worker: take tasks from ``conn`` until it sends None. Each reply is ``(kind, index,
    payload)``, kind one of ``ready``, ``done``, ``stopped``, ``error`` and ``crash``."""
    for s in STOP_SIGNALS:  # drops what the terminal sent while this process started (blocked)
        signal.signal(s, signal.SIG_IGN)
    os.setpgrp()  # out of the terminal's process group: its Ctrl-C comes through the parent
    busy = stop = False

    def handle(signum: int, frame: FrameType | None) -> None:  # training installs its own
        nonlocal stop
        stop = True
        if busy:
            raise KeyboardInterrupt
        # Idle: the parent, which forwarded it, sends None next.

    for s in STOP_SIGNALS:
        signal.signal(s, handle)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked since the parent's start
    conn.send(("ready", None, None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:
            return
        index, task = message
        busy = True
        try:
            if stop:  # signalled between taking the task and starting it
                raise KeyboardInterrupt
            reply: tuple[str, int, Any] = ("done", index, function(task))
        except Interrupted as e:
            reply = ("stopped", index, str(e))
        except KeyboardInterrupt:
            reply = ("stopped", index, "")
        except TASK_ERRORS as e:
            reply = ("error", index, (type(e), str(e)))
        except BaseException:
            reply = ("crash", index, traceback.format_exc())
        finally:
            busy = False
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


class _Worker:
    def __init__(self, context: Any, function: Callable[[Any], Any]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, function), daemon=True)
        # Started with SIGINT and SIGTERM blocked (a spawned child keeps its mask) until it has
        # its own handlers. The parent's handlers stay: one that were ignored meanwhile would
        # drop a signal another thread of this process (tqdm's monitor) takes.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child.close()
        self.task: int | None = None
        self.ready = False
        self.released = False  # sent None: it exits

    def send(self, message: Any) -> None:
        with suppress(OSError):
            self.conn.send(message)

    def release(self) -> None:
        if not self.released:
            self.send(None)
            self.released = True


class _Pool:
    def __init__(
        self,
        function: Callable[[Any], Any],
        tasks: Sequence[Any],
        workers: int,
        on_result: Callable[[int, Any], None],
    ) -> None:
        self.function, self.tasks, self.on_result = function, tasks, on_result
        self.count = min(workers, len(tasks))
        self.pending = list(range(len(tasks)))
        self.finished: list[int] = []
        self.stopped: list[int] = []
        self.failure: BaseException | None = None
        self.requested: int | None = None
        self.live: list[_Worker] = []

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested = signum
        self._signal_workers(signum)

    def _signal_workers(self, signum: int) -> None:
        for worker in self.live:
            if worker.task is not None:
                with suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signum)

    def run(self) -> None:
        previous = {s: signal.signal(s, self._forward) for s in STOP_SIGNALS}
        context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
        # Started now, not inside a worker's start: its launch unblocks both signals.
        resource_tracker.ensure_running()
        try:
            for _ in range(self.count):
                if self.requested is None:
                    self.live.append(_Worker(context, self.function))
            while self.live:
                self._step()
        finally:
            for worker in self.live:  # only after an error in this loop itself: no orphans
                worker.process.kill()
                worker.process.join()
            for s, handler in previous.items():
                signal.signal(s, handler)
        if self.requested is not None:
            not_started = [i for i in self.pending if i not in self.stopped]
            raise Stopped(self.requested, self.finished, self.stopped, not_started)
        if self.failure is not None:
            raise self.failure

    def _step(self) -> None:
        waiting = [w.conn for w in self.live] + [w.process.sentinel for w in self.live]
        ready = wait(waiting, timeout=1.0)
        for worker in list(self.live):
            if worker.conn in ready:
                try:
                    kind, index, payload = worker.conn.recv()
                except (EOFError, OSError):
                    self._ended(worker)
                    continue
                self._reply(worker, kind, index, payload)
            elif worker.process.sentinel in ready:
                self._ended(worker)
        for worker in self.live:
            if worker.ready and worker.task is None:
                if self.requested is not None or self.failure is not None or not self.pending:
                    worker.release()
                else:
                    worker.task = self.pending.pop(0)
                    worker.send((worker.task, self.tasks[worker.task]))

    def _reply(self, worker: _Worker, kind: str, index: int | None, payload: Any) -> None:
        worker.ready, worker.task = True, None
        if kind == "done":
            self.finished.append(index)
            self.on_result(index, payload)
        elif kind == "stopped":
            self.stopped.append(index)
            self.pending.append(index)  # it can be resumed: not finished
        elif kind in ("error", "crash"):
            self.pending.append(index)
            if self.failure is None:
                self.failure = (
                    payload[0](payload[1])
                    if kind == "error"
                    else RuntimeError(f"a worker failed on task {index}:\n{payload}")
                )
                self._signal_workers(signal.SIGTERM)  # the others stop cleanly, keeping their work

    def _ended(self, worker: _Worker) -> None:
        worker.process.join()
        self.live.remove(worker)
        if worker.task is not None and self.requested is not None:
            self.stopped.append(worker.task)  # killed while stopping: its resume checkpoint is kept
            self.pending.append(worker.task)
        elif worker.task is not None and self.failure is None:
            self.pending.append(worker.task)
            self.failure = RuntimeError(
                f"a worker process died (exit code {worker.process.exitcode}) on task {worker.task}"
            )
            self._signal_workers(signal.SIGTERM)
        elif not worker.released and self.failure is None and self.requested is None:
            self.failure = RuntimeError(
                f"a worker process exited (code {worker.process.exitcode}) before taking a task"
            )
