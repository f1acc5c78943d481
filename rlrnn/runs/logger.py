"""The one sink of a run's numbers: TensorBoard scalars and the progress bar.

rlrnn's trainer (:mod:`rlrnn.runs.training`) and the SB3 reference agents' (:mod:`rlrnn.runs.sb3`)
hand it what they measure; it decides where each number goes. TensorBoard keys are the field's
(CleanRL's and SB3's): ``charts/episodic_return``, ``charts/SPS``, ``losses/value_loss``,
``eval/mean_return``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tqdm import tqdm

from rlrnn.learning.config import RunConfig
from rlrnn.runs.folder import RunFolder

if TYPE_CHECKING:  # TensorBoard: 1-2 s to import, so only when a run starts
    from torch.utils.tensorboard import SummaryWriter

# PPO's own statistics are losses/..., but these two are charts/... as CleanRL logs them.
CHARTS = ("learning_rate", "epochs")


class RunLogger:
    """TensorBoard event files in the run's folder (a resumed run appends a new one) and a
    progress bar over ``total_steps`` env steps, ``done_steps`` of them already made."""

    def __init__(
        self,
        folder: RunFolder,
        config: RunConfig,
        total_steps: int,
        show_progress: bool,
        done_steps: int = 0,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer: SummaryWriter = SummaryWriter(str(folder.tensorboard))
        self.writer.add_text("config", f"```\n{config.to_json()}\n```")
        self.bar = tqdm(
            total=total_steps,
            unit="step",
            disable=not show_progress,
            dynamic_ncols=True,
            desc=f"{config.agent.agent} s{config.seed}",
        )
        self.bar.update(done_steps)
        self.recent_return = math.nan  # the mean return of the episodes last finished
        self.last_eval: float | None = None

    def scalar(self, key: str, value: float, step: int) -> None:
        self.writer.add_scalar(key, value, step)

    def update(self, stats: dict[str, float], step: int) -> None:
        """PPO's statistics of one update (diagnostics come with their own tag)."""
        for key, value in stats.items():
            if "/" not in key:
                key = f"{'charts' if key in CHARTS else 'losses'}/{key}"
            self.writer.add_scalar(key, value, step)

    def episodes(self, count: float, return_sum: float, length_sum: float, step: int) -> None:
        """The episodes that ended in one rollout: their mean return and length."""
        if count > 0:
            self.recent_return = return_sum / count
            self.writer.add_scalar("charts/episodic_return", self.recent_return, step)
            self.writer.add_scalar("charts/episodic_length", length_sum / count, step)

    def speed(self, step: int, train_seconds: float) -> None:
        self.writer.add_scalar("charts/SPS", step / max(train_seconds, 1e-9), step)

    def evaluation(self, record: dict[str, float]) -> None:
        step = int(record["env_steps"])
        self.writer.add_scalar("eval/mean_return", record["mean_return"], step)
        self.writer.add_scalar("eval/std_return", record["std_return"], step)
        self.last_eval = record["mean_return"]

    def rollback(self, step: int, restores: int) -> None:
        """A non-finite update was rolled back (:class:`rlrnn.runs.safety.DivergenceGuard`)."""
        self.writer.add_scalar("charts/divergence_restores", restores, step)
        self.bar.write(f"step {step:,}: non-finite update rolled back to the last good state")

    def progress(self, steps: int, step: int, train_seconds: float) -> None:
        """``steps`` more env steps made, ``step`` in all: the bar moves and says how it goes."""
        postfix = {"sps": f"{step / max(train_seconds, 1e-9):,.0f}"}
        if not math.isnan(self.recent_return):
            postfix = {"return": f"{self.recent_return:.1f}", **postfix}
        if self.last_eval is not None:
            postfix["eval"] = f"{self.last_eval:.1f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        self.writer.close()
        self.bar.close()
