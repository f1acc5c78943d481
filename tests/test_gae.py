"""GAE against a hand computation, with termination and truncation."""

import torch

from rlrnn.learning.gae import bootstrap_truncated, compute_gae


def test_gae_matches_hand_computation_with_termination_and_truncation():
    gamma, lam = 0.9, 0.5
    # One env, four steps: the episode is cut by the time limit after step 1 (with V(final) = 4)
    # and terminates after step 3. V(s_4) = 7 must not leak into step 3.
    rewards = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    values = torch.tensor([[2.0], [3.0], [5.0], [6.0]])
    terminated = torch.tensor([[0.0], [0.0], [0.0], [1.0]])
    truncated = torch.tensor([[False], [True], [False], [False]])
    final_values = torch.tensor([[99.0], [4.0], [99.0], [99.0]])
    dones = terminated + truncated.float()
    last_value = torch.tensor([7.0])

    boot = bootstrap_truncated(rewards, truncated, final_values, gamma)
    torch.testing.assert_close(boot, torch.tensor([[1.0], [1.0 + 0.9 * 4.0], [1.0], [1.0]]))
    adv, ret = compute_gae(boot, values, dones, last_value, gamma, lam)

    d3 = 1.0 - 6.0  # terminal: no bootstrap
    d2 = 1.0 + 0.9 * 6.0 - 5.0
    d1 = 1.0 + 0.9 * 4.0 - 3.0  # truncated: V(final obs), not V(next episode's first obs)
    d0 = 1.0 + 0.9 * 3.0 - 2.0
    a3 = d3
    a2 = d2 + 0.9 * 0.5 * a3
    a1 = d1  # the next step is another episode
    a0 = d0 + 0.9 * 0.5 * a1
    torch.testing.assert_close(adv, torch.tensor([[a0], [a1], [a2], [a3]]))
    torch.testing.assert_close(ret, adv + values)


def test_gae_bootstraps_last_value_when_rollout_ends_mid_episode():
    rewards, values = torch.ones(2, 1), torch.zeros(2, 1)
    adv, _ = compute_gae(rewards, values, torch.zeros(2, 1), torch.tensor([10.0]), 0.5, 1.0)
    torch.testing.assert_close(adv, torch.tensor([[1 + 0.5 * (1 + 0.5 * 10)], [1 + 0.5 * 10]]))
