"""Typed, validated run configuration; every field is a CLI option with its one-line doc.

Defaults are tuned for the position-only cart-pole (see the README's benchmark section).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np
import torch

from agents import AGENTS, BACKENDS
from agents.registry import ACTIVATIONS, LSTM_AGENTS
from envs.variants import VariantError, variant_params
from rlrnn.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")
# The reference agents, trained by Stable-Baselines3 / sb3-contrib (see rlrnn.runs.sb3).
SB3_AGENTS = {
    "sb3-ppo": "Stable-Baselines3 PPO, MlpPolicy (feedforward)",
    "sb3-recurrentppo": "sb3-contrib RecurrentPPO, MlpLstmPolicy",
}
AGENT_NAMES = (*AGENTS, *SB3_AGENTS)


def option(default: Any, doc: str, **extra: Any) -> Any:
    """A dataclass field carrying its help text (and argparse extras such as ``choices``)."""
    if isinstance(default, list | tuple):
        return field(default=tuple(default), metadata={"help": doc, **extra})
    return field(default=default, metadata={"help": doc, **extra})


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


SEED_MAX = 2**32 - 1  # numpy's legacy seeds; the tensor cart-pole hashes 32 bits of a seed
# More threads than any machine has cores; far more (100,000) crash OpenMP with no message.
MAX_TORCH_THREADS = 1024


def check_seed(value: int, name: str = "seed") -> int:
    """``value`` if it is a usable seed (0 to 2**32 - 1), else a UsageError."""
    check_argument(value, int, name)
    _require(0 <= value <= SEED_MAX, f"{name} must be in [0, 2**32 - 1], got {value}")
    return value


def check_argument(value: Any, kind: Any, name: str) -> Any:
    """``value`` if it holds a ``kind`` as a config field would (an int that is not a bool, a
    finite float, ...), else a UsageError naming ``name``: the Python API checks what it is
    given as the command line's parser does."""
    want = _type_problem(kind, value)
    _require(want is None, f"{name} must be {want}, got {_shown(value)}")
    return value


def check_device(device: Any, name: str = "device") -> torch.device:
    """The torch device ``device`` names (a ``torch.device``, ``"cpu"``, ``"cuda:0"``,
    ``"auto"``), usable on this machine; else a UsageError."""
    if isinstance(device, str) and device == "auto":
        return resolve_device("auto")
    _require(
        isinstance(device, str | torch.device),
        f"{name} must be a torch device or its name, got {_shown(device)}",
    )
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown {name} {device!r}; use cpu or cuda") from None
    _require(parsed.type in ("cpu", "cuda"), f"unknown {name} {device!r}; use cpu or cuda")
    if parsed.type == "cpu" or parsed.index is None:  # cpu:0 is the CPU, not a CUDA device
        return resolve_device(parsed.type)
    return _cuda_here(parsed)


def _cuda_here(device: torch.device) -> torch.device:
    _require(
        torch.cuda.is_available() and device.index < torch.cuda.device_count(),
        f"device {str(device)!r} asked for, but this machine has no such CUDA device",
    )
    return device


def shell_path(path: Path | str) -> str:
    """``path`` as a command line a user can paste takes it: quoted, and a relative path that
    starts with ``-`` as ``./-name`` (else it reads as an option)."""
    text = os.fspath(path)
    return shlex.quote("./" + text if text.startswith("-") else text)


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

    def __post_init__(self) -> None:
        _check_fields(self)
        _require(
            self.agent in AGENT_NAMES,
            f"unknown agent {self.agent!r}; choose from {', '.join(AGENT_NAMES)}",
        )
        _require(self.backend in BACKENDS, f"unknown backend {self.backend!r}")
        _require(
            self.backend == "custom" or self.agent in LSTM_AGENTS,
            f"backend 'torch' is for the lstm agents, not {self.agent!r}",
        )
        _require(self.frame_stack >= 1, f"frame_stack (k) must be >= 1, got {self.frame_stack}")
        _require(self.hidden_size >= 1, f"hidden_size must be >= 1, got {self.hidden_size}")
        _require(self.num_layers >= 1, f"num_layers must be >= 1, got {self.num_layers}")
        _require(all(w >= 1 for w in self.pi_hidden + self.vf_hidden), "head widths must be >= 1")
        _require(self.activation in ACTIVATIONS, f"unknown activation {self.activation!r}")


