"""When a run evaluates and writes its resume checkpoint: at any batch size, a sensible
number of times.

``eval_interval`` and ``checkpoint_interval`` are given in env steps, but a run can only stop to
evaluate between iterations, and one iteration is ``num_envs * num_steps`` env steps: 1,024 at
the defaults, 65,536 at 4,096 envs. An interval of at least one iteration is rounded up to
whole iterations. A shorter one cannot be honoured (it would mean an evaluation after every
iteration, and at 16,384 envs on a GPU one evaluation, 20 episodes of up to 500 sequential
steps, costs more than an iteration): it becomes as many iterations as keep the run to
``MAX_PER_RUN`` evaluations (or checkpoints), and at least one. At the defaults nothing changes:
an evaluation every 4 iterations (4,096 steps), the resume checkpoint every 8 (8,192),
whatever the budget.
"""

from __future__ import annotations

import math

from rlrnn.learning.config import RunConfig

MAX_PER_RUN = 100  # evaluations (apart: checkpoints) a run makes at most when asked for more


def iterations_between(interval: int, batch_size: int, num_iterations: int) -> int:
    """Iterations between two events asked for every ``interval`` env steps (0: never)."""
    if interval == 0:
        return 0
    if interval >= batch_size:
        return math.ceil(interval / batch_size)
    return max(1, math.ceil(num_iterations / MAX_PER_RUN))


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
