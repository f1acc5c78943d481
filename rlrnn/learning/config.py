"""Typed, validated run configuration; every field is a CLI option with its one-line doc.

Defaults are tuned for the position-only cart-pole (see the README's benchmark section).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from agents import AGENTS, BACKENDS
from agents.registry import ACTIVATIONS, LSTM_AGENTS
from envs.variants import VariantError, variant_params
from rlrnn.errors import UsageError
from rlrnn.learning.fields import (
    check_fields,
    check_seed,
    check_types,
    option,
    require,
    section_from_json,
)

DEVICES = ("auto", "cpu", "cuda")
# The reference agents, trained by Stable-Baselines3 / sb3-contrib (see rlrnn.runs.sb3).
SB3_AGENTS = {
    "sb3-ppo": "Stable-Baselines3 PPO, MlpPolicy (feedforward)",
    "sb3-recurrentppo": "sb3-contrib RecurrentPPO, MlpLstmPolicy",
}
AGENT_NAMES = (*AGENTS, *SB3_AGENTS)


# More threads than any machine has cores; far more (100,000) crash OpenMP with no message.
MAX_TORCH_THREADS = 1024
RLRNN_ONLY = ("bptt_len", "bound_coef")  # PPO options with no SB3 counterpart


@dataclass(frozen=True)
class AgentConfig:
    """The policy network."""

    agent: str = option("lstm", "agent name (see: rlrnn agents)", choices=AGENT_NAMES)
    hidden_size: int = option(32, "width of the recurrent (or feedforward) core")
    num_layers: int = option(1, "stacked core layers")
    backend: str = option(
        "custom",
        "LSTM implementation: our gate equations with hand-written BPTT, or torch.nn.LSTM",
        choices=BACKENDS,
    )
    shared_core: bool = option(True, "actor and critic share one core (else one core each)")
    pi_hidden: tuple[int, ...] = option((64,), "hidden widths of the policy head")
    vf_hidden: tuple[int, ...] = option((64,), "hidden widths of the value head")
    activation: str = option("relu", "activation of the heads", choices=tuple(ACTIVATIONS))
    normalize_obs: bool = option(True, "normalise observations by running mean and variance")
    frame_stack: int = option(4, "observations the framestack agent sees (k)")
    log_std_init: float = option(
        0.0, "Box actions only: the Gaussian's starting log-std (gSDE: each feature's noise)"
    )

    def __post_init__(self) -> None:
        check_fields(self)
        require(
            self.agent in AGENT_NAMES,
            f"unknown agent {self.agent!r}; choose from {', '.join(AGENT_NAMES)}",
        )
        require(self.backend in BACKENDS, f"unknown backend {self.backend!r}")
        require(
            self.backend == "custom" or self.agent in LSTM_AGENTS,
            f"backend 'torch' is for the lstm agents, not {self.agent!r}",
        )
        require(self.frame_stack >= 1, f"frame_stack (k) must be >= 1, got {self.frame_stack}")
        for name in ("hidden_size", "num_layers"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(all(w >= 1 for w in self.pi_hidden + self.vf_hidden), "head widths must be >= 1")
        require(self.activation in ACTIVATIONS, f"unknown activation {self.activation!r}")
        std = self.log_std_init
        require(abs(std) <= 20, f"log_std_init must be in [-20, 20], got {std}")


@dataclass(frozen=True)
class PPOConfig:
    """Recurrent PPO."""

    total_timesteps: int = option(100_000, "env steps to train for")
    num_envs: int = option(64, "environments stepped in parallel")
    num_steps: int = option(
        16, "steps per environment per rollout (the BPTT length unless bptt_len is given)"
    )
    bptt_len: int | None = option(
        None,
        "BPTT length: cut each env's rollout into chunks of this many steps (a divisor of"
        " num_steps), each replayed in the update from the recurrent state the rollout had at"
        " its first step; minibatches are then sets of chunks (not given, or none: the whole"
        " rollout)",
    )
    num_minibatches: int = option(
        2, "minibatches per epoch, each a set of whole env sequences (chunks with bptt_len)"
    )
    update_epochs: int = option(4, "passes over each rollout")
    learning_rate: float = option(4e-3, "Adam learning rate")
    anneal_lr: bool = option(True, "decay the learning rate linearly to 0")
    gamma: float = option(0.98, "discount factor")
    gae_lambda: float = option(0.8, "GAE lambda")
    clip_coef: float = option(0.2, "PPO ratio clip")
    anneal_clip: bool = option(True, "decay the clip range linearly to 0")
    ent_coef: float = option(0.0, "entropy bonus coefficient")
    vf_coef: float = option(0.5, "value loss coefficient")
    max_grad_norm: float = option(0.5, "global gradient-norm clip (0 disables)")
    norm_adv: bool = option(
        False,
        "normalise advantages per minibatch (off: once solved, the advantages are the critic's"
        " noise, and normalising scales that noise up to full-size policy steps)",
    )
    normalize_reward: bool = option(True, "scale rewards by the std of the discounted return")
    target_kl: float = option(
        0.0, "end an update's epochs early once their mean approx_kl passes this (0: never)"
    )
    desired_kl: float = option(
        0.0,
        "adapt the learning rate after each minibatch to keep approx_kl near this:"
        " /1.5 above twice it, x1.5 below half of it; replaces anneal_lr (0: off)",
    )
    freeze_obs_norm: bool = option(
        True,
        "stop updating the observation normaliser once the recent training return reaches the"
        " env's reward threshold (else its mean follows a drifting cart)",
    )
    solved_lr_scale: float = option(
        0.1,
        "multiply the learning rate by this once the recent training return reaches the env's"
        " reward threshold (1: no change): a solved policy keeps learning in smaller steps",
    )
    adam_beta1: float = option(0.9, "Adam's first-moment decay")
    adam_beta2: float = option(0.999, "Adam's second-moment decay")
    bound_coef: float = option(
        0.0,
        "Box actions only: penalise the Gaussian's mean past the action bounds by this times its"
        " squared overshoot in half-ranges (clipped samples give a mean out there no signal back)",
    )
    sde_sample_freq: int = option(
        0,
        "Box actions only: explore with gSDE (state-dependent noise), drawn again every this"
        " many steps (0: off, a Gaussian with a learned, state-independent std)",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        for name in (
            "total_timesteps",
            "num_envs",
            "num_steps",
            "num_minibatches",
            "update_epochs",
        ):
            value = getattr(self, name)
            require(value >= 1, f"{name} must be >= 1, got {value}")
        if self.bptt_len is not None:
            require(self.bptt_len >= 1, f"bptt_len must be >= 1, got {self.bptt_len}")
            require(
                self.num_steps % self.bptt_len == 0,
                f"bptt_len ({self.bptt_len}) must divide num_steps ({self.num_steps}):"
                " each env's rollout is cut into whole chunks",
            )
        require(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        require(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}")
        require(0 <= self.gae_lambda <= 1, f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        require(self.clip_coef > 0, f"clip_coef must be > 0, got {self.clip_coef}")
        non_negative = ("ent_coef", "vf_coef", "max_grad_norm", "target_kl", "desired_kl")
        for name in (*non_negative, "bound_coef", "sde_sample_freq"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(
            0 < self.solved_lr_scale <= 1,
            f"solved_lr_scale must be in (0, 1], got {self.solved_lr_scale}",
        )
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            require(0 <= value < 1, f"{name} must be in [0, 1), got {value}")
        require(
            self.total_timesteps >= self.batch_size,
            f"total_timesteps ({self.total_timesteps}) is less than one rollout"
            f" (num_envs * num_steps = {self.batch_size})",
        )

    def check_whole_sequences(self) -> None:
        """A UsageError unless a rollout splits into minibatches of whole sequences, as rlrnn's
        update replays them (each from the recurrent state its first step had); SB3's agents
        cut their own minibatches, so only the steps need to divide."""
        if self.bptt_len is None:
            require(
                self.num_envs % self.num_minibatches == 0,
                f"num_minibatches ({self.num_minibatches}) must divide num_envs"
                f" ({self.num_envs}): a minibatch is a set of whole environment sequences",
            )
        else:
            require(
                self.num_sequences % self.num_minibatches == 0,
                f"num_minibatches ({self.num_minibatches}) must divide the"
                f" {self.num_sequences} sequences of a rollout (num_envs * num_steps / bptt_len)",
            )

    @property
    def batch_size(self) -> int:
        """Env steps per rollout."""
        return self.num_envs * self.num_steps

    @property
    def sequence_length(self) -> int:
        """Steps of one sequence the update replays: ``bptt_len``, else the whole rollout."""
        return self.num_steps if self.bptt_len is None else self.bptt_len

    @property
    def num_sequences(self) -> int:
        """Sequences in one rollout: each env's ``num_steps`` cut into ``sequence_length``."""
        return self.num_envs * (self.num_steps // self.sequence_length)

    @property
    def sequences_per_minibatch(self) -> int:
        return self.num_sequences // self.num_minibatches

    @property
    def num_iterations(self) -> int:
        return self.total_timesteps // self.batch_size


# PPO options added after configs were first saved, with the value that reproduces a run saved
# without them: resuming or re-using an older run keeps the behaviour it was trained with.
PPO_ADDED_LATER: dict[str, Any] = {"solved_lr_scale": 1.0}
# The fields every saved run config has held since the first rlrnn that saved one
# (section -> names):
# a file with all of them is a whole saved config, of this version or an older one; a file
# without them is a partial config (see rlrnn.learning.hyperparams.config_from_file_data).
SAVED_FROM_THE_START: dict[str, tuple[str, ...]] = {
    "": ("env_id", "seed", "device", "torch_threads", "eval_interval", "eval_episodes"),
    "agent": (
        *("agent", "hidden_size", "num_layers", "backend", "shared_core"),
        *("pi_hidden", "vf_hidden", "activation", "normalize_obs"),
    ),
    "ppo": (
        *("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs"),
        *("learning_rate", "anneal_lr", "gamma", "gae_lambda", "clip_coef", "anneal_clip"),
        *("ent_coef", "vf_coef", "max_grad_norm", "norm_adv", "normalize_reward"),
    ),
}


def is_saved_config(data: Any) -> bool:
    """Whether ``data`` is a whole config as some version of rlrnn saved it (a run's config, a
    checkpoint's config), not a partial one a user wrote."""
    if not isinstance(data, dict):
        return False
    for section, names in SAVED_FROM_THE_START.items():
        part = data.get(section) if section else data
        if not isinstance(part, dict) or not all(name in part for name in names):
            return False
    return True


@dataclass(frozen=True)
class RunConfig:
    """One training run."""

    env_id: str = option(
        "PositionOnlyCartPole-v1",
        "gymnasium env id or module:EnvId (Box obs, Discrete actions)",
    )
    seed: int = option(0, "random seed (envs, weights, sampling)")
    device: str = option("auto", "torch device; auto picks CUDA when present", choices=DEVICES)
    torch_threads: int = option(1, "CPU threads for torch (small nets run fastest on 1)")
    compile: bool = option(
        False,
        "run the env step, the acting forward and the minibatch loss through torch.compile"
        " (compiled once at the start, timed apart)",
    )
    eval_interval: int = option(
        4096,
        "env steps between deterministic evaluations, rounded up to whole iterations; less than"
        " an iteration: at most 100 a run (0: never)",
    )
    eval_episodes: int = option(20, "episodes per periodic evaluation")
    checkpoint_interval: int = option(
        8192,
        "env steps between saves of the resume checkpoint, rounded as eval_interval is; 0: only at"
        " the end or on a stop",
    )
    agent: AgentConfig = field(default_factory=AgentConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        check_fields(self)
        check_seed(self.seed)
        require(
            1 <= self.torch_threads <= MAX_TORCH_THREADS,
            f"torch_threads must be in [1, {MAX_TORCH_THREADS}], got {self.torch_threads}"
            f" (this machine has {os.cpu_count() or 1} CPU cores)",
        )
        require(self.eval_interval >= 0, f"eval_interval must be >= 0, got {self.eval_interval}")
        require(self.eval_episodes >= 1, f"eval_episodes must be >= 1, got {self.eval_episodes}")
        require(
            self.checkpoint_interval >= 0,
            f"checkpoint_interval must be >= 0, got {self.checkpoint_interval}",
        )
        require(self.device in DEVICES, f"unknown device {self.device!r}; choose from {DEVICES}")
        if (agent := self.agent.agent) in SB3_AGENTS:  # SB3 cuts minibatches from a rollout's steps
            options = {"compile": self.compile} | {k: getattr(self.ppo, k) for k in RLRNN_ONLY}
            for name in (k for k, value in options.items() if value):
                raise UsageError(f"{name} is for rlrnn's agents, not {agent}", fields=(name,))
            steps, minibatches = self.ppo.batch_size, self.ppo.num_minibatches
            require(
                steps % minibatches == 0,
                f"num_minibatches ({minibatches}) must divide the {steps} steps of a rollout"
                " (num_envs * num_steps)",
            )
        else:
            self.ppo.check_whole_sequences()
        try:  # a partially observed cart-pole's id names its parameters: check them now
            variant_params(self.env_id)
        except VariantError as e:
            raise UsageError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Rebuild a config from ``to_dict`` output; unknown or mistyped keys are a UsageError.
        A field missing takes its default here, except in a whole config saved by an older
        version (:func:`is_saved_config`), where a PPO option added since takes
        :data:`PPO_ADDED_LATER`'s value. A partial config a user wrote starts from its agent's
        defaults instead: :func:`rlrnn.learning.hyperparams.config_from_file_data`."""
        if not isinstance(data, dict):
            raise UsageError("config is not a JSON object")
        try:
            agent = AgentConfig(**section_from_json(AgentConfig, data.get("agent", {}), "agent."))
            ppo_data = data.get("ppo", {})
            if is_saved_config(data):
                ppo_data = PPO_ADDED_LATER | ppo_data
            ppo = PPOConfig(**section_from_json(PPOConfig, ppo_data, "ppo."))
            top = {k: v for k, v in data.items() if k not in ("agent", "ppo")}
            check_types(cls, top, "")
            return cls(agent=agent, ppo=ppo, **top)
        except (TypeError, ValueError, OverflowError) as e:  # e.g. a string where a size goes
            raise UsageError(f"config does not match this version of rlrnn: {e}") from None