@dataclass(frozen=True)
class PPOConfig:
    """Recurrent PPO."""

    total_timesteps: int = option(100_000, "env steps to train for")
    num_envs: int = option(64, "environments stepped in parallel")
    num_steps: int = option(
        16, "steps per environment per rollout (the BPTT length unless --bptt-len is given)"
    )
    bptt_len: int | None = option(
        None,
        "BPTT length: cut each env's rollout into chunks of this many steps (a divisor of"
        " num_steps), each replayed in the update from the recurrent state the rollout had at"
        " its first step; minibatches are then sets of chunks (not given, or none: the whole"
        " rollout)",
    )
    num_minibatches: int = option(
        2, "minibatches per epoch, each a set of whole env sequences (chunks with --bptt-len)"
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
        " /1.5 above twice it, x1.5 below half of it; replaces --anneal-lr (0: off)",
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

    def __post_init__(self) -> None:
        _check_fields(self)
        for name in (
            "total_timesteps",
            "num_envs",
            "num_steps",
            "num_minibatches",
            "update_epochs",
        ):
            value = getattr(self, name)
            _require(value >= 1, f"{name} must be >= 1, got {value}")
        if self.bptt_len is None:
            _require(
                self.num_envs % self.num_minibatches == 0,
                f"num_minibatches ({self.num_minibatches}) must divide num_envs"
                f" ({self.num_envs}): a minibatch is a set of whole environment sequences",
            )
        else:
            _require(self.bptt_len >= 1, f"bptt_len must be >= 1, got {self.bptt_len}")
            _require(
                self.num_steps % self.bptt_len == 0,
                f"bptt_len ({self.bptt_len}) must divide num_steps ({self.num_steps}):"
                " each env's rollout is cut into whole chunks",
            )
            _require(
                self.num_sequences % self.num_minibatches == 0,
                f"num_minibatches ({self.num_minibatches}) must divide the"
                f" {self.num_sequences} sequences of a rollout (num_envs * num_steps / bptt_len)",
            )
        _require(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _require(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}")
        _require(0 <= self.gae_lambda <= 1, f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        _require(self.clip_coef > 0, f"clip_coef must be > 0, got {self.clip_coef}")
        for name in ("ent_coef", "vf_coef", "max_grad_norm", "target_kl", "desired_kl"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        _require(
            0 < self.solved_lr_scale <= 1,
            f"solved_lr_scale must be in (0, 1], got {self.solved_lr_scale}",
        )
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            _require(0 <= value < 1, f"{name} must be in [0, 1), got {value}")
        _require(
            self.total_timesteps >= self.batch_size,
            f"total_timesteps ({self.total_timesteps}) is less than one rollout"
            f" (num_envs * num_steps = {self.batch_size})",
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
# The fields every config.json has held since the first rlrnn that saved one (section -> names):
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
    """Whether ``data`` is a whole config as some version of rlrnn saved it (config.json, a
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
        aliases=("--env",),
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
        "env steps between resume checkpoints (last.pt), rounded as --eval-interval is; 0: only"
        " at the end or on a stop",
    )
    agent: AgentConfig = field(default_factory=AgentConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        _check_fields(self)
        check_seed(self.seed)
        _require(
            1 <= self.torch_threads <= MAX_TORCH_THREADS,
            f"torch_threads must be in [1, {MAX_TORCH_THREADS}], got {self.torch_threads}"
            f" (this machine has {os.cpu_count() or 1} CPU cores)",
        )
        _require(self.eval_interval >= 0, f"eval_interval must be >= 0, got {self.eval_interval}")
        _require(self.eval_episodes >= 1, f"eval_episodes must be >= 1, got {self.eval_episodes}")
        _require(
            self.checkpoint_interval >= 0,
            f"checkpoint_interval must be >= 0, got {self.checkpoint_interval}",
        )
        _require(self.device in DEVICES, f"unknown device {self.device!r}; choose from {DEVICES}")
        _require(
            not (self.compile and self.agent.agent in SB3_AGENTS),
            f"--compile is for rlrnn's agents, not {self.agent.agent}",
        )
        _require(
            self.ppo.bptt_len is None or self.agent.agent not in SB3_AGENTS,
            f"--bptt-len is for rlrnn's agents, not {self.agent.agent}",
        )
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
            agent = AgentConfig(**_tuples(AgentConfig, data.get("agent", {}), "agent."))
            ppo_data = data.get("ppo", {})
            if is_saved_config(data):
                ppo_data = PPO_ADDED_LATER | ppo_data
            ppo = PPOConfig(**_tuples(PPOConfig, ppo_data, "ppo."))
            top = {k: v for k, v in data.items() if k not in ("agent", "ppo")}
            _check_types(cls, top, "")
            return cls(agent=agent, ppo=ppo, **top)
        except (TypeError, ValueError, OverflowError) as e:  # e.g. a string where a size goes
            raise UsageError(f"config does not match this version of rlrnn: {e}") from None


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def _is_int(value: Any) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def _type_problem(kind: Any, value: Any) -> str | None:
    """What is wrong with ``value`` as a field of type ``kind`` (None: nothing)."""
    if kind is bool:
        return None if _is_bool(value) else "true or false"
    if kind is int:
        return None if _is_int(value) else "an integer"
    if kind == int | None:
        return None if value is None or _is_int(value) else "an integer or none"
    if kind is float:
        number = _is_int(value) or (isinstance(value, numbers.Real) and not _is_bool(value))
        return None if number and math.isfinite(value) else "a finite number"
    if kind is str:
        return None if isinstance(value, str) else "a string"
    if kind == tuple[int, ...]:
        ok = isinstance(value, tuple | list) and all(_is_int(v) for v in value)
        return None if ok else "a list of integers"
    if dataclasses.is_dataclass(kind):  # a nested section (it checked its own fields)
        return None if isinstance(value, kind) else f"an instance of {kind.__name__}"
    return None


def _plain(kind: Any, value: Any) -> Any:
    """``value`` as the builtin type of ``kind`` (numpy's numbers and lists in, JSON's out)."""
    if kind is bool:
        return bool(value)
    if kind is int:
        return int(value)
    if kind == int | None:
        return None if value is None else int(value)
    if kind is float:
        return value if type(value) in (int, float) else float(value)  # np.float64 too
    if kind == tuple[int, ...]:
        return tuple(int(v) for v in value)
    return value


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _check_types(cls: type, values: dict[str, Any], prefix: str) -> None:
    """Every field in ``values`` holds a value of its declared type in ``cls`` (floats finite):
    a config read from a file may hold anything, and inf passes a "> 0" check."""
    hints = _hints(cls)
    for name, value in values.items():
        if name in hints:
            want = _type_problem(hints[name], value)
            _require(want is None, f"{prefix}{name} must be {want}, got {_shown(value)}")


def _check_fields(section: Any) -> None:
    """A config section's fields all hold their declared types (:func:`_check_types`), stored
    as builtin values: a section is made from files, the command line and Python callers."""
    hints = _hints(type(section))
    values = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
    _check_types(type(section), values, "")
    for name, value in values.items():
        object.__setattr__(section, name, _plain(hints[name], value))  # frozen: set once here


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``section.field (old -> new)`` for every field in which two config dicts differ."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({show_value(a)} -> {show_value(b)})")
    return out


def _tuples(cls: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """JSON stores tuples as lists; turn them back (after checking every value's type)."""
    if not isinstance(data, dict):
        raise UsageError(f"config section for {cls.__name__} is not an object")
    _check_types(cls, data, prefix)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def show_value(value: Any) -> str:
    """A config value as the command line writes it (a tuple as its items, space-separated)."""
    return " ".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def resolve_device(name: str) -> torch.device:
    """The torch device a config's ``device`` names (``auto``: CUDA when present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' asked for, but CUDA is not available on this machine")
    return torch.device(name)
