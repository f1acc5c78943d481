"""A run's ``compile`` field: the hot loop of a learner through ``torch.compile``.

Three functions run at every step or minibatch and are compiled: the acting step (the agent's
one-step forward and the action sampling, :func:`rlrnn.learning.rollout.act_step`), the tensor
cart-pole's ``step``, and the minibatch loss (:func:`rlrnn.learning.loss.ppo_loss`, whose
backward the compiler derives and fuses too; the LSTM takes its plain-ops path,
:func:`agents.lstm.lstm_sequence`, which compiles without a graph break). GAE, the optimizer and
the once-per-rollout calls stay eager.

Random numbers come from torch's generator exactly as in eager mode (inductor's
``fallback_random``), so a compiled run samples what an eager one would, and its losses equal
the eager ones to float tolerance. Compiling happens up front, in :func:`compile_hot_loop`, on
copies (the learner's weights, env and random state are left as they were), so its time is
measured apart from training; it takes minutes on a CPU, so it says so first (on stderr, before
the progress bar starts), and how long it took.
"""

from __future__ import annotations

import copy
import functools
import sys
import time
from collections.abc import Callable

import torch
import torch._inductor.config

from envs.tensor_cartpole import TensorCartPole
from rlrnn.learning.loss import ppo_loss
from rlrnn.learning.ppo import PPOLearner
from rlrnn.learning.rollout import Rollout, act_step

COMPILING = (
    "compiling the update with torch.compile before training starts (a few minutes; nothing"
    " else is shown meanwhile) ..."
)


def to_stderr(message: str) -> None:
    """``say`` of :func:`compile_hot_loop`: one line on stderr, at once."""
    print(f"rlrnn: {message}", file=sys.stderr, flush=True)


def compile_hot_loop(ppo: PPOLearner, say: Callable[[str], None] | None = to_stderr) -> float:
    """Swap ``ppo``'s hot-loop functions for compiled ones and compile them now; returns the
    seconds spent compiling. ``say`` gets a line before compiling starts and one when it is done
    (None: silent)."""
    say = say or (lambda message: None)
    say(COMPILING)
    torch._inductor.config.fallback_random = True  # eager's random numbers, not inductor's
    ppo.act_fn = torch.compile(act_step)
    ppo.loss_fn = torch.compile(ppo_loss)
    env_step = torch.compile(TensorCartPole.step) if isinstance(ppo.env, TensorCartPole) else None
    start = time.perf_counter()
    _warm_up(ppo, env_step)
    seconds = time.perf_counter() - start
    say(f"compiled in {seconds:.0f} s; training")
    if env_step is not None:  # swapped after the warm-up, which steps a copy of the env
        ppo.env.step = functools.partial(env_step, ppo.env)  # type: ignore[method-assign]
    return seconds


def _warm_up(ppo: PPOLearner, env_step: Callable | None) -> None:
    """Run each compiled function once on inputs shaped like the real ones, on copies."""
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(ppo.device) if ppo.device.type == "cuda" else None
    agent, env, cfg = copy.deepcopy(ppo.agent), copy.deepcopy(ppo.env), ppo.config
    state = agent.initial_state(env.num_envs, ppo.device)
    with torch.no_grad():  # as in collect_rollout
        _, _, _, actions = ppo.act_fn(agent, ppo.obs.clone(), state, ppo.episode_starts.clone())
        if env_step is not None:
            env_step(env, actions)

    # The update replays (T, num_envs) whole sequences, or (K, T/K * num_envs) chunks of K.
    T, B = cfg.sequence_length, cfg.num_sequences
    state = agent.initial_state(B, ppo.device)

    def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(T, *shape, dtype=dtype, device=ppo.device)

    rollout = Rollout(
        obs=zeros(B, env.obs_dim),
        episode_starts=zeros(B),
        actions=zeros(B, env.num_actions) if agent.continuous else zeros(B, dtype=torch.long),
        logprobs=zeros(B),
        values=zeros(B),
        advantages=zeros(B),
        returns=zeros(B),
        initial_state=state,
    )
    envs = torch.arange(cfg.sequences_per_minibatch, device=ppo.device)
    for clip in (cfg.clip_coef, cfg.clip_coef / 2):  # the clip changes as it anneals
        loss, _ = ppo.loss_fn(agent, rollout, envs, clip, cfg, ppo.action_bounds)
        loss.backward()  # compiles the backward
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, ppo.device)
