"""What keeps a run alive: stopping cleanly on SIGINT / SIGTERM and rolling back updates that
produce non-finite numbers."""

from __future__ import annotations

import copy
import signal
import threading
from types import FrameType
from typing import Any

import torch

from rlrnn.errors import TrainingDiverged
from rlrnn.ppo import RecurrentPPO

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While active, SIGINT and SIGTERM only ask the run to stop after the current update
    (``requested`` holds the signal); a second signal stops at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.requested: signal.Signals | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signals reach only it
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


class DivergenceGuard:
    """Keeps the last good learner state and puts it back after an update that went non-finite.

    ``max_failures`` bad updates in a row stop the run with a message naming the step and the
    likely cause.
    """

    def __init__(self, ppo: RecurrentPPO, max_failures: int = 3) -> None:
        self.ppo, self.max_failures = ppo, max_failures
        self.failures = 0
        self.restores = 0
        self._good: dict[str, Any] = {}
        self.save_good()

    def save_good(self) -> None:
        ppo = self.ppo
        self._good = {
            "agent": {k: v.clone() for k, v in ppo.agent.state_dict().items()},
            "optimizer": copy.deepcopy(ppo.optimizer.state_dict()),
            "reward_scale": None
            if ppo.reward_scale is None
            else {k: v.clone() for k, v in ppo.reward_scale.state_dict().items()},
        }

    def _restore(self) -> None:
        ppo, good = self.ppo, self._good
        ppo.agent.load_state_dict(good["agent"])
        ppo.optimizer.load_state_dict(copy.deepcopy(good["optimizer"]))
        if ppo.reward_scale is not None:
            ppo.reward_scale.load_state_dict(good["reward_scale"])

    def check(self, finite: bool, env_steps: int) -> bool:
        """After an update: keep it (True) or roll it back (False); raises after too many."""
        if finite:
            self.failures = 0
            self.save_good()
            return True
        self._restore()
        self.failures += 1
        self.restores += 1
        if self.failures >= self.max_failures:
            cfg = self.ppo.config
            causes = [f"the learning rate ({cfg.learning_rate:g}) may be too high"]
            if cfg.max_grad_norm == 0:
                causes.append("gradient clipping is off (--max-grad-norm 0)")
            raise TrainingDiverged(
                f"training diverged at env step {env_steps:,}: {self.failures} updates in a row"
                f" gave a non-finite loss, gradient or parameter; {' and '.join(causes)}."
                " The run folder keeps the last good weights (last.pt)"
            )
        return False


def all_finite(stats: dict[str, torch.Tensor], parameters: list[torch.Tensor]) -> torch.Tensor:
    """One device flag: every statistic and every parameter is finite (no host sync here)."""
    flags = [torch.isfinite(torch.stack(list(stats.values()))).all()]
    flags += [torch.isfinite(p).all() for p in parameters]
    return torch.stack(flags).all()
