"""When a run evaluates and writes ``last.pt``: at any batch size, a sensible number of times.

``eval_interval`` and ``checkpoint_interval`` are given in env steps, but a run can only stop to
evaluate between iterations, and one iteration is ``num_envs * num_steps`` env steps: 1,024 at
the defaults, 65,536 at 4,096 envs. So each interval is rounded up to whole iterations, and at
large batches spread out further so that a run holds at most ``MAX_PER_RUN`` of each: at 16,384
envs an evaluation (20 episodes of up to 500 steps) costs more than an iteration, and one after
every iteration would make the run mostly evaluation. At the defaults neither rule changes
anything: an evaluation every 4 iterations (4,096 steps), ``last.pt`` every 8 (8,192).
"""

from __future__ import annotations

import math

from rlrnn.config import RunConfig

MAX_PER_RUN = 100  # evaluations (and, apart, resume checkpoints) in one run at most


def iterations_between(interval: int, batch_size: int, num_iterations: int) -> int:
    """Iterations between two events asked for every ``interval`` env steps (0: never)."""
    if interval == 0:
        return 0
    return max(math.ceil(interval / batch_size), math.ceil(num_iterations / MAX_PER_RUN))


def eval_every(config: RunConfig) -> int:
    """Env steps between periodic evaluations, a whole number of iterations (0: never)."""
    ppo = config.ppo
    return ppo.batch_size * iterations_between(
        config.eval_interval, ppo.batch_size, ppo.num_iterations
    )


def checkpoint_every(config: RunConfig) -> int:
    """Env steps between resume checkpoints, a whole number of iterations (0: only at the end)."""
    ppo = config.ppo
    return ppo.batch_size * iterations_between(
        config.checkpoint_interval, ppo.batch_size, ppo.num_iterations
    )
