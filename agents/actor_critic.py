"""Actor-critic policies over a core: an actor head (categorical for Discrete actions, a diagonal
Gaussian for Box ones: :mod:`agents.action_heads`), a value head, SB3-style ``predict``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from agents.action_heads import Categorical, DiagGaussian, StateDependentNoise
from agents.cores import Core, RecurrentState
from agents.normalize import RunningNorm


def mlp(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """A policy and a value function on top of one core (shared) or two (actor's and critic's).

    With two cores their states are stacked along the layer axis, actor first, so the policy
    still hands around a single :class:`RecurrentState`.

    Args:
        actor_core: core whose features feed the policy head (and the value head when shared).
        critic_core: a separate core for the value head, or None to share ``actor_core``.
        num_actions: size of the Discrete action space, or the Box's dimension (``continuous``).
        pi_hidden, vf_hidden: hidden widths of the policy and value heads.
        activation: activation of the heads.
        normalize_obs: normalise observations by running statistics before the core.
        continuous: Box actions: the policy head gives a Gaussian's mean (its log-std is
            learned apart, :class:`agents.action_heads.DiagGaussian`), not logits.
        gsde: with ``continuous``, explore by gSDE
            (:class:`agents.action_heads.StateDependentNoise`): the head's outputs are then the
            mean followed by the policy head's last features.
        log_std_init: with ``continuous``, the Gaussian's starting log-std (gSDE: of each
            feature's noise weight).
    """

    def __init__(
        self,
        actor_core: Core,
        num_actions: int,
        critic_core: Core | None = None,
        pi_hidden: Sequence[int] = (64,),
        vf_hidden: Sequence[int] = (64,),
        activation: type[nn.Module] = nn.ReLU,
        normalize_obs: bool = True,
        continuous: bool = False,
        gsde: bool = False,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.obs_dim = actor_core.input_size
        self.num_actions = num_actions
        self.continuous = continuous
        self.gsde = gsde and continuous
        last_width = pi_hidden[-1] if pi_hidden else actor_core.output_size
        self.action_head: Categorical | DiagGaussian | StateDependentNoise = Categorical()
        if self.gsde:
            self.action_head = StateDependentNoise(num_actions, last_width, log_std_init)
        elif continuous:
            self.action_head = DiagGaussian(num_actions, log_std_init)
        # What the action head reads per step: logits or a mean, and gSDE's features after them.
        self.head_outputs = num_actions + (last_width if self.gsde else 0)
        self.actor_core = actor_core
        self.critic_core = critic_core
        self.obs_norm = RunningNorm(self.obs_dim, enabled=normalize_obs)
        self.pi_head = mlp([actor_core.output_size, *pi_hidden, num_actions], activation)
        critic_width = (critic_core or actor_core).output_size
        self.vf_head = mlp([critic_width, *vf_hidden, 1], activation)
        # Small final policy layer: near-uniform actions at the start (as SB3 and CleanRL do).
        nn.init.orthogonal_(self.pi_head[-1].weight, gain=0.01)
        nn.init.zeros_(self.pi_head[-1].bias)

    @property
    def is_recurrent(self) -> bool:
        """Whether the policy keeps a state between steps (see ``Core.is_recurrent``)."""
        return self.actor_core.is_recurrent

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> RecurrentState:
        state = self.actor_core.initial_state(batch_size, device)
        if self.critic_core is None:
            return state
        critic = self.critic_core.initial_state(batch_size, device)
        return RecurrentState(torch.cat([state.h, critic.h]), torch.cat([state.c, critic.c]))

    def _split(self, state: RecurrentState) -> tuple[RecurrentState, RecurrentState]:
        n = self.actor_core.state_layers
        return RecurrentState(state.h[:n], state.c[:n]), RecurrentState(state.h[n:], state.c[n:])

    def forward(
        self, obs: Tensor, state: RecurrentState, episode_starts: Tensor
    ) -> tuple[Tensor, Tensor, RecurrentState]:
        """Logits ``(T, B, A)`` (a Gaussian's mean for Box actions), values ``(T, B)`` and the
        final state for ``obs`` ``(T, B, D)``."""
        x = self.obs_norm(obs)
        if self.critic_core is None:
            features, state = self.actor_core(x, state, episode_starts)
            return self._policy(features), self.vf_head(features).squeeze(-1), state
        actor_state, critic_state = self._split(state)
        actor_features, actor_state = self.actor_core(x, actor_state, episode_starts)
        critic_features, critic_state = self.critic_core(x, critic_state, episode_starts)
        state = RecurrentState(
            torch.cat([actor_state.h, critic_state.h]), torch.cat([actor_state.c, critic_state.c])
        )
        return self._policy(actor_features), self.vf_head(critic_features).squeeze(-1), state

    def _policy(self, features: Tensor) -> Tensor:
        """The action head's inputs: the policy head's outputs, and for gSDE its last features
        (detached: the exploration noise does not train them)."""
        if not self.gsde:
            return self.pi_head(features)
        latent = self.pi_head[:-1](features)
        return torch.cat([self.pi_head[-1](latent), latent.detach()], dim=-1)

    @torch.no_grad()
    def act(
        self, obs: Tensor, state: RecurrentState, episode_starts: Tensor, deterministic: bool
    ) -> tuple[Tensor, RecurrentState]:
        """Actions ``(B,)`` (``(B, A)`` floats for Box actions) for one step of observations
        ``(B, D)``; deterministic: the most likely action (the Gaussian's mean)."""
        logits, _, state = self(obs[None], state, episode_starts[None])  # (B, D) -> (1, B, D)
        logits = logits[0]
        if deterministic:
            return self.action_head.mode(logits), state
        return self.action_head.sample(logits), state

    def predict(
        self,
        observation: np.ndarray | Tensor,
        state: RecurrentState | tuple[np.ndarray | Tensor, ...] | None = None,
        episode_start: np.ndarray | Tensor | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, RecurrentState]:
        """Stable-Baselines3's ``predict`` protocol: numpy in, numpy actions and a state out.

        ``state`` is what the previous call returned, or ``(h, c)`` as numpy arrays or tensors
        (how SB3's recurrent policies hand theirs around), each ``(layers, B, hidden)``; a
        wrong shape is a ValueError saying which.
        """
        device = next(self.parameters()).device
        obs = torch.as_tensor(np.asarray(observation), dtype=torch.float32, device=device)
        single = obs.ndim == 1
        if obs.numel() % self.obs_dim != 0 or obs.numel() == 0:
            raise ValueError(
                f"observation of shape {tuple(obs.shape)} does not hold whole observations of"
                f" {self.obs_dim} numbers"
            )
        obs = obs.reshape(-1, self.obs_dim)  # (D,) or (B, D) -> (B, D)
        state = self._given_state(state, obs.shape[0], device)
        if episode_start is None:
            starts = torch.zeros(obs.shape[0], device=device)
        else:
            starts = torch.as_tensor(np.asarray(episode_start), dtype=torch.float32, device=device)
            if starts.numel() != obs.shape[0]:
                raise ValueError(
                    f"episode_start holds {starts.numel()} flags for {obs.shape[0]} observations"
                )
            starts = starts.reshape(obs.shape[0])
        actions, state = self.act(obs, state, starts, deterministic)
        actions = actions.cpu().numpy()
        return (actions[0] if single else actions), state

    def _given_state(self, state: object, batch: int, device: torch.device) -> RecurrentState:
        """``predict``'s ``state`` as a :class:`RecurrentState` on ``device`` (None: a fresh
        one), checked against the shapes this policy keeps for ``batch`` environments."""
        fresh = self.initial_state(batch, device)
        if state is None:
            return fresh
        if not isinstance(state, tuple | list) or len(state) != 2:
            raise ValueError(
                "state must be what predict returned, or (h, c): two arrays of shape"
                f" {tuple(fresh.h.shape)}, got {type(state).__name__}"
            )
        parts = []
        for name, given, want in zip("hc", state, fresh, strict=True):
            part = given if isinstance(given, Tensor) else torch.as_tensor(np.asarray(given))
            if tuple(part.shape) != tuple(want.shape):
                raise ValueError(
                    f"state {name} has shape {tuple(part.shape)}; this policy keeps"
                    f" {tuple(want.shape)} (layers, environments, hidden) for {batch}"
                    " observations"
                )
            parts.append(part.to(device=device, dtype=want.dtype))
        return RecurrentState(*parts)
