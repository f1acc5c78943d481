"""rlrnn: recurrent policies that balance a cart-pole from positions alone.

``rlrnn`` builds on ``envs`` (the worlds) and ``agents`` (the policies), which know nothing of it;
``import rlrnn`` registers rlrnn's gymnasium ids (``PositionOnlyCartPole-v1`` and its variants).
Inside, five places, each using only the ones above it in this list:

- ``rlrnn.errors``, ``rlrnn.files``: what every part shares (typed errors and their exit
  codes; checked, atomic file writes);
- ``rlrnn.learning``: the algorithm (configs, the act loop, evaluation, GAE, the rollout, the
  PPO loss, the learner), with no files or folders in it;
- ``rlrnn.runs``: run-keeping (the run folder and its files, the front door's checks, the
  training loop, checkpoints, resume, signals and guards, the SB3 reference agents);
- ``rlrnn.tools``: what looks at trained agents and runs many of them, one sub-package per
  family (compare, tune, probe, gradflow, render, export);
- ``rlrnn.cli``: the ``rlrnn`` command, one module per subcommand.

The Python API, as the README's example uses it::

    from rlrnn import PPOConfig, RunConfig, evaluate, load_agent, train

    summary = train(RunConfig(ppo=PPOConfig(total_timesteps=20_000)), "runs/example")
    agent, config = load_agent("runs/example", "final")
    print(evaluate(agent, config.env_id, episodes=10).mean)

Each of them checks what it is given as the command line checks its options: a wrong value or
type (``episodes=0``, ``hidden_size=32.5``, an agent's name where a config goes, a size that
cannot fit in memory) is a :class:`rlrnn.errors.UsageError` (a typed one where it helps:
``ResumeRefused``, ``RunFolderRefused``, ``MemoryBudgetExceeded``), an env rlrnn cannot use an
:class:`envs.EnvError`, raised before anything is written (:mod:`rlrnn.runs.start`); ``train``
trains into a folder that holds a run only to resume it (``resume=True``).
``export(run, out, format="all")`` writes a trained policy as ONNX and TorchScript files with its
state (:mod:`rlrnn.tools.export.export`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import envs  # noqa: F401  (registers rlrnn's gymnasium ids; gymnasium only, no torch)

__version__ = "0.1.0"

# name -> module: imported on first use, so ``import rlrnn.cli`` stays light.
_API = {
    "AgentConfig": "rlrnn.learning.config",
    "PPOConfig": "rlrnn.learning.config",
    "RunConfig": "rlrnn.learning.config",
    "default_config": "rlrnn.learning.hyperparams",
    "train": "rlrnn.runs.training",
    "load_agent": "rlrnn.runs.loading",
    "evaluate": "rlrnn.learning.evaluation",
    "EvalResult": "rlrnn.learning.evaluation",
    "export": "rlrnn.tools.export.export",
}
__all__ = [
    "AgentConfig",
    "EvalResult",
    "PPOConfig",
    "RunConfig",
    "default_config",
    "evaluate",
    "export",
    "load_agent",
    "train",
]

if TYPE_CHECKING:
    from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
    from rlrnn.learning.evaluation import EvalResult, evaluate
    from rlrnn.learning.hyperparams import default_config
    from rlrnn.runs.loading import load_agent
    from rlrnn.runs.training import train
    from rlrnn.tools.export.export import export


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'rlrnn' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
