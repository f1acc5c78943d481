"""What does the agent remember? A linear probe for the cart-pole's hidden velocities.

The position-only cart-pole shows ``[x, theta]``; balancing also needs the velocities ``x_dot``
and ``theta_dot``, which only a memory of past positions can supply. The probe rolls the agent
out, records after each observation the agent's state (every layer's ``h``, and ``c`` for an LSTM;
the core's output features for a feedforward core) next to the true velocities of the state that
observation came from, fits a ridge regression on some episodes and scores it (R²) on the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents import ActorCritic, RecurrentState
from envs import TensorCartPole, make_batched_env
from envs.batched import TENSOR_CARTPOLES
from envs.variants import VariantError, variant_params
from rlrnn.checkpoint import build_agent, checkpoint_path, load_checkpoint
from rlrnn.errors import UsageError
from rlrnn.files import check_output_path, save_figure

VELOCITY_KEYS = ("cart_velocity", "pole_angular_velocity")
VELOCITY_LABELS = ("cart velocity", "pole angular velocity")
VELOCITY_UNITS = ("m/s", "rad/s")
VELOCITY_INDICES = [1, 3]  # in the cart-pole state (x, x_dot, theta, theta_dot)
ALPHAS = tuple(10.0**k for k in range(-8, 1))  # ridge penalties tried when none is given


def has_cartpole_state(env_id: str) -> bool:
    """Whether the probe can read true velocities from ``env_id``."""
    try:
        return env_id in TENSOR_CARTPOLES or variant_params(env_id) is not None
    except VariantError:  # a variant id with an impossible parameter
        return False


@torch.no_grad()
def agent_step(
    agent: ActorCritic, obs: Tensor, state: RecurrentState, starts: Tensor, deterministic: bool
) -> tuple[Tensor, RecurrentState, Tensor]:
    """One acting step: actions ``(B,)``, the new state, and the probe's features ``(B, F)``.

    Features are the whole state after ``obs`` (all layers of ``h`` then of ``c``, actor's and
    critic's when they are separate) or, for a core without state, the core's output.
    """
    actions, new_state = agent.act(obs, state, starts, deterministic)
    B = obs.shape[0]
    if new_state.h.shape[0] == 0:  # feedforward: what the core makes of this observation
        core = agent.actor_core
        features, _ = core(
            agent.obs_norm(obs[None]), core.initial_state(B, obs.device), starts[None]
        )
        return actions, new_state, features[0]
    h = new_state.h.permute(1, 0, 2).reshape(B, -1)  # (L, B, H) -> (B, L*H)
    c = new_state.c.permute(1, 0, 2).reshape(B, -1)
    return actions, new_state, torch.cat([h, c], dim=1)


def describe_features(agent: ActorCritic) -> str:
    """What the probe reads from ``agent``, in words."""
    state = agent.initial_state(1)
    if state.h.shape[0] == 0:
        return f"core output ({agent.actor_core.output_size} features)"
    parts = "h and c" if state.c.shape[-1] else "h"
    layers = state.h.shape[0]
    width = state.h.shape[-1] + state.c.shape[-1]
    return f"hidden state ({parts}, {layers} layer{'s' * (layers > 1)}: {layers * width} numbers)"


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class ProbeData:
    """Samples of one rollout, grouped by episode in order."""

    features: list[np.ndarray]  # per agent: (N, F)
    velocities: np.ndarray  # (N, 2) true [x_dot, theta_dot]
    episode: np.ndarray  # (N,) episode index
    step: np.ndarray  # (N,) step within the episode


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
    if not has_cartpole_state(env_id):
        raise UsageError(
            f"the probe reads cart-pole velocities; env {env_id!r} is not one of"
            f" {', '.join(TENSOR_CARTPOLES)}"
        )
    env = make_batched_env(env_id, episodes, device)
    assert isinstance(env, TensorCartPole)
    agents = (agent, *observers)
    obs = env.reset(seed)
    starts = torch.ones(episodes, device=device)
    states = [a.initial_state(episodes, device) for a in agents]
    running = torch.ones(episodes, dtype=torch.bool, device=device)
    features: list[list[Tensor]] = [[] for _ in agents]
    velocities, alive = [], []
    for t in range(env.max_episode_steps):
        velocities.append(env.state[:, VELOCITY_INDICES].double())  # the state obs came from
        alive.append(running.clone())
        actions = None
        for k, a in enumerate(agents):
            acted, states[k], f = agent_step(a, obs, states[k], starts, deterministic)
            actions = acted if actions is None else actions
            features[k].append(f)
        result = env.step(actions)
        done = result.terminated | result.truncated
        running &= ~done
        obs, starts = result.obs, done.float()
        if t % 16 == 15 and not running.any():
            break
    mask = torch.stack(alive, 1).cpu().numpy()  # (B, T), episode-major order below
    steps = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
    episode = np.broadcast_to(np.arange(episodes)[:, None], mask.shape)
    return ProbeData(
        [torch.stack(f, 1).double().cpu().numpy()[mask] for f in features],  # (B, T, F) -> (N, F)
        torch.stack(velocities, 1).cpu().numpy()[mask],
        episode[mask],
        steps[mask],
    )


# ---------------------------------------------------------------- the linear probe


@dataclass(frozen=True)
class VelocityProbe:
    """``velocities = ((features - mean) / scale) @ weights + bias``."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    weights: np.ndarray  # (F, 2)
    bias: np.ndarray  # (2,)
    alpha: float  # the ridge penalty it was fitted with

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``(N, 2)`` velocity estimates ``[x_dot, theta_dot]`` for features ``(N, F)``."""
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
    probe: VelocityProbe
    example_steps: np.ndarray  # the first held-out episode: steps,
    example_true: np.ndarray  # (n, 2) true velocities,
    example_predicted: np.ndarray  # (n, 2) the probe's estimates

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
    # determine (x_t - x_{t-1} = tau * x_dot_{t-1}); the velocities now also hold the push the
    # agent has just chosen, which no observation shows yet.
    has_previous = data.step >= 1
    previous = np.roll(Y, 1, axis=0)
    fit_p, test_p = ~test & has_previous, test & has_previous
    probe_p = fit_probe(X[fit_p], previous[fit_p], data.episode[fit_p], probe.alpha)
    r2_previous = r2_scores(previous[test_p], probe_p.predict(X[test_p]))
    first = data.episode[test] == num_episodes - test_episodes  # the first held-out episode
    return ProbeResult(
        r2={k: float(v) for k, v in zip(VELOCITY_KEYS, r2, strict=True)},
        r2_previous={k: float(v) for k, v in zip(VELOCITY_KEYS, r2_previous, strict=True)},
        features=features,
        num_features=X.shape[1],
        alpha=probe.alpha,
        train_episodes=num_episodes - test_episodes,
        test_episodes=test_episodes,
        train_samples=int((~test).sum()),
        test_samples=int(test.sum()),
        probe=probe,
        example_steps=data.step[test][first],
        example_true=Y[test][first],
        example_predicted=predicted[first],
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

    ``episodes`` episodes are played from seeds ``seed, seed + 1, ...``; the last
    ``test_fraction`` of them are held out to score the probe. ``alpha=None`` picks the ridge
    penalty on the training episodes.
    """
    if episodes < 3:
        raise UsageError(f"the probe needs at least 3 episodes (to fit and test), got {episodes}")
    if not 0 < test_fraction < 1:
        raise UsageError(f"test fraction must be in (0, 1), got {test_fraction}")
    if alpha is not None and alpha < 0:
        raise UsageError(f"ridge alpha must be >= 0, got {alpha}")
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


# ---------------------------------------------------------------- figure


def plot_probe(
    results: list[ProbeResult], labels: list[str], path: Path, title: str, max_steps: int = 200
) -> None:
    """Predicted against true velocities over the first ``max_steps`` steps of the first
    held-out episode, one panel per velocity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 5.4), dpi=120, sharex=True)
    main = results[0]
    shown = main.example_steps < max_steps
    for k, ax in enumerate(axes):
        ax.plot(
            main.example_steps[shown], main.example_true[shown, k], color="black", lw=1.8,
            label="true",
        )  # fmt: skip
        for j, (result, label) in enumerate(zip(results, labels, strict=True)):
            r2 = result.r2[VELOCITY_KEYS[k]]
            ax.plot(
                result.example_steps[shown],
                result.example_predicted[shown, k],
                color=f"C{j}",
                lw=1.3,
                ls=("--", ":", "-.")[min(j, 2)],
                label=f"{label} probe (R² {r2:.3f})",
            )
        ax.set_ylabel(f"{VELOCITY_LABELS[k]}\n({VELOCITY_UNITS[k]})")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes[-1].set_xlabel("step of a held-out episode")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------- command


def load_agent(
    run: Path, which: str, device: torch.device | str, env_id: str | None = None
) -> tuple[ActorCritic, Any]:
    """An rlrnn agent and its config from a run directory or checkpoint (else a UsageError);
    ``env_id``: the env it will play on, if not its own (see :func:`load_checkpoint`)."""
    path = checkpoint_path(run, which)
    agent, config, _ = load_checkpoint(path, device, env_id)
    if not isinstance(agent, ActorCritic):
        raise UsageError(f"{path}: a {config.agent.agent} policy keeps no state rlrnn can read")
    return agent, config


def untrained_copy(agent: ActorCritic, config: Any, seed: int = 0) -> ActorCritic:
    """The same architecture with fresh weights, reading observations through the trained
    agent's normalisation (so the two differ only in what training did to the weights)."""
    torch.manual_seed(seed)
    fresh = build_agent(config, agent.obs_dim, agent.num_actions)
    fresh.obs_norm.load_state_dict(agent.obs_norm.state_dict())
    device = next(agent.parameters()).device
    return fresh.to(device)


def probe_command(
    run: Path,
    checkpoint: str = "best",
    episodes: int = 40,
    seed: int = 20_000,
    test_fraction: float = 0.25,
    alpha: float | None = None,
    stochastic: bool = False,
    untrained: bool = False,
    compare: Sequence[Path] = (),
    out: Path | None = None,
    device: torch.device | str = "cpu",
    env_id: str | None = None,
) -> dict[str, Any]:
    """``rlrnn probe``: probe a run (and baselines along its trajectories), plot, report;
    ``env_id`` replaces the run's own env (a cart-pole of the same sizes)."""
    from rlrnn.memory import check_fits

    path = checkpoint_path(run, checkpoint)
    out = Path(out) if out is not None else path.parent / "probe.png"
    check_output_path(out, (".png",), "figure")
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)  # small nets run fastest on one thread (as training does)
    if episodes < 3:
        raise UsageError(f"--episodes must be >= 3 (episodes to fit and to test), got {episodes}")
    if env_id is not None and not has_cartpole_state(env_id):
        raise UsageError(
            f"the probe reads cart-pole velocities; env {env_id!r} is not one of"
            f" {', '.join(TENSOR_CARTPOLES)}"
        )
    given = env_id
    agent, config = load_agent(run, checkpoint, device, given)
    env_id = given or config.env_id
    # Every step's features and velocities are kept (float64, a few copies while fitting), up to
    # the cart-pole's 500-step limit per episode, for the agent and each one compared with it.
    features = sum(t.numel() for t in agent.initial_state(1)) + agent.actor_core.output_size
    check_fits(
        episodes * 500 * (features + 8) * 8 * 4 * (1 + int(untrained) + len(compare)),
        "cpu",
        f"probing {episodes:,} episodes",
        "lower --episodes",
    )
    labels = [f"{config.agent.agent} ({path})"]
    baselines = []
    if untrained:
        baselines.append(untrained_copy(agent, config, config.seed + 1))
        labels.append(f"untrained {config.agent.agent}")
    for other in compare:
        other_agent, other_config = load_agent(other, checkpoint, device, given or env_id)
        if other_agent.obs_dim != agent.obs_dim or (
            given is None and other_config.env_id != env_id
        ):
            raise UsageError(f"{other} was trained on {other_config.env_id}, not {env_id}")
        baselines.append(other_agent)
        labels.append(f"{other_config.agent.agent} ({checkpoint_path(other, checkpoint)})")
    results = run_probe(
        agent,
        env_id,
        episodes,
        seed,
        test_fraction,
        alpha,
        not stochastic,
        device,
        tuple(baselines),
    )
    short = [label.split(" (")[0] for label in labels]
    plot_probe(
        results,
        short,
        out,
        f"Linear probe of the {short[0]} agent's {results[0].features} on {env_id};"
        f"\nfitted on {results[0].train_episodes} episodes; R² over {results[0].test_episodes}"
        " held-out episodes, the first of them shown",
    )
    return {
        "env_id": env_id,
        "episodes": episodes,
        "seed": seed,
        "deterministic": not stochastic,
        "figure": str(out),
        "probes": [
            {"label": label, **result.to_dict()}
            for label, result in zip(labels, results, strict=True)
        ],
    }


def describe_report(report: dict[str, Any]) -> str:
    """The probe report in a few lines."""

    def r2(values: dict[str, float | None]) -> str:
        return "  ".join(
            f"{label} {'n/a' if values[k] is None else format(values[k], '.3f')}"
            for k, label in zip(VELOCITY_KEYS, VELOCITY_LABELS, strict=True)
        )

    first = report["probes"][0]
    lines = [
        f"Linear probe of hidden velocities on {report['env_id']}: fitted on"
        f" {first['train_episodes']} episodes, R² on {first['test_episodes']} held-out ones.",
    ]
    for p in report["probes"]:
        lines += [
            f"{p['label']}: {p['features']}, {p['train_samples'] + p['test_samples']} steps",
            f"  R² now           {r2(p['r2'])}",
            f"  R² a step before {r2(p['r2_previous_step'])}",
        ]
    lines.append(f"Figure: {report['figure']}")
    return "\n".join(lines)
