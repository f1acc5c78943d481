"""Each agent's tuned defaults for the position-only cart-pole, in one place.

In the spirit of rl-baselines3-zoo's hyperparameter files: an entry lists only what differs from
:class:`rlrnn.config.RunConfig`'s defaults (which are the ``lstm`` agent's), in the same sections
as ``config.json``. Options given on the command line override these.

How the rlrnn entries were chosen: ``benchmarks/tune.py`` (3 seeds, time to solve) and the
``compare --full`` report in the README. The SB3 entries are rl-baselines3-zoo's tuned settings
(``ppo.yml`` CartPole-v1 and ``ppo_lstm.yml`` CartPoleNoVel-v1), translated to rlrnn's names:
8 envs x 32 steps, one minibatch of 256, 20 epochs, lr 1e-3 and clip 0.2 both annealed.
"""

from __future__ import annotations

from typing import Any

from rlrnn.config import RunConfig
from rlrnn.errors import UsageError

_SB3_ZOO_PPO: dict[str, Any] = {
    "num_envs": 8,
    "num_steps": 32,
    "num_minibatches": 1,
    "update_epochs": 20,
    "learning_rate": 1e-3,
    "gamma": 0.98,
    "gae_lambda": 0.8,
    "clip_coef": 0.2,
    "max_grad_norm": 0.5,
}

HYPERPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "lstm": {},
    "lstm2": {"agent": {"num_layers": 2, "hidden_size": 16}},
    "gru": {},
    "rnn": {},
    "mlp": {},
    "framestack": {"agent": {"frame_stack": 4}},
    "sb3-ppo": {
        # MlpPolicy: two tanh layers of 64 in each head, no shared trunk.
        "agent": {
            "pi_hidden": (64, 64),
            "vf_hidden": (64, 64),
            "activation": "tanh",
            "normalize_obs": False,
        },
        "ppo": {**_SB3_ZOO_PPO, "normalize_reward": False},
    },
    "sb3-recurrentppo": {
        # MlpLstmPolicy: an LSTM of 64 for the actor and one for the critic, ReLU heads of 64.
        "agent": {"hidden_size": 64, "shared_core": False},
        "ppo": _SB3_ZOO_PPO,
    },
}


def default_config(agent: str) -> RunConfig:
    """The tuned configuration of ``agent`` (validated like any config)."""
    if agent not in HYPERPARAMS:
        raise UsageError(f"unknown agent {agent!r}; choose from {', '.join(HYPERPARAMS)}")
    entry = HYPERPARAMS[agent]
    data = RunConfig().to_dict()
    for section in ("agent", "ppo"):
        data[section].update(entry.get(section, {}))
    data["agent"]["agent"] = agent
    return RunConfig.from_dict(data)


def describe(agent: str) -> str:
    """``key=value`` pairs of what ``agent``'s defaults change, for ``rlrnn agents``."""
    entry = HYPERPARAMS[agent]
    pairs = [
        f"{key}={' '.join(map(str, v)) if isinstance(v, tuple) else v}"
        for section in ("agent", "ppo")
        for key, v in entry.get(section, {}).items()
    ]
    return ", ".join(pairs) or "the defaults shown by --help"
