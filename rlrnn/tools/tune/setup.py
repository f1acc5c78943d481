"""What a tuning study is for, and how a trial's run is scored.

Objectives (:func:`score`): ``seconds`` or ``steps`` to solve (minimised), the ``final``
evaluation return or the ``auc``, the area under the evaluation curve divided by its span (the
mean return over the run; both maximised). The "stays solved" fraction
(:mod:`rlrnn.tools.common.stability`) enters the score with a weight ``w`` (the score is worsened by
``w * (1 - stays_solved)`` of itself) or as a constraint (runs below ``min_stays_solved`` are
infeasible: TPE learns from it, and the best trial is a feasible one).

``seconds`` are CPU seconds of the trial's process (``time.process_time``), counted by the tuner
from the start of the trial's run to the evaluation that first solved it (the periodic evaluations
included, the tuner's own work left out): unlike wall-clock seconds they do not grow when other
work loads the machine. A run that never solves must rank below every run that solves, whatever
the order they finish in: under ``steps`` it scores ``unsolved_penalty`` (> 1) times the most a
solved run can score (the most env steps a trial can run, times ``1 + w``); CPU seconds have no
such bound, so under ``seconds`` it scores infinity. The best trial is always one that solved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlrnn.errors import UsageError
from rlrnn.learning.config import SB3_AGENTS, RunConfig
from rlrnn.learning.fields import resolve_device
from rlrnn.learning.hyperparams import (
    LogRange,
    SearchSpace,
    Variants,
    space_as_dict,
    value_of,
    with_values,
)
from rlrnn.tools.common.stability import stability

# objective -> (direction, what it measures)
OBJECTIVES = {
    "seconds": ("minimize", "CPU seconds to solve"),
    "steps": ("minimize", "env steps to solve"),
    "final": ("maximize", "final evaluation return"),
    "auc": ("maximize", "mean evaluation return over the run (area under the curve / span)"),
}
TO_SOLVE = ("seconds", "steps")  # objectives that score the time to solve
# How trials are scored, recorded in every study: a study scored another way (an older rlrnn's
# wall-clock seconds, an unsolved run at 2 x the longest run so far) cannot be ranked with it.
SCORING = "2: CPU seconds or env steps to solve; a run that never solves ranks below all that do"


@dataclass(frozen=True)
class Setup:
    """What a study is for: trials of ``base`` with values from ``space``, scored by
    ``objective``. Every process of a study must have the same setup."""

    base: RunConfig
    space: SearchSpace
    objective: str = "seconds"
    threshold: float | None = None  # the env's reward threshold (solved at or above it)
    unsolved_penalty: float = 2.0
    stays_solved_weight: float = 0.0
    min_stays_solved: float = 0.0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise UsageError(
                f"unknown objective {self.objective!r}; choose from {', '.join(OBJECTIVES)}"
            )
        if not (math.isfinite(self.unsolved_penalty) and self.unsolved_penalty > 1):
            raise UsageError(f"unsolved_penalty must be a number > 1, got {self.unsolved_penalty}")
        if not (math.isfinite(self.stays_solved_weight) and self.stays_solved_weight >= 0):
            raise UsageError(
                f"stays_solved_weight must be a number >= 0, got {self.stays_solved_weight}"
            )
        if not 0 <= self.min_stays_solved <= 1:  # also refuses nan
            raise UsageError(f"min_stays_solved must be in [0, 1], got {self.min_stays_solved}")

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective][0]

    @property
    def max_env_steps(self) -> int:
        """The most env steps a trial can run: its budget (SB3's agents end the rollout they
        are in, one more at most)."""
        total = self.base.ppo.total_timesteps
        if self.base.agent.agent not in SB3_AGENTS:
            return total  # whole rollouts within the budget
        return total + max(self.config(p).ppo.batch_size for p in self.corners())

    @property
    def unsolved_score(self) -> float:
        """What a run that never solves scores under ``seconds`` or ``steps``: more than any
        run that solves can (see the module docstring)."""
        if self.objective == "seconds":
            return math.inf
        return self.unsolved_penalty * self.max_env_steps * (1 + self.stays_solved_weight)

    def may_be_best(self, trial_attrs: dict[str, Any]) -> bool:
        """Whether a complete trial with these attributes may be the best: it solved (for the
        objectives that score the time to solve) and meets the stays-solved constraint."""
        if self.objective in TO_SOLVE and trial_attrs.get("solved_at_steps") is None:
            return False
        return trial_attrs.get("constraint", 0.0) <= 0

    def attrs(self) -> dict[str, Any]:
        """The study attribute that identifies the setup (the device may differ per machine)."""
        base = self.base.to_dict()
        del base["device"], base["torch_threads"]
        return {
            "command": "tune",
            "scoring": SCORING,  # under rlrnn.tools.common.storage.SCORING_KEY: checked on joining
            "objective": self.objective,
            "unsolved_penalty": self.unsolved_penalty,
            "stays_solved_weight": self.stays_solved_weight,
            "min_stays_solved": self.min_stays_solved,
            "space": space_as_dict(self.space),
            "base": base,
        }

    def defaults(self) -> dict[str, Any]:
        """The base config's values of the searched keys: the study's first trial."""
        return {key: value_of(self.base, key) for key in self.space}

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the space's values (a UsageError for a range)."""
        points: list[dict[str, Any]] = [{}]
        for key, r in self.space.items():
            if isinstance(r, LogRange):
                raise UsageError(f"a grid needs a finite set of values; {key} is a range")
            options = list(r.named) if isinstance(r, Variants) else list(r.options)
            points = [{**p, key: v} for p in points for v in options]
        return points

    def corners(self) -> list[dict[str, Any]]:
        """The space's extremes: every key at its lowest, every key at its highest, and each
        variant with the others at their lowest (what :func:`check_space` tries)."""
        ranges = {k: r for k, r in self.space.items() if not isinstance(r, Variants)}
        low = {k: r.low if isinstance(r, LogRange) else min(r.options) for k, r in ranges.items()}
        high = {k: r.high if isinstance(r, LogRange) else max(r.options) for k, r in ranges.items()}
        tries = [low, high]
        for key, r in self.space.items():
            if isinstance(r, Variants):
                tries += [{**low, key: name} for name in r.named]
        return tries

    def config(self, params: dict[str, Any]) -> RunConfig:
        """The config of a trial with ``params`` (a Variants key holds the variant's name)."""
        values: dict[str, Any] = {}
        for key, value in params.items():
            r = self.space[key]
            values.update(r.named[value] if isinstance(r, Variants) else {key: value})
        return with_values(self.base, values)


