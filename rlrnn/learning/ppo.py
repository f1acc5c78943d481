"""Recurrent PPO: rollouts from a batched env, GAE, and clipped updates with full BPTT.

Minibatches are sets of whole environment sequences replayed from the recurrent state stored at
the start of the rollout: no padding, and the loss sees exactly the states the rollout acted with.
With ``bptt_len`` K, each env's rollout is cut into chunks of K steps, each replayed from the
state the rollout had before its first step (kept by the rollout at every step anyway), and a
minibatch is a set of chunks; GAE still runs over the whole rollout.
Everything in ``collect_rollout`` and ``update`` stays on the config's device; the only host
syncs are the statistics handed back once per iteration for logging. The rollout fills its
storage in a loop of its own, with the step semantics of :mod:`rlrnn.learning.acting`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from agents import ActorCritic, RecurrentState
from envs import BatchedEnv
from rlrnn.learning.acting import episode_starts_after
from rlrnn.learning.config import PPOConfig
from rlrnn.learning.gae import bootstrap_truncated, compute_gae
from rlrnn.learning.loss import explained_variance, ppo_loss
from rlrnn.learning.rollout import (
    EpisodeStats,
    Rollout,
    RolloutStorage,
    RunningReturnScale,
    act_step,
)

KL_LR_FACTOR = 1.5  # how far one minibatch moves the KL-adaptive learning rate
KL_LR_BOUNDS = (1e-5, 1e-2)  # the KL-adaptive learning rate stays within these
SOLVED_WINDOW = 20  # about how many recent episodes the solved test averages


class PPOLearner:
    """The learner: owns the agent, its optimizer, the env and the rollout state.

    Args:
        agent: the policy to train (already on ``env.device``).
        env: the batched environment (reset here with ``seed``).
        config: PPO hyperparameters.
        seed: seed of the environments.
    """

    def __init__(self, agent: ActorCritic, env: BatchedEnv, config: PPOConfig, seed: int) -> None:
        config.check_whole_sequences()  # a PPOConfig alone allows SB3's minibatches too
        self.agent, self.env, self.config = agent, env, config
        self.device = env.device
        # The learning rate lives on the device, so the KL-adaptive schedule moves it without a
        # host sync. Fused Adam: one kernel for all parameters instead of a handful per tensor.
        self.lr = torch.tensor(config.learning_rate, device=self.device)
        self.optimizer = torch.optim.Adam(
            agent.parameters(),
            lr=self.lr,
            betas=(config.adam_beta1, config.adam_beta2),
            eps=1e-5,
            fused=True,
        )
        self.reward_scale = (
            RunningReturnScale(env.num_envs, config.gamma, self.device)
            if config.normalize_reward
            else None
        )
        # "Solved": the training return over recent episodes reaches the env's threshold. Kept
        # on the device (a moving average weighted by finished episodes): no host sync.
        self.recent_return = torch.zeros((), device=self.device)
        self.finished_episodes = torch.zeros((), device=self.device)
        self.solved = torch.zeros((), dtype=torch.bool, device=self.device)
        tracks_solved = config.freeze_obs_norm or config.solved_lr_scale < 1
        self.threshold = env.reward_threshold if tracks_solved else None
        self.action_bounds = None  # a Box's (centre, half-range), for the bounds loss
        if env.continuous:
            low, high = (
                torch.as_tensor(b, dtype=torch.float32, device=self.device)
                for b in (env.action_low, env.action_high)
            )
            self.action_bounds = ((high + low) / 2, (high - low) / 2)
        self.obs = env.reset(seed)
        self.episode_starts = torch.ones(env.num_envs, device=self.device)
        self.state = agent.initial_state(env.num_envs, self.device)
        self._episode_return = torch.zeros(env.num_envs, device=self.device)
        self._episode_length = torch.zeros(env.num_envs, device=self.device)
        self.env_steps = 0
        self.iteration = 0
        self._storage: RolloutStorage | None = None  # allocated by the first rollout
        # The two functions of the hot loop; rlrnn.learning.compiled swaps in compiled ones.
        self.act_fn, self.loss_fn = act_step, ppo_loss

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def collect_rollout(self) -> tuple[Rollout, EpisodeStats]:
        cfg, env, agent = self.config, self.env, self.agent
        T, B = cfg.num_steps, env.num_envs
        initial_state = self.state
        if self._storage is None:
            self._storage = RolloutStorage.allocate(
                T,
                B,
                env.obs_dim,
                env.num_actions,
                agent.head_outputs,
                self.state,
                self.device,
                agent.continuous,
            )
        s = self._storage  # written in place: the returned Rollout is valid until the next one

        # The loop does only what must be sequential; everything else is vectorised below.
        obs, starts, state = self.obs, self.episode_starts, self.state
        for t in range(T):
            if cfg.sde_sample_freq and t % cfg.sde_sample_freq == 0:  # gSDE: new noise
                agent.action_head.reset_noise(B)
            s.obs[t], s.episode_starts[t] = obs, starts
            logits, value, state, action = self.act_fn(agent, obs, state, starts)
            s.logits[t], s.actions[t], s.values[t] = logits, action, value
            s.state_h[t], s.state_c[t] = state.h, state.c  # the state that saw obs[t]

            result = env.step(action)
            s.rewards[t], s.final_obs[t] = result.reward, result.final_obs
            s.terminated[t], s.truncated[t] = result.terminated, result.truncated
            s.episode_return[t] = self._episode_return.add_(result.reward)
            s.episode_length[t] = self._episode_length.add_(1)
            starts = episode_starts_after(result)
            self._episode_return.mul_(1 - starts)
            self._episode_length.mul_(1 - starts)
            obs = result.obs

        self.obs, self.episode_starts, self.state = obs, starts, state
        self.env_steps += T * B

        done_buf = (s.terminated | s.truncated).float()
        logp_buf, _ = agent.action_head.log_prob_and_entropy(s.logits, s.actions)
        finished = torch.stack(
            (
                done_buf.sum(),
                (s.episode_return * done_buf).sum(),
                (s.episode_length * done_buf).sum(),
            )
        )
        rewards = s.rewards
        if self.reward_scale is not None:
            rewards = self.reward_scale(rewards, done_buf)
        # Value of each final observation, seen with the state after obs[t]: one batched call.
        final_state = RecurrentState(
            s.state_h.permute(1, 0, 2, 3).flatten(1, 2), s.state_c.permute(1, 0, 2, 3).flatten(1, 2)
        )  # (T, L, B, H) -> (L, T*B, H)
        _, final_values, _ = agent(
            s.final_obs.reshape(1, T * B, -1),
            final_state,
            torch.zeros(1, T * B, device=self.device),
        )
        truncated_only = s.truncated & ~s.terminated
        rewards = bootstrap_truncated(rewards, truncated_only, final_values.view(T, B), cfg.gamma)
        _, last_value, _ = agent(obs[None], state, starts[None])
        advantages, returns = compute_gae(
            rewards, s.values, done_buf, last_value[0], cfg.gamma, cfg.gae_lambda
        )
        rollout = Rollout(
            s.obs,
            s.episode_starts,
            s.actions,
            logp_buf,
            s.values,
            advantages,
            returns,
            initial_state,
            self._chunk_states(initial_state, s),
        )
        return rollout, EpisodeStats(*finished.unbind())

    def _chunk_states(self, initial: RecurrentState, s: RolloutStorage) -> RecurrentState | None:
        """With ``bptt_len`` K, the state before each chunk's first step, chunk-major
        ``(L, T/K*B, H)``: the initial state, then the state that saw obs[c*K - 1] (the state
        before obs[c*K]; an episode start there resets it inside the core, as in the rollout).
        Read from the storage after the loop: the hot loop does nothing more."""
        K, T = self.config.bptt_len, self.config.num_steps
        if K is None:
            return None

        def starts(initial: Tensor, per_step: Tensor) -> Tensor:
            chunks = torch.cat((initial[None], per_step[K - 1 : T - 1 : K]))  # (C, L, B, H)
            return chunks.transpose(0, 1).flatten(1, 2)  # (C, L, B, H) -> (L, C*B, H)

        return RecurrentState(starts(initial.h, s.state_h), starts(initial.c, s.state_c))

    # ------------------------------------------------------------------ update
    def update(self, rollout: Rollout, progress: float) -> dict[str, Tensor]:
        """PPO epochs over ``rollout``; ``progress`` in [0, 1) drives the linear annealing."""
        cfg = self.config
        frac = 1.0 - progress
        clip = cfg.clip_coef * (frac if cfg.anneal_clip else 1.0)
        if not cfg.desired_kl:  # the KL-adaptive schedule replaces the linear one
            self.lr.fill_(cfg.learning_rate * (frac if cfg.anneal_lr else 1.0))
            if cfg.solved_lr_scale < 1:  # on the device: no host sync
                self.lr.mul_(1 - (1 - cfg.solved_lr_scale) * self.solved.float())

        sequences = rollout.sequences()  # (T, B), or (K, T/K*B) chunks with bptt_len K
        N = sequences.obs.shape[1]
        totals: dict[str, Tensor] = {}
        n = 0
        for _ in range(cfg.update_epochs):
            epoch_kl = torch.zeros((), device=self.device)
            for seqs in torch.randperm(N, device=self.device).split(cfg.sequences_per_minibatch):
                stats = self._minibatch_step(sequences, seqs, clip)
                epoch_kl += stats["approx_kl"]
                n += 1
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0) + v
            # The one host sync of the early stop, once per epoch and only when it is on.
            if cfg.target_kl > 0 and epoch_kl.item() / cfg.num_minibatches > cfg.target_kl:
                break
        out = {k: v / n for k, v in totals.items()}
        # A fill, not torch.tensor(float, device=...): that would copy from the host and sync.
        out["epochs"] = torch.full((), n / cfg.num_minibatches, device=self.device)
        out["learning_rate"] = self.lr.clone()
        out["explained_variance"] = explained_variance(rollout.values, rollout.returns)
        return out | self.diagnostics(rollout)

    @torch.no_grad()
    def diagnostics(self, rollout: Rollout) -> dict[str, Tensor]:
        """What moves when a solved policy collapses: the raw advantage scale (before the
        per-minibatch normalisation), the return scale the rewards are divided by, the value
        level, the observation normaliser's statistics and whether it is frozen yet
        (``freeze_obs_norm``). Keys are TensorBoard tags."""
        out = {
            "diagnostics/advantage_std": rollout.advantages.std(),
            "diagnostics/value_mean": rollout.values.mean(),
            "diagnostics/solved": self.solved.float(),
        }
        if self.reward_scale is not None:
            out["diagnostics/return_std"] = self.reward_scale.stats.inv_std[0].reciprocal()
        norm = self.agent.obs_norm
        for i in range(norm.mean.numel()):
            out[f"diagnostics/obs_mean_{i}"] = norm.mean[i]
            out[f"diagnostics/obs_std_{i}"] = norm.inv_std[i].reciprocal()
        return out

    def _minibatch_step(self, rollout: Rollout, envs: Tensor, clip: float) -> dict[str, Tensor]:
        cfg = self.config
        loss, stats = self.loss_fn(self.agent, rollout, envs, clip, cfg, self.action_bounds)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Without clipping the norm is still measured (an infinite bound scales nothing).
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
        stats["grad_norm"] = nn.utils.clip_grad_norm_(self.agent.parameters(), max_norm)
        self.optimizer.step()
        if cfg.desired_kl:
            with torch.no_grad():
                self._adapt_learning_rate(stats["approx_kl"])
        return stats

    def _adapt_learning_rate(self, approx_kl: Tensor) -> None:
        """rsl_rl's schedule: a step that moved the policy more than twice the desired KL
        shrinks the next one by 1.5, one that moved it less than half grows it by 1.5."""
        kl = self.config.desired_kl
        factor = torch.where(
            approx_kl > 2 * kl,
            1 / KL_LR_FACTOR,
            torch.where(approx_kl < kl / 2, KL_LR_FACTOR, 1.0),
        )
        self.lr.mul_(factor).clamp_(*KL_LR_BOUNDS)

    def _track_solved(self, episodes: EpisodeStats) -> None:
        """Fold this rollout's finished episodes into the running return (each episode weighs
        1/SOLVED_WINDOW, a moving average over about that many episodes) and latch ``solved``
        once it reaches the threshold with at least that many episodes seen. One rollout of a
        few long episodes is not enough: a policy is called solved on its recent record."""
        weight = 1 - (1 - 1 / SOLVED_WINDOW) ** episodes.count
        batch_mean = episodes.return_sum / episodes.count.clamp_min(1)
        self.recent_return += weight * (batch_mean - self.recent_return)
        self.finished_episodes += episodes.count
        reached = self.recent_return >= self.threshold
        self.solved |= reached & (self.finished_episodes >= SOLVED_WINDOW)

    # ------------------------------------------------------------------ resuming
    def state_dict(self) -> dict[str, Any]:
        """The learner's whole state (weights excluded: they travel in the checkpoint's model):
        optimizer, reward scale, where each env is, counters and the random generators."""
        env_state = getattr(self.env, "state_dict", None)
        saved = {
            "optimizer": self.optimizer.state_dict(),
            "learning_rate": self.lr,
            "reward_scale": None if self.reward_scale is None else self.reward_scale.state_dict(),
            "obs": self.obs,
            "episode_starts": self.episode_starts,
            "state_h": self.state.h,
            "state_c": self.state.c,
            "episode_return": self._episode_return,
            "episode_length": self._episode_length,
            "solved": self.solved,
            "recent_return": self.recent_return,
            "finished_episodes": self.finished_episodes,
            "env_steps": self.env_steps,
            "iteration": self.iteration,
            "env": None if env_state is None else env_state(),
            "cpu_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            saved["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return saved

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue where ``state_dict`` left off. Envs without a saved state (gymnasium ones)
        start fresh episodes, seeded by the step count."""
        to = {"device": self.device}
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.config.desired_kl:  # the adapted rate goes on; a fixed schedule recomputes it
            self.lr.copy_(saved["learning_rate"])
        for group in self.optimizer.param_groups:  # loading replaced the tensor Adam reads
            group["lr"] = self.lr
        if self.reward_scale is not None:
            self.reward_scale.load_state_dict(saved["reward_scale"])
        self.env_steps, self.iteration = int(saved["env_steps"]), int(saved["iteration"])
        for key in ("solved", "recent_return", "finished_episodes"):
            if key in saved:  # absent from checkpoints of older versions
                getattr(self, key).copy_(saved[key])
        if saved["env"] is not None and hasattr(self.env, "load_state_dict"):
            self.env.load_state_dict(saved["env"])
            self.obs = saved["obs"].to(**to)
            self.episode_starts = saved["episode_starts"].to(**to)
            self.state = RecurrentState(saved["state_h"].to(**to), saved["state_c"].to(**to))
            self._episode_return = saved["episode_return"].to(**to)
            self._episode_length = saved["episode_length"].to(**to)
        else:
            self.obs = self.env.reset(self.env_steps)
        torch.set_rng_state(saved["cpu_rng"])
        if self.device.type == "cuda" and "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"], self.device)

    # ------------------------------------------------------------------ one iteration
    def iterate(self) -> tuple[dict[str, Tensor], EpisodeStats]:
        """Collect one rollout, normalise observations, update; returns device statistics."""
        progress = self.iteration / self.config.num_iterations
        rollout, episodes = self.collect_rollout()
        stats = self.update(rollout, progress)
        # New observation statistics apply from the next rollout on, so the update above saw
        # exactly the inputs the rollout acted on.
        if self.threshold is not None:
            self._track_solved(episodes)
        frozen = self.config.freeze_obs_norm
        self.agent.obs_norm.update(rollout.obs, active=~self.solved if frozen else None)
        self.iteration += 1
        return stats, episodes
