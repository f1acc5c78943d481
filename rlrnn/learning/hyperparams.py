"""Each agent's tuned defaults for the position-only cart-pole, in one place.

In the spirit of rl-baselines3-zoo's hyperparameter files: an entry lists only what differs from
:class:`rlrnn.learning.config.RunConfig`'s defaults (which are the ``lstm`` agent's), in the same
sections as a run's saved config. Options given on the command line override these.

How the rlrnn entries were chosen: ``benchmarks/tune.py`` (3 seeds, time to solve), the
full ``rlrnn compare`` report in the README, and ``benchmarks/stability.py`` (final weights and
stays-solved over 5 and 10 seeds). Raw advantages, a frozen observation normaliser and a learning
rate cut to a tenth once solved (the defaults) keep ``lstm``, ``gru`` and ``lstm2`` solved;
``lstm2`` also needs its layers as wide as the ``lstm``'s (32; at 16 it reached 475 on 7 of 10 seeds
at 100k steps, now 9 of 10) and gamma 0.99; ``gru`` a learning rate of 5e-3 (9 of 10 at 100k steps,
5 of 10 at 4e-3), a GAE lambda of 0.9 (10 of 10, and 85% of its evaluations after a first solve stay
solved, against 81% at 0.8) and its gradient norm clipped at 0.3, not 0.5 (over seeds 0-9, 90% stay
solved at 100k and 97.6% at 500k, against 85% and 95.5%). ``framestack`` learns more slowly on raw
advantages: it keeps normalised ones at full steps and only freezes its normaliser. ``rnn`` keeps
the previous recipe: over seeds 0-9 at 100k steps its final weights reach 475 on 7 of 10 with a
learning rate of 2e-3 (3 of 10 at 4e-3). ``mingru`` (screened on seeds 10-19 at 200k steps, final
weights >= 475, automatic float path) stacks two layers on the lstm's recipe: 9 of 10; with one
layer 8 of 10, and one change to it (a learning rate of 3e-3 or 5e-3, a gradient norm clipped
at 0.3, GAE lambda 0.9, width 64) 6 to 8 of 10. The SB3 entries are
rl-baselines3-zoo's tuned settings (``ppo.yml`` CartPole-v1 and ``ppo_lstm.yml``
CartPoleNoVel-v1), translated to rlrnn's names: 8 envs x 32 steps, one minibatch of 256, 20
epochs, lr 1e-3 and clip 0.2 both annealed.

An env may change these for every rlrnn agent (:data:`ENV_HYPERPARAMS`): the cart-pole's tuning
is not a pendulum's.

Beside them, :data:`SEARCH_SPACES`: what ``rlrnn tune`` may change for each agent, and over
which values. Every space holds its agent's defaults (the tuner's first trial is the defaults).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rlrnn.errors import UsageError
from rlrnn.learning.config import RunConfig, is_saved_config

# The previous rlrnn recipe, kept by rnn: staying solved measured no better with the new one.
_NORMALISED = {"norm_adv": True, "freeze_obs_norm": False, "solved_lr_scale": 1.0}

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
    "norm_adv": True,  # SB3's normalize_advantage
    "freeze_obs_norm": False,  # VecNormalize keeps updating
    "solved_lr_scale": 1.0,  # SB3 anneals linearly, solved or not
}

HYPERPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "lstm": {},
    "lstm2": {"agent": {"num_layers": 2}, "ppo": {"gamma": 0.99}},
    "gru": {"ppo": {"learning_rate": 5e-3, "gae_lambda": 0.9, "max_grad_norm": 0.3}},
    # Two layers: the best of the changes screened on seeds 10-19 (automatic float path), 9 of 10
    # against one layer's 8; on seeds 0-9 both reach 17 of 20 over two paths (parallel-time.md).
    "mingru": {"agent": {"num_layers": 2}},
    "rnn": {"ppo": _NORMALISED | {"learning_rate": 2e-3}},
    "mlp": {},
    "framestack": {"agent": {"frame_stack": 4}, "ppo": {"norm_adv": True, "solved_lr_scale": 1.0}},
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


# What an env changes over every rlrnn agent's own defaults (which are tuned for the cart-pole).
# PositionOnlyPendulum-v1: recipes screened on seeds 10-15 at 200k env steps with gru and lstm
# (benchmarks/recipes.py; benchmarks/results/pendulum_recipes_*.json), then judged on seeds 0-9 on
# two float paths (docs/continuous.md): more, smaller updates (10 epochs of 8 minibatches), a
# shorter horizon, a clip range kept whole, rollouts of 64 steps over 16 envs (GAE and BPTT see
# a third of an episode), gSDE exploration drawn every 4 steps, and a bounds loss: without it
# the Gaussian's mean of some seeds drifted far past the torque bounds, where every sample is
# clipped to the same action and nothing brings it back.
# ContinuousPositionOnlyCartPole-v1: the cart-pole's recipe over 200k env steps, not 100k (its
# learning rate and clip range anneal over twice as long). On seeds 10-19 the final weights of
# lstm and gru reach 475 on 10 of 10 each, against 7 and 6 of 10 at 100k; a log-std started
# at -1, gSDE, normalised advantages and a lower learning rate once solved did no better
# (benchmarks/results/continuous_cartpole_recipes_*.json).
ENV_HYPERPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "ContinuousPositionOnlyCartPole-v1": {"ppo": {"total_timesteps": 200_000}},
    "PositionOnlyPendulum-v1": {
        "ppo": {
            "total_timesteps": 200_000,
            "update_epochs": 10,
            "num_minibatches": 8,
            "gamma": 0.95,
            "gae_lambda": 0.95,
            "learning_rate": 3e-3,
            "anneal_clip": False,
            "num_envs": 16,
            "num_steps": 64,
            "sde_sample_freq": 4,
            "bound_coef": 0.01,
        }
    },
}

# rl-baselines3-zoo's tuned Pendulum settings (ppo.yml Pendulum-v1, ppo_lstm.yml
# PendulumNoVel-v1), which SB3's agents take on the position-only pendulum: 4 envs x 1024 steps,
# 10 epochs, gamma 0.9, lambda 0.95, lr 1e-3 and clip 0.2 held, gSDE drawn every 4 steps;
# minibatches of SB3's default size (64 for PPO, 128 for RecurrentPPO). PPO keeps SB3's default
# policy (tanh heads of 64 x 64) without normalisation; RecurrentPPO's tuned entry normalises
# observations and rewards and takes the same policy as its CartPoleNoVel-v1 entry (an LSTM of
# 64 for each of actor and critic, ReLU heads of 64), which the agent's defaults already are.
_SB3_ZOO_PENDULUM: dict[str, Any] = {
    "num_envs": 4,
    "num_steps": 1024,
    "update_epochs": 10,
    "learning_rate": 1e-3,
    "anneal_lr": False,
    "gamma": 0.9,
    "gae_lambda": 0.95,
    "clip_coef": 0.2,
    "anneal_clip": False,
    "max_grad_norm": 0.5,
    "norm_adv": True,
    "normalize_reward": False,
    "freeze_obs_norm": False,
    "solved_lr_scale": 1.0,
    "sde_sample_freq": 4,
}
_SB3_ZOO_HEADS: dict[str, Any] = {
    "pi_hidden": (64, 64),
    "vf_hidden": (64, 64),
    "activation": "tanh",
    "normalize_obs": False,
}
SB3_ENV_HYPERPARAMS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "PositionOnlyPendulum-v1": {
        "sb3-ppo": {"agent": _SB3_ZOO_HEADS, "ppo": _SB3_ZOO_PENDULUM | {"num_minibatches": 64}},
        "sb3-recurrentppo": {
            "ppo": _SB3_ZOO_PENDULUM | {"num_minibatches": 32, "normalize_reward": True},
        },
    },
}


def default_config(agent: str, env_id: str | None = None) -> RunConfig:
    """The tuned configuration of ``agent`` (validated like any config), on ``env_id`` (the
    config's default env when None) with that env's changes (:data:`ENV_HYPERPARAMS` for
    rlrnn's agents, rl-baselines3-zoo's :data:`SB3_ENV_HYPERPARAMS` for SB3's)."""
    if not isinstance(agent, str) or agent not in HYPERPARAMS:
        raise UsageError(f"unknown agent {agent!r}; choose from {', '.join(HYPERPARAMS)}")
    if agent.startswith("sb3-"):
        env_entry = SB3_ENV_HYPERPARAMS.get(env_id or "", {}).get(agent, {})
    else:
        env_entry = ENV_HYPERPARAMS.get(env_id or "", {})
    data = RunConfig().to_dict()
    for section in ("agent", "ppo"):
        data[section].update(HYPERPARAMS[agent].get(section, {}))
        data[section].update(env_entry.get(section, {}))
    data["agent"]["agent"] = agent
    if env_id is not None:
        data["env_id"] = env_id
    return RunConfig.from_dict(data)


def config_from_file_data(data: Any) -> RunConfig:
    """The config a config file's JSON ``data`` holds: a whole config as rlrnn saves it is taken
    as it is (:meth:`RunConfig.from_dict`, which fills in what an older version did not save); a
    partial one, such as ``{"agent": {"agent": "gru"}}``, is applied on top of its agent's
    tuned defaults (:func:`default_config`; the ``lstm`` agent's when it names none)."""
    if not isinstance(data, dict) or is_saved_config(data):
        return RunConfig.from_dict(data)
    section = data.get("agent", {})
    agent = section.get("agent", "lstm") if isinstance(section, dict) else None
    if not isinstance(agent, str) or agent not in HYPERPARAMS:
        return RunConfig.from_dict(data)  # says what is wrong with the agent's section
    env_id = data.get("env_id")
    merged = default_config(agent, env_id if isinstance(env_id, str) else None).to_dict()
    for key, value in data.items():
        if key in ("agent", "ppo") and isinstance(value, dict):
            merged[key].update(value)
        else:
            merged[key] = value  # from_dict checks it (a section that is not an object too)
    return RunConfig.from_dict(merged)


def describe(agent: str) -> str:
    """``key=value`` pairs of what ``agent``'s defaults change, for ``rlrnn agents``."""
    entry = HYPERPARAMS[agent]
    pairs = [
        f"{key}={' '.join(map(str, v)) if isinstance(v, tuple) else v}"
        for section in ("agent", "ppo")
        for key, v in entry.get(section, {}).items()
    ]
    return ", ".join(pairs) or "none (the config's own defaults)"


# ---------------------------------------------------------------- search spaces for rlrnn tune


class LogRange(NamedTuple):
    """A float drawn log-uniformly from [low, high]."""

    low: float
    high: float


class Choice(NamedTuple):
    """One of ``options``."""

    options: tuple[Any, ...]


class Variants(NamedTuple):
    """Named sets of values, one drawn by its name (``benchmarks/tune.py``'s variants)."""

    named: dict[str, dict[str, Any]]


# Dotted config key (as in a saved config) -> the values a trial may give it.
SearchSpace = dict[str, LogRange | Choice | Variants]

_PPO_SPACE: SearchSpace = {
    "ppo.learning_rate": LogRange(5e-4, 1e-2),
    "ppo.num_envs": Choice((32, 64, 128)),
    "ppo.num_steps": Choice((8, 16, 32)),  # the BPTT length
    "ppo.num_minibatches": Choice((1, 2, 4)),  # each divides every num_envs above
    "ppo.update_epochs": Choice((2, 4, 8)),
    "ppo.gamma": Choice((0.95, 0.98, 0.99)),
    "ppo.gae_lambda": Choice((0.8, 0.9, 0.95)),
    "ppo.clip_coef": Choice((0.1, 0.2, 0.3)),
    "ppo.ent_coef": Choice((0.0, 0.003, 0.01)),
}
_WIDTH = {"agent.hidden_size": Choice((16, 32, 64))}
# SB3's PPO runs few envs and many epochs (rl-baselines3-zoo's ranges, trimmed for the CPU).
_SB3_SPACE: SearchSpace = {
    "ppo.learning_rate": LogRange(1e-4, 3e-3),
    "ppo.num_steps": Choice((16, 32, 64)),
    "ppo.num_minibatches": Choice((1, 2, 4)),
    "ppo.update_epochs": Choice((5, 10, 20)),
    "ppo.gamma": Choice((0.95, 0.98, 0.99)),
    "ppo.gae_lambda": Choice((0.8, 0.9, 0.95)),
    "ppo.clip_coef": Choice((0.1, 0.2, 0.3)),
    "ppo.ent_coef": Choice((0.0, 0.003, 0.01)),
}

SEARCH_SPACES: dict[str, SearchSpace] = {
    "lstm": _PPO_SPACE | _WIDTH,
    "lstm2": _PPO_SPACE | _WIDTH,
    "gru": _PPO_SPACE | _WIDTH,
    "mingru": _PPO_SPACE | _WIDTH,
    "rnn": _PPO_SPACE | _WIDTH,
    "mlp": _PPO_SPACE | _WIDTH,
    "framestack": _PPO_SPACE | _WIDTH | {"agent.frame_stack": Choice((2, 4, 8))},
    "sb3-ppo": _SB3_SPACE,
    "sb3-recurrentppo": _SB3_SPACE | {"agent.hidden_size": Choice((32, 64))},
}


def search_space(agent: str, base: RunConfig | None = None) -> SearchSpace:
    """The search space of ``agent``; with ``base`` (the tuner's first trial, e.g. an env's
    defaults) each range and choice also holds ``base``'s own value."""
    if agent not in SEARCH_SPACES:
        raise UsageError(f"unknown agent {agent!r}; choose from {', '.join(SEARCH_SPACES)}")
    space = dict(SEARCH_SPACES[agent])
    for key, values in space.items() if base is not None else ():
        own = value_of(base, key)
        if isinstance(values, Choice) and own not in values.options:
            space[key] = Choice(tuple(sorted((*values.options, own))))
        elif isinstance(values, LogRange) and not values.low <= own <= values.high:
            space[key] = LogRange(min(values.low, own), max(values.high, own))
    return space


def space_as_dict(space: SearchSpace) -> dict[str, list[Any]]:
    """A JSON form of ``space``: ``["log", low, high]``, ``["choice", *options]`` or
    ``["variants", {name: values}]``."""
    forms = {LogRange: lambda r: ["log", r.low, r.high], Choice: lambda r: ["choice", *r.options]}
    forms[Variants] = lambda r: ["variants", r.named]
    return {key: forms[type(r)](r) for key, r in space.items()}


def with_values(config: RunConfig, values: dict[str, Any]) -> RunConfig:
    """``config`` with the dotted keys of ``values`` (``"ppo.learning_rate"``) set."""
    data = config.to_dict()
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        (data[section] if section else data)[name] = value
    return RunConfig.from_dict(data)


def value_of(config: RunConfig, key: str) -> Any:
    """The value of the dotted key ``key`` in ``config``."""
    section, _, name = key.rpartition(".")
    return getattr(getattr(config, section) if section else config, name)