def score(
    setup: Setup, summary: dict[str, Any], cpu_to_solve: float | None = None
) -> tuple[float, dict[str, Any]]:
    """The score of a finished run and what it was made from (trial attributes).

    ``cpu_to_solve``: the CPU seconds the run took up to the evaluation that first solved it
    (the ``seconds`` objective needs it for a run that solved; the tuner measures it).
    """
    records = summary["evaluations"]
    st = stability(records, setup.threshold)
    solved = summary["solved_at_steps"] is not None
    # Solved at the last evaluation only: nothing shows it stays solved.
    stays = (st.stays_solved if st.stays_solved is not None else 0.0) if solved else None
    if setup.objective in TO_SOLVE and not solved:
        value = setup.unsolved_score
    elif setup.objective == "seconds":
        if cpu_to_solve is None:
            raise ValueError("the seconds objective needs the CPU seconds to solve")
        value = cpu_to_solve
    elif setup.objective == "steps":
        value = summary["solved_at_steps"]
    elif setup.objective == "final":
        value = summary["final_eval_mean"]
    else:
        value = area_under_curve(records)
    if setup.stays_solved_weight and solved:
        worse = setup.stays_solved_weight * (1 - stays)
        value *= 1 + worse if setup.direction == "minimize" else 1 - worse
    attrs = {
        "status": summary["status"],
        "solved_at_steps": summary["solved_at_steps"],
        "cpu_seconds_to_solve": cpu_to_solve if solved else None,
        "final_eval_mean": summary["final_eval_mean"],
        "stays_solved": stays,
        "auc": area_under_curve(records),
        "env_steps": summary["env_steps"],
        # Wall-clock, as the run measured it (benchmarks/tune.py's tables); not the score.
        "solved_at_seconds": summary["solved_at_seconds"],
        "train_seconds": summary["train_seconds"],
    }
    if setup.min_stays_solved:  # <= 0: feasible (Optuna's convention)
        attrs["constraint"] = setup.min_stays_solved - (stays or 0.0)
    return float(value), attrs


def area_under_curve(records: list[dict[str, Any]]) -> float:
    """Trapezoid area under evaluation return against env steps, over its span."""
    if not records:
        return math.nan
    x = np.array([r["env_steps"] for r in records], dtype=np.float64)
    y = np.array([r["mean_return"] for r in records], dtype=np.float64)
    span = x[-1] - x[0]
    area = ((y[1:] + y[:-1]) / 2 * np.diff(x)).sum()  # the trapezoid rule
    return float(y[0]) if span == 0 else float(area / span)


def intermediate_value(setup: Setup, record: dict[str, Any]) -> float:
    """What a periodic evaluation reports to the pruner: its mean return, negated where the
    objective is minimised so that better is better in the study's direction.

    Not the time so far: Optuna's median pruner compares a trial's *best* value so far with the
    others' at the same step, and a time that only grows is best at its first evaluation.
    """
    sign = -1.0 if setup.direction == "minimize" else 1.0
    return sign * float(record["mean_return"])


def check_space(setup: Setup) -> None:
    """The base config, every corner of the search space and every variant must make a valid
    config that fits in memory (checked before any trial, so that no trial draws a size that
    cannot run)."""
    from rlrnn.learning.memory import check_training_memory  # reads the env's sizes: only now

    device = resolve_device(setup.base.device)
    check_training_memory(setup.base, device)  # what no trial changes (eval_episodes)
    for params in setup.corners():
        try:
            check_training_memory(setup.config(params), device)
        except UsageError as e:
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            raise UsageError(f"the search space cannot run ({shown}): {e}") from None
