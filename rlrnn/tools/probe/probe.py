"""What does the agent remember? A linear probe for an env's hidden velocities.

The position-only cart-pole shows ``[x, theta]``; balancing also needs the velocities ``x_dot``
and ``theta_dot``, which only a memory of past positions can supply (the pendulum shows
``[cos θ, sin θ]`` and hides θ̇). Each tensor env names the velocities its state holds
(``HIDDEN_VELOCITIES``, :class:`envs.protocol.HiddenVelocity`). The probe rolls the agent
out, records after each observation the agent's state (every layer's ``h``, and ``c`` for an LSTM;
the core's output features for a feedforward core) next to the true velocities of the state that
observation came from, fits a ridge regression on some episodes and scores it (R²) on the others.
The figure and the ``rlrnn probe`` report: :mod:`rlrnn.tools.probe.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents import ActorCritic, RecurrentState
from envs import make_batched_env
from envs.batched import TENSOR_ENVS, hidden_velocities
from envs.protocol import HiddenVelocity
from rlrnn.errors import UsageError
from rlrnn.learning.acting import FirstEpisodes, Step, step_policy

ALPHAS = tuple(10.0**k for k in range(-8, 1))  # ridge penalties tried when none is given


def has_hidden_state(env_id: str) -> bool:
    """Whether the probe can read true velocities from ``env_id``."""
    return bool(hidden_velocities(env_id))


def require_hidden_state(env_id: str) -> tuple[HiddenVelocity, ...]:
    """The velocities the probe reads from ``env_id``; a UsageError if it knows none."""
    hidden = hidden_velocities(env_id)
    if not hidden:
        raise UsageError(
            f"the probe reads the velocities in the state of rlrnn's own envs; env {env_id!r}"
            f" is none of {', '.join(TENSOR_ENVS)} nor a noisy or flickering cart-pole"
        )
    return hidden


def env_velocities(env: Any, hidden: Sequence[HiddenVelocity]) -> Tensor:
    """``(B, V)`` the true values of ``hidden`` (:func:`require_hidden_state`) in the state each
    environment of the tensor env ``env`` is in now."""
    return env.state[:, [v.index for v in hidden]].double()


@torch.no_grad()
def state_features(
    agent: ActorCritic, obs: Tensor, state: RecurrentState, starts: Tensor
) -> Tensor:
    """The probe's features ``(B, F)`` of one step: the agent's whole state after ``obs`` (all
    layers of ``h`` then of ``c``, actor's and critic's when they are separate) or, for an agent
    without state, what its core makes of ``obs``."""
    B = obs.shape[0]
    if not agent.is_recurrent:
        core = agent.actor_core
        features, _ = core(
            agent.obs_norm(obs[None]), core.initial_state(B, obs.device), starts[None]
        )
        return features[0]
    h = state.h.permute(1, 0, 2).reshape(B, -1)  # (L, B, H) -> (B, L*H)
    c = state.c.permute(1, 0, 2).reshape(B, -1)
    return torch.cat([h, c], dim=1)


def describe_features(agent: ActorCritic) -> str:
    """What the probe reads from ``agent``, in words."""
    if not agent.is_recurrent:
        return f"core output ({agent.actor_core.output_size} features)"
    state = agent.initial_state(1)
    parts = "h and c" if state.c.shape[-1] else "h"
    layers = state.h.shape[0]
    width = state.h.shape[-1] + state.c.shape[-1]
    return f"hidden state ({parts}, {layers} layer{'s' * (layers > 1)}: {layers * width} numbers)"


class _Together:
    """A lead agent and observers as one policy: the lead's actions, every agent's own state."""

    def __init__(self, agents: tuple[ActorCritic, ...]) -> None:
        self.agents = agents

    def initial_state(self, batch_size: int, device: torch.device | str) -> list[RecurrentState]:
        return [a.initial_state(batch_size, device) for a in self.agents]

    def act(
        self, obs: Tensor, states: list[RecurrentState], starts: Tensor, deterministic: bool
    ) -> tuple[Tensor, list[RecurrentState]]:
        acted = [
            a.act(obs, s, starts, deterministic) for a, s in zip(self.agents, states, strict=True)
        ]
        return acted[0][0], [state for _, state in acted]


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class ProbeData:
    """Samples of one rollout, grouped by episode in order."""

    features: list[np.ndarray]  # per agent: (N, F)
    velocities: np.ndarray  # (N, V) the true values of the hidden velocities
    episode: np.ndarray  # (N,) episode index
    step: np.ndarray  # (N,) step within the episode
    hidden: tuple[HiddenVelocity, ...]  # what each of the V columns is


@torch.no_grad()
def collect(
    agent: ActorCritic,
    env_id: str,
    episodes: int,
    seed: int = 20_000,
    deterministic: bool = True,
    device: torch.device | str = "cpu",
    observers: tuple[ActorCritic, ...] = (),
) -> ProbeData:
    """Play one episode per environment with ``agent`` and record features and velocities.

    Each of ``observers`` sees the same observations and keeps its own state (its actions are
    ignored): its features are recorded along the trajectories ``agent`` chose.
    """
    hidden = require_hidden_state(env_id)
    env = make_batched_env(env_id, episodes, device)
    agents = (agent, *observers)
    first = FirstEpisodes(episodes, device, check_every=16)
    features: list[list[Tensor]] = [[] for _ in agents]
    # After each step: the velocities of the state the next observation shows.
    velocities = [env_velocities(env, hidden)]
    alive = []

    def record(step: Step) -> bool:
        alive.append(first.running.clone())
        for k, a in enumerate(agents):
            features[k].append(state_features(a, step.obs, step.state[k], step.episode_starts))
        velocities.append(env_velocities(env, hidden))
        return first.going_on(step)

    try:
        step_policy(_Together(agents), env, record, seed, deterministic, env.max_episode_steps)
    finally:
        env.close()
    del velocities[len(alive) :]  # the state after the last step shows no observation here
    mask = torch.stack(alive, 1).cpu().numpy()  # (B, T), episode-major order below
    steps = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
    episode = np.broadcast_to(np.arange(episodes)[:, None], mask.shape)
    return ProbeData(
        [torch.stack(f, 1).double().cpu().numpy()[mask] for f in features],  # (B, T, F) -> (N, F)
        torch.stack(velocities, 1).cpu().numpy()[mask],
        episode[mask],
        steps[mask],
        hidden,
    )


# ---------------------------------------------------------------- the linear probe


@dataclass(frozen=True)
class VelocityProbe:
    """``velocities = ((features - mean) / scale) @ weights + bias``."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    weights: np.ndarray  # (F, V)
    bias: np.ndarray  # (V,)
    alpha: float  # the ridge penalty it was fitted with

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``(N, V)`` velocity estimates for features ``(N, F)``."""
        return (
            (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        ) @ self.weights + (self.bias)


def fit_ridge(features: np.ndarray, targets: np.ndarray, alpha: float) -> VelocityProbe:
    """Ridge regression in closed form on standardised features.

    The penalty is ``alpha`` times the number of samples, so ``alpha`` does not depend on how
    much data there is; constant features get scale 1 and weight 0.
    """
    X = np.asarray(features, dtype=np.float64)
    Y = np.asarray(targets, dtype=np.float64)
    n, F = X.shape
    if n < 2 or F == 0:
        raise UsageError(f"cannot fit a probe to {n} samples of {F} features")
    mean = X.mean(0)
    scale = X.std(0)
    scale[scale < 1e-12] = 1.0
    Z = (X - mean) / scale
    bias = Y.mean(0)
    gram = Z.T @ Z + max(alpha * n, 1e-9) * np.eye(F)  # a tiny floor keeps it invertible
    weights = np.linalg.solve(gram, Z.T @ (Y - bias))
    return VelocityProbe(mean, scale, weights, bias, alpha)


def fit_probe(
    features: np.ndarray,
    targets: np.ndarray,
    episode: np.ndarray,
    alpha: float | None = None,
    alphas: Sequence[float] = ALPHAS,
) -> VelocityProbe:
    """:func:`fit_ridge`; with ``alpha=None`` the one of ``alphas`` that scores best (mean R²)
    on the last fifth of the episodes when fitted on the others, refitted on all of them."""
    if alpha is None:
        ids = np.unique(episode)
        if len(ids) < 2:
            alpha = alphas[len(alphas) // 2]
        else:
            valid = episode >= ids[-max(1, len(ids) // 5)]
            X_fit, Y_fit = features[~valid], targets[~valid]

            def validation_r2(a: float) -> float:
                predicted = fit_ridge(X_fit, Y_fit, a).predict(features[valid])
                return float(np.nan_to_num(r2_scores(targets[valid], predicted), nan=-1.0).mean())

            alpha = max(alphas, key=validation_r2)
    return fit_ridge(features, targets, alpha)


def r2_scores(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column (nan for a constant column)."""
    residual = ((targets - predictions) ** 2).sum(0)
    total = ((targets - targets.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 1.0 - residual / total, np.nan)


@dataclass(frozen=True)
class ProbeResult:
    r2: dict[str, float]  # held-out R² of the velocities now (of the state the last obs shows)
    r2_previous: dict[str, float]  # ... of the velocities one step earlier
    features: str  # what was probed, in words
    num_features: int
    alpha: float
    train_episodes: int
    test_episodes: int
    train_samples: int
    test_samples: int
    example_steps: np.ndarray  # the first held-out episode: steps,
    example_true: np.ndarray  # (n, V) true velocities,
    example_predicted: np.ndarray  # (n, V) the probe's estimates
    hidden: tuple[HiddenVelocity, ...]  # what each of the V velocities is

    def to_dict(self) -> dict[str, Any]:
        def clean(r2: dict[str, float]) -> dict[str, float | None]:
            return {k: (None if np.isnan(v) else round(v, 4)) for k, v in r2.items()}

        return {
            "r2": clean(self.r2),
            "r2_previous_step": clean(self.r2_previous),
            "features": self.features,
            "num_features": self.num_features,
            "alpha": self.alpha,
            "train_episodes": self.train_episodes,
            "test_episodes": self.test_episodes,
            "train_samples": self.train_samples,
            "test_samples": self.test_samples,
        }


def score(
    data: ProbeData, which: int, test_episodes: int, alpha: float | None, features: str
) -> ProbeResult:
    """Fit on all but the last ``test_episodes`` episodes of ``data``, score on those."""
    X, Y = data.features[which], data.velocities
    num_episodes = int(data.episode.max()) + 1
    test = data.episode >= num_episodes - test_episodes
    probe = fit_probe(X[~test], Y[~test], data.episode[~test], alpha)
    predicted = probe.predict(X[test])
    r2 = r2_scores(Y[test], predicted)
    # The same probe fitted to the velocities one step earlier, which the positions seen so far
    # determine (x_t - x_{t-1} = tau * x_dot_{t-1}); the cart-pole's velocities now also hold the
    # push the agent has just chosen, which no observation shows yet (the pendulum's step moves
    # θ by the new θ̇, so there the positions show the velocity now too).
    has_previous = data.step >= 1
    previous = np.roll(Y, 1, axis=0)
    fit_p, test_p = ~test & has_previous, test & has_previous
    probe_p = fit_probe(X[fit_p], previous[fit_p], data.episode[fit_p], probe.alpha)
    r2_previous = r2_scores(previous[test_p], probe_p.predict(X[test_p]))
    first = data.episode[test] == num_episodes - test_episodes  # the first held-out episode
    keys = [v.key for v in data.hidden]
    return ProbeResult(
        r2={k: float(v) for k, v in zip(keys, r2, strict=True)},
        r2_previous={k: float(v) for k, v in zip(keys, r2_previous, strict=True)},
        features=features,
        num_features=X.shape[1],
        alpha=probe.alpha,
        train_episodes=num_episodes - test_episodes,
        test_episodes=test_episodes,
        train_samples=int((~test).sum()),
        test_samples=int(test.sum()),
        example_steps=data.step[test][first],
        example_true=Y[test][first],
        example_predicted=predicted[first],
        hidden=data.hidden,
    )


def run_probe(
    agent: ActorCritic,
    env_id: str,
    episodes: int = 40,
    seed: int = 20_000,
    test_fraction: float = 0.25,
    alpha: float | None = None,
    deterministic: bool = True,
    device: torch.device | str = "cpu",
    baselines: tuple[ActorCritic, ...] = (),
) -> list[ProbeResult]:
    """Probe ``agent`` (then each of ``baselines``, along ``agent``'s own trajectories).

    ``episodes`` (at least 3) episodes are played from seeds ``seed, seed + 1, ...``; the last
    ``test_fraction`` (in (0, 1)) of them are held out to score the probe. ``alpha`` (>= 0) is
    the ridge penalty; None picks it on the training episodes. The command checks these.
    """
    test_episodes = min(episodes - 2, max(1, round(episodes * test_fraction)))
    data = collect(agent, env_id, episodes, seed, deterministic, device, baselines)
    return [
        score(data, k, test_episodes, alpha, describe_features(a))
        for k, a in enumerate((agent, *baselines))
    ]


def fit_velocity_probe(
    agent: ActorCritic,
    env_id: str,
    episodes: int = 32,
    seed: int = 30_000,
    device: torch.device | str = "cpu",
) -> VelocityProbe:
    """A probe fitted on ``episodes`` fresh episodes (for the renderer's overlay)."""
    data = collect(agent, env_id, episodes, seed, True, device)
    return fit_probe(data.features[0], data.velocities, data.episode)
