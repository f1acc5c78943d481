"""What keeps a run alive: stopping cleanly on SIGINT / SIGTERM and rolling back updates that
produce non-finite numbers; and what stops other work at once on those signals."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, TypeVar

import torch

from rlrnn.errors import Interrupted, TrainingDiverged
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.folder import RunFolder

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


_Handling = TypeVar("_Handling", bound="_HandlingStopSignals")


class _HandlingStopSignals:
    """While active (in the main thread, the only one signals reach), SIGINT and SIGTERM go to
    ``_handle``; the previous handlers come back on exit."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        raise NotImplementedError

    def __enter__(self: _Handling) -> _Handling:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


class _StopState:
    """What :class:`StopSignals` received: nested ones share one (see there)."""

    def __init__(self) -> None:
        self.requested: signal.Signals | None = None
        self.raised = False  # the second signal's KeyboardInterrupt was raised


class StopSignals(_HandlingStopSignals):
    """While active, SIGINT and SIGTERM only ask the run to stop after the current update
    (``requested`` holds the signal); a second signal stops at once (KeyboardInterrupt), and
    later ones are ignored while that unwinds.

    Nested in another (a tuner's worker around each trial's training run), both share what was
    received: a signal the inner one takes is seen by the outer one after the inner one ends,
    whatever the work did with it (a trial pruned at that update still stops the worker), and a
    signal the outer one took before stops the inner work at its first update.
    """

    def __init__(self) -> None:
        super().__init__()
        self._state = _StopState()

    @property
    def requested(self) -> signal.Signals | None:
        return self._state.requested

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            outer = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
            if isinstance(outer, StopSignals):  # before ours is installed: nothing falls between
                self._state = outer._state
        return super().__enter__()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        state = self._state
        if state.requested is None:
            state.requested = signal.Signals(signum)
        elif not state.raised:
            state.raised = True
            raise KeyboardInterrupt


class RaiseOnSignals(_HandlingStopSignals):
    """While active, the first SIGINT or SIGTERM raises :class:`Interrupted` ("stopped by
    SIGTERM while <doing>") at once, and later ones are ignored while the work unwinds: for work
    with nothing worth keeping halfway (a recording, whose temporary file is then discarded)."""

    def __init__(self, doing: str) -> None:
        super().__init__()
        self.doing = doing
        self.received: signal.Signals | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)
            raise Interrupted(f"stopped by {self.received.name} while {self.doing}", signum)


class DivergenceGuard:
    """Keeps the last good learner state and puts it back after an update that went non-finite.

    ``max_failures`` bad updates in a row stop the run with a message naming the step and the
    likely cause.
    """

    def __init__(self, ppo: PPOLearner, max_failures: int = 3) -> None:
        self.ppo, self.max_failures = ppo, max_failures
        self.failures = 0
        self.restores = 0
        self._good: list[torch.Tensor] = []
        self.save_good()

    def _live(self) -> list[torch.Tensor]:
        """Every tensor an update changes: weights, statistics, optimizer and reward-scale state."""
        ppo = self.ppo
        tensors = list(ppo.agent.state_dict().values())  # views of the live tensors
        if ppo.reward_scale is not None:
            tensors += list(ppo.reward_scale.state_dict().values())
        for state in ppo.optimizer.state.values():  # last: it appears at the first step
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
        return tensors

    def save_good(self) -> None:
        live = self._live()
        if len(live) != len(self._good):  # the optimizer creates its state at its first step
            self._good = [t.clone() for t in live]
            return
        for good, t in zip(self._good, live, strict=True):
            good.copy_(t)

    def _restore(self) -> None:
        live = self._live()
        if len(live) != len(self._good):  # the very first step failed: forget its Adam state
            self.ppo.optimizer.state.clear()
        for t, good in zip(live, self._good, strict=False):
            t.copy_(good)

    def check(self, finite: bool, env_steps: int) -> bool:
        """After an update: keep it (True) or roll it back (False); raises after too many."""
        if finite:
            self.failures = 0
            self.save_good()
            return True
        env_fault = self._env_fault()  # read before the rollback puts the statistics back
        self._restore()
        self.failures += 1
        self.restores += 1
        if self.failures >= self.max_failures:
            cfg = self.ppo.config
            if env_fault is not None:
                cause = (
                    f" after the env produced non-finite {env_fault} (NaN or inf): the env is"
                    " at fault, not the learning settings"
                )
            else:
                causes = [f"the learning rate ({cfg.learning_rate:g}) may be too high"]
                if cfg.max_grad_norm == 0:
                    causes.append("gradient clipping is off (max_grad_norm 0)")
                cause = f"; {' and '.join(causes)}"
            raise TrainingDiverged(
                f"training diverged at env step {env_steps:,}: {self.failures} updates in a row"
                f" gave a non-finite loss, gradient or parameter{cause}."
                f" The run folder keeps the last good weights ({RunFolder.CHECKPOINTS['last']})",
                ("max_grad_norm",) if cfg.max_grad_norm == 0 and env_fault is None else (),
            )
        return False

    def _env_fault(self) -> str | None:
        """``"observations"`` or ``"rewards"`` if the env handed out non-finite ones during the
        failed iteration, as the statistics that saw them show (read only after a failure)."""
        ppo = self.ppo

        def bad(t: torch.Tensor | None) -> bool:
            return t is not None and not bool(torch.isfinite(t).all())

        norm = ppo.agent.obs_norm
        if (norm.enabled and bad(norm.mean)) or bad(getattr(ppo, "obs", None)):
            return "observations"
        scale = ppo.reward_scale
        if (scale is not None and bad(scale.returns)) or bad(getattr(ppo, "_episode_return", None)):
            return "rewards"
        return None


def all_finite(stats: dict[str, torch.Tensor], parameters: list[torch.Tensor]) -> torch.Tensor:
    """One device flag: every statistic and every parameter is finite (no host sync here)."""
    flags = [torch.isfinite(torch.stack(list(stats.values()))).all()]
    flags += [torch.isfinite(p).all() for p in parameters]
    return torch.stack(flags).all()
